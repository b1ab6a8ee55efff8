"""Checks of a client's command whose cost grows with its size, done before it is decided.

`decide` runs on the server's event loop, under the ledger's lock; a command holding a long RLE
string would hold both while its runs are checked. `precheck` is meant for a worker thread,
ahead of the ledger: it checks what needs no state (the limits on a shape's points, which the
schema can only bound ring by ring) and checks every RLE, whose result `geometry.rle_area`
keeps for `decide`'s own check. It does no I/O and changes nothing.
"""

from __future__ import annotations

from masklog.domain.decide import Command, DomainError, ErrorCode
from masklog.domain.events import LabelSaved, ObjectCreated, PromptAdded, SegmentProposed, TrackFrameProduced
from masklog.domain.geometry import GeometryError, rle_area
from masklog.domain.limits import MAX_SHAPE_POINTS
from masklog.domain.shapes import Bitmask, Polygon, Polyline, Rle, Shape


def precheck(command: Command) -> None:
    """Raise DomainError (`bad_geometry`) for a shape over the point limit; check its RLEs."""
    shape = _shape(command)
    if shape is not None:
        check_points(shape)
    for rle in _rles(command, shape):
        try:
            rle_area(rle)
        except GeometryError:
            pass  # kept with the RLE; `decide` reports it, in its order of checks


# Above these a command's checks are worth a worker thread; below, they take microseconds.
COSTLY_RLE_CHARS = 64 * 1024
COSTLY_SHAPE_POINTS = 2_000


def is_costly(command: Command) -> bool:
    """Whether `precheck` would take long enough on `command` to block the event loop."""
    shape = _shape(command)
    if sum(len(rle.counts) for rle in _rles(command, shape)) > COSTLY_RLE_CHARS:
        return True
    return shape is not None and _points(shape) > COSTLY_SHAPE_POINTS


def _shape(command: Command) -> Shape | None:
    """The shape a command carries: a label's, a frame result's, a new object's first label's."""
    if isinstance(command, (LabelSaved, TrackFrameProduced)):
        return command.shape
    if isinstance(command, ObjectCreated) and command.label is not None:
        return command.label.shape
    return None


def _points(shape: Shape) -> int:
    if isinstance(shape, Polygon):
        return sum(len(part.outer) + sum(len(hole) for hole in part.holes) for part in shape.parts) // 2
    if isinstance(shape, Polyline):
        return len(shape.points) // 2
    return 0


def check_points(shape: Shape) -> None:
    """Raise DomainError unless `shape` has at most MAX_SHAPE_POINTS vertices."""
    count = _points(shape)
    if count > MAX_SHAPE_POINTS:
        kind = "polygon" if isinstance(shape, Polygon) else "polyline"
        raise DomainError(ErrorCode.BAD_GEOMETRY, f"{kind} has {count} points; at most {MAX_SHAPE_POINTS} are allowed")


def _rles(command: Command, shape: Shape | None) -> list[Rle]:
    if isinstance(shape, Bitmask):
        return [shape.rle]
    if isinstance(command, PromptAdded) and command.mask is not None:
        return [command.mask]
    if isinstance(command, SegmentProposed):
        return [command.mask]
    return []
