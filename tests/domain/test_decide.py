"""Command validation: every refusal has a code and a message, and changes nothing."""

import uuid

import pytest

from masklog.domain import events as ev
from masklog.domain.decide import DomainError, ErrorCode, Redo, Undo, decide
from masklog.domain.geometry import rle_area, rle_decode
from masklog.domain.shapes import BBox, Bitmask, Keypoint, Polygon, PolygonPart, Polyline, RotatedBBox, Skeleton, SkeletonPoint
from tests.domain.builders import ALICE, BOB, FRAMES, HEIGHT, TRACKER, WIDTH, project_log, rect_mask


@pytest.fixture
def log():
    log = project_log()
    for kind in ["bitmask", "polygon", "bbox", "rotated_bbox", "polyline", "keypoint", "skeleton"]:
        log.do(ALICE, ev.ObjectCreated(object=f"o-{kind}", media="m1", class_id=kind))
    return log


def refused(log, actor, command, code, match, **kwargs):
    before = log.state.copy()
    with pytest.raises(DomainError, match=match) as caught:
        decide(log.state, actor, command, **kwargs)
    assert caught.value.code == code
    assert log.state == before  # deciding never changes the state


def test_project_class_and_media_rules(log):
    refused(log, ALICE, ev.ProjectCreated(project="p1", name="again"), ErrorCode.EXISTS, "already exists")
    refused(log, ALICE, ev.ProjectCreated(project="../p", name="x"), ErrorCode.INVALID_ID, "not valid")
    refused(log, ALICE, ev.ClassAdded(project="nope", class_id="c", name="c", shape="bbox", color="#000000"), ErrorCode.UNKNOWN, "unknown project")
    refused(log, ALICE, ev.ClassAdded(project="p1", class_id="sk", name="c", shape="skeleton", color="#000000"), ErrorCode.INVALID, "skeleton template")
    refused(
        log, ALICE,
        ev.ClassAdded(project="p1", class_id="sk", name="c", shape="skeleton", color="#000000", skeleton=ev.SkeletonTemplate(points=["a"], edges=[(0, 1)])),
        ErrorCode.INVALID, "edge",
    )
    refused(log, ALICE, ev.MediaAdded(project="p1", media="img", name="x.png", kind="image", width=4, height=4, frames=3), ErrorCode.INVALID, "one frame")
    refused(log, ALICE, ev.MediaAdded(project="p1", media="m1", name="x", kind="video", width=4, height=4, frames=3), ErrorCode.EXISTS, "already exists")


def test_object_rules(log):
    refused(log, ALICE, ev.ObjectCreated(object="x", media="nope", class_id="bbox"), ErrorCode.UNKNOWN, "unknown media")
    refused(log, ALICE, ev.ObjectCreated(object="x", media="m1", class_id="nope"), ErrorCode.UNKNOWN, "unknown class")
    refused(log, ALICE, ev.ObjectCreated(object="o-bbox", media="m1", class_id="bbox"), ErrorCode.EXISTS, "already exists")
    log.do(ALICE, ev.ProjectCreated(project="p2", name="Other"))
    log.do(ALICE, ev.ClassAdded(project="p2", class_id="foreign", name="f", shape="bbox", color="#123456"))
    # Another project's class is answered as a missing one (test_hidden_ids_are_answered_as_missing).
    refused(log, ALICE, ev.ObjectCreated(object="x", media="m1", class_id="foreign"), ErrorCode.UNKNOWN, "unknown class 'foreign'")
    log.do(ALICE, ev.ObjectDeleted(object="o-bbox"))
    refused(log, ALICE, ev.ObjectCreated(object="o-bbox", media="m1", class_id="bbox"), ErrorCode.EXISTS, "never reused")
    refused(log, ALICE, ev.ObjectDeleted(object="o-bbox"), ErrorCode.UNKNOWN, "unknown object")
    log.do(ALICE, ev.LabelSaved(object="o-polygon", frame=0, shape=Polygon(parts=[PolygonPart(outer=[0, 0, 5, 0, 5, 5])]), source="manual"))
    refused(log, ALICE, ev.ObjectReclassed(object="o-polygon", class_id="bbox2"), ErrorCode.WRONG_SHAPE, "polygon labels")
    log.do(ALICE, ev.ObjectReclassed(object="o-rotated_bbox", class_id="bbox2"))  # no labels yet: any class


