"""The event store on a PostgreSQL server (asyncpg): one log shared by several processes.

**Positions and their order.** Every appending transaction first takes a transaction-scoped
advisory lock (`pg_advisory_xact_lock(_LOCK_SPACE, _APPEND_LOCK)`), then reads the committed
head (`max(seq)`) and gives its events head+1, head+2, ... . The lock is held until the
transaction ends, so appending transactions run one after the other in position order, and
PostgreSQL makes a transaction visible before it releases its locks: when the next appender gets
the lock, everything before it is already visible to every new statement. A reader whose query
sees position 6 therefore also sees 1-5, and never later finds a 5 that committed after 6 (the
"sequence gap" problem of a sequence/identity column, whose values are taken at insert time and
commit in any order, and are lost on rollback). A transaction that fails or rolls back took no
positions, so positions stay gap-free; `seq` is also the primary key, so two writers can never
store the same position even by mistake.
Why this and not the alternatives: the eventsourcing library's recorder takes
`LOCK TABLE ... IN EXCLUSIVE MODE` for the same effect, which also makes (auto)vacuum and any
other writer of the table wait or be cancelled; a counter row serialises exactly like the lock
but writes a second row per transaction and leaves a dead tuple each time; a gap-aware reader
(positions from a sequence, readers waiting out holes) keeps every reader complicated and slow
to see a rolled-back hole as final. The lock costs one round trip, is invisible to readers and
to vacuum, and the head read after it (in its own statement: in READ COMMITTED a statement's
snapshot is taken when the statement starts, so `max(seq)` must not share a statement with the
lock) is one index probe. Throughput is that of one serial writer per database, which group
commit (below) stretches: the lock is taken once per group, not per append.
Every writer of the events table must take the lock: only this class writes it.

**Group commit.** As in the SQLite store, one writer task per store owns a connection; appends
queue while a transaction runs and the next transaction takes all of them (bounded by
MAX_GROUP_EVENTS). The group is first inserted as one statement inside a savepoint; if the
server refuses it (a constraint, a trigger), each batch is retried in a savepoint of its own, so
only the batch at fault fails. Batches are checked (`check_batch`) before they queue.

**Expected versions.** An append may name streams that must have no event after a position
(`expect`): the check runs in the appending transaction, after the lock, so it sees every
earlier commit of every process, and a batch that fails it gets StreamChanged while the rest of
its group commits. Several server processes decide commands this way (`server.ledger`).

**Wake-ups.** The appending transaction sends `NOTIFY masklog_head, '<new head>'`; PostgreSQL
delivers it at commit, to every listening session, in commit order. Each store LISTENs on a
connection of its own and publishes what it hears to its subscribers (HeadBroadcast), so a store
in another process wakes within a round trip. The notification only says "the head moved"; a
follower reads from its own position. When the listening connection drops, the store reconnects
and publishes the head read after LISTEN, so nothing committed in between goes unannounced.

**Tables** (created on open when missing, in a transaction under a schema advisory lock, so two
processes opening a new database create them once):
- `masklog_store_format` (one row): the schema version, STORE_FORMAT. A database of a newer
  version is refused (StoreIncompatible), as SQLite's `user_version`.
- `events (seq bigint PRIMARY KEY, id uuid UNIQUE, stream text COLLATE "C", payload json)`:
  the payload is the encoded Event, the same JSON text the SQLite store keeps (`json`, not
  `jsonb`: kept byte for byte, still queryable with `->`). `stream` sorts bytewise so a prefix
  is an index range, as in SQLite.
- `objects (object_id, media)`: the object index, written in the transaction of the events that
  claim (claims replace, reservations of a new object's id do not: the order-independent form of
  the fold's rules). A database without the table (it was dropped) gets it back, filled from the
  events, when a store next opens it.
- `snapshots`, `snapshot_parts`, `snapshot_refs`: projection snapshots, their content-addressed
  parts and which snapshot uses which part, as in SQLite; retention (`store.snapshots_to_drop`,
  and the stream's older versions) and the release of parts nobody refers to run in the save's
  transaction, under an advisory lock of their own so saves from several processes never
  release a part another is adding.

**Durability.** A commit acknowledged by the server is durable as the server is configured
(fsync on and synchronous_commit on, the defaults). When the write connection breaks, the group is
appended once more on a new connection: safe even if the break came during COMMIT and the first
attempt did commit, since appends are idempotent by event id. If that fails too, the callers get
AppendFailed (the outcome of the first attempt may then be unknown; a retry with the same ids
is safe in the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import asyncpg

from masklog.domain.events import Event, NewEvent, ObjectCreated, PromptAdded, decode_event, decode_events, encode, stored
from masklog.server.group_commit import Batch, GroupCommits, Outcome, append_failed
from masklog.server.settings import redact_url
from masklog.server.store import (
    INT64_MAX,
    HeadBroadcast,
    ReadFailed,
    Snapshot,
    StoreClosed,
    StoreCorrupted,
    StoreError,
    StoreIncompatible,
    StoreUnavailable,
    StreamChanged,
    Subscription,
    batches_read_ahead,
    check_batch,
    check_copied,
    check_expect,
    check_snapshot,
    copied_new,
    newest_valid_snapshot,
    parts_in_order,
    snapshot_digests,
    snapshots_to_drop,
    wanted_parts,
)

log = logging.getLogger(__name__)

# The schema version this build writes; a database of a newer one is refused.
STORE_FORMAT = 1

# As in the SQLite store: a group stops growing at this many events.
MAX_GROUP_EVENTS = 20_000

# Advisory locks: (space, key) pairs of the two-int form, so they cannot meet a one-bigint lock
# another application of the same database takes. The space is "mask" in ASCII.
_LOCK_SPACE = 0x6D61736B
_APPEND_LOCK = 1
_SNAPSHOT_LOCK = 2
_SCHEMA_LOCK = 3
_ACCOUNTS_SCHEMA_LOCK = 4  # the accounts' tables (server/postgres_accounts.py)
_CLAIMS_SCHEMA_LOCK = 5  # the work claims and workers tables (server/postgres_claims.py)

# The NOTIFY channel carrying new heads.
CHANNEL = "masklog_head"

# Connections to the server: how long to wait for one, and how many a store reads on at once.
CONNECT_TIMEOUT_S = 10.0
READ_CONNECTIONS = 4


# How long the listener waits between checks that its connection is alive, and the longest pause
# between attempts to reconnect it.
_LISTEN_CHECK_S = 5.0
_RECONNECT_MAX_S = 2.0

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS masklog_store_format (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version integer NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS events (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    id uuid NOT NULL UNIQUE,
    stream text COLLATE "C" NOT NULL,
    payload json NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS events_stream_seq ON events (stream, seq)",
    """CREATE TABLE IF NOT EXISTS objects (
    object_id text PRIMARY KEY,
    media text NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS snapshots (
    stream text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    seq bigint NOT NULL,
    checksum bytea NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (stream, version, seq)
)""",
    """CREATE TABLE IF NOT EXISTS snapshot_parts (
    key bytea PRIMARY KEY,
    data bytea NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS snapshot_refs (
    stream text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    seq bigint NOT NULL,
    key bytea NOT NULL,
    PRIMARY KEY (stream, version, seq, key)
)""",
    "CREATE INDEX IF NOT EXISTS snapshot_refs_key ON snapshot_refs (key)",
]

# Filling the object index from the events (a database whose `objects` table is missing): the
# last `object_created` of each id claims it, then prompts for new objects reserve the ids nobody
# claimed, the first one winning. Events are all of schema version 1 so far; an upcaster that
# changes these bodies must be mirrored here (and in the SQLite store's backfill).
_BACKFILL = [
    """INSERT INTO objects (object_id, media)
    SELECT DISTINCT ON (payload->'body'->>'object') payload->'body'->>'object', payload->'body'->>'media'
    FROM events WHERE payload->'body'->>'type' = 'object_created'
    ORDER BY payload->'body'->>'object', seq DESC""",
    """INSERT INTO objects (object_id, media)
    SELECT DISTINCT ON (payload->'body'->>'object') payload->'body'->>'object', payload->'body'->>'media'
    FROM events WHERE payload->'body'->>'type' = 'prompt_added'
      AND payload->'body'->>'media' IS NOT NULL AND payload->'body'->>'class_id' IS NOT NULL
    ORDER BY payload->'body'->>'object', seq
    ON CONFLICT (object_id) DO NOTHING""",
]

_INSERT = "INSERT INTO events (seq, id, stream, payload) SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::json[])"
_CLAIM = (
    "INSERT INTO objects (object_id, media) SELECT * FROM unnest($1::text[], $2::text[])"
    " ON CONFLICT (object_id) DO UPDATE SET media = excluded.media"
)
_RESERVE = "INSERT INTO objects (object_id, media) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (object_id) DO NOTHING"
_HEAD = "SELECT coalesce(max(seq), 0) FROM events"
# Appends' expectations (`EventStore.append`): which (batch, stream) pairs have an event after
# the expected position.
_CHANGED = (
    "SELECT x.i, x.stream FROM unnest($1::int[], $2::text[], $3::bigint[], $4::text[]) AS x(i, stream, after, ignoring)"
    " WHERE EXISTS (SELECT 1 FROM events e WHERE e.stream = x.stream AND e.seq > x.after"
    " AND (x.ignoring IS NULL OR (e.payload ->> 'actor') NOT LIKE x.ignoring))"
)

# What a lost or unusable connection looks like (the server went away or is shutting down, an
# administrator ended the session, the socket broke): the group is tried once more on a new
# connection. Any other server error is about the statement, so it can be a single batch's fault.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin or crash shutdown, cancelled
    asyncpg.InterfaceError,
    # A connection the server cut while idle can surface, on its next query, as this state
    # mix-up rather than as a closed connection.
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
_DATABASE_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *_CONNECTION_ERRORS)



@dataclass(slots=True)
class _Placed:
    """One batch given positions: its events, the rows to insert, and the events it adds."""

    events: list[Event]
    rows: list[tuple[int, str, str, bytes]]
    added: dict[str, Event]


async def _setup_connection(conn: asyncpg.Connection) -> None:
    # json in and out as the bytes msgspec writes and reads: its binary form is the text itself.
    await conn.set_type_codec("json", schema="pg_catalog", encoder=_same, decoder=_same, format="binary")


def _same(data: bytes) -> bytes:
    return data


async def _connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        await _setup_connection(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


class PostgresEventStore:
    """`EventStore` on a PostgreSQL database. Open with `await PostgresEventStore.open(dsn)`."""

    def __init__(self, dsn: str, writer: asyncpg.Connection, pool: asyncpg.Pool, head: int, last_at: float) -> None:
        self.dsn = dsn
        self.name = redact_url(dsn)
        self._writer: asyncpg.Connection | None = writer
        self._pool = pool
        self._head = head  # the highest head known to be committed (own commits, notifications)
        self._written = head  # the head as of this writer's last transaction, and its time
        self._last_at = last_at
        self._heads = HeadBroadcast()
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self._commits = 0
        self._listening = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._groups = GroupCommits(self.name, self._commit, MAX_GROUP_EVENTS)
        self._listen_task = asyncio.create_task(self._listen(), name=f"postgres-store-listener:{self.name}")

    @classmethod
    async def open(cls, dsn: str, *, check: bool = True, read_connections: int = READ_CONNECTIONS) -> PostgresEventStore:
        """Open the store in the database `dsn` (a postgresql:// URL), creating its tables when
        missing. `check` runs the gap-free check (it reads the whole events table's index).
        Returns once the store listens for other writers' commits."""
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError("the PostgreSQL store needs a postgresql:// URL")
        if read_connections < 1:
            raise ValueError("read_connections must be >= 1")
        name = redact_url(dsn)
        try:
            writer = await _connect(dsn)
        except _DATABASE_ERRORS as error:
            raise StoreUnavailable(f"{name}: {error}") from error
        try:
            try:
                await _migrate(writer, name)
                if check:
                    await _check_gap_free(writer, name)
                head, last_at = await _read_head(writer)
                pool = await asyncpg.create_pool(
                    dsn, min_size=1, max_size=read_connections, init=_setup_connection, timeout=CONNECT_TIMEOUT_S
                )
            except StoreError:
                raise
            except _DATABASE_ERRORS as error:
                raise StoreUnavailable(f"{name}: {error}") from error
        except BaseException:
            await writer.close()
            raise
        store = cls(dsn, writer, pool, head, last_at)
        listening = asyncio.ensure_future(store._listening.wait())
        await asyncio.wait([listening, store._listen_task], timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not store._listening.is_set():
            listening.cancel()
            await store.close()
            raise StoreUnavailable(f"{name}: could not LISTEN for other writers' commits")
        return store

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self, events: Sequence[NewEvent], *, expect: Mapping[str, int] | None = None, expect_ignoring: str | None = None
    ) -> list[Event]:
        if self._closing:
            raise StoreClosed(f"{self.name} is closed")
        expected = check_expect(expect, expect_ignoring)
        batch = check_batch(events)
        if not batch:
            return []
        return await self._groups.append(batch, expected, expect_ignoring)

    async def _commit(self, batches: list[Batch]) -> list[Outcome]:
        """One group's transaction (see GroupCommits)."""
        try:
            try:
                outcomes, head = await self._write_group(batches)
            except _CONNECTION_ERRORS as error:
                # The connection broke (the server restarted, a proxy dropped it): once more on
                # a new one. Safe whatever happened to the first attempt, COMMIT included: an
                # id already stored gets its stored event back.
                log.warning("%s: the write connection failed (%s); appending again on a new one", self.name, error)
                await self._drop_writer()
                outcomes, head = await self._write_group(batches)
        except _DATABASE_ERRORS as error:
            if isinstance(error, _CONNECTION_ERRORS) or self._writer is None or self._writer.is_closed():
                await self._drop_writer()
            raise
        self._commits += 1
        self._announce(head)
        return outcomes

    async def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.terminate()

    async def _write_group(self, batches: list[Batch]) -> tuple[list[list[Event] | Exception], int]:
        """Commit the batches in one transaction; per batch, its events or the error that undid it."""
        if self._writer is None or self._writer.is_closed():
            self._writer = await _connect(self.dsn)
        conn = self._writer
        # Never before the previous commit: `at` stays ordered like seq even if the clock steps back.
        at = max(time.time(), self._last_at)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_SPACE, _APPEND_LOCK)
            # A statement of its own, after the lock: its snapshot holds every earlier commit.
            head: int = await conn.fetchval(_HEAD)
            if head and head != self._written:  # another process appended: continue after it, and its time
                payload = await conn.fetchval("SELECT payload FROM events WHERE seq = $1", head)
                at = max(at, decode_event(payload).at)
            ids = list({event.id for batch in batches for event in batch.events})
            known = {event.id: event for event in decode_events([row[0] for row in await conn.fetch("SELECT payload FROM events WHERE id = ANY($1::uuid[])", ids)])}
            refused = await _refused(conn, batches, known)
            accepted = [batch.events for batch, refusal in zip(batches, refused, strict=True) if refusal is None]
            inserted, new_head = await _insert_group(conn, accepted, head, at, known) if accepted else ([], head)
            results = iter(inserted)
            outcomes = [refusal if refusal is not None else next(results) for refusal in refused]
            if new_head > head:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(new_head))
        self._written, self._last_at = new_head, at
        return outcomes, new_head

    async def copy_in(self, events: Sequence[Event]) -> None:
        self._check_open()
        checked = check_copied(events)
        if not checked:
            return
        self._check_open()
        try:
            async with self._pool.acquire() as conn:
                head = await _copy_in(conn, checked)
        except _DATABASE_ERRORS as error:
            raise append_failed(error) from error
        self._announce(head)

    def _announce(self, head: int) -> None:
        if head > self._head:
            self._head = head
        self._heads.publish(head)

    # -- following other writers -------------------------------------------------------------

    async def _listen(self) -> None:
        """Keep a connection LISTENing for new heads, reconnecting when it drops."""
        delay = 0.05
        while not self._closing:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_S)
                lost = asyncio.Event()
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._on_notify)
                self._listener = conn
                # Whatever committed while nobody listened (before the first LISTEN, or while
                # reconnecting) is announced now; later commits arrive as notifications.
                self._announce(int(await conn.fetchval(_HEAD)))
                self._listening.set()
                delay = 0.05
                while not conn.is_closed():
                    try:
                        await asyncio.wait_for(lost.wait(), _LISTEN_CHECK_S)
                    except TimeoutError:
                        await conn.fetchval("SELECT 1")  # a dead socket shows up as an error here
            except _DATABASE_ERRORS as error:
                if not self._closing:
                    log.warning("%s: listening for new heads failed (%s); reconnecting", self.name, error)
            finally:
                self._listener = None
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            if not self._closing:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            head = int(str(payload))
        except ValueError:
            log.warning("%s: ignored a notification that is not a head: %r", self.name, payload)
            return
        self._announce(head)

    # -- reading ---------------------------------------------------------------------------

    async def _fetch_rows(self, sql: str, *params: object) -> list[asyncpg.Record]:
        self._check_open()
        try:
            rows: list[asyncpg.Record] = await self._pool.fetch(sql, *params)
            return rows
        except _DATABASE_ERRORS as error:
            if self._closing:
                raise StoreClosed(f"{self.name} is closed") from error
            raise ReadFailed(f"{self.name}: {error}") from error

    async def read(self, after: int = 0, *, stream: str | None = None, limit: int | None = None) -> list[Event]:
        self._check_open()
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        if limit == 0:
            return []
        rows = await self._fetch(after, stream, limit)
        return decode_events([row[0] for row in rows])

    async def _fetch(self, after: int, stream: str | None, limit: int | None, upto: int = INT64_MAX) -> list[asyncpg.Record]:
        # Keyset paging on seq; LIMIT NULL is no limit.
        if stream is None:
            return await self._fetch_rows("SELECT payload FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3", after, upto, limit)
        return await self._fetch_rows(
            "SELECT payload FROM events WHERE stream = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4", stream, after, upto, limit
        )

    async def iter_batches(
        self, after: int = 0, *, stream: str | None = None, batch_size: int = 10_000, upto: int | None = None
    ) -> AsyncIterator[list[Event]]:
        """Batches up to the head at about the time the last one is read (or `upto`)."""
        self._check_open()
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        bound = INT64_MAX if upto is None else upto
        # aclosing: a caller that stops early ends the read-ahead (its fetch) at once.
        async with contextlib.aclosing(batches_read_ahead(lambda start, limit: self._fetch(start, stream, limit, bound), after, batch_size)) as batches:
            async for batch in batches:
                yield batch

    async def get(self, id: str) -> Event | None:
        self._check_open()
        try:
            key = UUID(id)
        except (ValueError, TypeError, AttributeError):
            return None  # not an id this store could hold
        rows = await self._fetch_rows("SELECT payload FROM events WHERE id = $1", key)
        return decode_event(rows[0][0]) if rows else None

    async def head(self) -> int:
        self._check_open()
        rows = await self._fetch_rows(_HEAD)
        self._head = max(self._head, int(rows[0][0]))
        return self._head

    def subscribe(self) -> Subscription:
        return self._heads.subscribe(self._head)

    async def read_streams(self, prefix: str, after: int = 0, upto: int | None = None) -> list[Event]:
        self._check_open()
        if not isinstance(prefix, str):
            raise ValueError("prefix must be a string")
        sql = "SELECT payload FROM events WHERE seq > $1 AND seq <= $2"
        params: list[object] = [after, INT64_MAX if upto is None else upto]
        if prefix:
            # A range on the (stream, seq) index: `stream` sorts bytewise (COLLATE "C"), so every
            # name that starts with the prefix sorts between it and it with its last character
            # incremented.
            sql += " AND stream >= $3 AND left(stream, $4) = $3"
            params += [prefix, len(prefix)]
            last = ord(prefix[-1])
            if last < 0xD7FF:
                sql += " AND stream < $5"
                params.append(prefix[:-1] + chr(last + 1))
        rows = await self._fetch_rows(sql + " ORDER BY seq", *params)
        return decode_events([row[0] for row in rows])

    # -- snapshots and the object index -------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        self._check_open()
        check_snapshot(snapshot)
        checksum, keys = await snapshot_digests(snapshot)
        self._check_open()
        try:
            async with self._pool.acquire() as conn:
                await _save_snapshot(conn, snapshot, checksum, keys)
        except _DATABASE_ERRORS as error:
            raise append_failed(error) from error

    async def load_snapshot(self, stream: str, version: int, at_or_before: int | None = None) -> Snapshot | None:
        self._check_open()

        async def newest(bound: int) -> tuple[int, Any, Any] | None:
            rows = await self._fetch_rows(
                "SELECT seq, checksum, data FROM snapshots WHERE stream = $1 AND version = $2 AND seq <= $3 ORDER BY seq DESC LIMIT 1",
                stream, version, bound,
            )  # fmt: skip
            return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

        return await newest_valid_snapshot(self.name, stream, version, at_or_before, newest)

    async def load_parts(self, keys: Sequence[bytes]) -> list[bytes] | None:
        self._check_open()
        wanted = wanted_parts(keys)
        if not wanted:
            return []
        rows = await self._fetch_rows("SELECT key, data FROM snapshot_parts WHERE key = ANY($1::bytea[])", wanted)
        found: dict[bytes, bytes] = {row[0]: row[1] for row in rows}
        return await parts_in_order(self.name, keys, found)

    async def object_media(self, object_id: str) -> str | None:
        self._check_open()
        if not isinstance(object_id, str):
            raise ValueError("object_id must be a string")
        rows = await self._fetch_rows("SELECT media FROM objects WHERE object_id = $1", object_id)
        return str(rows[0][0]) if rows else None

    @property
    def commits(self) -> int:
        """Write transactions committed since open: appends / commits is the mean group size."""
        return self._commits

    # -- lifecycle -------------------------------------------------------------------------

    async def verify(self) -> None:
        """The gap-free check (and the schema version), on a read connection: the store keeps
        serving meanwhile. Raises StoreCorrupted."""
        self._check_open()
        try:
            async with self._pool.acquire() as conn:
                await _check_gap_free(conn, self.name)
        except _DATABASE_ERRORS as error:
            raise ReadFailed(f"{self.name}: {error}") from error

    def _check_open(self) -> None:
        if self._closing:
            raise StoreClosed(f"{self.name} is closed")

    async def close(self) -> None:
        if self._closed is not None:
            return await asyncio.shield(self._closed)
        self._closing = True
        self._closed = asyncio.get_running_loop().create_future()
        try:
            await self._groups.close()  # commits what was queued before close
            self._listen_task.cancel()
            await asyncio.gather(self._listen_task, return_exceptions=True)
            self._heads.close()
            try:
                await asyncio.wait_for(self._pool.close(), CONNECT_TIMEOUT_S)
            except _DATABASE_ERRORS:  # TimeoutError among them
                self._pool.terminate()
            if self._writer is not None:
                try:
                    await asyncio.wait_for(self._writer.close(), CONNECT_TIMEOUT_S)
                except _DATABASE_ERRORS:  # TimeoutError among them
                    self._writer.terminate()
        finally:
            self._closed.set_result(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


# -- inside transactions ---------------------------------------------------------------------


async def _migrate(conn: asyncpg.Connection, name: str) -> None:
    """Create what is missing, in one transaction under the schema lock (two processes opening a
    new database create it once); refuse a newer schema."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_SPACE, _SCHEMA_LOCK)
        if await conn.fetchval("SELECT to_regclass('masklog_store_format')") is not None:
            version = await conn.fetchval("SELECT version FROM masklog_store_format")
            if version is not None and version > STORE_FORMAT:
                raise StoreIncompatible(f"{name} has store format {version}; this build reads up to {STORE_FORMAT}")
        had_events = await conn.fetchval("SELECT to_regclass('events')") is not None
        had_objects = await conn.fetchval("SELECT to_regclass('objects')") is not None
        for statement in _SCHEMA:
            await conn.execute(statement)
        if had_events and not had_objects:
            started = time.perf_counter()
            for statement in _BACKFILL:
                await conn.execute(statement)
            count = await conn.fetchval("SELECT count(*) FROM objects")
            log.info("%s: object index filled from the log (%d ids) in %.2f s", name, count, time.perf_counter() - started)
        await conn.execute(
            "INSERT INTO masklog_store_format (version) VALUES ($1) ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
            STORE_FORMAT,
        )


async def _check_gap_free(conn: asyncpg.Connection, name: str) -> None:
    version = await conn.fetchval("SELECT version FROM masklog_store_format")
    if version != STORE_FORMAT:
        raise StoreCorrupted(f"{name}: store format {version!r}, expected {STORE_FORMAT}")
    count, last = await conn.fetchrow("SELECT count(*), coalesce(max(seq), 0) FROM events")
    if count != last:
        raise StoreCorrupted(f"{name}: {count} events but the last position is {last}: positions have gaps")


async def _read_head(conn: asyncpg.Connection) -> tuple[int, float]:
    row = await conn.fetchrow("SELECT seq, payload FROM events ORDER BY seq DESC LIMIT 1")
    if row is None:
        return 0, 0.0
    return int(row[0]), decode_event(row[1]).at


async def _refused(conn: asyncpg.Connection, batches: list[Batch], known: dict[str, Event]) -> list[StreamChanged | None]:
    """Per batch, the `StreamChanged` its expectation meets (a stream with an event after the
    expected position, in the log or written by an earlier batch of the group), or None."""
    pairs = [
        (index, stream, after, None if batch.ignoring is None else batch.ignoring + "%")
        for index, batch in enumerate(batches)
        for stream, after in batch.expect.items()
    ]
    changed: set[tuple[int, str]] = set()
    if pairs:
        rows = await conn.fetch(_CHANGED, *(list(column) for column in zip(*pairs, strict=True)))
        changed = {(row[0], row[1]) for row in rows}
    refused: list[StreamChanged | None] = []
    written: list[tuple[str, str]] = []  # (stream, actor) of what earlier batches of the group write
    for index, batch in enumerate(batches):
        new = [event for event in batch.events if event.id not in known]
        streams = [s for s in batch.expect if (index, s) in changed or any(w == s and batch.counts(actor) for w, actor in written)] if new else []
        if streams:
            refused.append(StreamChanged(streams))
        else:
            refused.append(None)
            written.extend((event.stream, event.actor) for event in new)
    return refused


async def _insert_group(
    conn: asyncpg.Connection, batches: list[list[NewEvent]], head: int, at: float, known: dict[str, Event]
) -> tuple[list[list[Event] | Exception], int]:
    """Insert the group's batches after `head`: all at once, or, when the server refuses that,
    each batch in a savepoint of its own so only the one at fault fails."""
    placed: list[_Placed] = []
    next_head, seen = head, dict(known)
    for batch in batches:
        one = _place(batch, next_head, at, seen)
        next_head += len(one.rows)
        seen.update(one.added)
        placed.append(one)
    if len(batches) == 1:
        await _insert(conn, placed[0].rows, placed[0].added.values())
        return [placed[0].events], next_head
    try:
        async with conn.transaction():  # a savepoint
            await _insert(conn, [row for one in placed for row in one.rows], [e for one in placed for e in one.added.values()])
        return [one.events for one in placed], next_head
    except asyncpg.PostgresError as error:
        if isinstance(error, _CONNECTION_ERRORS):
            raise
    outcomes: list[list[Event] | Exception] = []
    for batch in batches:
        one = _place(batch, head, at, known)
        try:
            async with conn.transaction():
                await _insert(conn, one.rows, one.added.values())
        except asyncpg.PostgresError as error:
            if isinstance(error, _CONNECTION_ERRORS):
                raise
            outcomes.append(error)
            continue
        head += len(one.rows)
        known.update(one.added)
        outcomes.append(one.events)
    return outcomes, head


def _place(batch: list[NewEvent], head: int, at: float, known: dict[str, Event]) -> _Placed:
    """Give the batch's new events positions after `head`; known ids keep their stored event."""
    placed = _Placed([], [], {})
    for new in batch:
        event = known.get(new.id) or placed.added.get(new.id)
        if event is None:
            head += 1
            event = stored(new, head, at)
            placed.rows.append((head, new.id, new.stream, encode(event)))
            placed.added[new.id] = event
        placed.events.append(event)
    return placed


async def _insert(conn: asyncpg.Connection, rows: list[tuple[int, str, str, bytes]], added: Iterable[Event]) -> None:
    if not rows:
        return
    await conn.execute(_INSERT, *(list(column) for column in zip(*rows, strict=True)))
    # The object index, in the same transaction. Within one statement a row may change only
    # once, so claims are reduced first: reservations keep the first media item of an id,
    # claims the last, and claims are written after reservations (they replace them) — the
    # same outcome as writing them one by one in log order.
    reserved: dict[str, str] = {}
    claimed: dict[str, str] = {}
    for event in added:
        body = event.body
        kind = type(body)
        if kind is ObjectCreated:
            assert isinstance(body, ObjectCreated)
            claimed[body.object] = body.media
        elif kind is PromptAdded:
            assert isinstance(body, PromptAdded)
            if body.media is not None and body.class_id is not None:
                reserved.setdefault(body.object, body.media)
    if reserved:
        await conn.execute(_RESERVE, list(reserved), list(reserved.values()))
    if claimed:
        await conn.execute(_CLAIM, list(claimed), list(claimed.values()))






async def _copy_in(conn: asyncpg.Connection, checked: list[tuple[Event, bytes]]) -> int:
    """Store a checked `copy_in` batch in one transaction under the append lock, as an append
    would (the writer of any store continues after it); the head after it."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_SPACE, _APPEND_LOCK)
        head: int = await conn.fetchval(_HEAD)
        rows = await conn.fetch("SELECT payload FROM events WHERE id = ANY($1::uuid[])", list({event.id for event, _ in checked}))
        stored = {event.id: event for event in decode_events([row[0] for row in rows])}
        new = copied_new(checked, head, stored)
        if not new:
            return head
        await _insert(conn, [(event.seq, event.id, event.stream, payload) for event, payload in new], [event for event, _ in new])
        head = new[-1][0].seq
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(head))
    return head


async def _save_snapshot(conn: asyncpg.Connection, snapshot: Snapshot, checksum: bytes, keys: list[bytes]) -> None:
    """Store one snapshot with its parts, thin out older ones of its stream and version and drop
    its stream's older versions, in one transaction under the snapshot lock."""
    stream, version, seq = snapshot.stream, snapshot.version, snapshot.seq
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_SPACE, _SNAPSHOT_LOCK)
        await conn.execute(
            "INSERT INTO snapshots (stream, version, seq, checksum, data) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (stream, version, seq) DO UPDATE SET checksum = excluded.checksum, data = excluded.data",
            stream, version, seq, checksum, snapshot.data,
        )
        if keys:
            parts = dict(zip(keys, snapshot.parts, strict=True))
            present = {row[0] for row in await conn.fetch("SELECT key FROM snapshot_parts WHERE key = ANY($1::bytea[])", list(parts))}
            new = [key for key in parts if key not in present]
            if new:
                await conn.execute(
                    "INSERT INTO snapshot_parts (key, data) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (key) DO NOTHING",
                    new, [parts[key] for key in new],
                )
            await conn.execute(
                "INSERT INTO snapshot_refs (stream, version, seq, key) SELECT $1, $2, $3, unnest($4::bytea[]) ON CONFLICT DO NOTHING",
                stream, version, seq, list(parts),
            )
        seqs = [row[0] for row in await conn.fetch("SELECT seq FROM snapshots WHERE stream = $1 AND version = $2 ORDER BY seq", stream, version)]
        drop = snapshots_to_drop(seqs)
        released = []
        if drop:
            await conn.execute("DELETE FROM snapshots WHERE stream = $1 AND version = $2 AND seq = ANY($3::bigint[])", stream, version, drop)
            released += await conn.fetch(
                "DELETE FROM snapshot_refs WHERE stream = $1 AND version = $2 AND seq = ANY($3::bigint[]) RETURNING key", stream, version, drop
            )
        # An older layout of this stream is never read again once a newer one is stored (readers
        # ask for their own version): it goes, parts and all (after an upgrade, GBs of them).
        await conn.execute("DELETE FROM snapshots WHERE stream = $1 AND version < $2", stream, version)
        released += await conn.fetch("DELETE FROM snapshot_refs WHERE stream = $1 AND version < $2 RETURNING key", stream, version)
        if released:
            # Parts no snapshot refers to any more go with the last one that did.
            await conn.execute(
                "DELETE FROM snapshot_parts p WHERE p.key = ANY($1::bytea[]) AND NOT EXISTS (SELECT 1 FROM snapshot_refs r WHERE r.key = p.key)",
                list({row[0] for row in released}),
            )


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()


async def stored_format(conn: asyncpg.Connection) -> int | None:
    """The store's schema version in the database of `conn`, read without changing anything;
    None when its tables are not there yet (`masklog migrate`, `masklog copy-log`)."""
    if await conn.fetchval("SELECT to_regclass('masklog_store_format')") is None:
        return None
    version = await conn.fetchval("SELECT version FROM masklog_store_format")
    return int(version) if version is not None else None
