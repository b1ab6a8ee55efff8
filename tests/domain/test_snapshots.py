"""Per-media projections and their snapshots (issue 15).

For random multi-user histories over several media items of one project: at every position,
(1) each media item's state folded from its own stream onto `media_view(base)` has the same
`media_part` as the full fold, (2) it survives the snapshot codec unchanged, and (3) a snapshot
taken earlier plus the stream's events after it gives the same state again."""

from __future__ import annotations

import uuid
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masklog.domain import events as ev
from masklog.domain import snapshots
from masklog.domain.decide import DomainError, SaveSegment, decide, scope_of
from masklog.domain.snapshots import (
    SnapshotError,
    decode_media_state,
    encode_media_state,
    media_part,
    media_view,
)
from masklog.domain.state import LabelState, fold
from tests.domain.builders import ALICE, FRAMES, TRACKER, MemoryLog, project_log, rect_mask
from tests.domain.test_state import edit, op_strategy

MEDIA = ["m1", "m2", "m3"]
SAM = "model:sam2/tiny@1"

# The ops of test_state, each on one of the media items, plus SAM prompts (which reserve new
# object ids), saving their answers, and classes added to the project along the way.
multi_op = st.tuples(op_strategy, st.integers(0, len(MEDIA) - 1), st.sampled_from([None, None, None, None, "prompt", "save_segment", "class"]))
# Objects are made first (on random media items), so most later ops have something to work on.
creates = st.lists(st.tuples(st.integers(0, 4), st.integers(0, len(MEDIA) - 1), st.integers(0, 40)), min_size=1, max_size=6)
multi_ops = st.lists(multi_op, min_size=10, max_size=60)


class StreamLog(MemoryLog):
    """Like MemoryLog, but each event goes to the stream the server would put it in."""

    def do(self, actor, command, *, panoptic=False, event_id=None):
        stream = scope_of(self.state, command).stream
        body = decide(self.state, actor, command, panoptic=panoptic)
        event = ev.Event(
            seq=len(self.events) + 1,
            id=str(event_id or uuid.uuid4()),
            stream=stream,
            actor=actor,
            at=1_700_000_000.0 + len(self.events),
            body=body,
        )
        self.events.append(event)
        self.state.apply(event)
        return event


def setup() -> StreamLog:
    log = project_log(log=StreamLog())
    for media in MEDIA[1:]:
        log.do(ALICE, ev.MediaAdded(project="p1", media=media, name=media, kind=ev.MediaKind.VIDEO, width=64, height=48, frames=FRAMES, fps=25.0))
    return log


def run(log: StreamLog, op, media_index: int, extra: str | None) -> None:
    (name, user, obj, frame, param), media = op, MEDIA[media_index]
    oid = f"o{obj}"
    state = log.state
    try:
        if extra == "prompt":
            new = oid not in state.object_media
            prompt = log.do(
                user,
                ev.PromptAdded(
                    object=oid,
                    frame=frame,
                    points=[ev.Point(x=5 + param, y=5)],
                    class_id="bitmask" if new else None,
                    media=media if new else None,
                ),
            )
            log.do(SAM, ev.SegmentProposed(prompt=prompt.id, object=oid, frame=frame, mask=rect_mask(param % 30, 2, 4, 5).rle, score=0.9, model="sam2"))
        elif extra == "save_segment" and state.segments:
            log.do(user, SaveSegment(prompt=list(state.segments)[param % len(state.segments)]))
        elif extra == "class":
            log.do(ALICE, ev.ClassAdded(project="p1", class_id=f"extra{len(log.events)}", name="extra", shape=ev.ShapeKind.BBOX, color="#123456"))
        elif edit(log, name, user, oid, frame, param, media):
            pass
        elif name == "track" and oid in state.objects and state.labels.get(oid):
            frame = sorted(state.labels[oid])[param % len(state.labels[oid])]  # start on a label
            target = state.objects[oid].media
            start_label = state.label(oid, frame)
            request = log.do(
                user,
                ev.TrackRequested(media=target, objects=[oid], start=frame, direction=ev.Direction.FORWARD, range=4, autosave=param % 4 == 0, keep_people=param % 5 == 0),
            )
            for produced in range(frame + 1, min(frame + 4, FRAMES)):
                shape = start_label.shape if produced % 3 else None
                log.do(TRACKER, ev.TrackFrameProduced(track=request.id, object=oid, frame=produced, shape=shape, score=0.5, model="classical/flow@1"))
            if param % 7:
                log.do(TRACKER, ev.TrackCompleted(track=request.id, frames=3))
        elif name in ("accept", "discard"):
            tracks = [t for t in state.proposals if state.tracks[t].request.media == media]
            if tracks:
                track = sorted(tracks, key=lambda t: state.tracks[t].seq)[-1]
                frames = None if param % 2 else [frame]
                kind = ev.TrackedAccepted if name == "accept" else ev.TrackedDiscarded
                log.do(user, kind(track=track, frames=frames))
    except DomainError:
        pass


