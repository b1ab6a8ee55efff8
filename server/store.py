"""The event store contract: one append-only log, one order.

Every backend (SQLite now, PostgreSQL later) implements `EventStore`, raises only the errors
defined here (so callers such as the ledger never depend on a backend's own exceptions), and
passes the same contract tests (`tests/server/store_contract.py`). `server/storage.py` opens the
backend a setting names. The helpers here are the parts every backend shares: checking a batch
before it is stored, and fanning committed heads out to subscribers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import msgspec

from masklog.domain.events import Event, NewEvent, SchemaError, decode_event, decode_events, decode_new_event, encode, is_event_id

# The largest position, version or seq a backend stores (SQLite's INTEGER, PostgreSQL's bigint).
INT64_MAX = (1 << 63) - 1

# Snapshot retention, every backend's (in the transaction of each save), per stream and version:
# the newest KEEP_NEWEST are kept; an older one is kept when it is the oldest snapshot in its
# cell, where the cells of a snapshot `age` positions before the newest are aligned blocks of
# positions of the largest power of two <= age / THIN_RATIO (at least 1). Cells only grow as a
# snapshot ages, and a cell's oldest snapshot is also the oldest of the smaller cell it came
# from, so thinning never leaves a long stretch uncovered: a position P has a snapshot at most
# (newest - P) / 2 (measured: a third) plus the snapshot interval before it, and the oldest
# snapshot is never dropped. How many a stream keeps grows with the logarithm of its history
# (measured: 58, 82, 110 and 136 of 100, 300, 1,000 and 3,000 taken). THIN_RATIO = 16 rather
# than 4 (which kept 30-45): a replay of a random position of a 25-interval history then folds
# under 1.9 intervals of events 19 times in 20 (3.4 with 4), and snapshots share their unchanged
# parts.
KEEP_NEWEST = 3
THIN_RATIO = 16

log = logging.getLogger("masklog.store")


class StoreError(Exception):
    """Base of the errors the store raises itself."""


class StoreClosed(StoreError):
    """The store was closed; nothing more can be appended or read."""


class StoreCorrupted(StoreError):
    """The storage failed its integrity check on open."""


class StoreIncompatible(StoreError):
    """The storage cannot be used by this build: written by a newer one, or it lacks something
    the backend needs (SQLite: WAL mode)."""


class StoreUnavailable(StoreError):
    """The storage could not be opened (missing permissions, locked, a server not answering)."""


class ReadFailed(StoreError):
    """The storage failed to answer a read; the log itself is unchanged."""


class AppendFailed(StoreError):
    """The storage refused the transaction (disk full, I/O error, a constraint); nothing of the
    batch was stored. The backend's own error is the `__cause__`."""


class StreamChanged(StoreError):
    """An append's expectation failed: a stream it named has an event after the position its
    caller decided at (another writer got there first). Nothing of the batch was stored; the
    caller reads what changed and decides again."""

    def __init__(self, streams: Sequence[str]) -> None:
        super().__init__(f"changed since the command was decided: {', '.join(streams)}")
        self.streams = list(streams)


class UnstorableEvent(StoreError, ValueError):
    """An event of a batch could not be stored; nothing of its batch was stored."""

    def __init__(self, index: int, event_id: str | None, reason: str) -> None:
        super().__init__(f"event {index} of the batch (id {event_id}) cannot be stored: {reason}")
        self.index = index
        self.event_id = event_id
        self.reason = reason


class Snapshot(msgspec.Struct, frozen=True):
    """A projection's state saved at a position of the log, so it need not be folded from 0.

    `stream` names what it is the state of (`media:<id>`, or `base` for the project-level
    state), `seq` the position it is as of, `version` the projection schema version it was
    encoded with (`domain.snapshots.PROJECTION_VERSION`), `data` the encoded state (for a media
    item, its manifest). `parts`: blobs the data refers to by their sha256 (`part_key`), which
    the store keeps once however many snapshots share them and hands out by key (`load_parts`),
    so a reader fetches only the parts it needs. `load_snapshot` returns the data only (`parts`
    empty)."""

    stream: str
    seq: int
    version: int
    data: bytes
    parts: tuple[bytes, ...] = ()


