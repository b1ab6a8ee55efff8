"""Issue 14, point 9 (part) and point 4 (provenance): an object exists once it has a label.

`object_created` may carry the object's first label (`FirstLabel`): decided like a `label_saved`
on the new object, folded as ONE undoable action. A SAM prompt may name a new object (its class
and media item): only saving its answer creates the object, so an abandoned preview leaves none.
A hand edit names the label it started from (`edited`).
"""

from __future__ import annotations

import uuid

import msgspec
import pytest

from masklog.domain import events as ev
from masklog.domain.decide import DomainError, ErrorCode, Redo, SaveSegment, Undo, decide, scope_of
from masklog.domain.precheck import precheck
from masklog.domain.shapes import BBox, Bitmask, Polygon, PolygonPart
from masklog.domain.state import fold
from tests.domain.builders import ALICE, BOB, FRAMES, project_log, rect_mask

SAM = "model:sam2/tiny@1"
BOX = BBox(x=2, y=3, w=10, h=8)


@pytest.fixture
def log():
    return project_log()


def refused(log, actor, command, code, match, **kwargs):
    before = log.state.copy()
    with pytest.raises(DomainError, match=match) as caught:
        decide(log.state, actor, command, **kwargs)
    assert caught.value.code == code
    assert log.state == before  # deciding never changes the state


def created(object_id: str, class_id: str, shape, frame: int = 0, source: ev.Source = ev.Source.MANUAL, **fields) -> ev.ObjectCreated:
    return ev.ObjectCreated(object=object_id, media="m1", class_id=class_id, label=ev.FirstLabel(frame=frame, shape=shape, source=source, **fields))


# ---- object_created with its first label -------------------------------------------------------


def test_an_object_created_with_its_label_is_one_undo_step(log):
    event = log.do(ALICE, created("drawn", "bbox", BOX, frame=4))
    state = log.state
    assert "drawn" in state.objects
    label = state.label("drawn", 4)
    assert label is not None and label.shape == BOX and label.source == ev.Source.MANUAL
    assert (label.written_by, label.actor, label.edited) == (event.id, ALICE, None)
    assert state.stacks_of(ALICE, "m1").undo == [event.id]  # one action, not two
    assert [type(c).__name__ for c in state.actions[event.id].changes] == ["ObjectChange", "LabelChange"]

    undone = log.do(ALICE, Undo(media="m1"))
    assert undone.body.conflicts == 0
    assert "drawn" not in state.objects and state.label("drawn", 4) is None
    assert state.stacks_of(ALICE, "m1").undo == []

    log.do(ALICE, Redo(media="m1"))
    assert "drawn" in state.objects and state.label("drawn", 4) == label

    # And the whole log folds to the same state from scratch.
    assert fold(log.events).labels == state.labels
    assert fold(log.events).objects == state.objects


def test_a_label_saved_on_the_object_afterwards_is_a_separate_step(log):
    log.do(ALICE, created("o", "bbox", BOX))
    log.do(ALICE, ev.LabelSaved(object="o", frame=1, shape=BOX, source="manual"))
    log.do(ALICE, Undo(media="m1"))
    assert "o" in log.state.objects and log.state.label("o", 0) is not None and log.state.label("o", 1) is None


def test_undo_of_the_creation_leaves_an_object_someone_else_labelled_since(log):
    log.do(ALICE, created("o", "bbox", BOX))
    log.do(BOB, ev.LabelSaved(object="o", frame=2, shape=BOX, source="manual"))
    undone = log.do(ALICE, Undo(media="m1"))
    # Alice's label goes; the object stays, Bob's label is on it.
    assert log.state.label("o", 0) is None and "o" in log.state.objects and log.state.label("o", 2) is not None
    assert undone.body.conflicts == 1


