"""The projection: the labels (and everything around them) that the log adds up to.

`fold(events)` builds a `LabelState` from scratch; `state.apply(event)` advances it by one event.
`apply` mutates in place because a log of a million events must rebuild in seconds; call
`copy()` to branch. Nothing here does I/O and nothing depends on the clock: the same events give
the same state, which is what replay (C3) relies on.

Undo bookkeeping lives here too: each user action on a media item is recorded as the list of
cell changes it made (`Change`), on that user's undo stack for that media item. `domain.decide`
computes compensations from these records against the state at undo time.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from masklog.domain.events import (
    Change,
    ClassAdded,
    Direction,
    Event,
    Label,
    LabelChange,
    LabelDeleted,
    LabelSaved,
    MediaAdded,
    ObjectChange,
    ObjectCreated,
    ObjectDeleted,
    ObjectInfo,
    ObjectReclassed,
    ObjectRenamed,
    ProjectCreated,
    PromptAdded,
    Proposal,
    ProposalChange,
    Redone,
    SegmentProposed,
    Source,
    TrackCancelled,
    TrackCompleted,
    TrackedAccepted,
    TrackedDiscarded,
    TrackFailed,
    TrackFrameProduced,
    TrackRequested,
    Undone,
)
from masklog.domain.shapes import Shape

_changes_decoder = msgspec.msgpack.Decoder(list[Change])

# How many actions per user and media item can be undone; older ones fall off, as in any editor.
UNDO_DEPTH = 200

# Labels a person made (drawn, clicked with SAM, imported from their files, or a tracked result a
# person edited, which is saved as manual): keyframes no tracker result silently replaces.
PEOPLE_SOURCES: frozenset[Source] = frozenset({Source.MANUAL, Source.SAM, Source.IMPORTED})


def is_persons(label: Label | None) -> bool:
    """Whether `label` is a person's (a keyframe), not a tracker's result."""
    return label is not None and label.source in PEOPLE_SOURCES

ObjectId = str
Frame = int
TrackId = str


class TrackStatus:
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(slots=True)
class TrackInfo:
    request: TrackRequested
    actor: str
    seq: int
    status: str = TrackStatus.RUNNING
    produced: int = 0
    reason: str | None = None
    # Last frame produced per object: where a resumed track picks up.
    last_frame: dict[ObjectId, Frame] = field(default_factory=dict)
    # Consecutive frames each object has been lost on, up to its last produced frame (T5).
    lost_streak: dict[ObjectId, int] = field(default_factory=dict)
    # Each object's label on the start frame when the track was requested: what the models are
    # conditioned on, also when a resumed track runs again from the start (exact results after
    # a restart). Dropped once the track ends.
    conditioning: dict[ObjectId, Shape] = field(default_factory=dict)
    # A track that keeps people's labels: each object's people's labels on the other frames of
    # its range when it was requested, the keyframes it conditions on (and interpolates
    # between). Captured at request, like `conditioning`, so a resumed track runs the same.
    keyframes: dict[ObjectId, dict[Frame, Shape]] = field(default_factory=dict)

    def stopped(self, object_id: ObjectId) -> bool:
        """Whether the annotation interval has stopped this object: lost on `interval`
        consecutive frames (an interval of 0 never stops an object)."""
        interval = self.request.interval
        return interval > 0 and self.lost_streak.get(object_id, 0) >= interval


@dataclass(slots=True, eq=False)
class Action:
    """One undoable user action: the cells it changed, in order.

    An action loaded from a snapshot keeps its changes `encoded` (MessagePack) until something
    asks for them (`LabelState.action_changes`): most are never undone, and decoding a media
    item's 200 actions per user is most of what loading it would cost."""

    id: str
    actor: str
    media: str
    changes: list[Change]
    encoded: bytes | None = None

    def decoded_changes(self) -> list[Change]:
        if self.encoded is not None:
            self.changes = _changes_decoder.decode(self.encoded)
            self.encoded = None
        return self.changes

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Action):
            return NotImplemented
        return (self.id, self.actor, self.media) == (other.id, other.actor, other.media) and self.decoded_changes() == other.decoded_changes()

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq would be