class EventStore(Protocol):
    """The log. Positions (`seq`) are gap-free and strictly increasing, and commit order is
    position order, so a reader that reads after the last position it saw misses nothing.

    Several stores may be open on the same storage at once, in one process or in several (a
    server and `masklog import-log`; later, several servers): appends by any of them are
    serialised into the one order, and each sees the others' events in `read`, `head` and
    `subscribe`.

    Errors: `UnstorableEvent` (a bad batch), `AppendFailed` (the storage refused a valid one),
    `ReadFailed`, `StoreClosed`; on open, `StoreCorrupted`, `StoreIncompatible` and
    `StoreUnavailable`. All are `StoreError`s; a backend's own exceptions stay inside it (as the
    `__cause__`). Wrong arguments are ValueErrors.
    """

    async def append(
        self, events: Sequence[NewEvent], *, expect: Mapping[str, int] | None = None, expect_ignoring: str | None = None
    ) -> list[Event]:
        """Store a batch atomically (all or nothing) and return its events in batch order.

        `expect`, {stream: position}: store the batch only if none of these streams has an event
        after its position (checked in the appending transaction, after every earlier commit,
        this process's and others'), else raise `StreamChanged`. It is how a writer that decided
        against a stream's state as of a position makes sure nobody wrote to the stream since
        (optimistic concurrency; a stream's "expected version" is the position of its last
        event). `expect_ignoring`, an actor prefix (e.g. "model:"): events by such actors do not
        count against `expect` (a person's edit need not be decided again because a model's
        result landed meanwhile). A batch whose events are all stored already is a retry,
        answered with the stored events whatever `expect` says.

        Idempotent by event id: an id that is already stored (or earlier in the same batch) is
        not stored again; its place in the result holds the event as first stored, so a retried
        command gets its original position back. Raises `UnstorableEvent` when an event does not
        encode or does not satisfy the schema, `AppendFailed` when the storage refuses the
        transaction; then nothing of the batch is stored.
        """
        ...

    async def copy_in(self, events: Sequence[Event]) -> None:
        """Store events that already have their positions and times, as they are (a copy of
        another log: `masklog copy-log`), atomically: every event keeps its seq, id, stream,
        actor, at, cause and body, byte for byte.

        The new events must continue the head exactly (head+1, head+2, ... in batch order): a
        copy never leaves a gap nor lands after another writer's events. Idempotent by id as
        `append` is: an event whose id is already stored (or earlier in the batch) must be that
        stored event exactly, and is skipped, so a copy retried after a lost acknowledgement
        stores nothing twice. Raises `UnstorableEvent` (nothing stored) for an event that does
        not read back, a position that does not continue the head, or an id stored as another
        event; `AppendFailed` when the storage refuses the transaction.
        """
        ...

    async def read(self, after: int = 0, *, stream: str | None = None, limit: int | None = None) -> list[Event]:
        """Events with `seq > after` (of one stream, if given), ordered by seq."""
        ...

    def iter_batches(
        self, after: int = 0, *, stream: str | None = None, batch_size: int = 10_000, upto: int | None = None
    ) -> AsyncIterator[list[Event]]:
        """Every event after `after` (and at or before `upto`, when given), in seq order, as
        lists of up to `batch_size`: for rebuilding projections from a long log without holding
        it in memory, and for replaying up to a position without reading past it."""
        ...

    async def get(self, id: str) -> Event | None:
        ...

    async def head(self) -> int:
        """The last position committed to the storage, by any writer; 0 when the log is empty."""
        ...

    def subscribe(self) -> Subscription:
        """Heads committed to the storage from now on, by this store *and by every other writer
        of the same storage* (another store object, another process): what a process that does
        not write an event itself needs to follow the log. This store's own commits are
        announced at once, others' within a short delay (SQLite polls; PostgreSQL would
        LISTEN). See `Subscription`."""
        ...

    async def read_streams(self, prefix: str, after: int = 0, upto: int | None = None) -> list[Event]:
        """Events of every stream whose name starts with `prefix` (e.g. "project:"), with
        `after < seq <= upto` (no upper bound when None), in position order. Meant for the few
        small streams a process always holds, not for media streams."""
        ...

    # -- snapshots and the object index ------------------------------------------------------
    # Snapshots are a cache of projections: losing or refusing one costs a fold, never a
    # wrong state. A store that had none would still be correct (load_snapshot -> None).

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store a snapshot with a checksum of its data, and its parts by their sha256 (a part
        already stored, by this or another snapshot, is not stored again), written off the event
        loop and durable like an append. Idempotent for the same (stream, seq, version). A part
        is kept as long as a snapshot refers to it. Older snapshots of the
        same stream and version are thinned out (see the backend's retention rule), always
        keeping the newest few and one at growing intervals before them, so a replay of any
        position finds one not far before it."""
        ...

    async def load_snapshot(self, stream: str, version: int, at_or_before: int | None = None) -> Snapshot | None:
        """The newest valid snapshot of `stream` encoded with `version` whose seq is at or before
        `at_or_before` (any, when None); None when there is none. A snapshot whose data fails
        its checksum (damaged, truncated) is skipped with a logged warning and the next older
        one is tried: never returned. Snapshots of other versions are ignored."""
        ...

    async def load_parts(self, keys: Sequence[bytes]) -> list[bytes] | None:
        """The snapshot parts named by `keys` (sha256 digests), in that order; None when one is
        missing (a part is kept while a snapshot refers to it) or fails its digest (damaged):
        never a part that does not match its key. The caller then uses an older snapshot or
        the events."""
        ...

    async def object_media(self, object_id: str) -> str | None:
        """The media item an object id was claimed on, by any media item's events: its
        `object_created`, or before that a `prompt_added` for a new object (which reserves the
        id). None for an id never claimed. The index is written in the same transaction as the
        events that claim, so it never lags the log."""
        ...

    async def verify(self) -> None:
        """Check the stored log's integrity (it may read all of it: a server runs it in the
        background once it is serving). Raises StoreCorrupted."""
        ...

    async def close(self) -> None:
        """Finish the appends already queued, then release everything. Idempotent."""
        ...


def check_batch(events: Sequence[NewEvent]) -> list[NewEvent]:
    """Return the batch as it will read back; raise `UnstorableEvent` for the first event that
    would not read back.

    Structs are not validated when built, so an event can hold a value of the wrong type or one
    outside its bounds; stored, it would make every later rebuild fail. Round-tripping through
    the strict decoder is the one check that matches what readers will do, and the events it
    returns have exactly the types the schema says. Ids must be UUIDs in canonical text form
    (an id given as a uuid.UUID comes back as that text).
    Backends call this before a batch joins a shared transaction, so a bad batch fails only its
    own caller.
    """
    checked: list[NewEvent] = []
    for index, event in enumerate(events):
        if not isinstance(event, NewEvent):
            raise UnstorableEvent(index, None, f"expected NewEvent, got {type(event).__name__}")
        try:
            new = decode_new_event(encode(event))
        except (SchemaError, msgspec.EncodeError, TypeError, ValueError, OverflowError) as error:
            raise UnstorableEvent(index, event.id if isinstance(event.id, str) else None, str(error)) from error
        if not is_event_id(new.id) or (new.cause is not None and not is_event_id(new.cause)):
            raise UnstorableEvent(index, new.id, "id and cause must be UUIDs in canonical text form")
        checked.append(new)
    return checked


def check_expect(expect: Mapping[str, int] | None, ignoring: str | None = None) -> dict[str, int]:
    """An append's expectation as a plain dict; ValueError for one no store can check."""
    if ignoring is not None and (not isinstance(ignoring, str) or not ignoring or len(ignoring) > 200 or "%" in ignoring or "_" in ignoring):
        raise ValueError(f"expect_ignoring must be an actor prefix of 1-200 characters without % or _, not {ignoring!r}")
    if expect is None:
        return {}
    checked: dict[str, int] = {}
    for stream, position in expect.items():
        if not isinstance(stream, str) or not stream:
            raise ValueError(f"expect: a stream must be a non-empty string, not {stream!r}")
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= INT64_MAX:
            raise ValueError(f"expect: the position of {stream!r} must be an int in 0..{INT64_MAX}, not {position!r}")
        checked[stream] = position
    return checked


