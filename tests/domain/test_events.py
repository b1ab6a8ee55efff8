import dataclasses
import enum
import json
import uuid
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from masklog.domain import events as ev
from masklog.domain.shapes import (
    BBox,
    Bitmask,
    Keypoint,
    Polygon,
    PolygonPart,
    Polyline,
    Rle,
    RotatedBBox,
    ShapeKind,
    Skeleton,
    SkeletonPoint,
)
from masklog.domain.state import LabelState, fold

TRACK = "00000000-0000-4000-8000-000000000001"
LABEL = ev.Label(written_by=TRACK, shape=BBox(x=1, y=2, w=3, h=4), source=ev.Source.MANUAL, actor="user:ann")

ONE_OF_EACH: list[ev.Body] = [
    ev.ProjectCreated(project="p1", name="P"),
    ev.ClassAdded(project="p1", class_id="c1", name="cat", shape=ShapeKind.SKELETON, color="#00aaff", skeleton=ev.SkeletonTemplate(points=["a", "b"], edges=[(0, 1)])),
    ev.MediaAdded(project="p1", media="m1", name="clip.mp4", kind=ev.MediaKind.VIDEO, width=854, height=480, frames=90, fps=30.0),
    ev.ObjectCreated(object="o1", media="m1", class_id="c1"),
    ev.ObjectDeleted(object="o1"),
    ev.ObjectReclassed(object="o1", class_id="c2"),
    ev.ObjectCreated(object="o2", media="m1", class_id="c1", name="left car"),
    ev.ObjectRenamed(object="o2", name="right car"),
    ev.ObjectRenamed(object="o2", name=""),
    ev.PromptAdded(object="o1", frame=3, points=[ev.Point(x=1, y=2), ev.Point(x=3, y=4, include=False)], box=ev.Box(x0=0, y0=0, x1=5, y1=5), mask=Rle(size=(2, 2), counts="04")),
    ev.SegmentProposed(prompt=TRACK, object="o1", frame=3, mask=Rle(size=(2, 2), counts="04"), score=0.9, model="sam2/hiera_t@2.1"),
    ev.LabelSaved(object="o1", frame=0, shape=Polygon(parts=[PolygonPart(outer=[0, 0, 4, 0, 4, 4], holes=[[1, 1, 2, 1, 2, 2]])]), source=ev.Source.SAM,
                  model="sam2/hiera_t@2.1", prompt=TRACK, score=0.8),
    ev.LabelDeleted(object="o1", frame=0),
    ev.TrackRequested(media="m1", objects=["o1", "o2"], start=5, direction=ev.Direction.BACKWARD, range=10, interval=2, algorithm=ev.TrackerAlias.SIMPLE, autosave=True),
    ev.TrackFrameProduced(track=TRACK, object="o1", frame=4, shape=RotatedBBox(cx=5, cy=5, w=2, h=3, angle=30), score=0.7, model="classical/flow@1"),
    ev.TrackFrameProduced(track=TRACK, object="o1", frame=3, shape=None, score=-2.0, model="classical/flow@1"),
    ev.TrackCompleted(track=TRACK, frames=10),
    ev.TrackCancelled(track=TRACK),
    ev.TrackFailed(track=TRACK, reason="backend crashed"),
    ev.TrackedAccepted(track=TRACK, frames=[3, 4]),
    ev.TrackedDiscarded(track=TRACK, objects=["o1"]),
    ev.Undone(media="m1", target=TRACK, changes=[ev.LabelChange(object="o1", frame=0, before=LABEL, after=None),
                                                 ev.ObjectChange(object="o1", before=None, after=ev.ObjectInfo(media="m1", class_id="c1", created_by="user:ann")),
                                                 ev.ObjectChange(object="o2", before=ev.ObjectInfo(media="m1", class_id="c1", created_by="user:ann"),
                                                                 after=ev.ObjectInfo(media="m1", class_id="c1", created_by="user:ann", name="car"))], conflicts=1),
    ev.Redone(media="m1", target=TRACK, changes=[ev.ProposalChange(track=TRACK, object="o1", frame=2, before=None,
                                                                   after=ev.Proposal(written_by=TRACK, shape=Polyline(points=[0, 0, 1, 1]), score=0.5, model="m/x@1"))]),
    ev.LabelSaved(object="o1", frame=1, shape=Skeleton(points=[SkeletonPoint(x=1, y=1), SkeletonPoint(x=2, y=2, visible=False)]), source=ev.Source.IMPORTED),
    ev.LabelSaved(object="o1", frame=2, shape=Keypoint(x=1, y=1), source=ev.Source.MANUAL),
    ev.LabelSaved(object="o1", frame=2, shape=Bitmask(rle=Rle(size=(2, 2), counts="04")), source=ev.Source.MANUAL),
]


def envelope(body: ev.Body, seq: int = 1) -> ev.Event:
    return ev.Event(seq=seq, id=str(uuid.uuid4()), stream="m1", actor="user:ann", at=1.5, body=body, cause=TRACK)