def history(made, ops) -> StreamLog:  # type: ignore[no-untyped-def]
    """The log of a generated history: objects made (each with a label), then the ops."""
    log = setup()
    for obj, media_index, param in made:
        run(log, ("create", ALICE, obj, 0, param), media_index, None)
        run(log, ("save", ALICE, obj, param % FRAMES, param), media_index, None)
    for op, media_index, extra in ops:
        run(log, op, media_index, extra)
    return log


def is_project_event(event: ev.Event) -> bool:
    return event.stream.startswith("project:")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(creates, multi_ops, st.randoms(use_true_random=False))
def test_media_folds_and_snapshots_equal_the_full_fold_at_every_position(made, ops, rng):
    log = history(made, ops)
    assert {e.stream for e in log.events} <= {"project:p1", *(f"media:{m}" for m in MEDIA)}

    full = LabelState()
    base = LabelState()
    views = {m: media_view(base) for m in MEDIA}
    snapshots: dict[str, list[tuple[int, bytes]]] = {m: [(0, encode_media_state(views[m]))] for m in MEDIA}
    for event in log.events:
        full.apply(event)
        if is_project_event(event):
            base.apply(event)
        else:
            views[event.stream.removeprefix("media:")].apply(event)
        position = event.seq
        for media in MEDIA:
            view = views[media]
            # (1) the media fold is the media's part of the full fold.
            assert media_part(view, media) == media_part(full, media), (media, position, event)
            assert all(m == media for m in view.object_media.values())
            # (2) the codec keeps everything, and shares the base's project-level dicts.
            data_ = encode_media_state(view)
            decoded = decode_media_state(data_, base)
            assert decoded == view
            assert decoded.classes is base.classes and decoded.media is base.media and decoded.projects is base.projects
            snapshots[media].append((position, data_))
            # (3) an earlier snapshot + the events of the stream after it.
            taken_at, older = rng.choice(snapshots[media])
            state = decode_media_state(older, base)
            fold((e for e in log.events if taken_at < e.seq <= position and e.stream == f"media:{media}"), state)
            assert state == view, (media, taken_at, position)
    assert full == log.state


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(creates, multi_ops, st.randoms(use_true_random=False))
def test_a_windowed_snapshot_plus_the_tail_gives_the_windows_labels_and_every_cells_head(made, ops, rng):
    """What a replay reads: a snapshot decoded for a window of frames only (its parts for those
    frames, no undo actions), then the stream's later events folded on it, has exactly the full
    fold's labels on the window's frames, and every other cell with its source, actor and model."""
    with patch.object(snapshots, "CHUNK_FRAMES", 4):  # FRAMES = 12: three blocks
        log = history(made, ops)
        base = fold(e for e in log.events if is_project_event(e))
        for media in MEDIA:
            events = [e for e in log.events if e.stream == f"media:{media}"]
            cut = rng.randint(0, len(events))
            encoded = snapshots.encode_media_snapshot(fold(events[:cut], media_view(base)))
            first = rng.randint(0, FRAMES - 1)
            window = (first, rng.randint(first, FRAMES - 1))
            manifest = snapshots.read_manifest(encoded.manifest)
            needed = manifest.parts_for(window)
            assert len(needed) <= window[1] // 4 - window[0] // 4 + 1  # the window's blocks only
            state = snapshots.decode_media_snapshot(manifest, {key: encoded.parts[key] for key in needed}, base, window)
            fold(events[cut:], state)
            full = fold(events, media_view(base))
            assert state.labels.keys() == full.labels.keys()
            for oid, frames in full.labels.items():
                assert list(state.labels[oid]) == list(frames)
                for frame, label in frames.items():
                    got = state.labels[oid][frame]
                    if window[0] <= frame <= window[1]:
                        assert got == label, (media, oid, frame)
                    else:
                        assert (got.source, got.actor, got.model) == (label.source, label.actor, label.model)
            assert (state.objects, state.proposals) == (full.objects, full.proposals)
            # A track requested in the tail copies the shapes it conditions on from the labels:
            # outside the window, placeholders. What a replay shows of a track is the rest.
            shown = lambda t: (t.request, t.actor, t.seq, t.status, t.produced, t.reason, t.last_frame, t.lost_streak)  # noqa: E731
            assert {k: shown(t) for k, t in state.tracks.items()} == {k: shown(t) for k, t in full.tracks.items()}
            assert {k: (len(v.undo), len(v.redo)) for k, v in state.stacks.items()} == {k: (len(v.undo), len(v.redo)) for k, v in full.stacks.items()}