def test_label_rules(log):
    box = BBox(x=1, y=1, w=5, h=5)
    refused(log, ALICE, ev.LabelSaved(object="ghost", frame=0, shape=box, source="manual"), ErrorCode.UNKNOWN, "unknown object")
    refused(log, ALICE, ev.LabelSaved(object="o-bbox", frame=FRAMES, shape=box, source="manual"), ErrorCode.FRAME_OUT_OF_RANGE, rf"frames 0\.\.{FRAMES - 1}")
    refused(log, ALICE, ev.LabelSaved(object="o-bbox", frame=0, shape=Keypoint(x=1, y=1), source="manual"), ErrorCode.WRONG_SHAPE, "takes bbox labels")
    refused(log, ALICE, ev.LabelSaved(object="o-bbox", frame=0, shape=BBox(x=60, y=0, w=10, h=5), source="manual"), ErrorCode.BAD_GEOMETRY, None)
    refused(log, ALICE, ev.LabelSaved(object="o-bitmask", frame=0, shape=rect_mask(0, 0, 0, 0), source="manual"), ErrorCode.BAD_GEOMETRY, None)
    wrong_size = Bitmask(rle=ev.Rle(size=(HEIGHT + 1, WIDTH), counts=rect_mask(0, 0, 3, 3).rle.counts))
    refused(log, ALICE, ev.LabelSaved(object="o-bitmask", frame=0, shape=wrong_size, source="manual"), ErrorCode.BAD_GEOMETRY, None)
    refused(log, ALICE, ev.LabelSaved(object="o-polyline", frame=0, shape=Polyline(points=[1, 1, 5, 5]), source="sam"), ErrorCode.WRONG_SHAPE, "SAM cannot")
    refused(log, ALICE, ev.LabelSaved(object="o-bbox", frame=0, shape=box, source="tracked"), ErrorCode.NOT_ALLOWED, "accept")
    refused(log, ALICE, ev.LabelSaved(object="o-skeleton", frame=0, shape=Skeleton(points=[SkeletonPoint(x=1, y=1)]), source="manual"), ErrorCode.BAD_GEOMETRY, None)
    refused(log, ALICE, ev.LabelDeleted(object="o-bbox", frame=0), ErrorCode.UNKNOWN, "no label on frame 0")
    # Every shape kind can be saved on its own class.
    shapes = {
        "bitmask": rect_mask(2, 2, 6, 6),
        "polygon": Polygon(parts=[PolygonPart(outer=[1, 1, 9, 1, 9, 9, 1, 9])]),
        "bbox": box,
        "rotated_bbox": RotatedBBox(cx=20, cy=20, w=8, h=4, angle=30),
        "polyline": Polyline(points=[1, 1, 10, 10, 20, 5]),
        "keypoint": Keypoint(x=3, y=4),
        "skeleton": Skeleton(points=[SkeletonPoint(x=1, y=1), SkeletonPoint(x=5, y=5, visible=False)]),
    }
    for kind, shape in shapes.items():
        log.do(ALICE, ev.LabelSaved(object=f"o-{kind}", frame=FRAMES - 1, shape=shape, source="manual"))
        assert log.state.label(f"o-{kind}", FRAMES - 1).shape == shape


def test_panoptic_exclude_cuts_other_bitmasks(log):
    log.do(ALICE, ev.ObjectCreated(object="o-bitmask-2", media="m1", class_id="bitmask"))
    log.do(ALICE, ev.LabelSaved(object="o-bitmask", frame=0, shape=rect_mask(0, 0, 10, 10), source="manual"))
    log.do(BOB, ev.LabelSaved(object="o-bitmask-2", frame=0, shape=rect_mask(5, 0, 10, 10), source="manual"), panoptic=True)
    second = log.state.label("o-bitmask-2", 0).shape.rle
    first = log.state.label("o-bitmask", 0).shape.rle
    assert rle_area(second) == 50 and not (rle_decode(first) & rle_decode(second)).any()
    # Without the mode the masks may overlap.
    log.do(BOB, ev.LabelSaved(object="o-bitmask-2", frame=1, shape=rect_mask(5, 0, 10, 10), source="manual"))
    refused(log, BOB, ev.LabelSaved(object="o-bitmask-2", frame=0, shape=rect_mask(0, 0, 5, 5), source="manual"), ErrorCode.BAD_GEOMETRY, "nothing is left", panoptic=True)


