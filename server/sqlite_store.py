"""The embedded event store: one SQLite file in WAL mode.

Writes: one writer task owns the write connection. Appends queue up while a transaction runs;
the writer then takes everything queued and commits it in ONE transaction (group commit, the
queue shared with the other backends: `server/group_commit.py`), so
under load a single fsync covers many callers. Each caller's batch sits in its own savepoint, so a
batch that fails inside the transaction is rolled back alone and the others in the group still
commit; batches are also checked (`check_batch`) before they queue, so the usual failure (an
event that does not encode or validate) never reaches the shared transaction at all.

The whole group transaction runs as one call on the writer's own thread: a trip between the
event loop and a database thread costs 60-80 us here, and a group transaction is several
statements (begin, id lookup, savepoints, inserts, commit). aiosqlite has no public way to run a
function on its thread, so the writer keeps a plain `sqlite3` connection on a one-thread
executor. Reads go through an aiosqlite connection of their own; WAL lets them run while the
writer commits.

Positions are assigned by the writer from the committed head, read inside the transaction
(`BEGIN IMMEDIATE` holds the file's write lock, so another process writing the same file waits
and then continues after these), and only advance when the transaction commits, so a failed
transaction leaves no gap.

Other writers' commits reach subscribers through a poll of the head (`follow_interval_s`) that
runs only while someone subscribes.

Besides the log the file holds two derived tables (format 2):
- `objects` (object_id -> media): the object index. Rows are written in the same transaction
  (and savepoint) as the events that claim an id: an `object_created` sets it (INSERT OR
  REPLACE), a `prompt_added` for a new object (with `class_id` and `media`) reserves it unless
  already claimed (INSERT OR IGNORE) — the order-independent form of the fold's rules. A file of
  format 1 gets the table filled from its events once, on open, in the transaction that
  upgrades it (about 2 s per million events here, measured on the bench log).
- `snapshots` (stream, seq, version, checksum, data): projection snapshots, a cache. The
  checksum (sha256 of data) is checked on every load; a damaged row is skipped, never trusted.
  Retention (`store.snapshots_to_drop`, shared with the PostgreSQL store) runs in the
  transaction of each save, which also drops the stream's snapshots of older versions.
- (format 3) `snapshot_parts` (key, data): the parts snapshots share, stored once by key (their
  sha256, checked on every load), and `snapshot_refs` (which snapshot uses which part). A part
  goes when retention drops the last snapshot that refers to it, in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from uuid import UUID

import aiosqlite

from masklog.domain.events import (
    Event,
    NewEvent,
    ObjectCreated,
    PromptAdded,
    decode_event,
    decode_events,
    encode,
    stored,
)
from masklog.server.group_commit import Batch, GroupCommits, Outcome, append_failed
from masklog.server.low_priority import run_at_low_priority
from masklog.server.store import (
    INT64_MAX,
    HeadBroadcast,
    ReadFailed,
    Snapshot,
    StoreClosed,
    StoreCorrupted,
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

Synchronous = Literal["FULL", "NORMAL"]
Check = Literal["none", "quick", "full"]

log = logging.getLogger(__name__)

# Bumped when the table layout changes; a file from a newer build is refused, not guessed at.
# 1: events. 2: + objects (the object index) and snapshots; a format-1 file is upgraded on open
# (tables created, index filled from the events). A build that only knows format 1 refuses a
# format-2 file: it would append events without keeping the index up to date. 3: + snapshot
# parts and their references (tables created on open; a format-2 file's snapshots stay readable).
STORE_FORMAT = 3

# A group stops growing at this many events, so one transaction (and the memory and latency it
# holds) stays bounded however many callers pile up; a single larger batch still goes alone.
MAX_GROUP_EVENTS = 20_000

# Ids per `IN (...)` lookup: well under SQLite's bound-parameter limit on every version.
_LOOKUP_CHUNK = 500

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,  -- the rowid: positions are the table's own order
    id BLOB NOT NULL UNIQUE,  -- uuid.bytes: idempotency key
    stream TEXT NOT NULL,
    payload TEXT NOT NULL     -- the whole encoded Event (JSON), what decode_event reads
) STRICT""",
    "CREATE INDEX IF NOT EXISTS events_stream_seq ON events (stream, seq)",
    # The media item each object id was claimed on (see the module's docstring).
    """CREATE TABLE IF NOT EXISTS objects (
    object_id TEXT PRIMARY KEY,
    media TEXT NOT NULL
) STRICT, WITHOUT ROWID""",
    # Projection snapshots; checksum = sha256(data).
    """CREATE TABLE IF NOT EXISTS snapshots (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    version INTEGER NOT NULL,
    checksum BLOB NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (stream, seq, version)
) STRICT""",
    # Parts of snapshots, by key = sha256(data), and which snapshot refers to which.
    """CREATE TABLE IF NOT EXISTS snapshot_parts (
    key BLOB PRIMARY KEY,
    data BLOB NOT NULL
) STRICT""",
    """CREATE TABLE IF NOT EXISTS snapshot_refs (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    version INTEGER NOT NULL,
    key BLOB NOT NULL,
    PRIMARY KEY (stream, seq, version, key)
) STRICT, WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS snapshot_refs_key ON snapshot_refs (key)",
]

# Filling the object index of a format-1 file from its events: created objects first (they win),
# then prompts for new objects where no claim exists. `instr` skips most rows before the JSON is
# parsed. Events are all of schema version 1 so far; an upcaster that changes these bodies must
# be mirrored here.
_BACKFILL = [
    """INSERT OR REPLACE INTO objects (object_id, media)
    SELECT json_extract(payload, '$.body.object'), json_extract(payload, '$.body.media') FROM events
    WHERE instr(payload, '"object_created"') AND json_extract(payload, '$.body.type') = 'object_created'
    ORDER BY seq""",
    """INSERT OR IGNORE INTO objects (object_id, media)
    SELECT json_extract(payload, '$.body.object'), json_extract(payload, '$.body.media') FROM events
    WHERE instr(payload, '"prompt_added"') AND json_extract(payload, '$.body.type') = 'prompt_added'
      AND json_extract(payload, '$.body.media') IS NOT NULL AND json_extract(payload, '$.body.class_id') IS NOT NULL
    ORDER BY seq""",
]

_CLAIM = "INSERT OR REPLACE INTO objects (object_id, media) VALUES (?, ?)"
_RESERVE = "INSERT OR IGNORE INTO objects (object_id, media) VALUES (?, ?)"



# CAST: msgspec hands out bytes, which SQLite would store as a BLOB; as TEXT the payload stays
# readable and queryable (json_extract) from the sqlite3 shell.
# An append's expectation (`EventStore.append`): does the stream have an event after the position?
_CHANGED = "SELECT 1 FROM events WHERE stream = ? AND seq > ? LIMIT 1"
# The same, counting only events whose actor does not match a prefix pattern ("model:%").
_CHANGED_COUNTING = "SELECT 1 FROM events WHERE stream = ? AND seq > ? AND json_extract(payload, '$.actor') NOT LIKE ? LIMIT 1"
_INSERT = "INSERT INTO events (seq, id, stream, payload) VALUES (?, ?, ?, CAST(? AS TEXT))"


READER_MMAP_BYTES = 1 << 30


# How often, while anyone subscribes, the file is checked for commits by other writers.
FOLLOW_INTERVAL_S = 0.05



class SQLiteEventStore:
    """`EventStore` on one SQLite file. Open with `await SQLiteEventStore.open(path)`."""

    def __init__(
        self,
        path: str,
        executor: ThreadPoolExecutor,
        writer: sqlite3.Connection,
        reader: aiosqlite.Connection,
        head: int,
        last_at: float,
        follow_interval_s: float = FOLLOW_INTERVAL_S,
    ) -> None:
        self.path = path
        self._executor = executor
        self._writer = writer
        self._reader = reader
        self._head = head
        self._last_at = last_at
        self._heads = HeadBroadcast()
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self._commits = 0
        self._follow_interval_s = follow_interval_s
        self._follower: asyncio.Task[None] | None = None
        self._groups = GroupCommits(path, self._commit, MAX_GROUP_EVENTS)

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        check: Check = "quick",
        follow_interval_s: float = FOLLOW_INTERVAL_S,
    ) -> SQLiteEventStore:
        """Open (creating if needed) the store in the file `path`.

        `synchronous="FULL"` (default) makes an acknowledged append survive power loss;
        `"NORMAL"` keeps it across a crash of the process but not of the machine, for a faster
        commit. `check` runs SQLite's quick or full integrity check and the gap-free check on
        open; both read the whole file. `follow_interval_s`: how soon subscribers hear of
        commits made by other writers of the file.
        """
        path = os.fspath(path)
        if path == ":memory:" or path.startswith("file:"):
            raise ValueError("the SQLite store needs a plain file path (WAL, and a second connection for reads)")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        if check not in ("none", "quick", "full"):
            raise ValueError(f"check must be none, quick or full, not {check!r}")
        try:
            return await cls._open(path, synchronous, check, follow_interval_s)
        except sqlite3.OperationalError as error:  # cannot open, locked, read-only, ...
            raise StoreUnavailable(f"{path}: {error}") from error
        except sqlite3.DatabaseError as error:  # not a database, malformed
            raise StoreCorrupted(f"{path}: {error}") from error

    @classmethod
    async def _open(cls, path: str, synchronous: Synchronous, check: Check, follow_interval_s: float) -> SQLiteEventStore:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="masklog-sqlite-writer")
        try:
            writer = await loop.run_in_executor(executor, _open_writer, path, synchronous, check)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        try:
            head, last_at = await loop.run_in_executor(executor, _read_head, writer)
            reader = await aiosqlite.connect(path, isolation_level=None)
            try:
                reader.text_factory = bytes  # payloads go to msgspec as bytes: no str detour
                await reader.execute_fetchall("PRAGMA query_only = ON")
                # Reads map the file instead of copying pages through read(): a rebuild scans
                # the whole log. Only address space; pages come from the OS cache either way.
                await reader.execute_fetchall(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
            except BaseException:
                await reader.close()
                raise
        except BaseException:
            await loop.run_in_executor(executor, writer.close)
            executor.shutdown(wait=False)
            raise
        return cls(path, executor, writer, reader, head, last_at, follow_interval_s)

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self, events: Sequence[NewEvent], *, expect: Mapping[str, int] | None = None, expect_ignoring: str | None = None
    ) -> list[Event]:
        if self._closing:
            raise StoreClosed(f"{self.path} is closed")
        expected = check_expect(expect, expect_ignoring)
        batch = check_batch(events)
        if not batch:
            return []
        return await self._groups.append(batch, expected, expect_ignoring)

    async def _commit(self, batches: list[Batch]) -> list[Outcome]:
        """One group's transaction, on the writer's thread (see GroupCommits)."""
        loop = asyncio.get_running_loop()
        try:
            outcomes, head, last_at = await loop.run_in_executor(
                self._executor, _write_group, self._writer, batches, self._head, self._last_at
            )
        except Exception:
            # Positions come from self._head: make sure it is what the file holds, in case the
            # failure was in or after COMMIT. If even that read fails, nothing was committed
            # that we know of, so the old head stands.
            before = self._head
            try:
                self._head, self._last_at = await loop.run_in_executor(self._executor, _read_head, self._writer)
            except Exception:
                pass
            if self._head > before:
                self._heads.publish(self._head)
            raise
        self._commits += 1
        advanced = head > self._head
        self._head, self._last_at = head, last_at
        if advanced:
            self._heads.publish(head)
        return outcomes

    async def copy_in(self, events: Sequence[Event]) -> None:
        self._check_open()
        checked = check_copied(events)
        if not checked:
            return
        loop = asyncio.get_running_loop()
        try:
            # On the writer's thread: serialised with the group commits, which continue after
            # whatever the file's head is.
            head, last_at = await loop.run_in_executor(self._executor, _copy_in, self._writer, checked)
        except sqlite3.Error as error:
            raise append_failed(error) from error
        if head > self._head:
            self._head, self._last_at = head, max(self._last_at, last_at)
            self._heads.publish(head)

    # -- reading ---------------------------------------------------------------------------

    async def read(self, after: int = 0, *, stream: str | None = None, limit: int | None = None) -> list[Event]:
        self._check_open()
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        if limit == 0:
            return []
        rows = await self._fetch(after, stream, -1 if limit is None else limit)
        return decode_events([row[0] for row in rows])

    async def iter_batches(
        self, after: int = 0, *, stream: str | None = None, batch_size: int = 10_000, upto: int | None = None
    ) -> AsyncIterator[list[Event]]:
        """Batches up to the head at about the time the last one is read (or `upto`); to follow
        the log further, read or tail after the last seq seen."""
        self._check_open()
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        bound = INT64_MAX if upto is None else upto
        # aclosing: a caller that stops early ends the read-ahead (its fetch) at once.
        async with contextlib.aclosing(batches_read_ahead(lambda start, limit: self._fetch(start, stream, limit, bound), after, batch_size)) as batches:
            async for batch in batches:
                yield batch

    async def _fetch(self, after: int, stream: str | None, limit: int, upto: int = INT64_MAX) -> list[tuple[bytes]]:
        # Keyset paging on seq (never OFFSET): each chunk is an index range scan. Only the
        # payload: a second column costs about a quarter more per row, and seq is inside it.
        if stream is None:
            sql = "SELECT payload FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
            params: tuple[object, ...] = (after, upto, limit)
        else:
            sql = "SELECT payload FROM events WHERE stream = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
            params = (stream, after, upto, limit)
        return await self._query(sql, params)

    async def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(await self._reader.execute_fetchall(sql, params))  # type: ignore[arg-type]
        except sqlite3.Error as error:
            raise ReadFailed(f"{self.path}: {error}") from error

    async def get(self, id: str) -> Event | None:
        self._check_open()
        try:
            key = UUID(id).bytes
        except (ValueError, TypeError, AttributeError):
            return None  # not an id this store could hold
        rows = await self._query("SELECT payload FROM events WHERE id = ?", (key,))
        return decode_event(rows[0][0]) if rows else None

    async def head(self) -> int:
        self._check_open()
        # The file's, not only this store's: another process may have appended.
        self._head = max(self._head, await self._file_head())
        return self._head

    async def _file_head(self) -> int:
        rows = await self._query("SELECT coalesce(max(seq), 0) FROM events")
        return int(rows[0][0])

    def subscribe(self) -> Subscription:
        subscription = self._heads.subscribe(self._head)
        if not self._closing and (self._follower is None or self._follower.done()):
            self._follower = asyncio.create_task(self._follow(), name=f"sqlite-store-follower:{self.path}")
        return subscription

    async def _follow(self) -> None:
        """Announce other writers' commits while anyone subscribes (this store's own commits are
        announced by the writer as they happen)."""
        while len(self._heads) and not self._closing:
            await asyncio.sleep(self._follow_interval_s)
            try:
                head = await self._file_head()
            except (ReadFailed, ValueError):  # busy, or closing under us: try again next time
                continue
            self._heads.publish(head)

    async def read_streams(self, prefix: str, after: int = 0, upto: int | None = None) -> list[Event]:
        self._check_open()
        if not isinstance(prefix, str):
            raise ValueError("prefix must be a string")
        sql = "SELECT payload FROM events WHERE seq > ?"
        params: list[object] = [after]
        if upto is not None:
            sql += " AND seq <= ?"
            params.append(upto)
        if prefix:
            # A range on the (stream, seq) index: every name that starts with the prefix sorts
            # between the prefix and the prefix with its last character incremented.
            sql += " AND stream >= ? AND substr(stream, 1, ?) = ?"
            params += [prefix, len(prefix), prefix]
            last = ord(prefix[-1])
            if last < 0xD7FF:
                sql += " AND stream < ?"
                params.append(prefix[:-1] + chr(last + 1))
        rows = await self._query(sql + " ORDER BY seq", tuple(params))
        return decode_events([row[0] for row in rows])

    # -- snapshots and the object index -------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        self._check_open()
        check_snapshot(snapshot)
        loop = asyncio.get_running_loop()
        checksum, keys = await snapshot_digests(snapshot)
        self._check_open()
        try:
            # On the writer's thread and connection: serialised with the group commits.
            await loop.run_in_executor(self._executor, _save_snapshot, self._writer, snapshot, checksum, keys)
        except sqlite3.Error as error:
            raise append_failed(error) from error

    async def load_snapshot(self, stream: str, version: int, at_or_before: int | None = None) -> Snapshot | None:
        self._check_open()

        async def newest(bound: int) -> tuple[int, Any, Any] | None:
            rows = await self._query(
                "SELECT seq, checksum, data FROM snapshots WHERE stream = ? AND version = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
                (stream, version, bound),
            )
            return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

        return await newest_valid_snapshot(str(self.path), stream, version, at_or_before, newest)

    async def load_parts(self, keys: Sequence[bytes]) -> list[bytes] | None:
        self._check_open()
        wanted = wanted_parts(keys)
        found: dict[bytes, bytes] = {}
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            rows = await self._query(
                f"SELECT key, data FROM snapshot_parts WHERE key IN ({','.join('?' * len(chunk))})", tuple(chunk)
            )
            found.update((key, data) for key, data in rows if isinstance(key, bytes) and isinstance(data, bytes))
        return await parts_in_order(self.path, keys, found)

    async def object_media(self, object_id: str) -> str | None:
        self._check_open()
        if not isinstance(object_id, str):
            raise ValueError("object_id must be a string")
        rows = await self._query("SELECT media FROM objects WHERE object_id = ?", (object_id,))
        if not rows:
            return None
        media = rows[0][0]  # text comes back as bytes (the readers' text_factory)
        return media.decode() if isinstance(media, bytes) else str(media)

    @property
    def commits(self) -> int:
        """Write transactions committed since open: appends / commits is the mean group size."""
        return self._commits

    # -- lifecycle -------------------------------------------------------------------------

    async def verify(self, check: Check = "quick") -> None:
        """SQLite's quick (or full) integrity check and the gap-free check, as `open` runs them,
        on a connection of their own, on a thread of their own at the lowest CPU priority: the
        store keeps serving meanwhile, at its usual speed. Raises StoreCorrupted."""
        self._check_open()
        if check not in ("quick", "full"):
            raise ValueError(f"check must be quick or full, not {check!r}")
        await run_at_low_priority(_verify, self.path, check, name="masklog-verify")

    def _check_open(self) -> None:
        if self._closing:
            raise StoreClosed(f"{self.path} is closed")

    async def close(self) -> None:
        if self._closed is not None:
            return await asyncio.shield(self._closed)
        self._closing = True
        self._closed = asyncio.get_running_loop().create_future()
        try:
            await self._groups.close()  # commits what was queued before close
            if self._follower is not None:
                self._follower.cancel()
                await asyncio.gather(self._follower, return_exceptions=True)
            self._heads.close()
            await self._reader.close()
            # Closing the last connection checkpoints the WAL into the main file.
            await asyncio.get_running_loop().run_in_executor(self._executor, self._writer.close)
        finally:
            self._executor.shutdown(wait=False)
            self._closed.set_result(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


# -- the writer thread ---------------------------------------------------------------------
# Everything below runs on the writer's thread, one call per group, never awaiting in between.


def _open_writer(path: str, synchronous: Synchronous, check: Check) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the module must not open transactions behind our back.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.text_factory = bytes
        conn.execute("PRAGMA busy_timeout = 5000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != b"wal":
            raise StoreIncompatible(f"{path}: cannot use WAL mode (got {mode!r}); is it on a network file system?")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > STORE_FORMAT:
            raise StoreIncompatible(f"{path} has store format {version}; this build reads up to {STORE_FORMAT}")
        if check != "none":
            _check_integrity(conn, path, check)
        _migrate(conn, path)
        if check != "none":
            _check_gap_free(conn, path)
        return conn
    except BaseException:
        conn.close()
        raise


def _check_integrity(conn: sqlite3.Connection, path: str, check: Check) -> None:
    problems = [row[0].decode() for row in conn.execute(f"PRAGMA {check}_check")]
    if problems != ["ok"]:
        raise StoreCorrupted(f"{path}: {'; '.join(problems[:5])}")


def _check_gap_free(conn: sqlite3.Connection, path: str) -> None:
    count, last = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone()
    if count != last:
        raise StoreCorrupted(f"{path}: {count} events but the last position is {last}: positions have gaps")


def _verify(path: str, check: Check) -> None:
    """The checks `open` can run, on a read-only connection of their own (they read the whole
    file: minutes on a very large log, so a server runs them after it is serving)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.text_factory = bytes
        conn.execute("PRAGMA busy_timeout = 5000")
        _check_integrity(conn, path, check)
        _check_gap_free(conn, path)
    except sqlite3.DatabaseError as error:
        raise StoreCorrupted(f"{path}: {error}") from error
    finally:
        conn.close()


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Create what is missing and upgrade an older format, in one transaction under the write
    lock (so two processes opening the same old file upgrade it once)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > STORE_FORMAT:
            raise StoreIncompatible(f"{path} has store format {version}; this build reads up to {STORE_FORMAT}")
        for statement in _SCHEMA:
            conn.execute(statement)
        if version < 2:
            started = time.perf_counter()
            conn.execute("DELETE FROM objects")
            for statement in _BACKFILL:
                conn.execute(statement)
            if version > 0:
                count = conn.execute("SELECT count(*) FROM objects").fetchone()[0]
                log.info("%s: object index filled from the log (%d ids) in %.2f s", path, count, time.perf_counter() - started)
        if version != STORE_FORMAT:
            conn.execute(f"PRAGMA user_version = {STORE_FORMAT}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _read_head(conn: sqlite3.Connection) -> tuple[int, float]:
    row = conn.execute("SELECT seq, payload FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        return 0, 0.0
    return row[0], decode_event(row[1]).at


def _write_group(
    conn: sqlite3.Connection, batches: list[Batch], head: int, last_at: float
) -> tuple[list[list[Event] | Exception], int, float]:
    """Commit the batches in one transaction; per batch, its events or the error that undid it."""
    # Never before the previous group: `at` stays ordered like seq even if the clock steps back.
    at = max(time.time(), last_at)
    isolate = len(batches) > 1
    outcomes: list[list[Event] | Exception] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have appended since this store's last commit: continue after it.
        if conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0] != head:
            head, file_at = _read_head(conn)
            at = max(at, file_at)
        known = _lookup(conn, {UUID(event.id).bytes for batch in batches for event in batch.events})
        written: list[tuple[str, str]] = []  # (stream, actor) of the events this group wrote so far
        for batch in batches:
            if batch.expect and not all(UUID(event.id).bytes in known for event in batch.events):
                changed = [s for s, after in batch.expect.items() if _changed(conn, batch, s, after, written)]
                if changed:
                    outcomes.append(StreamChanged(changed))
                    continue
            if isolate:
                conn.execute("SAVEPOINT batch")
            try:
                events, rows, added = _place(batch.events, head, at, known)
                conn.executemany(_INSERT, rows)
                _claim_objects(conn, added.values())
            except Exception as error:
                if not isolate:
                    raise
                # Raises in turn if SQLite already rolled the whole transaction back (I/O
                # error, disk full): then the group fails as a whole, which is the truth.
                conn.execute("ROLLBACK TO batch")
                conn.execute("RELEASE batch")
                outcomes.append(error)
                continue
            if isolate:
                conn.execute("RELEASE batch")
            head += len(rows)
            known.update(added)
            written.extend((event.stream, event.actor) for event in added.values())
            outcomes.append(events)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes, head, at


def _copy_in(conn: sqlite3.Connection, checked: list[tuple[Event, bytes]]) -> tuple[int, float]:
    """Store a checked `copy_in` batch in one transaction; the head and time after it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        head = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        stored = _lookup(conn, {UUID(event.id).bytes for event, _ in checked})
        new = copied_new(checked, head, {str(UUID(bytes=key)): event for key, event in stored.items()})
        conn.executemany(_INSERT, [(event.seq, UUID(event.id).bytes, event.stream, payload) for event, payload in new])
        _claim_objects(conn, [event for event, _ in new])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return _read_head(conn)


def _changed(conn: sqlite3.Connection, batch: Batch, stream: str, after: int, written: list[tuple[str, str]]) -> bool:
    """Whether `stream` has an event after `after` that counts against the batch's expectation:
    in the log, or written earlier in this group."""
    if any(s == stream and batch.counts(actor) for s, actor in written):
        return True
    if batch.ignoring is None:
        return conn.execute(_CHANGED, (stream, after)).fetchone() is not None
    return conn.execute(_CHANGED_COUNTING, (stream, after, batch.ignoring + "%")).fetchone() is not None


def _claim_objects(conn: sqlite3.Connection, events: Iterable[Event]) -> None:
    """Write the object index rows of newly stored events (inside their transaction)."""
    claimed: list[tuple[str, str]] = []
    reserved: list[tuple[str, str]] = []
    for event in events:
        body = event.body
        kind = type(body)
        if kind is ObjectCreated:
            assert isinstance(body, ObjectCreated)
            claimed.append((body.object, body.media))
        elif kind is PromptAdded:
            assert isinstance(body, PromptAdded)
            if body.media is not None and body.class_id is not None:
                reserved.append((body.object, body.media))
    if reserved:
        conn.executemany(_RESERVE, reserved)
    if claimed:
        conn.executemany(_CLAIM, claimed)






def _save_snapshot(conn: sqlite3.Connection, snapshot: Snapshot, checksum: bytes, keys: list[bytes]) -> None:
    """Store one snapshot with its parts, thin out older ones of its stream and version and drop
    its stream's older versions, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT OR REPLACE INTO snapshots (stream, seq, version, checksum, data) VALUES (?, ?, ?, ?, ?)",
            (snapshot.stream, snapshot.seq, snapshot.version, checksum, snapshot.data),
        )
        if keys:
            present = {
                row[0]
                for start in range(0, len(keys), _LOOKUP_CHUNK)
                for row in conn.execute(
                    f"SELECT key FROM snapshot_parts WHERE key IN ({','.join('?' * len(keys[start : start + _LOOKUP_CHUNK]))})",
                    keys[start : start + _LOOKUP_CHUNK],
                )
            }
            conn.executemany(
                "INSERT OR IGNORE INTO snapshot_parts (key, data) VALUES (?, ?)",
                [(key, part) for key, part in zip(keys, snapshot.parts, strict=True) if key not in present],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO snapshot_refs (stream, seq, version, key) VALUES (?, ?, ?, ?)",
                [(snapshot.stream, snapshot.seq, snapshot.version, key) for key in dict.fromkeys(keys)],
            )
        seqs = [
            row[0]
            for row in conn.execute(
                "SELECT seq FROM snapshots WHERE stream = ? AND version = ? ORDER BY seq", (snapshot.stream, snapshot.version)
            )
        ]
        dropped = [(snapshot.stream, snapshot.version, seq) for seq in snapshots_to_drop(seqs)]
        # An older layout of this stream is never read again once a newer one is stored (readers
        # ask for their own version): it goes, parts and all (after an upgrade, GBs of them).
        dropped += [
            (snapshot.stream, row[0], row[1])
            for row in conn.execute("SELECT version, seq FROM snapshots WHERE stream = ? AND version < ?", (snapshot.stream, snapshot.version))
        ]
        if dropped:
            conn.executemany("DELETE FROM snapshots WHERE stream = ? AND version = ? AND seq = ?", dropped)
            released = {
                row[0]
                for key in dropped
                for row in conn.execute("SELECT key FROM snapshot_refs WHERE stream = ? AND version = ? AND seq = ?", key)
            }
            conn.executemany("DELETE FROM snapshot_refs WHERE stream = ? AND version = ? AND seq = ?", dropped)
            # Parts no snapshot refers to any more go with the last one that did.
            conn.executemany(
                "DELETE FROM snapshot_parts WHERE key = ? AND NOT EXISTS (SELECT 1 FROM snapshot_refs WHERE key = ?)",
                [(key, key) for key in released],
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _lookup(conn: sqlite3.Connection, keys: set[bytes]) -> dict[bytes, Event]:
    """The already stored events among these ids."""
    found: dict[bytes, Event] = {}
    pending = list(keys)
    for start in range(0, len(pending), _LOOKUP_CHUNK):
        chunk = pending[start : start + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        for key, payload in conn.execute(f"SELECT id, payload FROM events WHERE id IN ({marks})", chunk):
            found[key] = decode_event(payload)
    return found


def _place(
    batch: list[NewEvent], head: int, at: float, known: dict[bytes, Event]
) -> tuple[list[Event], list[tuple[int, bytes, str, bytes]], dict[bytes, Event]]:
    """Give the batch's new events positions after `head`; known ids keep their stored event."""
    events: list[Event] = []
    rows: list[tuple[int, bytes, str, bytes]] = []
    added: dict[bytes, Event] = {}
    for new in batch:
        key = UUID(new.id).bytes
        event = known.get(key) or added.get(key)
        if event is None:
            head += 1
            event = stored(new, head, at)
            rows.append((head, key, new.stream, encode(event)))
            added[key] = event
        events.append(event)
    return events, rows, added


def stored_format(path: str | os.PathLike[str]) -> int | None:
    """The store format of the file at `path` (STORE_FORMAT's numbering), read without changing
    anything; None when there is no file or no log in it yet (`masklog migrate`, `masklog
    copy-log`). Raises StoreCorrupted for a file that is not a database."""
    if not os.path.exists(path):
        return None
    conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone() is None:
            return version or None
        return version or 1
    except sqlite3.DatabaseError as error:
        raise StoreCorrupted(f"{os.fspath(path)}: {error}") from error
    finally:
        conn.close()