def test_the_first_label_is_checked_like_a_saved_label(log):
    refused(log, ALICE, created("x", "bbox", BOX, frame=FRAMES), ErrorCode.FRAME_OUT_OF_RANGE, "out of range")
    refused(log, ALICE, created("x", "polygon", BOX), ErrorCode.WRONG_SHAPE, "takes polygon labels")
    refused(log, ALICE, created("x", "bbox", BBox(x=60, y=3, w=10, h=8)), ErrorCode.BAD_GEOMETRY, "sticks out of the 64x48 frame")
    refused(log, ALICE, created("x", "bbox", BOX, source=ev.Source.TRACKED), ErrorCode.NOT_ALLOWED, "tracked labels")
    refused(log, ALICE, created("x", "bitmask", rect_mask(1, 1, 4, 4), source=ev.Source.SAM, prompt=str(uuid.uuid4())), ErrorCode.INVALID, "SAM label")
    # The object rules still come first.
    refused(log, ALICE, ev.ObjectCreated(object="x", media="m1", class_id="nope", label=ev.FirstLabel(frame=0, shape=BOX, source="manual")), ErrorCode.UNKNOWN, "unknown class")
    assert "x" not in log.state.object_media


def test_the_panoptic_rule_trims_a_first_mask(log):
    log.do(ALICE, created("left", "bitmask", rect_mask(0, 0, 10, 10)))
    event = log.do(ALICE, created("right", "bitmask", rect_mask(5, 0, 10, 10)), panoptic=True)
    first = event.body.label
    assert first is not None and isinstance(first.shape, Bitmask)
    from masklog.domain.geometry import rle_area

    assert rle_area(first.shape.rle) == 50  # the 5 columns the other mask holds are excluded
    refused(log, ALICE, created("inside", "bitmask", rect_mask(1, 1, 3, 3)), ErrorCode.BAD_GEOMETRY, "nothing is left", panoptic=True)


def test_the_first_label_round_trips_and_old_events_decode_without_it():
    body = created("o", "bitmask", rect_mask(1, 1, 4, 4))
    assert ev.decode_body(ev.encode(body)) == body
    old = b'{"type": "object_created", "object": "o", "media": "m1", "class_id": "bbox"}'
    assert ev.decode_body(old) == ev.ObjectCreated(object="o", media="m1", class_id="bbox", label=None)
    with pytest.raises(ev.SchemaError):  # the object is the one being created: not named again
        ev.decode_body(
            b'{"type": "object_created", "object": "o", "media": "m1", "class_id": "bbox", '
            b'"label": {"object": "o", "frame": 0, "shape": {"type": "bbox", "x": 1, "y": 1, "w": 2, "h": 2}, "source": "manual"}}'
        )


