"""Interpolation as a method of automated labelling (issue 14): a track request whose algorithm
is `interpolation` is worked off by `InterpolationJob` instead of `TrackJob`.

It goes through the track pipeline, so its results are proposals reviewed like a track's (or
saved at once when autosaving, as automated labelling does), and a result never replaces a
person's label (a proposal on a person's frame is a conflict; interpolated frames lie strictly
between keyframes anyway). It needs no model and reads no frames: each object's keyframes are
its label on the start frame (the track's conditioning) and the people's labels in the range
captured when the track was requested (`TrackInfo.keyframes`). Every frame strictly between two
consecutive keyframes gets `domain.interpolation.interpolate` of them; frames after the last
keyframe get nothing. Deterministic, so a resumed job produces exactly what the first run did;
the frames a resumed job had already produced are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from masklog.domain.events import TrackFrameProduced
from masklog.domain.geometry import GeometryError, validate_shape
from masklog.domain.interpolation import INTERPOLATION, InterpolationError, interpolate, interpolation_model, keyframe_pair
from masklog.domain.shapes import Shape
from masklog.domain.state import LabelState
from masklog.inference.tracking import TrackPlan

__all__ = ["INTERPOLATION", "ACTOR", "InterpolatedFrame", "InterpolationJob", "keyframes_of"]

# The actor its events are written as: no model runs.
ACTOR = f"model:{INTERPOLATION}"
# Score of an interpolated result: it is what the keyframes say, not a model's confidence.
SCORE = 1.0


def keyframes_of(state: LabelState, plan: TrackPlan) -> dict[str, dict[int, Shape]]:
    """Each planned object's keyframes: its label on the start frame and its people's labels in
    the range, as captured when the track was requested."""
    captured = state.tracks[plan.track].keyframes
    return {o.object: {plan.start: o.shape, **captured.get(o.object, {})} for o in plan.objects}


@dataclass(frozen=True, slots=True)
class InterpolatedFrame:
    """What `advance` hands to `convert`: the frame to interpolate."""

    frame: int


@dataclass
class InterpolationJob:
    """The same steps as `TrackJob` (`advance` then `convert`, one frame at a time), no model."""

    plan: TrackPlan
    keyframes: dict[str, dict[int, Shape]]
    _offset: int = 0
    _finished: bool = False
    _stopped: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        # The last frame any object has something on: the job ends there.
        step = self.plan.step
        ends = [(max(frames, key=lambda f: (f - self.plan.start) * step) - self.plan.start) * step for frames in self.keyframes.values() if frames]
        self._end = min(max(ends, default=0), self.plan.count - 1)

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def frame(self) -> int:
        return self.plan.start + self._offset * self.plan.step

    def step(self) -> list[TrackFrameProduced] | None:
        raw = self.advance()
        return None if raw is None else self.convert(raw)

    def advance(self) -> InterpolatedFrame | None:
        """The next frame, past the ones a resumed track already produced; None at the end."""
        if self._finished:
            return None
        self._offset = max(self._offset, self.plan.skip)
        if self._offset + 1 >= self._end:  # the next frame would be the last keyframe or beyond
            self.close()
            return None
        self._offset += 1
        return InterpolatedFrame(self.frame)

    def convert(self, raw: InterpolatedFrame) -> list[TrackFrameProduced]:
        """Each object's interpolated shape on the frame, where it lies between two of its keyframes."""
        bodies: list[TrackFrameProduced] = []
        media = self.plan.media
        for o in self.plan.objects:
            frames = self.keyframes.get(o.object, {})
            pair = keyframe_pair(frames, raw.frame)
            if o.object in self._stopped or pair is None:
                continue
            first, second = pair
            t = (raw.frame - first) / (second - first)
            try:
                shape = interpolate(frames[first], frames[second], t, media.width, media.height)
                if shape is not None:
                    skeleton = o.cls.skeleton
                    validate_shape(shape, media.width, media.height, len(skeleton.points) if skeleton else None)
            except (InterpolationError, GeometryError):
                continue  # keyframes that cannot be blended (reclassed in between): nothing here
            if shape is None:
                continue  # a morph that vanished: nothing to propose
            bodies.append(
                TrackFrameProduced(track=self.plan.track, object=o.object, frame=raw.frame, shape=shape, score=SCORE, model=interpolation_model(shape))
            )
        return bodies

    def stop_object(self, object_id: str) -> None:
        self._stopped.add(object_id)

    def close(self) -> None:
        self._finished = True
