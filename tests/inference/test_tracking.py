"""Planning a track from the projection and working it off frame by frame (`inference.tracking`),
with the real classical and point trackers on clips of known motion."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from masklog.domain import events as ev
from masklog.domain.geometry import rle_encode, shape_to_mask
from masklog.domain.shapes import BBox, Bitmask, Keypoint, Polygon, RotatedBBox
from masklog.inference.classical.tracker import ClassicalTracker
from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.points import PointTracker
from masklog.inference.tracking import PlanError, TrackJob, frames_done, plan_track
from tests.domain.builders import ALICE, TRACKER, MemoryLog, project_log
from tests.inference.synthetic import iou
from tests.server.tracking_clips import Clip, Disc

# The builders' media m1 is 64 x 48 with 12 frames; so is this clip.
CLIP = Clip(64, 48, 12, (Disc((220, 40, 40), 16, 24, 2, 0, r=7), Disc((40, 60, 230), 44, 14, 0, 2, r=6)))
FRAMES = ArrayFrames(CLIP.images())


def disc_label(disc: int, frame: int) -> Bitmask:
    return Bitmask(rle=rle_encode(CLIP.discs[disc].mask(frame, CLIP.height, CLIP.width)))


@pytest.fixture
def log() -> MemoryLog:
    log = project_log()
    for kind in ["bitmask", "polygon", "bbox", "rotated_bbox", "keypoint"]:
        log.do(ALICE, ev.ObjectCreated(object=kind, media="m1", class_id=kind))
    return log


def run(job: TrackJob) -> list[ev.TrackFrameProduced]:
    out: list[ev.TrackFrameProduced] = []
    while (bodies := job.step()) is not None:
        out += bodies
    return out


def job_for(log: MemoryLog, track: ev.Event) -> TrackJob:
    return TrackJob(plan_track(log.state, track.id), FRAMES, ClassicalTracker(), PointTracker())


def test_a_fresh_plan_starts_at_the_request(log):
    log.do(ALICE, ev.LabelSaved(object="bitmask", frame=3, shape=disc_label(0, 3), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["bitmask"], start=3, direction="forward", range=30))
    plan = plan_track(log.state, track.id)
    assert (plan.start, plan.count, [o.object for o in plan.objects]) == (3, 9, ["bitmask"]), "clipped at the last frame"
    backwards = log.do(ALICE, ev.TrackRequested(media="m1", objects=["bitmask"], start=3, direction="backward", range=2))
    assert (plan_track(log.state, backwards.id).start, plan_track(log.state, backwards.id).count) == (3, 2)


def test_every_area_kind_comes_back_in_its_kind_and_follows_the_disc(log):
    labels = {
        "bitmask": disc_label(0, 0),
        "polygon": _square_polygon(16, 24, 5),
        "bbox": BBox(x=8, y=16, w=17, h=17),
        "rotated_bbox": RotatedBBox(cx=16, cy=24, w=15, h=13, angle=25),
    }
    for kind, shape in labels.items():
        log.do(ALICE, ev.LabelSaved(object=kind, frame=0, shape=shape, source="manual"))
        track = log.do(ALICE, ev.TrackRequested(media="m1", objects=[kind], start=0, direction="forward", range=6))
        results = run(job_for(log, track))
        assert [b.frame for b in results] == [1, 2, 3, 4, 5]
        for body in results:
            assert type(body.shape) is type(shape), kind
            moved = shape_to_mask(body.shape, CLIP.height, CLIP.width)
            expected = np.roll(shape_to_mask(shape, CLIP.height, CLIP.width), 2 * body.frame, axis=1)
            assert iou(moved, expected) > 0.6, (kind, body.frame, iou(moved, expected))


def _square_polygon(cx: float, cy: float, half: float) -> Polygon:
    from masklog.domain.shapes import PolygonPart

    return Polygon(parts=[PolygonPart(outer=[cx - half, cy - half, cx + half, cy - half, cx + half, cy + half, cx - half, cy + half])])


def test_a_box_keeps_the_annotators_margins(log):
    # A loose box: 3 px of margin around the disc on every side.
    log.do(ALICE, ev.LabelSaved(object="bbox", frame=0, shape=BBox(x=6, y=14, w=21, h=21), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["bbox"], start=0, direction="forward", range=4))
    for body in run(job_for(log, track)):
        assert abs(body.shape.w - 21) <= 2 and abs(body.shape.x - (6 + 2 * body.frame)) <= 1.5, body.shape


def test_points_track_with_the_point_tracker(log):
    log.do(ALICE, ev.LabelSaved(object="keypoint", frame=0, shape=Keypoint(x=46, y=15), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["keypoint"], start=0, direction="forward", range=5))
    results = run(job_for(log, track))
    for body in results:
        assert body.model == "classical/lkpoints@1"
        assert abs(body.shape.x - 46) < 1.5 and abs(body.shape.y - (15 + 2 * body.frame)) < 1.5, body


def test_interval_stops_an_object_lost_on_that_many_frames(log):
    leaving = Clip(64, 48, 12, (Disc((220, 40, 40), 40, 24, 9, 0, r=6),))
    log.do(ALICE, ev.LabelSaved(object="bitmask", frame=0, shape=Bitmask(rle=rle_encode(leaving.discs[0].mask(0, 48, 64))), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["bitmask"], start=0, direction="forward", range=12, interval=3))
    job = TrackJob(plan_track(log.state, track.id), ArrayFrames(leaving.images()), ClassicalTracker(), PointTracker())
    results = run(job)
    lost = [b.frame for b in results if b.shape is None]
    assert len(lost) == 3 and results[-1].shape is None and lost == list(range(lost[0], lost[0] + 3))
    assert results[-1].frame < 11, "stopped before the range ended"


# A disc that leaves the frame at about frame 5 (lost from then on, never stopped: interval 0)
# and one that stays, plus a keypoint on it: what a restart must not change.
RESUME_CLIP = Clip(64, 48, 12, (Disc((220, 40, 40), 30, 24, 7, 0, r=6), Disc((40, 60, 230), 20, 14, 1, 2, r=6)))


def _resume_log() -> tuple[MemoryLog, ev.Event]:
    log = project_log()
    for object_id, kind in [("leaving", "bitmask"), ("staying", "polygon"), ("point", "keypoint")]:
        log.do(ALICE, ev.ObjectCreated(object=object_id, media="m1", class_id=kind))
    mask = RESUME_CLIP.discs[0].mask(0, RESUME_CLIP.height, RESUME_CLIP.width)
    log.do(ALICE, ev.LabelSaved(object="leaving", frame=0, shape=Bitmask(rle=rle_encode(mask)), source="manual"))
    log.do(ALICE, ev.LabelSaved(object="staying", frame=0, shape=_square_polygon(20, 14, 5), source="manual"))
    log.do(ALICE, ev.LabelSaved(object="point", frame=0, shape=Keypoint(x=20.0, y=14.0), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["leaving", "staying", "point"], start=0, direction="forward", range=12, interval=0))
    return log, track


def test_a_resumed_track_produces_exactly_what_an_uninterrupted_one_would():
    frames = ArrayFrames(RESUME_CLIP.images())
    log, track = _resume_log()
    whole = run(TrackJob(plan_track(log.state, track.id), frames, ClassicalTracker(), PointTracker()))
    lost = [b.frame for b in whole if b.object == "leaving" and b.shape is None]
    assert lost and lost == list(range(lost[0], 12)), "the leaving disc is lost and, with interval 0, never stopped"
    for cut in range(1, 11):
        # A crash after frame `cut` was logged; the server starts again and resumes the track.
        log, track = _resume_log()
        for body in whole:
            if body.frame <= cut:
                log.do(TRACKER, msgspec.structs.replace(body, track=track.id))
        # The label the track was conditioned on was edited meanwhile: the track still runs on
        # what it was requested with.
        log.do(ALICE, ev.LabelSaved(object="staying", frame=0, shape=_square_polygon(30, 30, 4), source="manual"))
        plan = plan_track(log.state, track.id)
        assert (plan.start, plan.skip, plan.dropped) == (0, cut, ())
        rest = run(TrackJob(plan, frames, ClassicalTracker(), PointTracker()))
        assert rest == [msgspec.structs.replace(b, track=track.id) for b in whole if b.frame > cut], f"resumed after frame {cut}"


def test_a_resumed_plan_leaves_out_deleted_and_stopped_objects(log):
    log.do(ALICE, ev.ObjectCreated(object="second", media="m1", class_id="bitmask"))
    log.do(ALICE, ev.LabelSaved(object="bitmask", frame=0, shape=disc_label(0, 0), source="manual"))
    log.do(ALICE, ev.LabelSaved(object="second", frame=0, shape=disc_label(1, 0), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["bitmask", "second"], start=0, direction="forward", range=10, interval=1))
    for frame in (1, 2, 3):
        log.do(TRACKER, ev.TrackFrameProduced(track=track.id, object="bitmask", frame=frame, shape=disc_label(0, frame), score=0.9, model="m/x@1"))
        log.do(TRACKER, ev.TrackFrameProduced(track=track.id, object="second", frame=frame, shape=None if frame == 3 else disc_label(1, frame), score=0.1, model="m/x@1"))
    plan = plan_track(log.state, track.id)
    assert (plan.start, plan.count, plan.skip) == (0, 10, 3)
    assert [o.object for o in plan.objects] == ["bitmask"] and plan.dropped == ("second",), "stopped by the interval"
    assert plan.objects[0].shape == disc_label(0, 0), "conditioned on the start frame, as requested"
    results = run(TrackJob(plan, FRAMES, ClassicalTracker(), PointTracker()))
    assert [b.frame for b in results] == list(range(4, 10)), "frames 1-3 run again but are not produced again"
    assert frames_done(log.state, track.id) == 3
    log.do(ALICE, ev.ObjectDeleted(object="bitmask"))
    with pytest.raises(PlanError, match="no object can go on from frame 3"):
        plan_track(log.state, track.id)


def test_a_track_that_cannot_go_on_is_a_plan_error(log):
    log.do(ALICE, ev.LabelSaved(object="bitmask", frame=0, shape=disc_label(0, 0), source="manual"))
    other = log.do(ALICE, ev.TrackRequested(media="m1", objects=["bitmask"], start=0, direction="forward", range=10))
    log.do(ALICE, ev.ObjectDeleted(object="bitmask"))
    with pytest.raises(PlanError, match="deleted"):
        plan_track(log.state, other.id)


# ---- people's labels are keyframes (issue 14) ------------------------------------------------------


def test_a_keyframe_re_seeds_the_object_the_results_after_it_follow_the_persons_label(log):
    """A person's label on frame 5 puts the object on the other disc: frame 5's result is still
    the tracker's own (a conflict, for review), and from frame 6 on the object follows the
    person's label, not where the tracker had it."""
    log.do(ALICE, ev.LabelSaved(object="bitmask", frame=0, shape=disc_label(0, 0), source="manual"))
    log.do(ALICE, ev.LabelSaved(object="bitmask", frame=5, shape=disc_label(1, 5), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["bitmask"], start=0, direction="forward", range=12))
    plan = plan_track(log.state, track.id)
    assert plan.objects[0].keyframes == ((5, disc_label(1, 5)),)
    results = {b.frame: shape_to_mask(b.shape, CLIP.height, CLIP.width) for b in run(TrackJob(plan, FRAMES, ClassicalTracker(), PointTracker()))}
    assert sorted(results) == list(range(1, 12)), "one result per frame, the keyframe's included"
    truth = [lambda f, d=d: CLIP.discs[d].mask(f, CLIP.height, CLIP.width) for d in (0, 1)]
    for frame in range(1, 6):
        assert iou(results[frame], truth[0](frame)) > 0.6, ("the tracker's own until the keyframe", frame)
    for frame in range(6, 12):
        assert iou(results[frame], truth[1](frame)) > 0.6, ("from the person's label on", frame)
        assert iou(results[frame], truth[0](frame)) < 0.1, frame
    # The tracker's own result on frame 5 waits in review as a conflict: the person's label stays.
    for body in run(TrackJob(plan, FRAMES, ClassicalTracker(), PointTracker())):
        log.do(TRACKER, msgspec.structs.replace(body, track=track.id))
    assert log.state.conflicts(track.id) == [("bitmask", 5)]
    assert log.state.label("bitmask", 5).shape == disc_label(1, 5)


