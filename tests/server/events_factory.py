"""Small valid events for store tests: the store only cares about the envelope."""

from __future__ import annotations

from uuid import uuid4

from masklog.domain.events import LabelSaved, NewEvent, Source
from masklog.domain.shapes import BBox


def label_saved(
    *, stream: str = "m1", frame: int = 0, object: str = "o1", id: str | None = None, actor: str = "user:ann"
) -> NewEvent:
    """A LabelSaved event; `frame` doubles as a marker that tells events apart in assertions."""
    return NewEvent(
        id=id or str(uuid4()),
        stream=stream,
        actor=actor,
        body=LabelSaved(object=object, frame=frame, shape=BBox(x=0, y=0, w=1, h=1), source=Source.MANUAL),
    )


def batch(size: int, *, stream: str = "m1", first_frame: int = 0) -> list[NewEvent]:
    return [label_saved(stream=stream, frame=first_frame + i) for i in range(size)]
