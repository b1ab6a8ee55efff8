"""Audit queries (C4): where each label came from, and counts by source.

Current provenance is read off the projection (every `Label` carries its source, actor, model,
prompt and track); the history of a cell, including values that lost a last-write-wins race, is
read off the log itself.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable

import msgspec

from masklog.domain.events import Event, Label, Source, kind
from masklog.domain.state import LabelState


class GroupBy(enum.StrEnum):
    OBJECT = "object"
    FRAME = "frame"
    ANNOTATOR = "annotator"
    CLASS = "class"


def counts(
    state: LabelState,
    media: str,
    by: GroupBy,
    *,
    sources: Iterable[Source] | None = None,
    annotator: str | None = None,
    models: Iterable[str | None] | None = None,
    classes: Iterable[str] | None = None,
) -> dict[str | int, dict[Source, int]]:
    """Count the current labels of a media item by source, grouped by object, frame, annotator
    or class, optionally filtered by source, annotator, model (None in `models`: labels made
    without one) and class; the filters combine (all must hold)."""
    wanted = set(sources) if sources is not None else None
    wanted_models = set(models) if models is not None else None
    wanted_classes = set(classes) if classes is not None else None
    table: dict[str | int, Counter[Source]] = {}
    for (object_id, frame), value in state.media_labels(media).items():
        if wanted is not None and value.source not in wanted:
            continue
        if annotator is not None and value.actor != annotator:
            continue
        if wanted_models is not None and value.model not in wanted_models:
            continue
        if wanted_classes is not None and state.objects[object_id].class_id not in wanted_classes:
            continue
        if by == GroupBy.OBJECT:
            key: str | int = object_id
        elif by == GroupBy.FRAME:
            key = frame
        elif by == GroupBy.ANNOTATOR:
            key = value.actor
        else:
            key = state.objects[object_id].class_id
        table.setdefault(key, Counter())[value.source] += 1
    return {key: dict(counter) for key, counter in table.items()}


class CellEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One change of an (object, frame) cell, as the log has it."""

    seq: int
    actor: str
    kind: str
    value: Label | None  # what the cell held after this event
    replaced: Label | None  # what it held before: the value that lost, for the audit


def cell_history(events: Iterable[Event], object_id: str, frame: int) -> list[CellEntry]:
    """Every event that changed the (object, frame) cell, in log order: who won, and what was lost.

    It replays the events rather than pattern-matching kinds, so every way a cell can change
    (saves, deletes, accepted tracks, automated labelling, undo/redo) is covered by one rule.
    """
    state = LabelState()
    history: list[CellEntry] = []
    current: Label | None = None
    for event in events:
        state.apply(event)
        value = state.label(object_id, frame)
        if value != current:
            history.append(CellEntry(seq=event.seq, actor=event.actor, kind=kind(event.body), value=value, replaced=current))
            current = value
    return history
