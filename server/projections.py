"""What the ledger holds in memory: the base projection always, media items' projections on demand.

The **base** is the project-level state (projects, classes, media: the `project:<p>` streams)
plus an index of the tracks still running, {track: (media, requester)}, kept from the track
events of every stream. It is small and always loaded.

A **media projection** is a `LabelState` whose `projects`, `classes` and `media` dicts are the
base's own (shared: a class added later shows in every loaded media state) and whose other
fields hold only that media item's stream (`domain.snapshots.media_view`). `decide` and `fold`
work on it unchanged. One is loaded when first used (latest snapshot of its stream + the events
after it) and kept while in use; the least recently used ones are evicted when their estimated
size passes the budget (`Settings.projection_budget_mb`), never one that is pinned (an open
socket), has events whose commit is under way, or has a running track.

**Snapshots** (the store's `save_snapshot`/`load_snapshot`): a media state every
`snapshot_every` of its events and when it is evicted; the base every `base_snapshot_every`
events of the whole log and at shutdown. They are encoded and written off the event loop, and
only once every event they hold is committed (a decided event is applied at once, before its
commit: a snapshot taken then is kept back until the log has it, and dropped if the append
fails). A store that keeps no snapshots still works: everything folds from position 0.

Only the ledger changes these states, under its lock; readers get them from
`Ledger.state_of`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from masklog.domain.events import (
    ClassAdded,
    Event,
    MediaAdded,
    ProjectCreated,
    TrackCancelled,
    TrackCompleted,
    TrackFailed,
    TrackRequested,
    media_stream,
)
from masklog.domain.snapshots import (
    EncodedSnapshot,
    encode_media_snapshot,
    media_view,
)
from masklog.domain.state import LabelState
from masklog.server.snapshot_io import load_media_snapshot, stored_snapshot
from masklog.server.store import EventStore, Snapshot

log = logging.getLogger("masklog.projections")

BASE_STREAM = "base"
# The base snapshot's own encoding (below); bump when it changes.
BASE_VERSION = 1
MEDIA_PREFIX = "media:"
PROJECT_PREFIX = "project:"

# Size estimates (bytes of memory) for the budget: a loaded state takes about this many times
# its encoded snapshot, and about this much per event folded since. Measured (tracemalloc) on
# the generator of scripts/bench_store.py: a decoded media state takes 2.7 times its snapshot;
# a full fold of 1M events holds about 2 GB (2 KB an event).
MEMORY_PER_SNAPSHOT_BYTE = 3
MEMORY_PER_EVENT = 2000


class Running(msgspec.Struct, array_like=True, frozen=True):
    track: str
    media: str
    actor: str


class _BaseSnapshot(msgspec.Struct, array_like=True, frozen=True):
    seq: int
    projects: list[ProjectCreated]
    classes: list[ClassAdded]
    media: list[MediaAdded]
    running: list[Running]


_base_decoder = msgspec.msgpack.Decoder(_BaseSnapshot)


def media_of_stream(stream: str) -> str | None:
    return stream[len(MEDIA_PREFIX) :] if stream.startswith(MEDIA_PREFIX) else None


@dataclass(eq=False)
class _Loaded:
    state: LabelState
    snapshot_bytes: int = 0  # size of the snapshot it was loaded from (or last written)
    since_snapshot: int = 0  # events folded or applied since that snapshot

    @property
    def size(self) -> int:
        return self.snapshot_bytes * MEMORY_PER_SNAPSHOT_BYTE + self.since_snapshot * MEMORY_PER_EVENT


@dataclass(frozen=True)
class LoadReport:
    """What start-up read: the base (from a snapshot at `base_seq`, or folded from 0), the
    events folded after it, and the media items loaded because they have running tracks."""

    base_seq: int | None
    tail_events: int
    media: list[str]
    seconds: float


class Projections:
    def __init__(
        self,
        store: EventStore,
        *,
        budget_bytes: int = 1024 * 1024**2,
        snapshot_every: int = 1000,
        base_snapshot_every: int = 20_000,
    ) -> None:
        self.store = store
        self.budget_bytes = budget_bytes
        self.snapshot_every = snapshot_every
        self.base_snapshot_every = base_snapshot_every
        self.base = LabelState()
        # Running tracks, in the order they were requested: {track: (media, requester)}.
        self.running: dict[str, tuple[str, str]] = {}
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # least recently used first
        self._pins: dict[str, int] = {}
        self._pending: dict[str, int] = {}  # media -> its events applied but not committed yet
        self._generation = 0  # bumped when everything is dropped (recovery)
        self._since_base = 0
        self._committed = 0  # every event up to here is in the log
        # Snapshots taken of a state that held events not committed yet: (position, write).
        self._held: list[tuple[int, Callable[[], None]]] = []
        self._writes: set[asyncio.Task[None]] = set()
        # Counters for logs and tests.
        self.loads = 0
        self.evictions = 0
        self.snapshots_written = 0

    # ---- start-up and recovery ---------------------------------------------------------------

    async def load_base(self, head: int) -> LoadReport:
        """The base as of `head` (the log's head): its latest snapshot and the events after it,
        or, with no snapshot, the project streams and one scan for running tracks. Then the
        media items with running tracks."""
        started = time.perf_counter()
        self.base = LabelState()
        self.running = {}
        snapshot = await self._load_base_snapshot(head)
        tail = 0
        if snapshot is not None:
            self._install_base(snapshot)
            async for batch in self.store.iter_batches(snapshot.seq):
                for event in batch:
                    if event.seq > head:
                        break
                    self._apply_base(event)
                    tail += 1
        else:
            for event in await self.store.read_streams(PROJECT_PREFIX, upto=head):
                self.base.apply(event)
            async for batch in self.store.iter_batches(0):
                for event in batch:
                    if event.seq > head:
                        break
                    if isinstance(event.body, (TrackRequested, TrackCompleted, TrackCancelled, TrackFailed)):
                        self._index_track(event)
                    tail += 1
        self._committed = head
        self._since_base = tail
        if snapshot is None or tail >= self.base_snapshot_every:
            self._write_base(head)  # the next start reads a snapshot
        media = sorted({m for m, _ in self.running.values()})
        for item in media:
            await self.load(item)
        return LoadReport(snapshot.seq if snapshot is not None else None, tail, media, time.perf_counter() - started)

    async def _load_base_snapshot(self, head: int) -> _BaseSnapshot | None:
        # At or before `head`: another process may have written a newer one meanwhile.
        snapshot = await self.store.load_snapshot(BASE_STREAM, BASE_VERSION, at_or_before=head)
        if snapshot is None:
            return None
        try:
            return _base_decoder.decode(snapshot.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("the base snapshot at %d does not decode (%s): rebuilding the base from the log", snapshot.seq, error)
            return None

    def _install_base(self, snapshot: _BaseSnapshot) -> None:
        self.base.projects.update((p.project, p) for p in snapshot.projects)
        self.base.classes.update((c.class_id, c) for c in snapshot.classes)
        self.base.media.update((m.media, m) for m in snapshot.media)
        self.running.update((r.track, (r.media, r.actor)) for r in snapshot.running)

    def reset(self) -> None:
        """Drop every loaded media state and what is held for the log (after the ledger found
        the log other than it predicted); call `load_base` next. Pins stay."""
        self._loaded.clear()
        self._pending.clear()
        self._held.clear()
        self._generation += 1

    # ---- media states ---------------------------------------------------------------------------

    def loaded(self, media: str) -> LabelState | None:
        """The media item's state if it is loaded (marked as just used)."""
        entry = self._loaded.get(media)
        if entry is None:
            return None
        self._loaded.move_to_end(media)
        return entry.state

    def loaded_states(self) -> Iterable[tuple[str, LabelState]]:
        return [(media, entry.state) for media, entry in self._loaded.items()]

    @property
    def loaded_media(self) -> list[str]:
        return list(self._loaded)

    async def load(self, media: str, upto: int | None = None) -> LabelState:
        """Load a media item's state (the ledger calls this under its lock, so nothing of the
        media item is applied meanwhile): its latest snapshot and its stream's events after it,
        up to `upto` when given (the position a following ledger has applied: other processes
        may have written past it). None of its events are in flight (a media item with any is
        never evicted), so the log has all of them."""
        state = self.loaded(media)
        if state is not None:
            return state
        stream = media_stream(media)
        loaded = await load_media_snapshot(self.store, media, self.base, at_or_before=upto)
        state = loaded.state if loaded is not None else media_view(self.base)
        folded = 0
        async for batch in self.store.iter_batches(state.seq, stream=stream, upto=upto):
            # Off the loop: the state is nobody else's yet, and media events read nothing of
            # the base's dicts.
            await asyncio.to_thread(_fold, batch, state)
            folded += len(batch)
        entry = _Loaded(state, loaded.size if loaded is not None else 0, folded)
        self._loaded[media] = entry
        self.loads += 1
        log.debug("loaded %s: snapshot at %s + %d events", stream, loaded.seq if loaded else None, folded)
        if folded >= self.snapshot_every:
            self._snapshot_media(media, entry)
        self._evict_over_budget(keep=media)
        return state

    def pin(self, media: str) -> None:
        self._pins[media] = self._pins.get(media, 0) + 1

    def unpin(self, media: str, *, evict: bool = True) -> None:
        """Release a pin; `evict`: unload what is over the budget now (the ledger's own pins
        while it decides pass False: the state must stay until the decided event is applied,
        and the commit's end checks the budget)."""
        count = self._pins.get(media, 0) - 1
        if count > 0:
            self._pins[media] = count
        else:
            self._pins.pop(media, None)
            if evict:
                self._evict_over_budget()

    def evictable(self, media: str) -> bool:
        return not self._pins.get(media) and not self._pending.get(media) and media not in self._running_media()

    def evict(self, media: str, *, force: bool = False) -> bool:
        """Drop a media item's state now (it reloads on its next use), writing a snapshot of it
        first if it changed since its last one; False when it is in use (pinned, a commit under
        way, a running track) or not loaded. `force` (tests) evicts a pinned one or one with a
        running track too: pins and tracks only keep states loaded for speed, every user
        reloads on demand; one with events in flight never (the log lacks them yet)."""
        entry = self._loaded.get(media)
        if entry is None or self._pending.get(media) or not (force or self.evictable(media)):
            return False
        del self._loaded[media]
        self.evictions += 1
        if entry.since_snapshot:
            # Every event of it is committed (nothing in flight), and nobody changes it any more.
            state = entry.state
            self._spawn(self._write_media(media, state.seq, lambda: encode_media_snapshot(state)))
        return True

    def _running_media(self) -> set[str]:
        return {media for media, _ in self.running.values()}

    def _evict_over_budget(self, keep: str | None = None) -> None:
        total = sum(entry.size for entry in self._loaded.values())
        if total <= self.budget_bytes:
            return
        busy = self._running_media()
        for media in list(self._loaded):
            if total <= self.budget_bytes:
                break
            if media == keep or media in busy or self._pins.get(media) or self._pending.get(media):
                continue
            size = self._loaded[media].size
            if self.evict(media):
                total -= size

    @property
    def estimated_bytes(self) -> int:
        return sum(entry.size for entry in self._loaded.values())

    # ---- the write path ---------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Apply an event the ledger decided (under its lock, before its commit): to the base
        for a project's stream, to the loaded media state for a media item's."""
        media = media_of_stream(event.stream)
        if media is None:
            self.base.apply(event)
        else:
            entry = self._loaded.get(media)
            if entry is None:
                raise RuntimeError(f"media {media!r} is not loaded: an event must be decided against its state")
            entry.state.apply(event)
            entry.since_snapshot += 1
            self._pending[media] = self._pending.get(media, 0) + 1
            if isinstance(event.body, (TrackRequested, TrackCompleted, TrackCancelled, TrackFailed)):
                self._index_track(event)
            if entry.since_snapshot >= self.snapshot_every:
                self._snapshot_media(media, entry)
        self._since_base += 1
        if self._since_base >= self.base_snapshot_every:
            self._write_base(event.seq)

    def follow(self, event: Event) -> None:
        """Apply a committed event read from the log (a following ledger: any process may have
        written it): to the base for a project's stream, to the media item's state if it is
        loaded (one that is not reads it from the log when it loads), to the running tracks."""
        media = media_of_stream(event.stream)
        if media is None:
            self.base.apply(event)
        else:
            if isinstance(event.body, (TrackRequested, TrackCompleted, TrackCancelled, TrackFailed)):
                self._index_track(event)
            entry = self._loaded.get(media)
            if entry is not None:
                entry.state.apply(event)
                entry.since_snapshot += 1
                if entry.since_snapshot >= self.snapshot_every:
                    self._snapshot_media(media, entry)
        self._since_base += 1
        if self._since_base >= self.base_snapshot_every:
            self._write_base(event.seq)

    def _apply_base(self, event: Event) -> None:
        """An event's effect on the base alone (start-up: the events after the base snapshot)."""
        if event.stream.startswith(PROJECT_PREFIX):
            self.base.apply(event)
        elif isinstance(event.body, (TrackRequested, TrackCompleted, TrackCancelled, TrackFailed)):
            self._index_track(event)

    def _index_track(self, event: Event) -> None:
        body = event.body
        if isinstance(body, TrackRequested):
            self.running[event.id] = (body.media, event.actor)
        else:
            assert isinstance(body, (TrackCompleted, TrackCancelled, TrackFailed))
            self.running.pop(body.track, None)

    @property
    def generation(self) -> int:
        return self._generation

    def settled(self, events: Iterable[Event], generation: int) -> None:
        """Events applied under `generation` are committed (or failed and recovered from)."""
        if generation != self._generation:
            return
        for event in events:
            media = media_of_stream(event.stream)
            if media is None:
                continue
            count = self._pending.get(media, 0) - 1
            if count > 0:
                self._pending[media] = count
            else:
                self._pending.pop(media, None)
        self._evict_over_budget()

    def committed(self, seq: int) -> None:
        """Every event up to `seq` is in the log: snapshots held back for it may be written."""
        self._committed = max(self._committed, seq)
        if self._held and self._held[0][0] <= self._committed:
            ready = [write for position, write in self._held if position <= self._committed]
            self._held = [(position, write) for position, write in self._held if position > self._committed]
            for write in ready:
                write()

    # ---- snapshots ---------------------------------------------------------------------------------

    def _snapshot_media(self, media: str, entry: _Loaded) -> None:
        """Snapshot a loaded media state: copied now (it keeps changing), encoded and written
        off the loop once the log holds every event of it."""
        state = entry.state.copy()
        entry.since_snapshot = 0

        def encode() -> EncodedSnapshot:
            encoded = encode_media_snapshot(state)
            entry.snapshot_bytes = encoded.size
            return encoded

        self._when_committed(state.seq, lambda: self._spawn(self._write_media(media, state.seq, encode)))

    def _write_base(self, seq: int) -> None:
        """Snapshot the base as of `seq` (the position of the last event applied)."""
        self._since_base = 0
        snapshot = _BaseSnapshot(
            seq=seq,
            projects=list(self.base.projects.values()),
            classes=list(self.base.classes.values()),
            media=list(self.base.media.values()),
            running=[Running(track, media, actor) for track, (media, actor) in self.running.items()],
        )
        self._when_committed(seq, lambda: self._spawn(self._write(BASE_STREAM, seq, BASE_VERSION, lambda: msgspec.msgpack.encode(snapshot))))

    def _when_committed(self, seq: int, write: Callable[[], None]) -> None:
        if seq <= self._committed:
            write()
        else:
            self._held.append((seq, write))

    async def _write(self, stream: str, seq: int, version: int, encode: Callable[[], bytes]) -> None:
        try:
            data = await asyncio.to_thread(encode)
            await self.store.save_snapshot(Snapshot(stream=stream, seq=seq, version=version, data=data))
            self.snapshots_written += 1
        except Exception:  # a snapshot is an optimisation: the log still has everything
            log.exception("writing the snapshot of %s at %d failed", stream, seq)

    async def _write_media(self, media: str, seq: int, encode: Callable[[], EncodedSnapshot]) -> None:
        stream = media_stream(media)
        try:
            encoded = await asyncio.to_thread(encode)
            await self.store.save_snapshot(stored_snapshot(stream, seq, encoded))
            self.snapshots_written += 1
        except Exception:  # a snapshot is an optimisation: the log still has everything
            log.exception("writing the snapshot of %s at %d failed", stream, seq)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Wait for the snapshots being written."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def close(self, head: int) -> None:
        """At shutdown, with nothing in flight: snapshot the base and every loaded media state
        that changed since its last snapshot, and wait for the writes."""
        self._committed = max(self._committed, head)
        for media, entry in list(self._loaded.items()):
            if entry.since_snapshot:
                self._snapshot_media(media, entry)
        self._write_base(head)
        with contextlib.suppress(Exception):
            await self.flush()


def _fold(events: list[Event], state: LabelState) -> None:
    apply = state.apply
    for event in events:
        apply(event)
