"""Snapshots of one media item's projection: the state a media item's stream folds to, as bytes.

A media item's state is a `LabelState` whose project-level dicts (`projects`, `classes`,
`media`) are the base projection's own dicts, shared, and whose other fields hold only that
media item's stream (see `media_view`). A snapshot stores those other fields, so loading one is
`decode_media_state(data, base)` and then folding the stream's events after `seq`.

Encoding: MessagePack through msgspec (about half the size of JSON for RLE-heavy states and
faster to decode), with array-like structs. Dicts keep their insertion order through the codec
(some queries, e.g. `selected_proposals`, return cells in the order they were produced); dicts
keyed by tuples are written as lists of rows. Values are decoded as strictly as events are;
a snapshot that does not decode (or holds a value over a length limit that its events were
let in with) raises `SnapshotError`, and the caller rebuilds from the events instead.

Bump `PROJECTION_VERSION` whenever `LabelState`'s shape, a fold rule, or this encoding changes:
snapshots of another version are ignored (rebuilt from the events).
"""

from __future__ import annotations

import msgspec

from masklog.domain.events import (
    Change,
    Label,
    ObjectInfo,
    Proposal,
    SegmentProposed,
    TrackRequested,
)
from masklog.domain.shapes import Shape
from masklog.domain.state import Action, LabelState, TrackInfo, UndoStacks

PROJECTION_VERSION = 1


class SnapshotError(ValueError):
    """Snapshot bytes that do not decode to a media state (another encoding, or damaged)."""


class _Track(msgspec.Struct, array_like=True, frozen=True):
    id: str
    request: TrackRequested
    actor: str
    seq: int
    status: str
    produced: int
    reason: str | None
    last_frame: dict[str, int]
    lost_streak: dict[str, int]
    conditioning: dict[str, Shape]
    keyframes: dict[str, dict[int, Shape]]


class _Action(msgspec.Struct, array_like=True, frozen=True):
    id: str
    actor: str
    media: str
    changes: list[Change]


class _MediaState(msgspec.Struct, array_like=True, frozen=True):
    seq: int
    objects: dict[str, ObjectInfo]
    object_media: dict[str, str]
    labels: dict[str, dict[int, Label]]
    proposals: list[tuple[str, list[tuple[str, int, Proposal]]]]
    tracks: list[_Track]
    segments: dict[str, SegmentProposed]
    segment_cells: list[tuple[str, int, str]]
    pending_objects: dict[str, tuple[str, str]]
    actions: list[_Action]
    stacks: list[tuple[str, str, list[str], list[str]]]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_MediaState)


def encode_media_state(state: LabelState) -> bytes:
    """The media-level fields of `state` (not projects, classes or media) as bytes."""
    value = _MediaState(
        seq=state.seq,
        objects=state.objects,
        object_media=state.object_media,
        labels=state.labels,
        proposals=[(track, [(oid, frame, p) for (oid, frame), p in cells.items()]) for track, cells in state.proposals.items()],
        tracks=[
            _Track(
                id=track_id,
                request=info.request,
                actor=info.actor,
                seq=info.seq,
                status=info.status,
                produced=info.produced,
                reason=info.reason,
                last_frame=info.last_frame,
                lost_streak=info.lost_streak,
                conditioning=info.conditioning,
                keyframes=info.keyframes,
            )
            for track_id, info in state.tracks.items()
        ],
        segments=state.segments,
        segment_cells=[(oid, frame, prompt) for (oid, frame), prompt in state.segment_cells.items()],
        pending_objects=state.pending_objects,
        actions=[_Action(id=a.id, actor=a.actor, media=a.media, changes=a.changes) for a in state.actions.values()],
        stacks=[(actor, media, s.undo, s.redo) for (actor, media), s in state.stacks.items()],
    )
    return _encoder.encode(value)


def decode_media_state(data: bytes, base: LabelState) -> LabelState:
    """The media state `data` holds, sharing `base`'s project-level dicts. Raises SnapshotError."""
    try:
        value = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
        raise SnapshotError(f"snapshot does not decode: {error}") from None
    state = media_view(base)
    state.seq = value.seq
    state.objects = value.objects
    state.object_media = value.object_media
    state.labels = value.labels
    state.proposals = {track: {(oid, frame): p for oid, frame, p in cells} for track, cells in value.proposals}
    state.tracks = {
        t.id: TrackInfo(
            request=t.request,
            actor=t.actor,
            seq=t.seq,
            status=t.status,
            produced=t.produced,
            reason=t.reason,
            last_frame=t.last_frame,
            lost_streak=t.lost_streak,
            conditioning=t.conditioning,
            keyframes=t.keyframes,
        )
        for t in value.tracks
    }
    state.segments = value.segments
    state.segment_cells = {(oid, frame): prompt for oid, frame, prompt in value.segment_cells}
    state.pending_objects = value.pending_objects
    state.actions = {a.id: Action(id=a.id, actor=a.actor, media=a.media, changes=a.changes) for a in value.actions}
    state.stacks = {(actor, media): UndoStacks(undo, redo) for actor, media, undo, redo in value.stacks}
    return state


def media_view(base: LabelState) -> LabelState:
    """An empty media state (as of position 0) sharing `base`'s projects, classes and media."""
    return LabelState(projects=base.projects, classes=base.classes, media=base.media)


def media_part(state: LabelState, media: str) -> dict[str, object]:
    """The part of `state` that belongs to `media`, as comparable values (for tests: the media
    state folded from the media's own stream must have the same part as a full fold). Dicts
    become lists of items, so their order is compared too. `seq` is left out: a full fold is
    as of the last event of any stream."""

    def of_object(object_id: str) -> str | None:
        found = state.object_media.get(object_id)
        if found is None and object_id in state.pending_objects:
            found = state.pending_objects[object_id][0]
        return found

    tracks = {tid for tid, info in state.tracks.items() if info.request.media == media}
    return {
        "objects": [(oid, info) for oid, info in state.objects.items() if info.media == media],
        "object_media": [(oid, m) for oid, m in state.object_media.items() if m == media],
        "labels": [
            (oid, list(frames.items())) for oid, frames in state.labels.items() if state.object_media.get(oid) == media
        ],
        "proposals": [(tid, list(cells.items())) for tid, cells in state.proposals.items() if tid in tracks],
        "tracks": [(tid, info) for tid, info in state.tracks.items() if tid in tracks],
        "segments": [(prompt, s) for prompt, s in state.segments.items() if of_object(s.object) == media],
        "segment_cells": [(cell, prompt) for cell, prompt in state.segment_cells.items() if of_object(cell[0]) == media],
        "pending_objects": [(oid, value) for oid, value in state.pending_objects.items() if value[0] == media],
        "actions": [(aid, action) for aid, action in state.actions.items() if action.media == media],
        "stacks": [(key, (s.undo, s.redo)) for key, s in state.stacks.items() if key[1] == media],
    }
