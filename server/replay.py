"""The projection as it was at an earlier position (C3), rebuilt from the nearest snapshot.

A media item's labels depend only on its own stream and its project's. Its state as of position
S is the newest snapshot of its stream at or before S (the store keeps older ones at growing
intervals, so there is one not far before any position) plus its stream's events up to S, on
top of its project's state as of S (the project's stream folded up to S: small). Without a
snapshot (a store that keeps none, or none that old yet) the stream folds from position 0.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from masklog.domain.events import Event, MediaAdded, media_stream, project_stream
from masklog.domain.snapshots import Window, media_view
from masklog.domain.state import LabelState
from masklog.server.snapshot_io import load_media_snapshot
from masklog.server.store import EventStore

log = logging.getLogger("masklog.replay")


class Live(Protocol):
    """What replay needs of the ledger: its head and its live media states."""

    @property
    def head(self) -> int: ...

    async def state_of(self, media: str) -> LabelState: ...


async def project_as_of(store: EventStore, project: str, seq: int) -> LabelState:
    """The project-level state (the project, its classes and media items) after position `seq`."""
    state = LabelState()
    async for batch in store.iter_batches(0, stream=project_stream(project), upto=seq):
        for event in batch:
            state.apply(event)
    return state


async def media_as_of(store: EventStore, base: LabelState, media: str, seq: int, window: Window | None = None) -> LabelState:
    """Media item `media`'s state after position `seq`, sharing `base`'s project-level dicts
    (the project's state as of `seq`): its newest snapshot at or before `seq` and its stream's
    events after that, up to `seq`. With `window` (inclusive frames), only those frames' labels
    are real: a state to read, never to decide on (see `decode_media_snapshot`)."""
    stream = media_stream(media)
    loaded = await load_media_snapshot(store, media, base, at_or_before=seq, window=window)
    state = loaded.state if loaded is not None else media_view(base)
    async for batch in store.iter_batches(state.seq, stream=stream, upto=seq):
        for event in batch:
            state.apply(event)
    return state


async def replay_media(store: EventStore, media: MediaAdded, seq: int, window: Window | None = None) -> LabelState:
    """A media item's state as of `seq`, its `seq` the last position of its own or its project's
    stream up to `seq` (as a fold of the two streams would have it); `window` as for `media_as_of`."""
    base = await project_as_of(store, media.project, seq)
    state = await media_as_of(store, base, media.media, seq, window)
    state.seq = max(state.seq, base.seq)
    return state


async def state_as_of(store: EventStore, live: Live, media: MediaAdded, seq: int | None, *, window: Window | None = None) -> LabelState:
    """A media item's live state, or its state as of `seq`. `window` (inclusive frames): the
    caller reads label shapes only in those frames (and only source, actor and model elsewhere),
    so a replay decodes only those frames' labels; never decide on such a state."""
    if seq is None or seq >= live.head:
        return await live.state_of(media.media)
    return await replay_media(store, media, seq, window)


async def replay_project(store: EventStore, project: str, media: Iterable[str], seq: int) -> LabelState:
    """A project's state as of `seq` with these media items' states in it, replayed one media
    item after the other (an export "as of")."""
    base = await project_as_of(store, project, seq)
    combined = media_view(base)
    for item in media:
        if item in base.media:
            merge_media(combined, await media_as_of(store, base, item, seq))
    combined.seq = seq
    return combined


def merge_media(into: LabelState, state: LabelState) -> None:
    """Add a media state's media-level entries to `into` (shallow: the entries are shared)."""
    into.objects.update(state.objects)
    into.object_media.update(state.object_media)
    into.labels.update(state.labels)
    into.proposals.update(state.proposals)
    into.tracks.update(state.tracks)
    into.segments.update(state.segments)
    into.segment_cells.update(state.segment_cells)
    into.pending_objects.update(state.pending_objects)
    into.actions.update(state.actions)
    into.stacks.update(state.stacks)


async def replay(store: EventStore, streams: set[str] | None, seq: int) -> LabelState:
    """The state after position `seq`, folding only `streams` (None: the whole log) from
    position 0 (the offline export, and tests: the reference a replay from snapshots matches)."""
    state = LabelState()
    async for event in _merged(store, streams):
        if event.seq > seq:
            break
        state.apply(event)
    return state


async def _merged(store: EventStore, streams: set[str] | None) -> AsyncIterator[Event]:
    """The events of `streams` in position order, read stream by stream in batches."""
    if streams is None:
        async for batch in store.iter_batches(0):
            for event in batch:
                yield event
        return
    readers = [_events_of(store, stream) for stream in sorted(streams)]
    heads: list[Event | None] = [await anext(reader, None) for reader in readers]
    while True:
        live = [i for i, head in enumerate(heads) if head is not None]
        if not live:
            return
        first = min(live, key=lambda i: heads[i].seq)  # type: ignore[union-attr]
        yield heads[first]  # type: ignore[misc]
        heads[first] = await anext(readers[first], None)


async def _events_of(store: EventStore, stream: str) -> AsyncIterator[Event]:
    async for batch in store.iter_batches(0, stream=stream):
        for event in batch:
            yield event
