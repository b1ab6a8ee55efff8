"""The rule behind `COMMUTES_WITH_MODELS` (server/shared_ledger.py), as a property of the domain.

Several server processes share one log. A person's command is decided against the state as of
the last event a process had applied, and appended only if its media item's stream has not moved
since, except that events by models are ignored for the commands in COMMUTES_WITH_MODELS (a
person could not save while trackers write frames many times a second). That is sound only if a
model's results landing between the decision and the append never change the decision: deciding
the same command after them gives the same event, and a refused command is refused alike.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from masklog.domain import events as ev
from masklog.domain.decide import DomainError, decide
from masklog.domain.state import LabelState
from masklog.server.shared_ledger import commutes_with_models
from tests.domain.builders import ALICE, BOB, FRAMES, TRACKER, MemoryLog, project_log, rect_mask
from tests.domain.test_state import CLASSES, ops_strategy, run, shape_for

# A person's commands, each a type in COMMUTES_WITH_MODELS: (kind, user, object, frame, parameter).
person_command = st.tuples(
    st.sampled_from(["create", "save", "save_panoptic", "delete_label", "delete_object", "reclass", "rename", "prompt", "track", "accept", "discard"]),
    st.sampled_from([ALICE, BOB]),
    st.integers(0, 4),
    st.integers(0, FRAMES - 1),
    st.integers(0, 40),
)
# What the models write meanwhile: (object, shape or lost, end the track after it).
model_results = st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.booleans()), min_size=1, max_size=6)


def command_for(state: LabelState, kind: str, oid: str, frame: int, param: int) -> tuple[object, bool]:
    """The command and whether it is saved panoptically."""
    cls = state.objects[oid].class_id if oid in state.objects else CLASSES[param % len(CLASSES)]
    track = max(state.tracks, key=lambda t: state.tracks[t].seq) if state.tracks else "none"
    match kind:
        case "create":
            return ev.ObjectCreated(object=oid, media="m1", class_id=cls), False
        case "save" | "save_panoptic":
            shape = shape_for(cls, param)
            if param % 2 and track in state.tracks:
                # Where the running track's results will land, over the shape it tracks.
                request = state.tracks[track].request
                seed = state.label(request.objects[0], request.start)
                if seed is not None and state.objects.get(request.objects[0], None) and state.objects[request.objects[0]].class_id == cls:
                    frame, shape = min(request.start + 1 + param % 3, FRAMES - 1), seed.shape
            return ev.LabelSaved(object=oid, frame=frame, shape=shape, source=ev.Source.MANUAL), kind == "save_panoptic"
        case "delete_label":
            return ev.LabelDeleted(object=oid, frame=frame), False
        case "delete_object":
            return ev.ObjectDeleted(object=oid), False
        case "reclass":
            return ev.ObjectReclassed(object=oid, class_id={"bbox": "bbox2", "bbox2": "bbox"}.get(cls, "polygon")), False
        case "rename":
            return ev.ObjectRenamed(object=oid, name=["", "left", "right"][param % 3]), False
        case "prompt":
            return ev.PromptAdded(object=oid, frame=frame, points=[ev.Point(x=float(param % 60), y=float(param % 40), include=True)]), False
        case "track":
            return ev.TrackRequested(media="m1", objects=[oid], start=frame, direction=ev.Direction.FORWARD, range=4), False
        case "accept":
            return ev.TrackedAccepted(track=track, frames=None if param % 2 else [frame]), False
        case _:
            return ev.TrackedDiscarded(track=track, frames=None if param % 2 else [frame]), False


def running_track(log: MemoryLog, objects: list[str], autosave: bool) -> str | None:
    """A track some person asked for and a model is still working on, if the history allows one:
    from the first frame where one of `objects` has a label, for those labelled there."""
    state = log.state
    starts = sorted(min(state.labels[o]) for o in objects if o in state.objects and state.labels.get(o))
    if not starts or starts[0] + 1 >= FRAMES:
        return None
    start = starts[0]
    labelled = [o for o in objects if o in state.objects and state.label(o, start) is not None]
    request = log.do(ALICE, ev.TrackRequested(media="m1", objects=labelled, start=start, direction=ev.Direction.FORWARD, range=FRAMES - start, autosave=autosave))
    return request.id


def model_writes(log: MemoryLog, track: str, results: list[tuple[int, bool, bool]]) -> None:
    """Append what the tracker produces for `track` (frame after frame, as a worker does)."""
    state = log.state
    request = state.tracks[track].request
    for obj, found, end in results:
        oid = request.objects[obj % len(request.objects)]
        frame = state.tracks[track].last_frame.get(oid, request.start) + 1
        seed = state.label(oid, request.start)
        if frame >= FRAMES or oid not in state.objects or seed is None:
            continue
        try:
            log.do(TRACKER, ev.TrackFrameProduced(track=track, object=oid, frame=frame, shape=seed.shape if found else None, score=0.9, model="classical/flow@1"))
            if end:
                log.do(TRACKER, ev.TrackCompleted(track=track, frames=frame - request.start))
                return
        except DomainError:
            return


def outcome(state: LabelState, actor: str, command: object, panoptic: bool) -> object:
    try:
        return decide(state, actor, command, panoptic=panoptic)  # type: ignore[arg-type]
    except DomainError as error:
        return ("refused", error.code)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops_strategy, st.booleans(), person_command, st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.just(False)), max_size=6), model_results)
# A mask saved in the panoptic mode where an auto-saving track is about to write its object's mask:
# the trim decided before that mask lands leaves an overlap (found by this test; hence the rule).
@example(ops=[], autosave=True, command=("save_panoptic", ALICE, 2, 5, 1), earlier=[], results=[(0, True, False)] * 3)
def test_a_models_results_never_change_a_commuting_decision(ops, autosave, command, earlier, results):
    log = project_log()
    # Objects with labels to begin with (the ops may delete them), so that a track can run.
    for i, cls in enumerate(["bitmask", "bbox", "bitmask", "polygon"]):
        log.do(BOB, ev.ObjectCreated(object=f"o{i}", media="m1", class_id=cls))
        log.do(BOB, ev.LabelSaved(object=f"o{i}", frame=i % 2, shape=shape_for(cls, 7 * i), source=ev.Source.MANUAL))
    for op in ops:
        run(log, op)
    track = running_track(log, [f"o{i}" for i in range(5)], autosave)
    if track is None:
        return
    model_writes(log, track, earlier)  # some results may be in already, to review
    kind, user, obj, frame, param = command
    if kind in ("delete_label", "track") and log.state.labels.get(f"o{obj}"):
        frame = sorted(log.state.labels[f"o{obj}"])[param % len(log.state.labels[f"o{obj}"])]
    if kind in ("accept", "discard") and log.state.proposals.get(track):
        frame = sorted(f for _, f in log.state.proposals[track])[param % len(log.state.proposals[track])]
    cmd, panoptic = command_for(log.state, kind, f"o{obj}", frame, param)
    before = outcome(log.state, user, cmd, panoptic)
    if isinstance(before, tuple) or not commutes_with_models(before, panoptic):
        return  # refused as of the decision (nothing is appended), or decided again anyway
    model_writes(log, track, results)
    after = outcome(log.state, user, cmd, panoptic)
    assert after == before, f"{kind} by {user}: {before!r} before the model's results, {after!r} after"


def test_only_panoptic_masks_are_decided_again_for_a_models_results():
    mask = ev.LabelSaved(object="o0", frame=1, shape=rect_mask(0, 0, 5, 5), source=ev.Source.MANUAL)
    box = ev.LabelSaved(object="o1", frame=1, shape=shape_for("bbox", 3), source=ev.Source.MANUAL)
    first = ev.ObjectCreated(object="o2", media="m1", class_id="bitmask", label=ev.FirstLabel(frame=1, shape=rect_mask(0, 0, 5, 5), source=ev.Source.MANUAL))
    assert commutes_with_models(mask, False) and commutes_with_models(box, True) and commutes_with_models(first, False)
    assert not commutes_with_models(mask, True) and not commutes_with_models(first, True)
    assert not commutes_with_models(ev.TrackCancelled(track="t1"), False)
