"""A tiny in-memory log for domain tests: decide, number, apply — what the server does, minus I/O."""

from __future__ import annotations

import uuid

import numpy as np

from masklog.domain.decide import Command, decide
from masklog.domain.events import (
    ClassAdded,
    Event,
    MediaAdded,
    MediaKind,
    ProjectCreated,
    SkeletonTemplate,
)
from masklog.domain.geometry import rle_encode
from masklog.domain.shapes import Bitmask, ShapeKind
from masklog.domain.state import LabelState

ADMIN = "user:admin"
ALICE = "user:alice"
BOB = "user:bob"
TRACKER = "model:classical/flow@1"

WIDTH, HEIGHT, FRAMES = 64, 48, 12


class MemoryLog:
    def __init__(self) -> None:
        self.state = LabelState()
        self.events: list[Event] = []

    def do(self, actor: str, command: Command, *, panoptic: bool = False, event_id: uuid.UUID | None = None) -> Event:
        body = decide(self.state, actor, command, panoptic=panoptic)
        event = Event(
            seq=len(self.events) + 1,
            id=event_id or str(uuid.uuid4()),
            stream="m1",
            actor=actor,
            at=1_700_000_000.0 + len(self.events),
            body=body,
        )
        self.events.append(event)
        self.state.apply(event)
        return event


def project_log(media_kind: MediaKind = MediaKind.VIDEO, frames: int = FRAMES, log: MemoryLog | None = None) -> MemoryLog:
    """Project p1 with one class per shape kind (id = the kind's value) and media m1."""
    log = log if log is not None else MemoryLog()
    log.do(ADMIN, ProjectCreated(project="p1", name="Project"))
    for kind in ShapeKind:
        skeleton = SkeletonTemplate(points=["head", "tail"], edges=[(0, 1)]) if kind == ShapeKind.SKELETON else None
        log.do(ADMIN, ClassAdded(project="p1", class_id=kind.value, name=kind.value, shape=kind, color="#ff0000", skeleton=skeleton))
    log.do(ADMIN, ClassAdded(project="p1", class_id="bbox2", name="other box", shape=ShapeKind.BBOX, color="#00ff00"))
    log.do(
        ADMIN,
        MediaAdded(project="p1", media="m1", name="clip", kind=media_kind, width=WIDTH, height=HEIGHT, frames=1 if media_kind == MediaKind.IMAGE else frames, fps=25.0),
    )
    return log


def rect_mask(x: int, y: int, w: int, h: int) -> Bitmask:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[y : y + h, x : x + w] = True
    return Bitmask(rle=rle_encode(mask))