def test_without_keyframes_nothing_changes_and_an_old_request_has_none(log):
    """A track from before issue 14 (keep_people unset) has no keyframes: the person's label
    later in the range is not conditioned on, as before."""
    log.do(ALICE, ev.LabelSaved(object="bitmask", frame=0, shape=disc_label(0, 0), source="manual"))
    log.do(ALICE, ev.LabelSaved(object="bitmask", frame=5, shape=disc_label(1, 5), source="manual"))
    old = ev.TrackRequested(media="m1", objects=["bitmask"], start=0, direction="forward", range=12)
    event = ev.Event(seq=log.state.seq + 1, id="00000000-0000-4000-8000-000000000001", stream="m1", actor=ALICE, at=1.0, body=old)
    log.events.append(event)
    log.state.apply(event)
    plan = plan_track(log.state, event.id)
    assert plan.objects[0].keyframes == ()
    results = run(TrackJob(plan, FRAMES, ClassicalTracker(), PointTracker()))
    assert all(iou(shape_to_mask(b.shape, CLIP.height, CLIP.width), CLIP.discs[0].mask(b.frame, CLIP.height, CLIP.width)) > 0.6 for b in results)


def test_a_keyframe_re_seeds_a_box_with_its_own_margins_and_a_point(log):
    log.do(ALICE, ev.LabelSaved(object="bbox", frame=0, shape=BBox(x=6, y=14, w=21, h=21), source="manual"))
    (x, y) = CLIP.discs[1].centre(4)
    loose = BBox(x=x - 11, y=y - 11, w=22, h=22)  # round the other disc, 4-5 px of margin
    log.do(ALICE, ev.LabelSaved(object="bbox", frame=4, shape=loose, source="manual"))
    log.do(ALICE, ev.LabelSaved(object="keypoint", frame=0, shape=Keypoint(x=16, y=24), source="manual"))
    log.do(ALICE, ev.LabelSaved(object="keypoint", frame=4, shape=Keypoint(x=x, y=y), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["bbox", "keypoint"], start=0, direction="forward", range=9))
    results = run(job_for(log, track))
    assert sorted((b.object, b.frame) for b in results) == sorted((o, f) for o in ("bbox", "keypoint") for f in range(1, 9))
    for body in results:
        if body.frame <= 4:
            expected = CLIP.discs[0].centre(body.frame)
        else:
            expected = CLIP.discs[1].centre(body.frame)
        if body.object == "bbox":
            centre = (body.shape.x + body.shape.w / 2, body.shape.y + body.shape.h / 2)
            if body.frame > 4:
                assert abs(body.shape.w - loose.w) <= 2.5, ("the keyframe's own margins", body.shape)
        else:
            centre = (body.shape.x, body.shape.y)
        near = 2 if body.frame > 4 else 3.5  # from the keyframe on: on the other disc, closely
        assert abs(centre[0] - expected[0]) < near and abs(centre[1] - expected[1]) < near, (body.object, body.frame, centre, expected)