def test_prompt_rules(log):
    refused(log, ALICE, ev.PromptAdded(object="o-polyline", frame=0, points=[ev.Point(x=1, y=1)]), ErrorCode.WRONG_SHAPE, "SAM cannot create polyline")
    refused(log, ALICE, ev.PromptAdded(object="o-bitmask", frame=0), ErrorCode.INVALID, "at least one")
    refused(log, ALICE, ev.PromptAdded(object="o-bitmask", frame=0, points=[ev.Point(x=WIDTH + 1, y=1)]), ErrorCode.BAD_GEOMETRY, "outside")
    refused(log, ALICE, ev.PromptAdded(object="o-bitmask", frame=0, points=[ev.Point(x=float("nan"), y=1)]), ErrorCode.BAD_GEOMETRY, "finite")
    refused(log, ALICE, ev.PromptAdded(object="o-bitmask", frame=0, box=ev.Box(x0=5, y0=5, x1=2, y1=9)), ErrorCode.BAD_GEOMETRY, "non-empty")
    refused(log, ALICE, ev.PromptAdded(object="o-bitmask", frame=FRAMES, points=[ev.Point(x=1, y=1)]), ErrorCode.FRAME_OUT_OF_RANGE, "out of range")
    log.do(ALICE, ev.PromptAdded(object="o-bbox", frame=0, points=[ev.Point(x=1, y=1), ev.Point(x=4, y=4, include=False)], box=ev.Box(x0=0, y0=0, x1=9, y1=9), mask=rect_mask(0, 0, 3, 3).rle))


def test_tracking_modalities():
    for kind, direction, ok in [
        ("image", "forward", False),
        ("image_group", "backward", False),
        ("image_sequence", "backward", False),
        ("dicom_series", "backward", False),
        ("image_group", "forward", True),
        ("dicom_series", "forward", True),
        ("video", "backward", True),
    ]:
        log = project_log(media_kind=kind)
        log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
        log.do(ALICE, ev.LabelSaved(object="a", frame=0, shape=BBox(x=0, y=0, w=3, h=3), source="manual"))
        request = ev.TrackRequested(media="m1", objects=["a"], start=0, direction=direction)
        if ok:
            log.do(ALICE, request)
        elif kind == "image":
            refused(log, ALICE, request, ErrorCode.MODALITY, "single image cannot be tracked")
        else:
            refused(log, ALICE, request, ErrorCode.MODALITY, "only be tracked forwards")


