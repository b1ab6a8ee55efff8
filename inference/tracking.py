"""One track request, worked off frame by frame: shapes in, the model's results out as events.

`plan_track` reads what a request needs from the projection (the conditioning shape of each
object, where to start, how many frames are left) — on a fresh request or when resuming one
after a restart. `TrackJob` turns the plan into `TrackFrameProduced` bodies, one frame per
`step()`; it blocks (models run here), so the actor calls it off the event loop. Nothing here
touches the log.

Every shape kind tracks (T6). Bitmasks, polygons and boxes go through the mask tracker (SAM 2
or the classical one), and every tracked mask becomes the class's own shape again:

- bitmask, polygon: the label's mask is tracked; the polygon is the mask's outline.
- bbox: a box holds background as well as the object, so the object inside is segmented (a box
  prompt) and tracked, and each tracked box is the mask's box with the drawn box's margins. When
  the segmentation fills under MIN_BOX_FILL of the box (nothing to tell from the background), the
  box itself is tracked.
- rotated bbox: likewise segmented from its bounding box; each tracked box is the drawn one
  moved and scaled as the mask's centre and area changed, and turned as its orientation did
  when the mask is elongated enough to have one.

Keypoints, skeletons and polylines go through the point tracker (`inference.points`). An object
whose result cannot be made into a valid shape on a frame counts as lost there, and so does one
the mask tracker calls absent: its presence score under `PRESENCE_THRESHOLD` (inference.protocols,
the one threshold; the mask is None then). The annotation interval (T5) stops an object after
that many lost frames in a row; every frame's score is logged with its `TrackFrameProduced`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from masklog.domain.events import ClassAdded, Direction, MediaAdded, TrackFrameProduced, TrackRequested
from masklog.domain.geometry import (
    MASK_POLYGON_TOLERANCE,
    GeometryError,
    mask_to_bbox,
    rotated_bbox_corners,
    shape_from_mask,
    shape_points,
    shape_to_mask,
    shape_with_points,
    validate_shape,
)
from masklog.domain.shapes import POINT_KINDS, BBox, Bitmask, RotatedBBox, Shape, ShapeKind, Skeleton, SkeletonPoint
from masklog.domain.state import LabelState, TrackStatus
from masklog.inference.points import PointTracker, TrackedPoints
from masklog.inference.protocols import FrameSource, Prompt, TrackedMask, Tracker

# A mask this many times longer than wide has an orientation a rotated box can follow.
ELONGATED = 1.3
# A box prompt whose segmentation fills less of the drawn box than this found no object in it.
MIN_BOX_FILL = 0.01


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    object: str
    cls: ClassAdded
    shape: Shape  # the object on the plan's start frame: what tracking is conditioned on
    # People's labels of the object later in the range (issue 14), in the track's order: on
    # each, the tracker's own result is still produced (review shows it as a conflict), and
    # the object is tracked on from the person's shape, not from the tracker's drift.
    keyframes: tuple[tuple[int, Shape], ...] = ()


@dataclass(frozen=True, slots=True)
class TrackPlan:
    track: str
    request: TrackRequested
    media: MediaAdded
    start: int  # the frame the models are conditioned on; results come after it
    count: int  # frames to run, counting `start`
    objects: tuple[ObjectPlan, ...]
    dropped: tuple[str, ...] = ()  # objects that cannot go on (deleted, or stopped by the interval)
    # Frames after `start` already in the log (a resumed track): run again, not produced again.
    skip: int = 0

    @property
    def step(self) -> int:
        return Direction(self.request.direction).step


class PlanError(Exception):
    """The track cannot run (or go on); the message is the reason its failure records."""


def plan_track(state: LabelState, track_id: str) -> TrackPlan:
    """What running (or resuming) `track_id` takes, from the state.

    The models are conditioned on each object's label on the start frame as it was when the
    track was requested. A resumed track runs again from there, and the frames it already
    produced are computed but not produced again (`skip`): a model's memory of the frames it
    saw (and an object it had lost and may find again) is only rebuilt that way, so a restart
    never changes the results. Objects deleted or stopped by the annotation interval do not go
    on. Raises PlanError when no object can."""
    info = state.tracks[track_id]
    request = info.request
    media = state.media[request.media]
    step = Direction(request.direction).step
    done = frames_done(state, track_id)
    last = min(media.frames - 1, request.start + (request.range - 1)) if step > 0 else max(0, request.start - (request.range - 1))
    count = (last - request.start) * step + 1
    objects: list[ObjectPlan] = []
    dropped: list[str] = []
    for object_id in request.objects:
        info_object = state.objects.get(object_id)
        shape = info.conditioning.get(object_id)
        if info_object is None or shape is None or info.stopped(object_id):
            dropped.append(object_id)
            continue
        keyframes = tuple(sorted(info.keyframes.get(object_id, {}).items(), key=lambda item: (item[0] - request.start) * step))
        objects.append(ObjectPlan(object_id, state.classes[info_object.class_id], shape, keyframes))
    if not objects:
        if done and dropped:
            raise PlanError(f"no object can go on from frame {request.start + done * step}: each was stopped or deleted")
        raise PlanError("none of the track's objects can be tracked any more (deleted or without a label on the start frame)")
    return TrackPlan(track_id, request, media, request.start, count, tuple(objects), tuple(dropped), skip=done)


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One frame's model output, before it becomes shapes."""

    frame: int
    masks: list[TrackedMask]
    points: list[TrackedPoints]
    # What each object's results on this frame are made from (its shape on the frame it was
    # last seeded on): taken with the frame, since `convert` may run a frame behind `advance`,
    # which re-seeds objects on their keyframes.
    seeds: dict[str, _Seed] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Seed:
    """What an object's tracked results are made from: the shape it was seeded with (the start
    frame's, or its latest keyframe's) and what was measured of it then."""

    shape: Shape
    # A box label is wider than the object it holds: how much, relative to the mask's own box,
    # so every tracked box keeps the annotator's margins.
    margins: tuple[float, float, float, float] | None = None
    # A rotated box follows the object's mask from where it was seeded (see `_Anchor`).
    anchor: _Anchor | None = None


