"""The projection as it was at an earlier position (C3), rebuilt from the events that matter.

A media item's labels depend only on its own stream and its project's, and the store keeps an
index by (stream, position): replaying reads just those streams, merged in position order, not
the whole log — the difference between milliseconds and seconds on a large log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from masklog.domain.events import Event
from masklog.domain.state import LabelState
from masklog.server.store import EventStore


async def replay(store: EventStore, streams: set[str] | None, seq: int) -> LabelState:
    """The state after position `seq`, folding only `streams` (None: the whole log)."""
    state = LabelState()
    async for event in _merged(store, streams):
        if event.seq > seq:
            break
        state.apply(event)
    return state


async def state_as_of(store: EventStore, live: LabelState, streams: set[str] | None, seq: int | None) -> LabelState:
    """The live state, or the state as of `seq` replayed from `streams`."""
    if seq is None or seq >= live.seq:
        return live
    return await replay(store, streams, seq)


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