def test_track_rules(log):
    refused(log, ALICE, ev.TrackRequested(media="m1", objects=["o-bbox"], start=0, direction="forward"), ErrorCode.INVALID, "no label on the start frame")
    refused(log, ALICE, ev.TrackRequested(media="m1", objects=["o-bbox", "o-bbox"], start=0, direction="forward"), ErrorCode.INVALID, "twice")
    log.do(ALICE, ev.LabelSaved(object="o-bbox", frame=5, shape=BBox(x=0, y=0, w=3, h=3), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["o-bbox"], start=5, direction="backward", range=3))
    frame = lambda f, obj="o-bbox": ev.TrackFrameProduced(track=track.id, object=obj, frame=f, shape=BBox(x=0, y=0, w=3, h=3), score=1.0, model="classical/flow@1")
    refused(log, ALICE, frame(4), ErrorCode.NOT_ALLOWED, "from the tracker")
    refused(log, TRACKER, frame(6), ErrorCode.FRAME_OUT_OF_RANGE, "outside the track")
    refused(log, TRACKER, frame(2), ErrorCode.FRAME_OUT_OF_RANGE, "outside the track")
    refused(log, TRACKER, frame(4, "o-polygon"), ErrorCode.INVALID, "not part of track")
    refused(log, TRACKER, ev.TrackFrameProduced(track=track.id, object="o-bbox", frame=4, shape=Keypoint(x=1, y=1), score=1.0, model="m/x@1"), ErrorCode.WRONG_SHAPE, "takes bbox labels")
    log.do(TRACKER, frame(4))
    refused(log, ALICE, ev.TrackedAccepted(track=track.id, frames=[3]), ErrorCode.INVALID, "no unreviewed")
    refused(log, ALICE, ev.TrackedAccepted(track=str(uuid.uuid4())), ErrorCode.UNKNOWN, "unknown track")
    log.do(ALICE, ev.TrackCancelled(track=track.id))
    refused(log, TRACKER, frame(3), ErrorCode.TRACK_NOT_RUNNING, "cancelled")
    refused(log, ALICE, ev.TrackCompleted(track=track.id, frames=1), ErrorCode.TRACK_NOT_RUNNING, "cancelled")
    log.do(ALICE, ev.TrackedAccepted(track=track.id))  # results produced before the cancel can still be reviewed


def test_trackers_are_named_from_those_the_server_offers(log):
    log.do(ALICE, ev.LabelSaved(object="o-bbox", frame=0, shape=BBox(x=1, y=1, w=5, h=5), source=ev.Source.MANUAL))

    def request(name):
        return ev.TrackRequested(media="m1", objects=["o-bbox"], start=0, direction="forward", algorithm=name, keep_people=True)

    # Without a list: the first schema's two names, as before.
    for name in ("simple", "advanced"):
        assert decide(log.state, ALICE, request(name)) == request(name)
    refused(log, ALICE, request("sam2"), ErrorCode.INVALID, r"^tracker 'sam2' does not run on this server: it offers advanced, simple$")
    # A server passes the names its backends offer.
    offered = {"simple", "advanced", "classical", "sam2"}
    assert decide(log.state, ALICE, request("sam2"), trackers=offered) == request("sam2")
    refused(log, ALICE, request("sam3"), ErrorCode.INVALID, "tracker 'sam3' does not run on this server: it offers advanced, classical, sam2, simple", trackers=offered)


def test_undo_redo_rules(log):
    refused(log, BOB, Undo(media="m1"), ErrorCode.NOTHING_TO_UNDO, "nothing of yours")
    refused(log, ALICE, Redo(media="m1"), ErrorCode.NOTHING_TO_REDO, "nothing of yours")
    refused(log, ALICE, Undo(media="nope"), ErrorCode.UNKNOWN, "unknown media")
    undone = ev.Undone(media="m1", target=str(uuid.uuid4()), changes=[])
    refused(log, ALICE, undone, ErrorCode.NOT_ALLOWED, "undo and redo commands")


def test_undoing_a_creation_keeps_an_object_others_labelled(log):
    log.do(ALICE, ev.ObjectCreated(object="mine", media="m1", class_id="bbox"))
    log.do(BOB, ev.LabelSaved(object="mine", frame=0, shape=BBox(x=0, y=0, w=3, h=3), source="manual"))
    undone = log.do(ALICE, Undo(media="m1"))
    assert undone.body.conflicts == 1 and "mine" in log.state.objects


def test_scope_of_each_command(log):
    from masklog.domain.decide import Scope, scope_of

    log.do(ALICE, ev.LabelSaved(object="o-bbox", frame=0, shape=BBox(x=0, y=0, w=3, h=3), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["o-bbox"], start=0, direction="forward"))
    media = Scope("p1", "m1")
    assert scope_of(log.state, ev.ClassAdded(project="p1", class_id="c", name="c", shape="bbox", color="#000000")) == Scope("p1", None)
    assert scope_of(log.state, ev.ProjectCreated(project="p9", name="new")).stream == "project:p9"
    assert scope_of(log.state, ev.ObjectCreated(object="n", media="m1", class_id="bbox")) == media
    assert scope_of(log.state, ev.LabelDeleted(object="o-bbox", frame=0)).stream == "media:m1"
    assert scope_of(log.state, ev.TrackCancelled(track=track.id)) == media
    assert scope_of(log.state, Undo(media="m1")) == media
    with pytest.raises(DomainError, match="unknown object"):
        scope_of(log.state, ev.LabelDeleted(object="ghost", frame=0))
    with pytest.raises(DomainError, match="unknown media"):
        scope_of(log.state, Redo(media="ghost"))
    with pytest.raises(DomainError, match="unknown track"):
        scope_of(log.state, ev.TrackCancelled(track=str(uuid.uuid4())))


