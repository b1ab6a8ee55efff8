"""The interpolation job (issue 14 point 2): what an `interpolation` track request produces, frame
by frame, from the keyframes the request captured; the same again when resumed."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from masklog.domain import events as ev
from masklog.domain.geometry import rle_decode, rle_encode
from masklog.domain.interpolation import INTERPOLATION, LINEAR_MODEL, MORPH_MODEL
from masklog.domain.shapes import BBox, Bitmask, Keypoint
from masklog.inference.actor import InferenceActor
from masklog.inference.classical.segmenter import ClassicalSegmenter
from masklog.inference.classical.tracker import ClassicalTracker
from masklog.inference.interpolation import ACTOR, InterpolationJob, keyframes_of
from masklog.inference.registry import Backends
from masklog.inference.tracking import plan_track
from tests.domain.builders import ALICE, BOB, HEIGHT, WIDTH, MemoryLog, project_log


def box(x: float, y: float, w: float, h: float) -> BBox:
    return BBox(x=x, y=y, w=w, h=h)


def request(log: MemoryLog, objects: list[str], start: int = 0, range_: int = 12, direction: ev.Direction = ev.Direction.FORWARD, autosave: bool = False) -> ev.Event:
    return log.do(ALICE, ev.TrackRequested(media="m1", objects=objects, start=start, direction=direction, range=range_, algorithm=INTERPOLATION, autosave=autosave))


def run(log: MemoryLog, track: str, stop_after: int | None = None) -> list[ev.TrackFrameProduced]:
    """Run the job as the actor does, committing what it produces; stop after `stop_after` frames."""
    plan = plan_track(log.state, track)
    job = InterpolationJob(plan, keyframes_of(log.state, plan))
    out: list[ev.TrackFrameProduced] = []
    frames = 0
    while (bodies := job.step()) is not None:
        for body in bodies:
            log.do(ACTOR, body)
        out += bodies
        frames += 1
        if stop_after is not None and frames >= stop_after:
            return out
    return out


def test_boxes_between_keyframes_and_nothing_after_the_last():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(ALICE, ev.LabelSaved(object="a", frame=0, shape=box(0, 0, 10, 10), source=ev.Source.MANUAL))
    log.do(BOB, ev.LabelSaved(object="a", frame=4, shape=box(8, 4, 14, 6), source=ev.Source.MANUAL))
    log.do(BOB, ev.LabelSaved(object="a", frame=8, shape=box(40, 30, 6, 6), source=ev.Source.IMPORTED))
    track = request(log, ["a"])
    produced = run(log, track.id)
    assert [b.frame for b in produced] == [1, 2, 3, 5, 6, 7]  # not on keyframes, nothing after frame 8
    assert all(b.model == LINEAR_MODEL and b.score == 1.0 for b in produced)
    by_frame = {b.frame: b.shape for b in produced}
    assert by_frame[2] == box(4, 2, 12, 8)
    assert by_frame[7] == box(8 + 32 * 0.75, 4 + 26 * 0.75, 14 - 8 * 0.75, 6)
    assert log.state.label("a", 4).source == ev.Source.MANUAL  # the proposals wait for review
    assert sorted(f for _, f in log.state.proposals[track.id]) == [1, 2, 3, 5, 6, 7]
    assert not log.state.conflicts(track.id)  # interpolated frames lie strictly between keyframes


def test_a_resumed_job_produces_the_rest_exactly_as_the_first_run_would():
    def make() -> tuple[MemoryLog, str]:
        log = project_log()
        log.do(ALICE, ev.ObjectCreated(object="m", media="m1", class_id="bitmask"))
        log.do(ALICE, ev.ObjectCreated(object="k", media="m1", class_id="keypoint"))
        first, last = np.zeros((HEIGHT, WIDTH), dtype=bool), np.zeros((HEIGHT, WIDTH), dtype=bool)
        first[5:15, 5:15] = True
        last[20:40, 30:50] = True
        log.do(ALICE, ev.LabelSaved(object="m", frame=0, shape=Bitmask(rle=rle_encode(first)), source=ev.Source.MANUAL))
        log.do(ALICE, ev.LabelSaved(object="m", frame=10, shape=Bitmask(rle=rle_encode(last)), source=ev.Source.MANUAL))
        log.do(ALICE, ev.LabelSaved(object="k", frame=0, shape=Keypoint(x=0, y=0), source=ev.Source.MANUAL))
        log.do(ALICE, ev.LabelSaved(object="k", frame=6, shape=Keypoint(x=60, y=30), source=ev.Source.MANUAL))
        return log, request(log, ["m", "k"]).id

    whole_log, whole = make()
    everything = run(whole_log, whole)
    assert [(b.frame, b.object) for b in everything] == [(f, o) for f in range(1, 10) for o in ("m", "k") if o == "m" or f < 6]
    assert {b.model for b in everything if b.object == "m"} == {MORPH_MODEL}
    areas = [int(rle_decode(b.shape.rle).sum()) for b in everything if b.object == "m"]
    assert areas == sorted(areas) and 100 <= areas[0] and areas[-1] < 400  # grows from 10x10 to 20x20

    log, track = make()
    first = run(log, track, stop_after=4)  # a restart after frame 4
    rest = run(log, track)
    strip = lambda bodies: [(b.object, b.frame, b.shape, b.model) for b in bodies]
    assert strip(first + rest) == strip(everything)


def test_backwards_from_the_later_keyframe():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="keypoint"))
    log.do(ALICE, ev.LabelSaved(object="a", frame=2, shape=Keypoint(x=0, y=0), source=ev.Source.MANUAL))
    log.do(ALICE, ev.LabelSaved(object="a", frame=6, shape=Keypoint(x=40, y=20), source=ev.Source.MANUAL))
    track = request(log, ["a"], start=6, range_=7, direction=ev.Direction.BACKWARD)
    produced = run(log, track.id)
    assert [(b.frame, b.shape) for b in produced] == [(5, Keypoint(x=30, y=15)), (4, Keypoint(x=20, y=10)), (3, Keypoint(x=10, y=5))]


class _Ledger:
    """The actor's view of the log: a MemoryLog that executes batches."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self.actors: set[str] = set()

    @property
    def running(self):  # type: ignore[no-untyped-def]
        tracks = self.log.state.tracks.items()
        return {tid: (info.request.media, info.actor) for tid, info in tracks if info.status == "running"}

    async def state_of(self, media):  # type: ignore[no-untyped-def]
        return self.log.state

    async def execute_batch(self, actor, commands, *, cause=None):  # type: ignore[no-untyped-def]
        self.actors.add(actor)
        return [self.log.do(actor, body) for body, _ in commands]


