"""Small valid events for store tests: the store only cares about the envelope."""

from __future__ import annotations

from uuid import uuid4

from masklog.domain.events import ClassAdded, LabelSaved, NewEvent, ObjectCreated, Point, PromptAdded, Source
from masklog.domain.shapes import BBox, ShapeKind


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


def object_created(object: str, media: str, *, class_id: str = "c1", actor: str = "user:ann") -> NewEvent:
    return NewEvent(id=str(uuid4()), stream=f"media:{media}", actor=actor, body=ObjectCreated(object=object, media=media, class_id=class_id))


def prompt_added(object: str, media: str, *, new: bool = True, actor: str = "user:ann") -> NewEvent:
    """A SAM prompt; `new`: for a new object (naming class and media), which reserves the id."""
    body = PromptAdded(object=object, frame=0, points=[Point(x=1, y=1)], class_id="c1" if new else None, media=media if new else None)
    return NewEvent(id=str(uuid4()), stream=f"media:{media}", actor=actor, body=body)


def project_event(project: str, class_id: str) -> NewEvent:
    body = ClassAdded(project=project, class_id=class_id, name=class_id, shape=ShapeKind.BBOX, color="#112233")
    return NewEvent(id=str(uuid4()), stream=f"project:{project}", actor="user:ann", body=body)