@dataclass(slots=True)
class _Running:
    plan: ObjectPlan
    lost_streak: int
    stopped: bool = False


@dataclass(frozen=True, slots=True)
class _Anchor:
    """Where an object's mask was when tracking began: centre, size (square root of the area)
    and, for an elongated mask, its orientation. A tracked rotated box is the drawn one moved,
    scaled and turned as the mask moved, scaled and turned since."""

    cx: float
    cy: float
    size: float
    angle: float | None  # None: too round to have a reliable orientation

    @staticmethod
    def of(mask: np.ndarray) -> _Anchor | None:
        ys, xs = np.nonzero(mask)
        if len(xs) < 3:
            return None
        (_, _), (w, h), angle = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))
        elongated = max(w, h) > ELONGATED * max(min(w, h), 1.0)
        return _Anchor(float(xs.mean()), float(ys.mean()), math.sqrt(len(xs)), float(angle) if elongated else None)


@dataclass(slots=True)
class _Stream:
    """One tracker session and its frames; `objects`: those whose results it gives now (an
    object re-seeded on a keyframe moves to a session of its own)."""

    session: Any
    frames: Iterator[list[Any]]
    objects: set[str]


@dataclass
class TrackJob:
    """Works off a plan one frame per `step()`. Use from one thread at a time.

    People's labels later in the range (`ObjectPlan.keyframes`, issue 14) are corrections the
    tracker conditions on: on a keyframe the object's result is still produced (the tracker's
    own, which review shows as a conflict with the person's label), and from that frame on the
    object is tracked from the person's shape by a session of its own, seeded there. The
    sessions' frames are merged into one step per frame. Keyframes are part of the plan, so a
    resumed track re-seeds on the same frames and gives the same results."""

    plan: TrackPlan
    frames: FrameSource
    masks: Tracker
    points: PointTracker
    _objects: dict[str, _Running] = field(default_factory=dict)
    _seeds: dict[str, _Seed] = field(default_factory=dict)
    _streams: list[_Stream] = field(default_factory=list)
    _opened: bool = False
    _offset: int = 0  # frames produced by this job
    _finished: bool = False

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def frame(self) -> int:
        """The last frame this job produced (or the start frame)."""
        return self.plan.start + self._offset * self.plan.step

    def step(self) -> list[TrackFrameProduced] | None:
        """The next frame's results, one per object still tracked; None once there is nothing
        more to do (the range is done or every object has stopped)."""
        raw = self.advance()
        return None if raw is None else self.convert(raw)

    def advance(self) -> RawFrame | None:
        """The models' part of `step`: the next frame's masks and points, not yet shapes."""
        if self._finished:
            return None
        if not self._opened:
            self._open()
        if self._offset + 1 >= self.plan.count or all(o.stopped for o in self._objects.values()):
            self.close()
            return None
        masks: list[TrackedMask] = []
        points: list[TrackedPoints] = []
        for stream in self._streams:
            for result in next(stream.frames):
                if result.object in stream.objects:
                    (points if isinstance(result, TrackedPoints) else masks).append(result)
        self._offset += 1
        raw = RawFrame(self.frame, masks, points, dict(self._seeds))
        for running in self._objects.values():
            shape = dict(running.plan.keyframes).get(raw.frame)
            if shape is not None and not running.stopped and self._offset + 1 < self.plan.count:
                self._reseed(running.plan, raw.frame, shape)
        return raw

    def convert(self, raw: RawFrame) -> list[TrackFrameProduced]:
        """The shapes part of `step`: each result as the class's shape, or lost. Call in frame
        order (the annotation interval counts lost frames); it may run on another thread than
        `advance`, one frame behind it."""
        bodies: list[TrackFrameProduced] = []
        replayed = (raw.frame - self.plan.start) * self.plan.step <= self.plan.skip
        for result in raw.masks:
            running = self._objects[result.object]
            if not running.stopped:
                shape = self._shape_from_mask(running, raw.seeds[result.object], result.mask)
                bodies.append(self._produced(running, raw.frame, shape, result.score, self.masks.model))
        for tracked in raw.points:
            running = self._objects[tracked.object]
            if not running.stopped:
                shape = self._shape_from_points(running, raw.seeds[tracked.object], tracked)
                bodies.append(self._produced(running, raw.frame, shape, tracked.score, self.points.model))
        # Frames a resumed track already produced: run for the models' memory, not produced.
        return [] if replayed else bodies

    def stop_object(self, object_id: str) -> None:
        """Produce nothing more for an object (deleted meanwhile, say)."""
        running = self._objects.get(object_id)
        if running is not None:
            running.stopped = True

    def close(self) -> None:
        self._finished = True
        for stream in self._streams:
            stream.session.close()
        self._streams.clear()

    # ---- set-up ---------------------------------------------------------------------------

    def _open(self) -> None:
        plan = self.plan
        self._opened = True
        for o in plan.objects:
            self._objects[o.object] = _Running(o, 0)
        mask_objects = [o for o in plan.objects if o.cls.shape not in POINT_KINDS]
        point_objects = [o for o in plan.objects if o.cls.shape in POINT_KINDS]
        for objects in (mask_objects, point_objects):
            if objects:
                self._start(objects, plan.start, [o.shape for o in objects])

    def _start(self, objects: list[ObjectPlan], frame: int, shapes: list[Shape]) -> None:
        """A session for `objects` (all of one tracker), seeded on `frame` with `shapes`, that
        propagates to the end of the plan; its first frame (the seeds themselves) is skipped."""
        points = objects[0].cls.shape in POINT_KINDS
        session: Any = self.points.open(self.frames) if points else self.masks.open(self.frames, media=self.plan.media.media)
        for o, shape in zip(objects, shapes, strict=True):
            self._seeds[o.object] = self._seed(session, frame, o.object, shape, points)
        remaining = self.plan.count - (frame - self.plan.start) * self.plan.step
        stream = _Stream(session, iter(session.propagate(frame, self.plan.request.direction, remaining)), {o.object for o in objects})
        self._streams.append(stream)
        next(stream.frames)  # the seeding frame: the conditioning itself, already labelled

    def _seed(self, session: Any, frame: int, object_id: str, shape: Shape, points: bool) -> _Seed:
        """Condition `session` (a point tracker's if `points`) on `shape` of `object_id` on `frame`."""
        height, width = self.frames.height, self.frames.width
        if points:
            session.add_points(frame, object_id, np.asarray(shape_points(shape), dtype=np.float64))
            return _Seed(shape)
        # Boxes hold background too: the object inside is segmented (a box prompt) and
        # tracked, and the box made again around it on every frame.
        if isinstance(shape, BBox):
            mask = session.add_prompt(frame, object_id, Prompt(box=(shape.x, shape.y, shape.x + shape.w, shape.y + shape.h)))
            if np.count_nonzero(mask) < MIN_BOX_FILL * shape.w * shape.h:
                # The segmenter found (next to) nothing inside: a box round plain background,
                # say. The person's box itself is the object then, tracked as drawn.
                mask = shape_to_mask(shape, height, width)
                session.add_mask(frame, object_id, mask)
            return _Seed(shape, margins=_margins(shape, mask))
        if isinstance(shape, RotatedBBox):
            corners = rotated_bbox_corners(shape)
            x0, y0 = np.clip(corners.min(axis=0), 0, [width - 1, height - 1])
            x1, y1 = np.clip(corners.max(axis=0) + 1, 1, [width, height])
            mask = session.add_prompt(frame, object_id, Prompt(box=(float(x0), float(y0), float(x1), float(y1))))
            anchor = _Anchor.of(mask)
            if anchor is None:
                session.add_mask(frame, object_id, shape_to_mask(shape, height, width))
            return _Seed(shape, anchor=anchor)
        session.add_mask(frame, object_id, shape_to_mask(shape, height, width))
        return _Seed(shape)

    def _reseed(self, plan: ObjectPlan, frame: int, shape: Shape) -> None:
        """Track `plan.object` from its keyframe `shape` on `frame`: out of its session (closed
        once it tracks nobody), into a fresh one seeded there."""
        for stream in list(self._streams):
            if plan.object in stream.objects:
                stream.objects.discard(plan.object)
                if not stream.objects:
                    stream.session.close()
                    self._streams.remove(stream)
        self._start([plan], frame, [shape])

    # ---- results ----------------------------------------------------------------------------

    def _produced(self, running: _Running, frame: int, shape: Shape | None, score: float, model: str) -> TrackFrameProduced:
        if shape is None:
            running.lost_streak += 1
            interval = self.plan.request.interval
            if interval > 0 and running.lost_streak >= interval:
                running.stopped = True
        else:
            running.lost_streak = 0
        score = float(score) if math.isfinite(score) else 0.0
        return TrackFrameProduced(
            track=self.plan.track,
            object=running.plan.object,
            frame=frame,
            shape=shape,
            score=min(max(score, -1e6), 1e6),
            model=model,
        )

    def _shape_from_mask(self, running: _Running, seed: _Seed, mask: np.ndarray | None) -> Shape | None:
        if mask is None or not mask.any():
            return None
        kind = running.plan.cls.shape
        try:
            if kind == ShapeKind.BBOX and seed.margins is not None:
                shape: Shape = _with_margins(mask_to_bbox(mask), seed.margins, self.frames.width, self.frames.height)
            elif kind == ShapeKind.ROTATED_BBOX and seed.anchor is not None:
                moved = _follow(seed.shape, seed.anchor, _Anchor.of(mask))  # type: ignore[arg-type]
                if moved is None:
                    return None
                shape = moved
            else:
                shape = shape_from_mask(kind, mask, MASK_POLYGON_TOLERANCE)
        except GeometryError:
            return None
        if isinstance(shape, Bitmask):
            return shape  # the RLE of a non-empty mask of the frame: valid as made
        return self._valid(shape, running)

    def _shape_from_points(self, running: _Running, seed: _Seed, tracked: TrackedPoints) -> Shape | None:
        if tracked.points is None:
            return None
        try:
            shape = shape_with_points(seed.shape, tracked.points)
        except GeometryError:
            return None
        if isinstance(shape, Skeleton) and tracked.visible is not None:
            shape = Skeleton(points=[SkeletonPoint(x=p.x, y=p.y, visible=bool(v)) for p, v in zip(shape.points, tracked.visible, strict=True)])
        return self._valid(shape, running)

    def _valid(self, shape: Shape, running: _Running) -> Shape | None:
        """The log refuses invalid shapes; a result that would be one is a lost frame."""
        skeleton = running.plan.cls.skeleton
        try:
            validate_shape(shape, self.frames.width, self.frames.height, len(skeleton.points) if skeleton else None)
        except GeometryError:
            return None
        return shape