def test_every_body_kind_is_exercised():
    assert {ev.kind(body) for body in ONE_OF_EACH} == set(ev.BODY_KINDS)


@pytest.mark.parametrize("body", ONE_OF_EACH, ids=lambda b: ev.kind(b))
def test_round_trip(body):
    event = envelope(body)
    data = ev.encode(event)
    assert ev.decode_event(data) == event
    assert json.loads(data)["v"] == ev.SCHEMA_VERSION


def raw(**changes):
    event = json.loads(ev.encode(envelope(ev.LabelDeleted(object="o1", frame=0))))
    for path, value in changes.items():
        target = event
        *parents, leaf = path.split("__")
        for part in parents:
            target = target[part]
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (raw(body__type="label_exploded"), "body.type"),
        (raw(body__frame=...), "frame"),
        (raw(body__frame="3"), "Expected `int`"),
        (raw(body__frame=-1), "frame"),
        (raw(body__colour="red"), "colour"),
        (raw(seq=0), "seq"),
        (raw(id="not-a-uuid"), "id"),
        (raw(stream=""), "stream"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (raw(v=99), "newer schema"),
        (raw(v=0), "bad schema version"),
    ],
)
def test_strict_decoding_names_the_problem(data, message):
    with pytest.raises(ev.SchemaError, match=message):
        ev.decode_event(data)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_garbage_is_a_schema_error_never_a_crash(data):
    try:
        ev.decode_event(data)
    except ev.SchemaError:
        pass


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["seq", "id", "body", "type", "v", "frame"]), c, max_size=4),
))
def test_random_json_is_a_schema_error_never_a_crash(value):
    try:
        ev.decode_event(json.dumps(value))
    except ev.SchemaError:
        pass


