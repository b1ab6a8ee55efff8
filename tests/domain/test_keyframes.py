"""People's labels are keyframes (issue 14): no tracker result replaces one unless a reviewer says
so, autosave included; old logs (tracks without `keep_people`) fold as they always did."""

from __future__ import annotations

import msgspec

from masklog.domain import events as ev
from masklog.domain.decide import Undo
from masklog.domain.shapes import BBox
from masklog.domain.state import fold, is_persons
from tests.domain.builders import ALICE, BOB, TRACKER, MemoryLog, project_log

MODEL = "classical/flow@1"


def box(x: float) -> BBox:
    return BBox(x=x, y=0, w=4, h=4)


def labelled(log: MemoryLog) -> None:
    """Object a: alice's box on frame 0, bob's hand label on frame 5."""
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(ALICE, ev.LabelSaved(object="a", frame=0, shape=box(0), source=ev.Source.MANUAL))
    log.do(BOB, ev.LabelSaved(object="a", frame=5, shape=box(20), source=ev.Source.MANUAL))


def track(log: MemoryLog, *, autosave: bool = False, frames: range = range(1, 10)) -> ev.Event:
    request = log.do(ALICE, ev.TrackRequested(media="m1", objects=["a"], start=0, direction=ev.Direction.FORWARD, range=10, autosave=autosave))
    for frame in frames:
        log.do(TRACKER, ev.TrackFrameProduced(track=request.id, object="a", frame=frame, shape=box(frame), score=0.8, model=MODEL))
    log.do(TRACKER, ev.TrackCompleted(track=request.id, frames=len(frames)))
    return request


def test_every_new_track_keeps_peoples_labels_and_captures_its_keyframes():
    log = project_log()
    labelled(log)
    request = log.do(ALICE, ev.TrackRequested(media="m1", objects=["a"], start=0, direction=ev.Direction.FORWARD, range=10))
    assert isinstance(request.body, ev.TrackRequested) and request.body.keep_people
    info = log.state.tracks[request.id]
    assert info.keyframes == {"a": {5: box(20)}}  # the start frame is the conditioning, not a keyframe
    log.do(TRACKER, ev.TrackCompleted(track=request.id, frames=0))
    assert log.state.tracks[request.id].keyframes == {}  # dropped once the track ends


def test_keyframes_are_peoples_labels_in_the_range_only():
    log = project_log()
    labelled(log)
    log.do(BOB, ev.LabelSaved(object="a", frame=11, shape=box(30), source=ev.Source.MANUAL))
    first = track(log)
    log.do(ALICE, ev.TrackedAccepted(track=first.id))  # tracked labels on 1-4, 6-9: not keyframes
    request = log.do(ALICE, ev.TrackRequested(media="m1", objects=["a"], start=0, direction=ev.Direction.FORWARD, range=10))
    assert log.state.tracks[request.id].keyframes == {"a": {5: box(20)}}
    assert not is_persons(log.state.label("a", 3)) and is_persons(log.state.label("a", 5))


def test_save_keeps_the_persons_label_and_review_shows_the_conflict():
    log = project_log()
    labelled(log)
    request = track(log)
    assert log.state.conflicts(request.id) == [("a", 5)]
    log.do(ALICE, ev.TrackedAccepted(track=request.id))
    hand = log.state.label("a", 5)
    assert hand is not None and hand.source == ev.Source.MANUAL and hand.actor == BOB and hand.shape == box(20)
    assert log.state.label("a", 4).source == ev.Source.TRACKED  # the other frames are saved
    assert request.id not in log.state.proposals  # the conflicting result is set aside, in the log
    assert any(isinstance(e.body, ev.TrackFrameProduced) and e.body.frame == 5 for e in log.events)


def test_the_reviewer_may_choose_to_overwrite_and_undo_brings_the_persons_label_back():
    log = project_log()
    labelled(log)
    request = track(log)
    log.do(ALICE, ev.TrackedAccepted(track=request.id, frames=[5], overwrite=True))
    assert log.state.label("a", 5).source == ev.Source.TRACKED
    log.do(ALICE, Undo(media="m1"))
    assert log.state.label("a", 5).actor == BOB and log.state.conflicts(request.id) == [("a", 5)]


def test_autosave_never_replaces_a_persons_label_it_leaves_a_conflict_to_review():
    log = project_log()
    labelled(log)
    request = track(log, autosave=True)
    assert log.state.label("a", 5).actor == BOB
    assert log.state.label("a", 6).source == ev.Source.TRACKED
    assert log.state.conflicts(request.id) == [("a", 5)]
    assert list(log.state.proposals[request.id]) == [("a", 5)]


def test_a_track_logged_before_keyframes_folds_as_it_did():
    """An event without `keep_people` (every track of an older log) overwrites on accept and on
    autosave, as the first version did: the same log gives the same state."""
    log = project_log()
    labelled(log)
    old_request = ev.TrackRequested(media="m1", objects=["a"], start=0, direction=ev.Direction.FORWARD, range=10, autosave=True)
    assert b"keep_people" not in ev.encode(old_request)  # the default is not written
    events = list(log.events)
    track_id = "00000000-0000-4000-8000-000000000001"
    seq = len(events)
    bodies: list[ev.Body] = [old_request]
    bodies += [ev.TrackFrameProduced(track=track_id, object="a", frame=f, shape=box(f), score=0.5, model=MODEL) for f in range(1, 10)]
    for body in bodies:
        seq += 1
        actor = ALICE if isinstance(body, ev.TrackRequested) else TRACKER
        event_id = track_id if isinstance(body, ev.TrackRequested) else f"00000000-0000-4000-8000-{seq:012d}"
        events.append(ev.Event(seq=seq, id=event_id, stream="m1", actor=actor, at=1.0, body=body))
    state = fold(events)
    assert state.label("a", 5).source == ev.Source.TRACKED  # the old rule
    assert state.tracks[track_id].keyframes == {}


def test_accept_without_overwrite_encodes_as_before():
    assert msgspec.json.decode(ev.encode(ev.TrackedAccepted(track="00000000-0000-4000-8000-000000000001"))) == {
        "type": "tracked_accepted",
        "track": "00000000-0000-4000-8000-000000000001",
        "objects": None,
        "frames": None,
    }