@dataclass(slots=True)
class UndoStacks:
    undo: list[str] = field(default_factory=list)
    redo: list[str] = field(default_factory=list)


@dataclass
class LabelState:
    seq: int = 0
    projects: dict[str, ProjectCreated] = field(default_factory=dict)
    classes: dict[str, ClassAdded] = field(default_factory=dict)
    media: dict[str, MediaAdded] = field(default_factory=dict)
    # Live objects only; `object_media` remembers every object id ever made so ids are never reused.
    objects: dict[ObjectId, ObjectInfo] = field(default_factory=dict)
    object_media: dict[ObjectId, str] = field(default_factory=dict)
    labels: dict[ObjectId, dict[Frame, Label]] = field(default_factory=dict)
    proposals: dict[TrackId, dict[tuple[ObjectId, Frame], Proposal]] = field(default_factory=dict)
    tracks: dict[TrackId, TrackInfo] = field(default_factory=dict)
    # The model's latest answer per prompt (SAM mode), kept until a newer prompt on the same
    # object and frame replaces it: saving a prompt's segment reads it from here.
    segments: dict[str, SegmentProposed] = field(default_factory=dict)
    segment_cells: dict[tuple[ObjectId, Frame], str] = field(default_factory=dict)
    # Objects prompted for but not created yet (SAM on a new object): id -> (media, class).
    # Saving a segment of theirs creates the object; an abandoned preview leaves only this.
    pending_objects: dict[ObjectId, tuple[str, str]] = field(default_factory=dict)
    actions: dict[str, Action] = field(default_factory=dict)
    stacks: dict[tuple[str, str], UndoStacks] = field(default_factory=dict)

    # ---- queries -------------------------------------------------------------------------

    def label(self, object_id: ObjectId, frame: Frame) -> Label | None:
        frames = self.labels.get(object_id)
        return frames.get(frame) if frames else None

    def objects_of(self, media: str) -> dict[ObjectId, ObjectInfo]:
        return {oid: info for oid, info in self.objects.items() if info.media == media}

    def frame_labels(self, media: str, frame: Frame) -> dict[ObjectId, Label]:
        """The labels shown on one frame of a media item, by object."""
        out: dict[ObjectId, Label] = {}
        for oid, info in self.objects.items():
            if info.media == media:
                value = self.labels.get(oid, {}).get(frame)
                if value is not None:
                    out[oid] = value
        return out

    def media_labels(self, media: str) -> dict[tuple[ObjectId, Frame], Label]:
        return {
            (oid, frame): value
            for oid, info in self.objects.items()
            if info.media == media
            for frame, value in self.labels.get(oid, {}).items()
        }

    def stacks_of(self, actor: str, media: str) -> UndoStacks:
        return self.stacks.get((actor, media)) or UndoStacks()

    def action_changes(self, action_id: str) -> list[Change]:
        """The cell changes of an action on an undo or redo stack (decoded on first use)."""
        return self.actions[action_id].decoded_changes()

    def copy(self) -> LabelState:
        """An independent copy (values are frozen structs, so only containers are copied)."""
        new = LabelState(
            seq=self.seq,
            projects=dict(self.projects),
            classes=dict(self.classes),
            media=dict(self.media),
            objects=dict(self.objects),
            object_media=dict(self.object_media),
            labels={oid: dict(frames) for oid, frames in self.labels.items()},
            proposals={tid: dict(cells) for tid, cells in self.proposals.items()},
            tracks={tid: _copy.copy(info) for tid, info in self.tracks.items()},
            segments=dict(self.segments),
            segment_cells=dict(self.segment_cells),
            pending_objects=dict(self.pending_objects),
            actions=dict(self.actions),
            stacks={key: UndoStacks(list(s.undo), list(s.redo)) for key, s in self.stacks.items()},
        )
        for info in new.tracks.values():
            info.keyframes = {oid: dict(frames) for oid, frames in info.keyframes.items()}
            info.last_frame = dict(info.last_frame)
            info.lost_streak = dict(info.lost_streak)
        return new

    # ---- cells: the unit undo works on ----------------------------------------------------

    def cell(self, change: Change) -> object:
        """The current value of the cell a change refers to."""
        if type(change) is LabelChange:
            return self.label(change.object, change.frame)
        if type(change) is ObjectChange:
            return self.objects.get(change.object)
        assert type(change) is ProposalChange
        return self.proposals.get(change.track, {}).get((change.object, change.frame))

    def _set_label(self, object_id: ObjectId, frame: Frame, value: Label | None) -> None:
        if value is None:
            frames = self.labels.get(object_id)
            if frames is not None:
                frames.pop(frame, None)
                if not frames:
                    del self.labels[object_id]
        else:
            frames = self.labels.get(object_id)
            if frames is None:
                frames = self.labels[object_id] = {}
            frames[frame] = value

    def _set_object(self, object_id: ObjectId, value: ObjectInfo | None) -> None:
        if value is None:
            self.objects.pop(object_id, None)
        else:
            self.objects[object_id] = value
            self.object_media[object_id] = value.media

    def _set_proposal(self, track: TrackId, object_id: ObjectId, frame: Frame, value: Proposal | None) -> None:
        if value is None:
            cells = self.proposals.get(track)
            if cells is not None:
                cells.pop((object_id, frame), None)
                if not cells:
                    del self.proposals[track]
        else:
            cells = self.proposals.get(track)
            if cells is None:
                cells = self.proposals[track] = {}
            cells[(object_id, frame)] = value

    def _write(self, change: Change) -> None:
        if type(change) is LabelChange:
            self._set_label(change.object, change.frame, change.after)
        elif type(change) is ObjectChange:
            self._set_object(change.object, change.after)
        else:
            assert type(change) is ProposalChange
            self._set_proposal(change.track, change.object, change.frame, change.after)

    # ---- apply ----------------------------------------------------------------------------

    def apply(self, event: Event) -> LabelState:
        if event.seq <= self.seq:
            raise ValueError(f"event seq {event.seq} is not after state seq {self.seq}")
        handler = _HANDLERS.get(type(event.body))
        if handler is not None:
            handler(self, event)
        self.seq = event.seq
        return self

    def _record(self, event: Event, media: str, changes: list[Change]) -> None:
        """Put a user's action on their undo stack; a new action clears their redo stack."""
        if not event.actor.startswith("user:") or not changes:
            return
        stacks = self._stacks_for(event.actor, media)
        for dropped in stacks.redo:
            self.actions.pop(dropped, None)
        stacks.redo.clear()
        self._push(stacks.undo, Action(event.id, event.actor, media, changes))

    def _stacks_for(self, actor: str, media: str) -> UndoStacks:
        # get-then-create: setdefault would build a throw-away UndoStacks on every action.
        stacks = self.stacks.get((actor, media))
        if stacks is None:
            stacks = self.stacks[(actor, media)] = UndoStacks()
        return stacks

    def _push(self, stack: list[str], action: Action) -> None:
        self.actions[action.id] = action
        stack.append(action.id)
        if len(stack) > UNDO_DEPTH:
            self.actions.pop(stack.pop(0), None)

    def _on_project_created(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, ProjectCreated)
        self.projects[body.project] = body

    def _on_class_added(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, ClassAdded)
        self.classes[body.class_id] = body

    def _on_media_added(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, MediaAdded)
        self.media[body.media] = body

    def _on_object_created(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, ObjectCreated)
        info = ObjectInfo(media=body.media, class_id=body.class_id, created_by=event.actor, name=body.name)
        self._set_object(body.object, info)
        if self.pending_objects:
            self.pending_objects.pop(body.object, None)
        changes: list[Change] = [ObjectChange(object=body.object, before=None, after=info)]
        first = body.label
        if first is not None:
            # The object and its first label are one action: one undo removes both.
            value = Label(
                written_by=event.id,
                shape=first.shape,
                source=first.source,
                actor=event.actor,
                model=first.model,
                prompt=first.prompt,
                score=first.score,
            )
            before = self.label(body.object, first.frame)
            self._set_label(body.object, first.frame, value)
            changes.append(LabelChange(object=body.object, frame=first.frame, before=before, after=value))
        self._record(event, body.media, changes)

    def _on_object_deleted(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, ObjectDeleted)
        info = self.objects.get(body.object)
        if info is None:
            return
        changes: list[Change] = [
            LabelChange(object=body.object, frame=frame, before=value, after=None)
            for frame, value in sorted(self.labels.pop(body.object, {}).items())
        ]
        changes.append(ObjectChange(object=body.object, before=info, after=None))
        self._set_object(body.object, None)
        self._record(event, info.media, changes)

    def _on_object_reclassed(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, ObjectReclassed)
        before = self.objects.get(body.object)
        if before is None:
            return
        after = ObjectInfo(media=before.media, class_id=body.class_id, created_by=before.created_by, name=before.name)
        self._set_object(body.object, after)
        self._record(event, before.media, [ObjectChange(object=body.object, before=before, after=after)])

    def _on_object_renamed(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, ObjectRenamed)
        before = self.objects.get(body.object)
        if before is None:
            return
        after = ObjectInfo(media=before.media, class_id=before.class_id, created_by=before.created_by, name=object_name(body.name))
        self._set_object(body.object, after)
        self._record(event, before.media, [ObjectChange(object=body.object, before=before, after=after)])

    def _on_label_saved(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, LabelSaved)
        media = self.object_media.get(body.object)
        if media is None:
            return
        value = Label(
            written_by=event.id,
            shape=body.shape,
            source=body.source,
            actor=event.actor,
            model=body.model,
            prompt=body.prompt,
            score=body.score,
            edited=body.edited,
        )
        before = self.label(body.object, body.frame)
        self._set_label(body.object, body.frame, value)
        if event.actor.startswith("user:"):
            self._record(event, media, [LabelChange(object=body.object, frame=body.frame, before=before, after=value)])

    def _on_label_deleted(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, LabelDeleted)
        before = self.label(body.object, body.frame)
        if before is None:
            return
        self._set_label(body.object, body.frame, None)
        media = self.object_media[body.object]
        self._record(event, media, [LabelChange(object=body.object, frame=body.frame, before=before, after=None)])

    def _on_prompt_added(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, PromptAdded)
        if body.media is not None and body.class_id is not None and body.object not in self.object_media:
            self.pending_objects[body.object] = (body.media, body.class_id)

    def _on_segment_proposed(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, SegmentProposed)
        cell = (body.object, body.frame)
        previous = self.segment_cells.get(cell)
        if previous is not None and previous != body.prompt:
            self.segments.pop(previous, None)
        self.segment_cells[cell] = body.prompt
        self.segments[body.prompt] = body

    def _on_track_requested(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, TrackRequested)
        conditioning = {}
        for object_id in body.objects:
            label = self.label(object_id, body.start)
            if label is not None:
                conditioning[object_id] = label.shape
        keyframes = self._keyframes(body) if body.keep_people is True else {}
        self.tracks[event.id] = TrackInfo(request=body, actor=event.actor, seq=event.seq, conditioning=conditioning, keyframes=keyframes)
        if body.replaces is not None:
            replaced = self.replaced_proposals(body)
            changes: list[Change] = [
                ProposalChange(track=body.replaces, object=oid, frame=frame, before=proposal, after=None)
                for oid, frame, proposal in replaced
            ]
            for change in changes:
                self._write(change)
            self._record(event, body.media, changes)

    def _keyframes(self, request: TrackRequested) -> dict[ObjectId, dict[Frame, Shape]]:
        """People's labels of the request's objects on the frames of its range after the start."""
        step = Direction(request.direction).step
        out: dict[ObjectId, dict[Frame, Shape]] = {}
        for object_id in request.objects:
            frames = {
                frame: label.shape
                for frame, label in sorted(self.labels.get(object_id, {}).items())
                if 0 < (frame - request.start) * step < request.range and is_persons(label)
            }
            if frames:
                out[object_id] = frames
        return out

    def conflicts(self, track: TrackId) -> list[tuple[ObjectId, Frame]]:
        """A track's unreviewed results on cells that hold a person's label: what review shows
        as conflicts, and what Save keeps the person's label on unless told to overwrite."""
        return [cell for cell in self.proposals.get(track, {}) if is_persons(self.label(*cell))]

    def replaced_proposals(self, request: TrackRequested) -> list[tuple[ObjectId, Frame, Proposal]]:
        """The unreviewed results of `request.replaces` that a re-track from `request.start`
        replaces: its objects' results from the start frame onwards in the direction."""
        if request.replaces is None:
            return []
        step = Direction(request.direction).step
        objects = set(request.objects)
        return [
            (oid, frame, proposal)
            for (oid, frame), proposal in self.proposals.get(request.replaces, {}).items()
            if oid in objects and (frame - request.start) * step >= 0
        ]

    def _on_track_frame_produced(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, TrackFrameProduced)
        track = self.tracks.get(body.track)
        if track is None:
            return
        track.produced += 1
        track.last_frame[body.object] = body.frame
        if body.shape is None:
            track.lost_streak[body.object] = track.lost_streak.get(body.object, 0) + 1
            return
        if track.lost_streak:
            track.lost_streak.pop(body.object, None)
        if body.object not in self.objects:
            return
        if track.request.autosave and not (track.request.keep_people is True and is_persons(self.label(body.object, body.frame))):
            # Automated labelling (T5) writes labels directly; they are the model's, not undoable.
            self._set_label(body.object, body.frame, _tracked_label(event.id, event.actor, body.track, body.shape, body.model, body.score))
        else:
            proposal = Proposal(written_by=event.id, shape=body.shape, score=body.score, model=body.model)
            cells = self.proposals.get(body.track)
            if cells is None:
                cells = self.proposals[body.track] = {}
            cells[(body.object, body.frame)] = proposal

    def _finish_track(self, track_id: TrackId, status: str, reason: str | None = None) -> None:
        track = self.tracks.get(track_id)
        if track is not None:
            track.status = status
            track.reason = reason
            track.conditioning = {}
            track.keyframes = {}

    def _on_track_completed(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, TrackCompleted)
        self._finish_track(body.track, TrackStatus.COMPLETED)

    def _on_track_cancelled(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, TrackCancelled)
        self._finish_track(body.track, TrackStatus.CANCELLED)

    def _on_track_failed(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, TrackFailed)
        self._finish_track(body.track, TrackStatus.FAILED, body.reason)

    def selected_proposals(
        self, track: TrackId, objects: list[str] | None, frames: list[int] | None
    ) -> list[tuple[ObjectId, Frame, Proposal]]:
        """A track's unreviewed results picked by object and frame (None: all), in the order
        they were produced."""
        cells = self.proposals.get(track)
        if not cells:
            return []
        if objects is None and frames is None:
            return [(oid, frame, value) for (oid, frame), value in cells.items()]
        wanted_objects = set(objects) if objects is not None else None
        wanted_frames = set(frames) if frames is not None else None
        return [
            (oid, frame, value)
            for (oid, frame), value in cells.items()
            if (wanted_objects is None or oid in wanted_objects) and (wanted_frames is None or frame in wanted_frames)
        ]

    def _on_tracked_accepted(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, TrackedAccepted)
        track = self.tracks.get(body.track)
        if track is None:
            return
        # Accepting a whole track is the common case and the hot path of a rebuild: the loop
        # below writes cells directly rather than through _write's dispatch.
        track_id, actor, written_by = body.track, event.actor, event.id
        labels, live = self.labels, self.objects
        keep = track.request.keep_people is True and body.overwrite is not True
        changes: list[Change] = []
        selected = self.selected_proposals(track_id, body.objects, body.frames)
        if body.objects is None and body.frames is None:
            self.proposals.pop(track_id, None)  # all of them: drop the track's cells at once
        else:
            for oid, frame, _ in selected:
                self._set_proposal(track_id, oid, frame, None)
        for oid, frame, proposal in selected:
            changes.append(ProposalChange(track=track_id, object=oid, frame=frame, before=proposal, after=None))
            if oid in live and not (keep and is_persons(labels.get(oid, {}).get(frame))):
                value = _tracked_label(written_by, actor, track_id, proposal.shape, proposal.model, proposal.score)
                frames = labels.get(oid)
                if frames is None:
                    frames = labels[oid] = {}
                changes.append(LabelChange(object=oid, frame=frame, before=frames.get(frame), after=value))
                frames[frame] = value
        self._record(event, track.request.media, changes)

    def _on_tracked_discarded(self, event: Event) -> None:
        body = event.body
        assert isinstance(body, TrackedDiscarded)
        track = self.tracks.get(body.track)
        if track is None:
            return
        changes: list[Change] = [
            ProposalChange(track=body.track, object=oid, frame=frame, before=proposal, after=None)
            for oid, frame, proposal in self.selected_proposals(body.track, body.objects, body.frames)
        ]
        for change in changes:
            self._write(change)
        self._record(event, track.request.media, changes)

    def _on_undone_or_redone(self, event: Event) -> None:
        """Write the compensating changes, then move the action between the user's stacks: an
        undo takes its target off the undo stack and pushes itself on the redo stack, a redo the
        other way round (so a redo can itself be undone)."""
        body = event.body
        assert isinstance(body, (Undone, Redone))
        for change in body.changes:
            self._write(change)
        stacks = self._stacks_for(event.actor, body.media)
        taken_from, pushed_to = (stacks.undo, stacks.redo) if type(body) is Undone else (stacks.redo, stacks.undo)
        if taken_from and taken_from[-1] == body.target:
            taken_from.pop()
            self.actions.pop(body.target, None)
        self._push(pushed_to, Action(event.id, event.actor, body.media, list(body.changes)))