def check_copied(events: Sequence[Event]) -> list[tuple[Event, bytes]]:
    """`copy_in`'s batch checked: each event with the payload a backend stores for it (its
    encoding). Raises `UnstorableEvent` for the first event that would not read back as itself
    (stored events are held to the schema as readers hold them: `decode_event`), or whose ids
    are not canonical UUID text."""
    checked: list[tuple[Event, bytes]] = []
    for index, event in enumerate(events):
        if not isinstance(event, Event):
            raise UnstorableEvent(index, None, f"expected Event, got {type(event).__name__}")
        try:
            payload = encode(event)
            same = decode_event(payload) == event
        except (SchemaError, msgspec.EncodeError, TypeError, ValueError, OverflowError) as error:
            raise UnstorableEvent(index, event.id if isinstance(event.id, str) else None, str(error)) from error
        if not same:
            raise UnstorableEvent(index, event.id, "the event does not read back as itself")
        if not is_event_id(event.id) or (event.cause is not None and not is_event_id(event.cause)):
            raise UnstorableEvent(index, event.id, "id and cause must be UUIDs in canonical text form")
        checked.append((event, payload))
    return checked


def copied_new(checked: Sequence[tuple[Event, bytes]], head: int, stored: Mapping[str, Event]) -> list[tuple[Event, bytes]]:
    """The events of a checked `copy_in` batch to store after `head` (the committed head, read
    inside the backend's transaction), given those of its ids already `stored`: the rules of
    `copy_in`. Raises `UnstorableEvent`."""
    new: list[tuple[Event, bytes]] = []
    seen: dict[str, Event] = {}
    for index, (event, payload) in enumerate(checked):
        earlier = stored.get(event.id) or seen.get(event.id)
        if earlier is not None:
            if earlier != event:
                raise UnstorableEvent(index, event.id, f"the id is already stored as another event (at position {earlier.seq})")
            continue
        if event.seq != head + 1:
            raise UnstorableEvent(index, event.id, f"position {event.seq} does not continue the log (its head is {head})")
        head = event.seq
        seen[event.id] = event
        new.append((event, payload))
    return new


