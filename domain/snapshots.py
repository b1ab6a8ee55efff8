"""Snapshots of one media item's projection: the state a media item's stream folds to, as bytes.

A media item's state is a `LabelState` whose project-level dicts (`projects`, `classes`,
`media`) are the base projection's own dicts, shared, and whose other fields hold only that
media item's stream (see `media_view`). A snapshot stores those other fields, so loading one is
decoding it onto the base and then folding the stream's events after `seq`.

Layout (`encode_media_snapshot`): a small **manifest** and content-addressed **parts**, each
named in the manifest by its sha256:
- the labels, one part per block of `CHUNK_FRAMES` frames (the cells of every object on those
  frames), so a reader that needs the labels of a few frames (the page's window, a replay)
  decodes only their blocks, and a block nobody changed between two snapshots is the same part
  (the store keeps it once);
- an index of every label cell (object, frame and who/what made it: source, actor, model), so a
  windowed state still knows every cell: `decode_media_snapshot(..., window=...)` fills the cells
  outside the window with shared placeholder labels whose source, actor and model are right and
  whose shape is not — a state to read the window's labels and the other cells' heads from,
  never to decide commands on (nor to read the shapes a track requested later conditions on);
- the undo actions, one part per user, decoded lazily (`Action.encoded`);
- everything else (objects, proposals, tracks, segments, undo stacks) in the manifest itself.

Encoding: MessagePack through msgspec, with array-like structs. Dicts keep their insertion order
through the codec (some queries, e.g. `selected_proposals`, return cells in the order they were
produced); dicts keyed by tuples are written as lists of rows. Values are decoded as strictly as
events are; a manifest or part that does not decode, or a part that is missing, raises `SnapshotError`, and the caller rebuilds from the events instead.

`encode_media_state`/`decode_media_state` pack the manifest and its parts into one blob (tests,
and anything that wants a snapshot as one value).

Bump `PROJECTION_VERSION` whenever `LabelState`'s shape, a fold rule, or this encoding changes:
snapshots of another version are ignored (rebuilt from the events).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from masklog.domain.events import (
    Label,
    ObjectInfo,
    Proposal,
    SegmentProposed,
    Source,
    TrackRequested,
)
from masklog.domain.shapes import BBox, Shape
from masklog.domain.state import Action, LabelState, TrackInfo, UndoStacks

# 2: manifest + parts (label blocks, label index, actions per user). 3: blocks of 16 frames.
PROJECTION_VERSION = 3

# Frames per label block: a replay's window (16 frames) decodes one block, the page's window (64)
# four. 64 made a replay of a long item decode 2 MB of labels to show 16 frames (+4 ms p95 on a
# 50k-event item); smaller blocks are also shared more between snapshots.
CHUNK_FRAMES = 16

Window = tuple[int, int]  # inclusive first and last frame


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
    changes: msgspec.Raw


class _IndexRow(msgspec.Struct, array_like=True, frozen=True):
    """One object's label cells in the state's order: frames and, per frame, a `heads` row."""

    object: str
    frames: list[int]
    heads: list[int]


class _Manifest(msgspec.Struct, array_like=True, frozen=True):
    seq: int
    objects: dict[str, ObjectInfo]
    object_media: dict[str, str]
    proposals: list[tuple[str, list[tuple[str, int, Proposal]]]]
    tracks: list[_Track]
    segments: dict[str, SegmentProposed]
    segment_cells: list[tuple[str, int, str]]
    pending_objects: dict[str, tuple[str, str]]
    stacks: list[tuple[str, str, list[str], list[str]]]
    # (source, actor, model) of label cells; the index points into it.
    heads: list[tuple[Source, str, str | None]]
    index: list[_IndexRow]
    blocks: list[tuple[int, bytes]]  # block number (frame // CHUNK_FRAMES), part key
    action_order: list[str]  # the actions dict's order
    action_parts: list[bytes]  # part keys, one per actor


_encoder = msgspec.msgpack.Encoder()
_manifest_decoder = msgspec.msgpack.Decoder(_Manifest)
_block_decoder = msgspec.msgpack.Decoder(dict[str, dict[int, Label]])
_actions_decoder = msgspec.msgpack.Decoder(list[_Action])
_packed_decoder = msgspec.msgpack.Decoder(tuple[bytes, list[bytes]])

# What a placeholder label's shape is: never shown (a windowed state's cells outside the window).
_PLACEHOLDER_SHAPE = BBox(x=0, y=0, w=0, h=0)


def part_key(data: bytes) -> bytes:
    """The name of a part: its sha256 (the store keeps each part once, by it)."""
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class EncodedSnapshot:
    manifest: bytes
    parts: dict[bytes, bytes]  # part key -> part

    @property
    def size(self) -> int:
        return len(self.manifest) + sum(len(part) for part in self.parts.values())


@dataclass(frozen=True, slots=True)
class Manifest:
    """A decoded manifest: what a reader fetches before it decodes the state (`parts_for`)."""

    value: _Manifest

    @property
    def seq(self) -> int:
        return self.value.seq

    def parts_for(self, window: Window | None = None) -> list[bytes]:
        """The keys of the parts a state (windowed: only the window's label blocks, no actions) needs."""
        if window is None:
            return [key for _, key in self.value.blocks] + list(self.value.action_parts)
        first, last = window[0] // CHUNK_FRAMES, window[1] // CHUNK_FRAMES
        return [key for block, key in self.value.blocks if first <= block <= last]


def encode_media_snapshot(state: LabelState) -> EncodedSnapshot:
    """The media-level fields of `state` (not projects, classes or media) as a manifest and parts."""
    parts: dict[bytes, bytes] = {}

    def add(data: bytes) -> bytes:
        key = part_key(data)
        parts[key] = data
        return key

    heads: dict[tuple[Source, str, str | None], int] = {}
    index: list[_IndexRow] = []
    blocks: dict[int, dict[str, dict[int, Label]]] = {}
    for oid, frames in state.labels.items():
        rows: list[int] = []
        for frame, label in frames.items():
            head = (label.source, label.actor, label.model)
            number = heads.get(head)
            if number is None:
                number = heads[head] = len(heads)
            rows.append(number)
            block = blocks.get(frame // CHUNK_FRAMES)
            if block is None:
                block = blocks[frame // CHUNK_FRAMES] = {}
            cells = block.get(oid)
            if cells is None:
                cells = block[oid] = {}
            cells[frame] = label
        index.append(_IndexRow(oid, list(frames), rows))
    block_keys = [(number, add(_encoder.encode(blocks[number]))) for number in sorted(blocks)]

    by_actor: dict[str, list[_Action]] = {}
    for action in state.actions.values():
        changes = msgspec.Raw(action.encoded if action.encoded is not None else _encoder.encode(action.changes))
        by_actor.setdefault(action.actor, []).append(_Action(action.id, action.actor, action.media, changes))
    action_parts = [add(_encoder.encode(actions)) for _, actions in sorted(by_actor.items())]

    manifest = _Manifest(
        seq=state.seq,
        objects=state.objects,
        object_media=state.object_media,
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
        stacks=[(actor, media, s.undo, s.redo) for (actor, media), s in state.stacks.items()],
        heads=list(heads),
        index=index,
        blocks=block_keys,
        action_order=list(state.actions),
        action_parts=action_parts,
    )
    return EncodedSnapshot(_encoder.encode(manifest), parts)


def read_manifest(data: bytes) -> Manifest:
    """Decode a manifest. Raises SnapshotError."""
    try:
        return Manifest(_manifest_decoder.decode(data))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
        raise SnapshotError(f"snapshot does not decode: {error}") from None


def decode_media_snapshot(manifest: Manifest, parts: Mapping[bytes, bytes], base: LabelState, window: Window | None = None) -> LabelState:
    """The media state a manifest and its parts hold, sharing `base`'s project-level dicts.

    `window` (inclusive frames): decode only the labels on those frames (and no undo actions);
    the other cells hold placeholders with the right source, actor and model (see the module's
    docstring): read such a state, never decide on it. Raises SnapshotError (a part missing,
    damaged or not decoding)."""
    value = manifest.value
    try:
        decoded: dict[int, dict[str, dict[int, Label]]] = {}
        for number, key in value.blocks:
            if window is None or window[0] // CHUNK_FRAMES <= number <= window[1] // CHUNK_FRAMES:
                decoded[number] = _block_decoder.decode(_part(parts, key))
        actions: dict[str, Action] = {}
        if window is None:
            for key in value.action_parts:
                for a in _actions_decoder.decode(_part(parts, key)):
                    actions[a.id] = Action(a.id, a.actor, a.media, [], bytes(a.changes))
            if len(actions) != len(value.action_order):
                raise SnapshotError("the actions do not match their order")
            actions = {aid: actions[aid] for aid in value.action_order}
        labels = _labels(value, decoded, window)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, KeyError, IndexError) as error:
        raise SnapshotError(f"snapshot does not decode: {error!r}") from None

    state = media_view(base)
    state.seq = value.seq
    state.objects = value.objects
    state.object_media = value.object_media
    state.labels = labels
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
    state.actions = actions
    state.stacks = {(actor, media): UndoStacks(undo, redo) for actor, media, undo, redo in value.stacks}
    return state


def _part(parts: Mapping[bytes, bytes], key: bytes) -> bytes:
    # Parts come from the store, which checks each against its key (`load_parts`).
    data = parts.get(key)
    if data is None:
        raise SnapshotError(f"part {key.hex()[:12]} is missing")
    return data


def _labels(value: _Manifest, blocks: dict[int, dict[str, dict[int, Label]]], window: Window | None) -> dict[str, dict[int, Label]]:
    """The labels dict in the state's order, from the decoded blocks (and placeholders)."""
    labels: dict[str, dict[int, Label]] = {}
    if window is None:
        for row in value.index:
            labels[row.object] = {frame: blocks[frame // CHUNK_FRAMES][row.object][frame] for frame in row.frames}
        return labels
    placeholders = [
        Label(written_by="", shape=_PLACEHOLDER_SHAPE, source=source, actor=actor, model=model) for source, actor, model in value.heads
    ]
    first, last = window
    for row in value.index:
        cells: dict[int, Label] = {}
        for frame, head in zip(row.frames, row.heads, strict=True):
            cells[frame] = blocks[frame // CHUNK_FRAMES][row.object][frame] if first <= frame <= last else placeholders[head]
        labels[row.object] = cells
    return labels


def encode_media_state(state: LabelState) -> bytes:
    """A media state as one blob: its manifest and parts packed together."""
    encoded = encode_media_snapshot(state)
    return _encoder.encode((encoded.manifest, list(encoded.parts.values())))


def decode_media_state(data: bytes, base: LabelState) -> LabelState:
    """The media state one blob of `encode_media_state` holds. Raises SnapshotError."""
    try:
        manifest, parts = _packed_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
        raise SnapshotError(f"snapshot does not decode: {error}") from None
    return decode_media_snapshot(read_manifest(manifest), {part_key(part): part for part in parts}, base)


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
        "actions": [(aid, (a.actor, a.media, a.decoded_changes())) for aid, a in state.actions.items() if a.media == media],
        "stacks": [(key, (s.undo, s.redo)) for key, s in state.stacks.items() if key[1] == media],
    }
