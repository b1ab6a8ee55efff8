"""`masklog snapshots`: write the media items' snapshots a server would have written as it went.

A server snapshots a media item every `snapshot_every` of its events while the item is loaded,
and when it unloads it. A log that a server never served that way (written by an older version,
imported with `masklog import-log`, or built by a benchmark) has none, so the first open of a
long media item, and every replay of it, folds its stream from position 0. This job walks
each media item's stream once, one item at a time (memory: one media state), and saves a snapshot
every `every` events and at its end; the store's retention thins them as a server's would. It
can run while a server serves the same log: a snapshot is as of a position and never changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from masklog.domain.events import media_stream
from masklog.domain.snapshots import encode_media_snapshot, media_view
from masklog.domain.state import LabelState, fold
from masklog.server.settings import Settings
from masklog.server.snapshot_io import stored_snapshot
from masklog.server.storage import open_store
from masklog.server.store import EventStore


@dataclass(frozen=True, slots=True)
class SnapshotReport:
    media: int  # media items walked
    snapshots: int  # snapshots written
    events: int  # media events folded


async def write_snapshots(
    data: Path, every: int, progress: Callable[[str, int], None] | None = None, *, database_url: str | None = None
) -> SnapshotReport:
    """Snapshot every media item of the log in `data` (or in the PostgreSQL database
    `database_url`)."""
    if every < 1:
        raise ValueError("snapshots are written every 1 or more events")
    settings = Settings(data=data) if database_url is None else Settings(data=data, storage="postgresql", database_url=database_url)
    store = await open_store(settings)
    try:
        return await snapshot_all(store, every, progress)
    finally:
        await store.close()


async def snapshot_all(store: EventStore, every: int, progress: Callable[[str, int], None] | None = None) -> SnapshotReport:
    base = fold(await store.read_streams("project:"), LabelState())
    written = events = 0
    for media in sorted(base.media):
        stream = media_stream(media)
        state = media_view(base)
        since = 0
        async for batch in store.iter_batches(0, stream=stream):
            for event in batch:
                state.apply(event)
                since += 1
                if since == every:
                    await store.save_snapshot(stored_snapshot(stream, state.seq, encode_media_snapshot(state)))
                    written += 1
                    since = 0
            events += len(batch)
        if since:
            await store.save_snapshot(stored_snapshot(stream, state.seq, encode_media_snapshot(state)))
            written += 1
        if progress is not None:
            progress(media, events)
    return SnapshotReport(len(base.media), written, events)