async def newest_valid_snapshot(
    name: str, stream: str, version: int, at_or_before: int | None, newest: Callable[[int], Awaitable[tuple[int, Any, Any] | None]]
) -> Snapshot | None:
    """`load_snapshot` for every backend: `newest(bound)` gives the newest stored (seq, checksum,
    data) of the stream and version at or before `bound`, or None; one that fails its checksum
    is skipped with a warning and the next older one is tried."""
    if not isinstance(stream, str) or not isinstance(version, int):
        raise ValueError("stream must be a string and version an int")
    bound = INT64_MAX if at_or_before is None else at_or_before
    while True:
        row = await newest(bound)
        if row is None:
            return None
        seq, checksum, data = row
        if isinstance(data, bytes) and isinstance(checksum, bytes) and await checksum_holds(data, checksum):
            return Snapshot(stream=stream, seq=seq, version=version, data=data)
        log.warning("%s: snapshot of %s at %d (version %d) fails its checksum; ignored, an older one or the events are used", name, stream, seq, version)
        bound = seq - 1


def check_snapshot(snapshot: Snapshot) -> None:
    """Raise ValueError for a snapshot a backend must not store."""
    if not isinstance(snapshot, Snapshot):
        raise ValueError(f"expected a Snapshot, got {type(snapshot).__name__}")
    if not isinstance(snapshot.stream, str) or not snapshot.stream:
        raise ValueError("a snapshot's stream must be a non-empty string")
    for name in ("seq", "version"):
        value = getattr(snapshot, name)
        if type(value) is not int or not 0 <= value <= INT64_MAX:
            raise ValueError(f"a snapshot's {name} must be an int from 0 to 2**63-1, not {value!r}")
    if not isinstance(snapshot.data, bytes):
        raise ValueError("a snapshot's data must be bytes")
    if not isinstance(snapshot.parts, tuple) or not all(isinstance(part, bytes) for part in snapshot.parts):
        raise ValueError("a snapshot's parts must be a tuple of bytes")