def _keyframe_log() -> tuple[MemoryLog, ev.Event]:
    log, _ = _resume_log()
    log.do(ALICE, ev.LabelSaved(object="staying", frame=6, shape=_square_polygon(40, 30, 5), source="manual"))
    log.do(ALICE, ev.LabelSaved(object="point", frame=3, shape=Keypoint(x=30.0, y=30.0), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["leaving", "staying", "point"], start=0, direction="forward", range=12, interval=0))
    return log, track


def test_a_resumed_track_re_seeds_on_the_same_keyframes():
    """Keyframes are captured with the request: a track resumed after a crash, before or after
    a keyframe, and with the keyframe edited meanwhile, produces what an uninterrupted one does."""
    frames = ArrayFrames(RESUME_CLIP.images())
    log, track = _keyframe_log()
    whole = run(TrackJob(plan_track(log.state, track.id), frames, ClassicalTracker(), PointTracker()))
    staying = {b.frame: b.shape for b in whole if b.object == "staying"}
    assert shape_to_mask(staying[8], 48, 64)[30, 40 + 0], "re-seeded on the person's square on frame 6"
    for cut in (2, 3, 5, 6, 9):
        log, track = _keyframe_log()
        for body in whole:
            if body.frame <= cut:
                log.do(TRACKER, msgspec.structs.replace(body, track=track.id))
        log.do(ALICE, ev.LabelSaved(object="staying", frame=6, shape=_square_polygon(10, 10, 4), source="manual"))
        plan = plan_track(log.state, track.id)
        assert plan.skip == cut
        rest = run(TrackJob(plan, frames, ClassicalTracker(), PointTracker()))
        assert rest == [msgspec.structs.replace(b, track=track.id) for b in whole if b.frame > cut], f"resumed after frame {cut}"