class _NoFrames:
    def frames(self, media):  # type: ignore[no-untyped-def]
        raise AssertionError("interpolation reads no frames")

    open_frames = frames


@pytest.mark.parametrize("autosave", [False, True])
def test_the_actor_runs_interpolation_without_a_model_or_frames(autosave):
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(ALICE, ev.LabelSaved(object="a", frame=0, shape=box(0, 0, 10, 10), source=ev.Source.MANUAL))
    log.do(ALICE, ev.LabelSaved(object="a", frame=10, shape=box(30, 20, 20, 10), source=ev.Source.MANUAL))
    ledger = _Ledger(log)

    async def go() -> None:
        actor = InferenceActor(ledger, _NoFrames(), Backends(ClassicalSegmenter(), {"classical": ClassicalTracker()}))  # type: ignore[arg-type]
        actor.start()
        event = request(log, ["a"], autosave=autosave)
        actor.on_event(event)
        for _ in range(200):
            if log.state.tracks[event.id].status != "running":
                break
            await asyncio.sleep(0.01)
        await actor.stop()

    asyncio.run(go())
    [track] = log.state.tracks.values()
    assert track.status == "completed" and ledger.actors == {ACTOR}
    completed = [e.body for e in log.events if isinstance(e.body, ev.TrackCompleted)]
    assert completed and completed[0].frames == 9
    for frame in range(1, 10):
        t = frame / 10
        want = box(30 * t, 20 * t, 10 + 10 * t, 10)
        if autosave:
            label = log.state.label("a", frame)
            assert label is not None and label.source == ev.Source.TRACKED and label.shape == want
        else:
            assert log.state.proposals[next(iter(log.state.tracks))][("a", frame)].shape == want