def test_precheck_looks_at_the_first_label():
    outer = [float(v) for i in range(60_000) for v in (i % 60, (i // 60) % 40)]
    with pytest.raises(DomainError, match="at most"):
        precheck(created("o", "polygon", Polygon(parts=[PolygonPart(outer=outer)])))


# ---- SAM on a new object -------------------------------------------------------------------------


def new_prompt(object_id: str = "fresh", class_id: str = "bitmask", media: str = "m1", frame: int = 2) -> ev.PromptAdded:
    return ev.PromptAdded(object=object_id, frame=frame, points=[ev.Point(x=5, y=5)], class_id=class_id, media=media)


def answer(log, prompt: ev.Event, mask=None, score: float = 0.9) -> ev.Event:
    body = prompt.body
    mask = mask or rect_mask(2, 2, 6, 6)
    return log.do(SAM, ev.SegmentProposed(prompt=prompt.id, object=body.object, frame=body.frame, mask=mask.rle, score=score, model="sam2/tiny@1"))


def test_a_preview_on_a_new_object_creates_no_object(log):
    prompt = log.do(ALICE, new_prompt())
    answer(log, prompt)
    assert "fresh" not in log.state.objects and "fresh" not in log.state.object_media
    assert log.state.objects_of("m1") == {}
    assert log.state.stacks_of(ALICE, "m1").undo == []  # nothing to undo: nothing was made
    assert log.state.pending_objects == {"fresh": ("m1", "bitmask")}
    # A second click on the same new object is a prompt like the first.
    again = log.do(ALICE, ev.PromptAdded(object="fresh", frame=2, points=[ev.Point(x=5, y=5), ev.Point(x=7, y=6)], class_id="bitmask", media="m1"))
    answer(log, again)
    assert "fresh" not in log.state.objects


def test_saving_the_preview_creates_the_object_with_its_label_in_one_event(log):
    prompt = log.do(ALICE, new_prompt())
    answer(log, prompt, score=0.75)
    saved = log.do(ALICE, SaveSegment(prompt=prompt.id))
    body = saved.body
    assert isinstance(body, ev.ObjectCreated) and body.label is not None
    assert (body.object, body.media, body.class_id) == ("fresh", "m1", "bitmask")
    assert (body.label.frame, body.label.source, body.label.model, body.label.prompt, body.label.score) == (2, ev.Source.SAM, "sam2/tiny@1", prompt.id, 0.75)
    label = log.state.label("fresh", 2)
    assert label is not None and label.source == ev.Source.SAM and label.prompt == prompt.id
    assert log.state.pending_objects == {}
    assert log.state.stacks_of(ALICE, "m1").undo == [saved.id]
    log.do(ALICE, Undo(media="m1"))
    assert "fresh" not in log.state.objects and log.state.label("fresh", 2) is None
    log.do(ALICE, Redo(media="m1"))
    assert log.state.label("fresh", 2) == label


def test_a_new_object_of_a_polygon_class_is_saved_in_its_shape(log):
    prompt = log.do(ALICE, new_prompt(class_id="polygon"))
    answer(log, prompt)
    saved = log.do(ALICE, SaveSegment(prompt=prompt.id))
    assert isinstance(saved.body, ev.ObjectCreated) and isinstance(saved.body.label.shape, Polygon)


def test_saving_after_the_object_exists_saves_a_label_on_it(log):
    first = log.do(ALICE, new_prompt())
    second = log.do(ALICE, new_prompt())
    answer(log, first)
    log.do(ALICE, SaveSegment(prompt=first.id))
    # The second prompt's answer comes after the object exists: it is about that object.
    answer(log, second)
    saved = log.do(ALICE, SaveSegment(prompt=second.id))
    assert isinstance(saved.body, ev.LabelSaved) and saved.body.object == "fresh"


def test_prompts_for_new_objects_are_refused_when_they_cannot_be(log):
    log.do(ALICE, ev.ObjectCreated(object="taken", media="m1", class_id="bitmask"))
    refused(log, ALICE, new_prompt(object_id="taken"), ErrorCode.EXISTS, "already exists")
    refused(log, ALICE, new_prompt(class_id="nope"), ErrorCode.UNKNOWN, "unknown class")
    refused(log, ALICE, new_prompt(media="nope"), ErrorCode.UNKNOWN, "unknown media")
    refused(log, ALICE, new_prompt(class_id="keypoint"), ErrorCode.WRONG_SHAPE, "SAM cannot")
    refused(log, ALICE, new_prompt(frame=FRAMES), ErrorCode.FRAME_OUT_OF_RANGE, "out of range")
    refused(log, ALICE, new_prompt(object_id="../x"), ErrorCode.INVALID_ID, "not valid")
    refused(log, ALICE, ev.PromptAdded(object="x", frame=0, points=[ev.Point(x=5, y=5)], class_id="bitmask"), ErrorCode.INVALID, "both")
    refused(log, ALICE, ev.PromptAdded(object="x", frame=0, points=[ev.Point(x=5, y=5)], media="m1"), ErrorCode.INVALID, "both")
    # Another project's media item or class: the wrong media for that class.
    log.do(ALICE, ev.ProjectCreated(project="p2", name="Other"))
    log.do(ALICE, ev.ClassAdded(project="p2", class_id="foreign", name="f", shape="bitmask", color="#123456"))
    log.do(ALICE, ev.MediaAdded(project="p2", media="m2", name="other", kind="video", width=64, height=48, frames=4))
    refused(log, ALICE, new_prompt(class_id="foreign"), ErrorCode.UNKNOWN, "unknown class 'foreign'")
    refused(log, ALICE, new_prompt(media="m2"), ErrorCode.UNKNOWN, "unknown class 'bitmask'")
    # The same new id once prompted as one class on one media item stays that.
    log.do(ALICE, new_prompt(object_id="pending"))
    refused(log, ALICE, new_prompt(object_id="pending", class_id="polygon"), ErrorCode.EXISTS, "prompted for")


def test_new_object_prompts_land_on_their_media_item(log):
    prompt = log.do(ALICE, new_prompt())
    assert scope_of(log.state, new_prompt()).media == "m1"
    segment = answer(log, prompt)
    assert scope_of(log.state, segment.body).media == "m1"
    assert scope_of(log.state, SaveSegment(prompt=prompt.id)).media == "m1"
    with pytest.raises(DomainError, match="unknown object"):
        scope_of(log.state, ev.PromptAdded(object="ghost", frame=0, points=[ev.Point(x=1, y=1)]))


def test_users_cannot_answer_a_new_object_prompt(log):
    prompt = log.do(ALICE, new_prompt())
    body = ev.SegmentProposed(prompt=prompt.id, object="fresh", frame=2, mask=rect_mask(1, 1, 3, 3).rle, score=1.0, model="x")
    refused(log, ALICE, body, ErrorCode.NOT_ALLOWED, "from the model")


def test_a_created_object_takes_the_id_from_a_pending_preview(log):
    # Someone creates an object with the id a preview used: the preview's save labels that object.
    prompt = log.do(ALICE, new_prompt())
    log.do(BOB, ev.ObjectCreated(object="fresh", media="m1", class_id="bitmask"))
    assert log.state.pending_objects == {}
    answer(log, prompt)
    saved = log.do(ALICE, SaveSegment(prompt=prompt.id))
    assert isinstance(saved.body, ev.LabelSaved)


# ---- edited: the provenance of a hand edit ---------------------------------------------------------


def test_a_hand_edit_names_the_label_it_edited(log):
    prompt = log.do(ALICE, new_prompt())
    answer(log, prompt)
    sam = log.do(ALICE, SaveSegment(prompt=prompt.id))
    edit = ev.LabelSaved(object="fresh", frame=2, shape=rect_mask(2, 2, 9, 6), source="manual", edited=sam.id)
    edited = log.do(BOB, edit)
    label = log.state.label("fresh", 2)
    assert label is not None and (label.source, label.edited, label.actor, label.written_by) == (ev.Source.MANUAL, sam.id, BOB, edited.id)
    # A stale `edited` (the cell changed meanwhile) is recorded as given: the edit wins like any save.
    log.do(ALICE, ev.LabelSaved(object="fresh", frame=2, shape=rect_mask(1, 1, 3, 3), source="manual", edited=sam.id))
    assert log.state.label("fresh", 2).edited == sam.id
    # Undo brings back the label as it was, provenance included.
    log.do(ALICE, Undo(media="m1"))
    assert log.state.label("fresh", 2) == label


def test_edited_rules(log):
    log.do(ALICE, created("o", "bbox", BOX))
    refused(log, ALICE, ev.LabelSaved(object="o", frame=0, shape=BOX, source="imported", edited=str(uuid.uuid4())), ErrorCode.INVALID, "manual")
    refused(log, ALICE, ev.LabelSaved(object="o", frame=0, shape=BOX, source="manual", edited="X" * 36), ErrorCode.INVALID, "event id")
    with pytest.raises(ev.SchemaError):
        ev.decode_body(msgspec.json.encode({"type": "label_saved", "object": "o", "frame": 0, "shape": {"type": "bbox", "x": 1, "y": 1, "w": 2, "h": 2}, "source": "manual", "edited": "short"}))


def test_old_label_saved_events_fold_without_edited(log):
    log.do(ALICE, created("o", "bbox", BOX))
    raw = b'{"type": "label_saved", "object": "o", "frame": 1, "shape": {"type": "bbox", "x": 1, "y": 1, "w": 2, "h": 2}, "source": "manual"}'
    body = ev.decode_body(raw)
    assert isinstance(body, ev.LabelSaved) and body.edited is None
    log.do(ALICE, body)
    assert log.state.label("o", 1).edited is None