SAM = "model:sam2/tiny@1"


def answered(log, object_id, frame, mask, actor=ALICE, score=0.9):
    prompt = log.do(actor, ev.PromptAdded(object=object_id, frame=frame, points=[ev.Point(x=3, y=3)]))
    log.do(SAM, ev.SegmentProposed(prompt=prompt.id, object=object_id, frame=frame, mask=mask.rle, score=score, model="sam2/tiny@1"))
    return prompt


def test_save_segment_makes_a_label_in_the_class_shape(log):
    from masklog.domain.decide import SaveSegment

    mask = rect_mask(4, 6, 10, 8)
    for kind in ["bitmask", "polygon", "bbox"]:
        prompt = answered(log, f"o-{kind}", 2, mask)
        log.do(BOB, SaveSegment(prompt=prompt.id))
        label = log.state.label(f"o-{kind}", 2)
        assert (label.source, label.prompt, label.model, label.score, label.actor) == (ev.Source.SAM, prompt.id, "sam2/tiny@1", 0.9, BOB)
        if kind == "bbox":
            assert label.shape == BBox(x=4, y=6, w=10, h=8)
        elif kind == "bitmask":
            assert label.shape == mask
        else:
            assert isinstance(label.shape, Polygon)
            from masklog.domain.geometry import polygon_to_mask

            assert (polygon_to_mask(label.shape, HEIGHT, WIDTH) == rle_decode(mask.rle)).all()
    # The same object on another frame (S5) keeps its id.
    prompt = answered(log, "o-bbox", 7, rect_mask(20, 20, 5, 5))
    log.do(ALICE, SaveSegment(prompt=prompt.id))
    assert set(log.state.labels["o-bbox"]) == {2, 7}


def test_save_segment_refusals(log):
    from masklog.domain.decide import SaveSegment

    refused(log, ALICE, SaveSegment(prompt=str(uuid.uuid4())), ErrorCode.UNKNOWN, "no proposed segment")
    older = answered(log, "o-bitmask", 0, rect_mask(0, 0, 4, 4))
    newer = answered(log, "o-bitmask", 0, rect_mask(0, 0, 6, 6))
    refused(log, ALICE, SaveSegment(prompt=older.id), ErrorCode.UNKNOWN, "newer prompt")
    empty = answered(log, "o-polygon", 0, rect_mask(0, 0, 0, 0))
    refused(log, ALICE, SaveSegment(prompt=empty.id), ErrorCode.BAD_GEOMETRY, "empty")
    log.do(ALICE, ev.ObjectDeleted(object="o-bitmask"))
    refused(log, ALICE, SaveSegment(prompt=newer.id), ErrorCode.UNKNOWN, "unknown object")
    proposal = ev.SegmentProposed(prompt=newer.id, object="o-polygon", frame=0, mask=rect_mask(0, 0, 3, 3).rle, score=0.5, model="x/y@1")
    refused(log, ALICE, proposal, ErrorCode.NOT_ALLOWED, "from the model")


def test_save_segment_with_panoptic_exclude(log):
    from masklog.domain.decide import SaveSegment

    log.do(ALICE, ev.ObjectCreated(object="o-bitmask-2", media="m1", class_id="bitmask"))
    log.do(ALICE, ev.LabelSaved(object="o-bitmask", frame=0, shape=rect_mask(0, 0, 10, 10), source="manual"))
    prompt = answered(log, "o-bitmask-2", 0, rect_mask(5, 0, 10, 10))
    log.do(ALICE, SaveSegment(prompt=prompt.id), panoptic=True)
    assert rle_area(log.state.label("o-bitmask-2", 0).shape.rle) == 50


