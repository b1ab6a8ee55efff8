"""Properties of the projection: fold = apply step by step, replay, per-user undo/redo."""

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masklog.domain import events as ev
from masklog.domain.decide import DomainError, Redo, Undo
from masklog.domain.shapes import BBox, Polygon, PolygonPart
from masklog.domain.state import LabelState, fold, state_at
from tests.domain.builders import ALICE, BOB, FRAMES, TRACKER, MemoryLog, project_log, rect_mask

USERS = [ALICE, BOB]
CLASSES = ["bbox", "bitmask", "polygon", "bbox2"]

op_strategy = st.tuples(
    st.sampled_from(["create", "save", "save", "save", "delete_label", "delete_object", "reclass", "rename", "undo", "undo", "redo", "track", "accept", "discard"]),
    st.sampled_from(USERS),
    st.integers(0, 4),  # object
    st.integers(0, FRAMES - 1),  # frame
    st.integers(0, 40),  # free parameter
)
ops_strategy = st.lists(op_strategy, max_size=45)


def shape_for(class_id: str, param: int):
    x, y = param % 50, param % 35
    if class_id in ("bbox", "bbox2"):
        return BBox(x=x, y=y, w=1 + param % 9, h=1 + param % 7)
    if class_id == "bitmask":
        return rect_mask(x, y, 3 + param % 5, 4)
    return Polygon(parts=[PolygonPart(outer=[x, y, x + 5, y, x + 5, y + 6, x, y + 6])])


def edit(log: MemoryLog, name: str, user: str, oid: str, frame: int, param: int, media: str) -> bool:
    """The ops that edit objects and labels by hand (and undo/redo) on `media`: done (or refused)
    if `name` is one of them. Shared with tests.domain.test_snapshots, which spreads them over
    several media items."""
    state = log.state
    if name == "create":
        log.do(user, ev.ObjectCreated(object=oid, media=media, class_id=CLASSES[param % len(CLASSES)]))
    elif name == "save":
        if oid in state.objects:
            cls = state.objects[oid].class_id
            log.do(user, ev.LabelSaved(object=oid, frame=frame, shape=shape_for(cls, param), source=ev.Source.MANUAL), panoptic=param % 3 == 0)
    elif name == "delete_label":
        log.do(user, ev.LabelDeleted(object=oid, frame=frame))
    elif name == "delete_object":
        log.do(user, ev.ObjectDeleted(object=oid))
    elif name == "reclass":
        if oid in state.objects:
            swap = {"bbox": "bbox2", "bbox2": "bbox"}.get(state.objects[oid].class_id, "polygon")
            log.do(user, ev.ObjectReclassed(object=oid, class_id=swap))
    elif name == "rename":
        if oid in state.objects:
            log.do(user, ev.ObjectRenamed(object=oid, name=["", "left", " right "][param % 3]))
    elif name == "undo":
        log.do(user, Undo(media=media))
    elif name == "redo":
        log.do(user, Redo(media=media))
    else:
        return False
    return True


def run(log: MemoryLog, op) -> None:
    name, user, obj, frame, param = op
    oid = f"o{obj}"
    state = log.state
    before = len(log.events)
    try:
        if edit(log, name, user, oid, frame, param, "m1"):
            pass
        elif name == "track" and oid in state.objects and state.label(oid, frame) is not None:
            start_label = state.label(oid, frame)
            request = log.do(user, ev.TrackRequested(media="m1", objects=[oid], start=frame, direction=ev.Direction.FORWARD, range=4, autosave=param % 4 == 0))
            for produced in range(frame + 1, min(frame + 4, FRAMES)):
                shape = start_label.shape if produced % 3 else None
                log.do(TRACKER, ev.TrackFrameProduced(track=request.id, object=oid, frame=produced, shape=shape, score=0.5, model="classical/flow@1"))
            log.do(TRACKER, ev.TrackCompleted(track=request.id, frames=3))
        elif name in ("accept", "discard") and state.proposals:
            track = sorted(state.proposals, key=lambda t: state.tracks[t].seq)[-1]
            frames = None if param % 2 else [frame]
            kind = ev.TrackedAccepted if name == "accept" else ev.TrackedDiscarded
            log.do(user, kind(track=track, frames=frames))
    except DomainError:
        assert len(log.events) == before or name == "track"