def object_name(text: str) -> str | None:
    """The name a rename's text gives an object: trimmed; None (unnamed) when nothing is left."""
    return text.strip() or None


def _tracked_label(written_by: str, actor: str, track: TrackId, shape: Shape, model: str, score: float) -> Label:
    """A tracker's result as a label: written at once by an autosaving track (T5), or when a
    user accepts the track's proposal (then `actor` is that user)."""
    return Label(written_by=written_by, shape=shape, source=Source.TRACKED, actor=actor, model=model, track=track, score=score)


_HANDLERS: dict[type, Callable[[LabelState, Event], None]] = {
    ProjectCreated: LabelState._on_project_created,
    ClassAdded: LabelState._on_class_added,
    MediaAdded: LabelState._on_media_added,
    ObjectCreated: LabelState._on_object_created,
    ObjectDeleted: LabelState._on_object_deleted,
    ObjectReclassed: LabelState._on_object_reclassed,
    ObjectRenamed: LabelState._on_object_renamed,
    LabelSaved: LabelState._on_label_saved,
    LabelDeleted: LabelState._on_label_deleted,
    PromptAdded: LabelState._on_prompt_added,
    SegmentProposed: LabelState._on_segment_proposed,
    TrackRequested: LabelState._on_track_requested,
    TrackFrameProduced: LabelState._on_track_frame_produced,
    TrackCompleted: LabelState._on_track_completed,
    TrackCancelled: LabelState._on_track_cancelled,
    TrackFailed: LabelState._on_track_failed,
    TrackedAccepted: LabelState._on_tracked_accepted,
    TrackedDiscarded: LabelState._on_tracked_discarded,
    Undone: LabelState._on_undone_or_redone,
    Redone: LabelState._on_undone_or_redone,
}


def fold(events: Iterable[Event], state: LabelState | None = None) -> LabelState:
    """Apply events in order to `state` (a new empty state by default)."""
    state = state if state is not None else LabelState()
    apply = state.apply
    for event in events:
        apply(event)
    return state


def state_at(events: Iterable[Event], seq: int) -> LabelState:
    """The state as it was right after position `seq` (C3 replay)."""
    state = LabelState()
    for event in events:
        if event.seq > seq:
            break
        state.apply(event)
    return state