def snapshots_to_drop(seqs: Sequence[int]) -> list[int]:
    """The snapshots (by seq; `seqs` ascending, one stream and version) that retention drops;
    see KEEP_NEWEST and THIN_RATIO."""
    if len(seqs) <= KEEP_NEWEST:
        return []
    newest = seqs[-1]
    drop: list[int] = []
    previous: int | None = None
    for seq in seqs[:-KEEP_NEWEST]:
        cell = 1 << max(0, ((newest - seq) // THIN_RATIO).bit_length() - 1)
        if previous is not None and previous >= seq - seq % cell:
            drop.append(seq)  # an older snapshot starts this cell
        previous = seq
    return drop


def snapshot_checksum(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Subscription:
    """Heads committed to the storage after `subscribe()`, by any writer, coalesced.

    Each `__anext__` waits until the head is greater than the last value it returned (or than the
    head at subscription time) and returns the *latest* head. A slow subscriber therefore skips
    intermediate heads instead of queueing them: the writer never waits for it and its memory is
    one integer. Heads are positions, not events: read `after` your last seq to get the events,
    and subscribe *before* the first catch-up read so no commit falls between the two.
    Iteration ends when the subscription or the store is closed.
    """

    def __init__(self, head: int, on_close: Callable[[Subscription], None]) -> None:
        self._seen = head
        self._latest = head
        self._closed = False
        self._wake = asyncio.Event()
        self._on_close = on_close

    def _publish(self, head: int) -> None:
        if head > self._latest:
            self._latest = head
            self._wake.set()

    def _end(self) -> None:
        self._closed = True
        self._wake.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> int:
        while self._latest <= self._seen:
            if self._closed:
                raise StopAsyncIteration
            # No await between the check and clear(): a publish cannot slip in between.
            self._wake.clear()
            await self._wake.wait()
        self._seen = self._latest
        return self._seen

    async def aclose(self) -> None:
        if not self._closed:
            self._end()
            self._on_close(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class HeadBroadcast:
    """Fan-out of committed heads to subscriptions. A backend calls `publish` after each of its
    own commits and whenever it learns of another writer's (SQLite: a poll of the file while
    anyone subscribes; PostgreSQL: a LISTEN/NOTIFY listener); heads that are not new are
    ignored, so publishing the same head from both paths is harmless."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    def subscribe(self, head: int) -> Subscription:
        subscription = Subscription(head, self._subscriptions.discard)
        if self._closed:
            subscription._end()
        else:
            self._subscriptions.add(subscription)
        return subscription

    def publish(self, head: int) -> None:
        for subscription in self._subscriptions:
            subscription._publish(head)

    def close(self) -> None:
        self._closed = True
        for subscription in self._subscriptions:
            subscription._end()
        self._subscriptions.clear()

    def __len__(self) -> int:
        return len(self._subscriptions)


async def batches_read_ahead(
    fetch: Callable[[int, int], Awaitable[list[tuple[bytes]]]], after: int, batch_size: int
) -> AsyncGenerator[list[Event], None]:
    """`iter_batches` for a backend: `fetch(after, limit)` reads the payloads of up to `limit`
    events after a position, in seq order. One chunk is fetched ahead, so the database reads
    while this task decodes."""
    fetching = asyncio.ensure_future(fetch(after, batch_size))
    try:
        while True:
            rows = await fetching
            if not rows:
                return
            more = len(rows) == batch_size
            if more:
                # Decoding the last row first gives the next key (one decode per chunk).
                last = decode_event(rows[-1][0]).seq
                fetching = asyncio.ensure_future(fetch(last, batch_size))
                # Let the fetch start now, so it reads while this one decodes; a task only
                # starts once the loop runs.
                await asyncio.sleep(0)
            yield decode_events([row[0] for row in rows])
            if not more:
                return
    finally:
        discard(fetching)


def discard(future: asyncio.Future[Any]) -> None:
    """Drop a prefetch nobody will await, without an 'exception never retrieved' warning."""
    if future.done():
        if not future.cancelled():
            future.exception()
    else:
        future.cancel()


# -- checking snapshots and their parts, for every backend -------------------------------------

# Hashing more than this many bytes runs on a worker thread, not on the event loop.
HASH_INLINE_BYTES = 256 * 1024


async def snapshot_digests(snapshot: Snapshot) -> tuple[bytes, list[bytes]]:
    """The checksum of a snapshot's data and the keys of its parts (sha256 each)."""
    if len(snapshot.data) + sum(len(part) for part in snapshot.parts) > HASH_INLINE_BYTES:
        return await asyncio.to_thread(_digests, snapshot)
    return _digests(snapshot)


async def checksum_holds(data: bytes, checksum: bytes) -> bool:
    actual = await asyncio.to_thread(snapshot_checksum, data) if len(data) > HASH_INLINE_BYTES else snapshot_checksum(data)
    return actual == checksum


def wanted_parts(keys: Sequence[bytes]) -> list[bytes]:
    """`load_parts`'s keys checked, each once. Raises ValueError."""
    if isinstance(keys, (bytes, str)) or not all(isinstance(key, bytes) for key in keys):
        raise ValueError("keys must be a sequence of bytes")
    return list(dict.fromkeys(keys))


async def parts_in_order(where: str, keys: Sequence[bytes], found: dict[bytes, bytes]) -> list[bytes] | None:
    """`load_parts`'s answer from the parts a backend found: in the order of `keys`, or None
    (with a warning) when one is missing or does not match its key."""
    missing = [key for key in keys if key not in found]
    if missing:
        log.warning("%s: %d snapshot part(s) missing (e.g. %s)", where, len(missing), missing[0].hex()[:12])
        return None
    size = sum(len(data) for data in found.values())
    damaged = await asyncio.to_thread(_damaged, found) if size > HASH_INLINE_BYTES else _damaged(found)
    if damaged:
        log.warning("%s: snapshot part %s fails its digest; not used", where, damaged[0].hex()[:12])
        return None
    return [found[key] for key in keys]


def _digests(snapshot: Snapshot) -> tuple[bytes, list[bytes]]:
    return snapshot_checksum(snapshot.data), [snapshot_checksum(part) for part in snapshot.parts]


def _damaged(parts: dict[bytes, bytes]) -> list[bytes]:
    return [key for key, data in parts.items() if snapshot_checksum(data) != key]