def test_old_schema_versions_are_upcast(monkeypatch):
    # Pretend the schema grew to v2, renaming LabelDeleted.frame from a v1 field 'index'.
    def v1_to_v2(event):
        body = event["body"]
        if body["type"] == "label_deleted":
            body["frame"] = body.pop("index")
        return event

    monkeypatch.setattr(ev, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(ev.UPCASTERS, 1, v1_to_v2)
    old = raw(v=1, body__index=7, body__frame=...)
    event = ev.decode_event(old)
    assert event.v == 2 and event.body == ev.LabelDeleted(object="o1", frame=7)
    # A current (v1) event that needs no renaming still goes through the upcaster chain.
    assert ev.decode_event(raw(v=1, body__index=0, body__frame=...)).body.frame == 0


# ---- the first wave's logs ----------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"


def canonical(value):
    """A projection as plain JSON values, independent of how its values are typed (an enum member
    and its text are the same) and of dictionary order."""
    if isinstance(value, msgspec.Struct):
        # An unset field is as if absent: how msgspec writes it, and how an older log has it. A
        # struct that leaves its defaults out of its encoding (ObjectInfo's `name`) is compared
        # the same way: a field added later, at its default, is not there.
        omitted = {f for f in value.__struct_fields__ if getattr(value, f) is msgspec.UNSET}
        if value.__struct_config__.omit_defaults:
            omitted |= {f.name for f in msgspec.structs.fields(value) if f.default is not msgspec.NODEFAULT and getattr(value, f.name) == f.default}
        return {"type": type(value).__name__, **{f: canonical(getattr(value, f)) for f in value.__struct_fields__ if f not in omitted}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **{f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return sorted(([canonical(k), canonical(v)] for k, v in value.items()), key=lambda kv: json.dumps(kv[0]))
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=json.dumps)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def added_since(actual, expected):
    """`actual` (canonical) without the struct fields `expected` lacks that hold None: fields added
    to the schema since the fixture was written, whose default means the old behaviour."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        return {k: added_since(v, expected[k]) if k in expected else v for k, v in actual.items() if k in expected or v is not None}
    if isinstance(actual, list) and isinstance(expected, list) and len(actual) == len(expected):
        return [added_since(a, e) for a, e in zip(actual, expected, strict=True)]
    return actual


def test_a_first_wave_log_loads_and_folds_to_the_same_state():
    """Written by the first wave's code, when `algorithm` was a two-value enum: tracks with
    'simple', 'advanced' and the default. The field is now a tracker name stored as the same
    text, so the rows need no upcaster: they decode as they are, re-encode to the same bytes,
    and fold to the state the first wave folded them to."""
    rows = (FIXTURES / "first_wave_tracks.jsonl").read_bytes().splitlines()
    events = ev.decode_events(rows)
    assert events == [ev.decode_event(row) for row in rows]
    tracks = [(event, row) for event, row in zip(events, rows, strict=True) if isinstance(event.body, ev.TrackRequested)]
    assert [ev.encode(event) for event, _ in tracks] == [row for _, row in tracks], "a track request's stored form did not change"
    assert {e.v for e in events} == {ev.SCHEMA_VERSION}
    assert [event.body.algorithm for event, _ in tracks] == ["simple", "advanced", "advanced"]
    state = fold(events, LabelState())
    expected = json.loads((FIXTURES / "first_wave_tracks.state.json").read_text())
    # Tracks that keep people's labels (issue 14) record keyframes, which these had no notion of.
    assert {key: added_since(_without(canonical(getattr(state, key)), "keyframes"), expected[key]) for key in expected} == expected


def test_track_requests_name_any_tracker():
    """A tracker added later (a lighter SAM 2, SAM 3) needs no schema change: any short name
    decodes; which names a server accepts is `domain.decide`'s rule."""
    body = ev.TrackRequested(media="m1", objects=["o1"], start=0, direction=ev.Direction.FORWARD, algorithm="sam3-tiny")
    assert ev.decode_event(ev.encode(envelope(body))).body.algorithm == "sam3-tiny"
    assert ev.TrackRequested(media="m1", objects=["o1"], start=0, direction=ev.Direction.FORWARD).algorithm == ev.TrackerAlias.ADVANCED
    for bad in ("", "x" * 65, 3):  # as a client sends it: held to the length limits
        data = json.loads(ev.encode(body))
        data["algorithm"] = bad
        with pytest.raises(ev.SchemaError, match="algorithm"):
            ev.decode_body(json.dumps(data))


def test_missing_upcaster_is_reported(monkeypatch):
    monkeypatch.setattr(ev, "SCHEMA_VERSION", 3)
    with pytest.raises(ev.SchemaError, match="no upcaster from schema v1"):
        ev.decode_event(raw())


def test_new_event_decoding_is_strict():
    new = ev.NewEvent(id=str(uuid.uuid4()), stream="m1", actor="user:ann", body=ev.LabelDeleted(object="o1", frame=2))
    assert ev.decode_new_event(ev.encode(new)) == new
    with pytest.raises(ev.SchemaError):
        ev.decode_new_event(b'{"id": "x"}')
    assert ev.decode_body(b'{"type": "label_deleted", "object": "o1", "frame": 1}') == ev.LabelDeleted(object="o1", frame=1)
    with pytest.raises(ev.SchemaError):
        ev.decode_body(b'{"type": "label_deleted", "object": "o1"}')


def test_id_and_actor_patterns():
    assert ev.ID_PATTERN.match("media-01.mp4")
    for bad in ["", "../etc", "a/b", "-lead", "x" * 65, "a b"]:
        assert not ev.ID_PATTERN.match(bad)
    assert ev.ACTOR_PATTERN.match("user:alice")
    assert ev.ACTOR_PATTERN.match("model:sam2/sam2.1_hiera_tiny@2.1")
    for bad in ["alice", "user:", "model:sam2", "user:a b"]:
        assert not ev.ACTOR_PATTERN.match(bad)


def test_stored_keeps_the_envelope():
    new = ev.NewEvent(id=str(uuid.uuid4()), stream="m1", actor="user:ann", body=ev.LabelDeleted(object="o1", frame=2), cause=TRACK)
    event = ev.stored(new, seq=5, at=2.0)
    assert (event.seq, event.id, event.stream, event.actor, event.at, event.body, event.cause) == (5, new.id, "m1", "user:ann", 2.0, new.body, TRACK)
    assert msgspec.json.decode(ev.encode(event))["v"] == ev.SCHEMA_VERSION


def test_direction_step_also_from_a_plain_string() -> None:
    assert (ev.Direction.FORWARD.step, ev.Direction.BACKWARD.step) == (1, -1)
    assert ev.Direction("backward").step == -1  # what a struct built in Python (not decoded) holds


def _without(value, field: str):
    """`value` (canonical JSON) with `field` dropped from every object in it."""
    if isinstance(value, dict):
        return {k: _without(v, field) for k, v in value.items() if k != field}
    if isinstance(value, list):
        return [_without(v, field) for v in value]
    return value


def test_a_first_wave_log_of_every_event_kind_folds_to_the_same_state():
    """Written with the first wave's code (before this wave's changes): every event kind, undo
    and redo, SAM, tracks completed, failed, cancelled and still running, reviews. It loads and
    folds to the state that code folded it to. (Tracks now also keep the labels they were
    conditioned on and the keyframes of tracks that keep people's labels, which the first wave
    did not have: left out of the comparison; so are fields added since that hold None.)"""
    rows = (FIXTURES / "first_wave_log.jsonl").read_bytes().splitlines()
    events = ev.decode_events(rows)
    assert len({type(e.body) for e in events}) == 19, "every kind of the first wave's log"
    state = fold(events, LabelState())
    expected = json.loads((FIXTURES / "first_wave_log.state.json").read_text())
    for key, value in expected.items():
        assert added_since(_without(_without(canonical(getattr(state, key)), "conditioning"), "keyframes"), value) == value, key