def history(ops) -> MemoryLog:
    log = project_log()
    for op in ops:
        run(log, op)
    return log


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops_strategy)
def test_fold_equals_incremental_apply(ops):
    log = history(ops)
    assert fold(log.events) == log.state
    # ... and the log survives its own codec.
    assert fold(ev.decode_event(ev.encode(e)) for e in log.events) == log.state


class RecordingLog(MemoryLog):
    """Keeps a copy of the live state after every event, as a client would have seen it."""

    def __init__(self) -> None:
        super().__init__()
        self.live: list[LabelState] = [self.state.copy()]

    def do(self, *args, **kwargs):
        event = super().do(*args, **kwargs)
        self.live.append(self.state.copy())
        return event


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops_strategy)
def test_replay_to_any_seq_equals_the_live_state(ops):
    log = project_log(log=RecordingLog())
    for op in ops:
        run(log, op)
    for seq in range(len(log.events) + 1):
        assert state_at(log.events, seq) == log.live[seq]


def cells(state: LabelState):
    return (
        {(o, f): v for o, frames in state.labels.items() for f, v in frames.items()},
        dict(state.objects),
        {t: dict(c) for t, c in state.proposals.items()},
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops_strategy, st.sampled_from(USERS), st.integers(1, 12))
def test_undo_n_then_redo_n_restores_and_never_touches_others(ops, user, n):
    log = history(ops)
    n = min(n, len(log.state.stacks_of(user, "m1").undo))
    before = cells(log.state)
    for _ in range(n):
        others_before = {k: v for k, v in cells(log.state)[0].items() if v.actor != user}
        log.do(user, Undo(media="m1"))
        labels_after = cells(log.state)[0]
        for key, value in others_before.items():
            assert labels_after.get(key) == value, f"undo by {user} changed {key} written by {value.actor}"
    for _ in range(n):
        log.do(user, Redo(media="m1"))
    assert cells(log.state) == before


def test_undo_is_per_user_and_per_media():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(BOB, ev.ObjectCreated(object="b", media="m1", class_id="bbox"))
    log.do(ALICE, ev.LabelSaved(object="a", frame=0, shape=BBox(x=0, y=0, w=4, h=4), source=ev.Source.MANUAL))
    log.do(BOB, ev.LabelSaved(object="b", frame=0, shape=BBox(x=9, y=9, w=4, h=4), source=ev.Source.MANUAL))
    log.do(ALICE, Undo(media="m1"))
    assert log.state.label("a", 0) is None
    assert log.state.label("b", 0).actor == BOB
    log.do(ALICE, Undo(media="m1"))
    assert "a" not in log.state.objects and "b" in log.state.objects
    log.do(ALICE, Redo(media="m1"))
    log.do(ALICE, Redo(media="m1"))
    assert log.state.label("a", 0).shape == BBox(x=0, y=0, w=4, h=4)


def test_undo_leaves_a_cell_someone_else_overwrote():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(ALICE, ev.LabelSaved(object="a", frame=1, shape=BBox(x=0, y=0, w=4, h=4), source=ev.Source.MANUAL))
    log.do(BOB, ev.LabelSaved(object="a", frame=1, shape=BBox(x=1, y=1, w=4, h=4), source=ev.Source.MANUAL))
    undone = log.do(ALICE, Undo(media="m1"))
    assert undone.body.changes == [] and undone.body.conflicts == 1
    assert log.state.label("a", 1).actor == BOB


def test_last_write_wins_and_the_loser_stays_in_the_log():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    first = log.do(ALICE, ev.LabelSaved(object="a", frame=1, shape=BBox(x=0, y=0, w=4, h=4), source=ev.Source.MANUAL))
    second = log.do(BOB, ev.LabelSaved(object="a", frame=1, shape=BBox(x=2, y=2, w=4, h=4), source=ev.Source.MANUAL))
    assert log.state.label("a", 1).written_by == second.id
    assert first in log.events