def test_a_sam_label_names_its_prompt(log):
    box = BBox(x=1, y=1, w=5, h=5)
    sam = lambda **kw: ev.LabelSaved(object="o-bbox", frame=0, shape=box, source="sam", **kw)
    refused(log, ALICE, sam(), ErrorCode.INVALID, "must name the prompt")
    prompt = answered(log, "o-bbox", 0, rect_mask(1, 1, 5, 5))
    other_frame = answered(log, "o-bbox", 1, rect_mask(1, 1, 5, 5))
    refused(log, ALICE, sam(prompt=other_frame.id), ErrorCode.INVALID, "same object and frame")
    refused(log, ALICE, sam(prompt=prompt.id, model="other/model@2"), ErrorCode.INVALID, "answered by")
    log.do(ALICE, sam(prompt=prompt.id, model="sam2/tiny@1"))  # an edited SAM shape keeps its provenance


def test_retrack_replaces_later_proposals_of_the_earlier_track(log):
    log.do(ALICE, ev.ObjectCreated(object="o-bbox-2", media="m1", class_id="bbox"))
    for object_id in ("o-bbox", "o-bbox-2"):
        log.do(ALICE, ev.LabelSaved(object=object_id, frame=2, shape=BBox(x=0, y=0, w=3, h=3), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["o-bbox", "o-bbox-2"], start=2, direction="forward", range=6))
    for frame in range(3, 8):
        for object_id in ("o-bbox", "o-bbox-2"):
            log.do(TRACKER, ev.TrackFrameProduced(track=track.id, object=object_id, frame=frame, shape=BBox(x=frame, y=0, w=3, h=3), score=0.9, model="m/x@1"))
    retrack = ev.TrackRequested(media="m1", objects=["o-bbox"], start=5, direction="forward", range=4, replaces=track.id)
    # The correction on frame 5, then the re-track from it.
    log.do(ALICE, ev.LabelSaved(object="o-bbox", frame=5, shape=BBox(x=9, y=9, w=3, h=3), source="manual"))
    refused(log, ALICE, retrack, ErrorCode.TRACK_RUNNING, "still running")
    log.do(TRACKER, ev.TrackCompleted(track=track.id, frames=5))
    refused(log, ALICE, ev.TrackRequested(media="m1", objects=["o-bbox"], start=5, direction="backward", range=4, replaces=track.id), ErrorCode.INVALID, "same media item and direction")
    refused(log, ALICE, ev.TrackRequested(media="m1", objects=["o-polygon"], start=2, direction="forward", replaces=track.id), ErrorCode.INVALID, "no label|not part")
    refused(log, ALICE, ev.TrackRequested(media="m1", objects=["o-bbox"], start=2, direction="forward", replaces=str(uuid.uuid4())), ErrorCode.UNKNOWN, "unknown track")
    log.do(ALICE, ev.LabelSaved(object="o-bbox", frame=9, shape=BBox(x=0, y=0, w=3, h=3), source="manual"))
    refused(log, ALICE, ev.TrackRequested(media="m1", objects=["o-bbox"], start=9, direction="forward", replaces=track.id), ErrorCode.FRAME_OUT_OF_RANGE, "outside the range")
    log.do(ALICE, retrack)  # re-tracked from the correction
    left = {(o, f) for o, f, _ in log.state.selected_proposals(track.id, None, None)}
    assert left == {("o-bbox", 3), ("o-bbox", 4)} | {("o-bbox-2", f) for f in range(3, 8)}
    # Undo brings the replaced results back; the correction stays.
    log.do(ALICE, Undo(media="m1"))
    assert len(log.state.selected_proposals(track.id, ["o-bbox"], None)) == 5
    assert log.state.label("o-bbox", 5).shape == BBox(x=9, y=9, w=3, h=3)