def _margins(box: BBox, mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The label box's margins around the segmented mask's box, as fractions of the mask box's
    size (left, top, right, bottom); None when the segmentation found nothing to measure."""
    if not mask.any():
        return None
    inner = mask_to_bbox(mask)
    if inner.w <= 0 or inner.h <= 0:
        return None
    return (
        (inner.x - box.x) / inner.w,
        (inner.y - box.y) / inner.h,
        (box.x + box.w - inner.x - inner.w) / inner.w,
        (box.y + box.h - inner.y - inner.h) / inner.h,
    )


def _follow(drawn: RotatedBBox, start: _Anchor, now: _Anchor | None) -> RotatedBBox | None:
    """The drawn rotated box moved, scaled and turned as the object's mask did."""
    if now is None:
        return None
    scale = now.size / start.size
    turn = 0.0
    if start.angle is not None and now.angle is not None:
        # minAreaRect's angle is ambiguous by quarter turns: take the smallest turn.
        turn = (now.angle - start.angle + 45.0) % 90.0 - 45.0
    angle = (drawn.angle + turn + 180.0) % 360.0 - 180.0
    return RotatedBBox(cx=drawn.cx + now.cx - start.cx, cy=drawn.cy + now.cy - start.cy, w=drawn.w * scale, h=drawn.h * scale, angle=angle)


def _with_margins(inner: BBox, margins: tuple[float, float, float, float], width: int, height: int) -> BBox:
    left, top, right, bottom = margins
    x0 = max(0.0, inner.x - left * inner.w)
    y0 = max(0.0, inner.y - top * inner.h)
    x1 = min(float(width), inner.x + inner.w + right * inner.w)
    y1 = min(float(height), inner.y + inner.h + bottom * inner.h)
    return BBox(x=x0, y=y0, w=max(0.0, x1 - x0), h=max(0.0, y1 - y0))


def frames_done(state: LabelState, track_id: str) -> int:
    """How many frames after its start a track has produced (what its completion records)."""
    info = state.tracks[track_id]
    step = Direction(info.request.direction).step
    return max(((f - info.request.start) * step for f in info.last_frame.values()), default=0)


def is_running(state: LabelState, track_id: str) -> bool:
    info = state.tracks.get(track_id)
    return info is not None and info.status == TrackStatus.RUNNING