def test_new_action_clears_only_my_redo_stack():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(BOB, ev.ObjectCreated(object="b", media="m1", class_id="bbox"))
    log.do(ALICE, Undo(media="m1"))
    log.do(BOB, Undo(media="m1"))
    log.do(BOB, ev.ObjectCreated(object="c", media="m1", class_id="bbox"))
    assert log.state.stacks_of(BOB, "m1").redo == []
    assert len(log.state.stacks_of(ALICE, "m1").redo) == 1
    log.do(ALICE, Redo(media="m1"))
    assert "a" in log.state.objects


def test_tracked_proposals_accept_discard_and_undo():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(ALICE, ev.LabelSaved(object="a", frame=2, shape=BBox(x=0, y=0, w=4, h=4), source=ev.Source.MANUAL))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["a"], start=2, direction=ev.Direction.FORWARD, range=4))
    for frame in (3, 4, 5):
        log.do(TRACKER, ev.TrackFrameProduced(track=track.id, object="a", frame=frame, shape=BBox(x=frame, y=0, w=4, h=4), score=0.9, model="classical/flow@1"))
    log.do(TRACKER, ev.TrackCompleted(track=track.id, frames=3))
    assert log.state.label("a", 3) is None and len(log.state.proposals[track.id]) == 3
    log.do(ALICE, ev.TrackedAccepted(track=track.id, frames=[3, 4]))
    label = log.state.label("a", 4)
    assert label.source == ev.Source.TRACKED and label.track == track.id and label.model == "classical/flow@1" and label.actor == ALICE
    log.do(BOB, ev.TrackedDiscarded(track=track.id))
    assert track.id not in log.state.proposals and log.state.label("a", 5) is None
    log.do(ALICE, Undo(media="m1"))  # Alice's accept: labels go, proposals come back
    assert log.state.label("a", 3) is None and set(log.state.proposals[track.id]) == {("a", 3), ("a", 4)}
    assert log.state.tracks[track.id].status == "completed" and log.state.tracks[track.id].produced == 3


def test_automated_labelling_saves_directly():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(ALICE, ev.LabelSaved(object="a", frame=0, shape=BBox(x=0, y=0, w=4, h=4), source=ev.Source.MANUAL))
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["a"], start=0, direction=ev.Direction.FORWARD, autosave=True))
    log.do(TRACKER, ev.TrackFrameProduced(track=track.id, object="a", frame=1, shape=BBox(x=1, y=0, w=4, h=4), score=0.9, model="classical/flow@1"))
    assert log.state.label("a", 1).source == ev.Source.TRACKED and log.state.label("a", 1).actor == TRACKER
    assert track.id not in log.state.proposals


def test_deleting_an_object_and_undoing_restores_all_its_labels():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bitmask"))
    for frame in range(3):
        log.do(BOB, ev.LabelSaved(object="a", frame=frame, shape=rect_mask(frame, 0, 5, 5), source=ev.Source.MANUAL))
    labels = dict(log.state.labels["a"])
    log.do(ALICE, ev.ObjectDeleted(object="a"))
    assert "a" not in log.state.labels
    log.do(ALICE, Undo(media="m1"))
    assert log.state.labels["a"] == labels and log.state.objects["a"].created_by == ALICE


def test_apply_refuses_old_positions():
    log = project_log()
    try:
        log.state.apply(log.events[0])
    except ValueError as error:
        assert "not after" in str(error)
    else:
        raise AssertionError("re-applying an old event must fail")


def test_copy_is_independent():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    branch = log.state.copy()
    log.do(ALICE, ev.LabelSaved(object="a", frame=0, shape=BBox(x=0, y=0, w=4, h=4), source=ev.Source.MANUAL))
    assert branch.label("a", 0) is None and branch != log.state
    assert str(uuid.UUID(int=0)) not in branch.actions