def test_unchanged_label_blocks_are_the_same_parts():
    """Two snapshots of a media item share the parts of the frames nobody changed between them."""
    with patch.object(snapshots, "CHUNK_FRAMES", 4):
        log = setup()
        for i in range(3):
            run(log, ("create", ALICE, i, 0, i), 0, None)
        for frame in range(FRAMES):
            run(log, ("save", ALICE, frame % 3, frame, frame), 0, None)
        base = fold(e for e in log.events if is_project_event(e))
        before = snapshots.encode_media_snapshot(fold((e for e in log.events if e.stream == "media:m1"), media_view(base)))
        run(log, ("save", ALICE, 0, 9, 99), 0, None)  # block 2 (frames 8-11) changes
        after = snapshots.encode_media_snapshot(fold((e for e in log.events if e.stream == "media:m1"), media_view(base)))
        blocks = lambda e: dict(snapshots.read_manifest(e.manifest).value.blocks)  # noqa: E731
        assert blocks(before)[0] == blocks(after)[0] and blocks(before)[1] == blocks(after)[1]
        assert blocks(before)[2] != blocks(after)[2]


def test_actions_stay_encoded_until_an_undo_needs_them():
    log = setup()
    for i in range(6):
        run(log, ("create" if i < 2 else "save", ALICE, i % 2, i % FRAMES, i), 0, None)
    base = fold(e for e in log.events if is_project_event(e))
    view = fold((e for e in log.events if e.stream == "media:m1"), media_view(base))
    decoded = decode_media_state(encode_media_state(view), base)
    top = decoded.stacks_of(ALICE, "m1").undo[-1]
    assert all(action.encoded is not None for action in decoded.actions.values())
    assert decoded.action_changes(top) == view.action_changes(top)
    assert decoded.actions[top].encoded is None
    assert decoded == view


def test_codec_keeps_order_and_types_of_a_long_history():
    log = setup()
    ops = [(("create", ALICE, i % 5, 0, i), i % 3, None) for i in range(15)]
    ops += [((name, ALICE, i % 5, i % FRAMES, i), i % 3, None) for i in range(300) for name in ("save", "track", "accept", "undo")]
    for op, media_index, extra in ops:
        run(log, op, media_index, extra)
    base = fold(e for e in log.events if is_project_event(e))
    for media in MEDIA:
        view = fold((e for e in log.events if e.stream == f"media:{media}"), media_view(base))
        decoded = decode_media_state(encode_media_state(view), base)
        assert decoded == view
        assert list(decoded.objects) == list(view.objects)
        assert [list(cells) for cells in decoded.proposals.values()] == [list(cells) for cells in view.proposals.values()]
        assert list(decoded.actions) == list(view.actions)
        assert media_part(decoded, media) == media_part(log.state, media)


@pytest.mark.parametrize("data", [b"", b"\x00", b"not msgpack at all", b"\x91\x01"])
def test_damaged_bytes_are_an_error_not_a_state(data):
    with pytest.raises(SnapshotError):
        decode_media_state(data, LabelState())


def test_truncated_snapshot_is_an_error():
    log = setup()
    for i in range(20):
        run(log, ("create" if i < 3 else "save", ALICE, i % 3, i % FRAMES, i), 0, None)
    data = encode_media_state(fold((e for e in log.events if e.stream == "media:m1"), media_view(log.state)))
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(SnapshotError):
            decode_media_state(data[:cut], log.state)


def test_an_id_reserved_by_a_prompt_cannot_be_created_on_another_media_item():
    log = setup()
    run(log, ("create", ALICE, 0, 0, 0), 0, "prompt")  # reserves o0 on m1
    assert log.state.pending_objects["o0"] == ("m1", "bitmask")
    with pytest.raises(DomainError, match="reserved by a prompt on media 'm1'"):
        log.do(ALICE, ev.ObjectCreated(object="o0", media="m2", class_id="bbox"))
    log.do(ALICE, ev.ObjectCreated(object="o0", media="m1", class_id="bbox"))  # on its own item: fine
    assert log.state.object_media["o0"] == "m1" and "o0" not in log.state.pending_objects
