from masklog.domain import events as ev
from masklog.domain.audit import GroupBy, cell_history, counts
from masklog.domain.decide import Undo
from masklog.domain.shapes import BBox
from tests.domain.builders import ALICE, BOB, TRACKER, project_log, rect_mask

SAM = "model:sam2/tiny@2.1"


def audited_log():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(BOB, ev.ObjectCreated(object="b", media="m1", class_id="bbox2"))
    prompt = log.do(ALICE, ev.PromptAdded(object="a", frame=0, points=[ev.Point(x=2, y=2)]))
    log.do(SAM, ev.SegmentProposed(prompt=prompt.id, object="a", frame=0, mask=rect_mask(0, 0, 4, 4).rle, score=0.9, model="sam2/tiny@2.1"))
    log.do(ALICE, ev.LabelSaved(object="a", frame=0, shape=BBox(x=0, y=0, w=4, h=4), source="sam", model="sam2/tiny@2.1", prompt=prompt.id, score=0.9))
    log.do(BOB, ev.LabelSaved(object="b", frame=0, shape=BBox(x=9, y=9, w=4, h=4), source="manual"))
    log.do(BOB, ev.LabelSaved(object="b", frame=1, shape=BBox(x=9, y=9, w=4, h=4), source="imported"))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["a"], start=0, direction="forward", range=3))
    for frame in (1, 2):
        log.do(TRACKER, ev.TrackFrameProduced(track=track.id, object="a", frame=frame, shape=BBox(x=frame, y=0, w=4, h=4), score=0.8, model="classical/flow@1"))
    log.do(BOB, ev.TrackedAccepted(track=track.id))
    return log, prompt, track


def test_provenance_of_each_label():
    log, prompt, track = audited_log()
    sam = log.state.label("a", 0)
    assert (sam.source, sam.actor, sam.model, sam.prompt) == (ev.Source.SAM, ALICE, "sam2/tiny@2.1", prompt.id)
    tracked = log.state.label("a", 2)
    assert (tracked.source, tracked.actor, tracked.model, tracked.track) == (ev.Source.TRACKED, BOB, "classical/flow@1", track.id)


def test_counts_by_object_frame_annotator_and_class():
    log, _, _ = audited_log()
    assert counts(log.state, "m1", GroupBy.OBJECT) == {"a": {"sam": 1, "tracked": 2}, "b": {"manual": 1, "imported": 1}}
    assert counts(log.state, "m1", GroupBy.FRAME) == {0: {"sam": 1, "manual": 1}, 1: {"tracked": 1, "imported": 1}, 2: {"tracked": 1}}
    assert counts(log.state, "m1", GroupBy.ANNOTATOR) == {ALICE: {"sam": 1}, BOB: {"manual": 1, "imported": 1, "tracked": 2}}
    assert counts(log.state, "m1", GroupBy.CLASS, sources=[ev.Source.TRACKED]) == {"bbox": {"tracked": 2}}
    assert counts(log.state, "m1", GroupBy.OBJECT, annotator=ALICE) == {"a": {"sam": 1}}
    assert counts(log.state, "other", GroupBy.OBJECT) == {}


def test_counts_filtered_by_model_and_class_combine_with_the_other_filters():
    log, _, _ = audited_log()
    assert counts(log.state, "m1", GroupBy.OBJECT, models=["classical/flow@1"]) == {"a": {"tracked": 2}}
    assert counts(log.state, "m1", GroupBy.OBJECT, models=[None]) == {"b": {"manual": 1, "imported": 1}}
    assert counts(log.state, "m1", GroupBy.FRAME, classes=["bbox2"]) == {0: {"manual": 1}, 1: {"imported": 1}}
    assert counts(log.state, "m1", GroupBy.OBJECT, classes=["bbox"], annotator=BOB) == {"a": {"tracked": 2}}
    assert counts(log.state, "m1", GroupBy.OBJECT, classes=["bbox"], sources=[ev.Source.MANUAL]) == {}


def test_cell_history_shows_who_won_and_what_was_lost():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    first = log.do(ALICE, ev.LabelSaved(object="a", frame=3, shape=BBox(x=0, y=0, w=4, h=4), source="manual"))
    second = log.do(BOB, ev.LabelSaved(object="a", frame=3, shape=BBox(x=1, y=0, w=4, h=4), source="manual"))
    log.do(BOB, ev.LabelSaved(object="a", frame=4, shape=BBox(x=1, y=0, w=4, h=4), source="manual"))  # another cell
    log.do(BOB, Undo(media="m1"))  # undoes frame 4 only
    log.do(BOB, Undo(media="m1"))  # back to Alice's value on frame 3
    history = cell_history(log.events, "a", 3)
    assert [(h.actor, h.kind) for h in history] == [(ALICE, "label_saved"), (BOB, "label_saved"), (BOB, "undone")]
    assert history[1].replaced.written_by == first.id and history[1].value.written_by == second.id
    assert history[2].value.written_by == first.id