def test_lost_frames_count_towards_the_interval(log):
    log.do(ALICE, ev.LabelSaved(object="o-bbox", frame=0, shape=BBox(x=0, y=0, w=3, h=3), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["o-bbox"], start=0, direction="forward", range=10, interval=2))
    produce = lambda f, shape: log.do(TRACKER, ev.TrackFrameProduced(track=track.id, object="o-bbox", frame=f, shape=shape, score=0.5, model="m/x@1"))
    info = log.state.tracks[track.id]
    produce(1, None)
    assert info.lost_streak == {"o-bbox": 1} and not info.stopped("o-bbox")
    produce(2, BBox(x=1, y=0, w=3, h=3))
    assert not info.lost_streak
    produce(3, None)
    produce(4, None)
    assert info.stopped("o-bbox") and info.last_frame == {"o-bbox": 4}
    copied = log.state.copy()
    assert copied.tracks[track.id].lost_streak == info.lost_streak and copied.tracks[track.id].lost_streak is not info.lost_streak


def test_a_track_produces_each_frame_of_an_object_once(log):
    log.do(ALICE, ev.LabelSaved(object="o-bbox", frame=6, shape=BBox(x=0, y=0, w=3, h=3), source="manual"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["o-bbox"], start=6, direction="backward", range=5))
    frame = lambda f: ev.TrackFrameProduced(track=track.id, object="o-bbox", frame=f, shape=None, score=0.0, model="m/x@1")
    log.do(TRACKER, frame(5))
    log.do(TRACKER, frame(4))
    refused(log, TRACKER, frame(4), ErrorCode.EXISTS, "already produced frame 4")
    refused(log, TRACKER, frame(5), ErrorCode.EXISTS, "already produced frame 5")
    log.do(TRACKER, frame(2))  # a skipped frame is fine: results only move on


def test_hidden_ids_are_answered_as_missing(log):
    """An id of another project gets exactly the error (code and text) of an id that does not
    exist, whichever rule looks it up, so a refusal never tells what exists elsewhere."""

    def error(command):  # type: ignore[no-untyped-def]
        with pytest.raises(DomainError) as caught:
            decide(log.state, ALICE, command)
        return caught.value.code, caught.value.message

    def hidden(make_command, make_elsewhere):  # type: ignore[no-untyped-def]
        missing = error(make_command())
        make_elsewhere()
        assert error(make_command()) == missing
        assert missing[0] == ErrorCode.UNKNOWN
        return missing

    log.do(ALICE, ev.ProjectCreated(project="p2", name="Other"))
    log.do(ALICE, ev.MediaAdded(project="p2", media="m2", name="m2", kind="video", width=WIDTH, height=HEIGHT, frames=FRAMES))
    log.do(ALICE, ev.LabelSaved(object="o-bbox", frame=0, shape=BBox(x=0, y=0, w=3, h=3), source="manual"))
    assert hidden(
        lambda: ev.ObjectCreated(object="x", media="m1", class_id="c2"),
        lambda: log.do(ALICE, ev.ClassAdded(project="p2", class_id="c2", name="c", shape="bbox", color="#123456")),
    ) == (ErrorCode.UNKNOWN, "unknown class 'c2'")
    assert error(ev.ObjectReclassed(object="o-bbox", class_id="c2")) == (ErrorCode.UNKNOWN, "unknown class 'c2'")
    hidden(
        lambda: ev.TrackRequested(media="m1", objects=["o-bbox", "x2"], start=0, direction="forward", range=3),
        lambda: log.do(ALICE, ev.ObjectCreated(object="x2", media="m2", class_id="c2")),
    )
    track_id = str(uuid.uuid4())

    def elsewhere_track() -> None:
        log.do(ALICE, ev.LabelSaved(object="x2", frame=0, shape=BBox(x=0, y=0, w=3, h=3), source="manual"))
        log.do(ALICE, ev.TrackRequested(media="m2", objects=["x2"], start=0, direction="forward", range=3), event_id=track_id)

    # Still running over there: not even its status shows through.
    hidden(lambda: ev.TrackRequested(media="m1", objects=["o-bbox"], start=0, direction="forward", range=3, replaces=track_id), elsewhere_track)
