"""Work claims and the workers registry (`server.claims.WorkClaims`) in a SQLite file of their
own, `work.sqlite3` beside the log (`Settings.work_database`): the workers of one machine.

Own file, not the log's: claims are written every few seconds by every worker and are not
history, so they stay off the log's write lock and out of its backups. WAL lets readers run
while a worker writes; every write runs in `BEGIN IMMEDIATE` (the file's write lock taken up
front, waiting up to `busy_timeout` for another process's transaction instead of failing on a
stale snapshot), so processes sharing the file serialize their claims.

Time is `julianday('now')` turned into Unix seconds: SQLite reads the machine's clock once per
statement, so every process on the machine agrees (SQLite 3.40 has no `unixepoch('subsec')`).

The connection lives on a one-thread executor: each call is one function there (a whole
transaction), so the event loop never waits on the file.

Tables (created on open when missing):
- `work_claims (key, holder, expires_at)`: one row per claimed key.
- `workers (id, info, since, expires_at)`: `info` the `WorkerInfo` as JSON, `since` when the
  worker was first announced (the order of `workers()`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from masklog.server.claims import (
    FORGET_AFTER_S,
    Claim,
    ClaimsClosed,
    ClaimsUnavailable,
    WorkerInfo,
    check_key,
    check_keys,
    check_lease,
    decode_worker,
    encode_worker,
)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000

# Now, in Unix seconds, from SQLite's clock (2440587.5: the Julian day of 1970-01-01).
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS work_claims (key TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS work_claims_holder ON work_claims (holder)",
    "CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, info TEXT NOT NULL, since REAL NOT NULL, expires_at REAL NOT NULL)",
]

# One statement: the row is inserted, or taken over when its lease ran out, or renewed by its
# holder; RETURNING gives a row only when one of those happened.
_CLAIM = (
    f"INSERT INTO work_claims (key, holder, expires_at) VALUES (?1, ?2, {_NOW} + ?3) "
    "ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
    f"WHERE work_claims.expires_at <= {_NOW} OR work_claims.holder = excluded.holder "
    "RETURNING holder"
)
# Keys travel as one JSON array parameter: no limit on the number of SQL variables to meet.
_RENEW = f"UPDATE work_claims SET expires_at = {_NOW} + ?3 WHERE holder = ?1 AND key IN (SELECT value FROM json_each(?2)) RETURNING key"
_RELEASE = "DELETE FROM work_claims WHERE holder = ?1 AND key IN (SELECT value FROM json_each(?2))"
_HOLDERS = f"SELECT key, holder, expires_at - {_NOW} FROM work_claims WHERE expires_at > {_NOW}"
_ANNOUNCE = (
    f"INSERT INTO workers (id, info, since, expires_at) VALUES (?1, ?2, {_NOW}, {_NOW} + ?3) "
    "ON CONFLICT (id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at, "
    f"since = CASE WHEN workers.expires_at > {_NOW} THEN workers.since ELSE excluded.since END"
)
_FORGET = [
    f"DELETE FROM work_claims WHERE expires_at < {_NOW} - ?1",
    f"DELETE FROM workers WHERE expires_at < {_NOW} - ?1",
]


class SQLiteClaims:
    """`WorkClaims` in a SQLite file. Open with `await SQLiteClaims.open(path)`; several
    processes may open the same file."""

    def __init__(self, path: Path, conn: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self.path = path
        self._conn = conn
        self._thread = thread
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SQLiteClaims:
        path = Path(path)
        thread = ThreadPoolExecutor(1, thread_name_prefix="masklog-claims")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(thread, _connect, path)
        except sqlite3.Error as error:
            thread.shutdown(wait=False)
            raise ClaimsUnavailable(f"{path}: {error}") from error
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(path, conn, thread)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise ClaimsClosed(f"the claims in {self.path} are closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, work, self._conn)
        except sqlite3.Error as error:
            raise ClaimsUnavailable(f"{self.path}: {error}") from error

    async def claim(self, key: str, holder: str, lease_s: float) -> bool:
        params = (check_key(key), check_key(holder, "holder"), check_lease(lease_s))
        return await self._run(lambda conn: _write(conn, lambda: bool(conn.execute(_CLAIM, params).fetchall())))

    async def renew(self, holder: str, keys: Collection[str], lease_s: float) -> set[str]:
        params = (check_key(holder, "holder"), json.dumps(check_keys(keys)), check_lease(lease_s))
        return await self._run(lambda conn: _write(conn, lambda: {key for (key,) in conn.execute(_RENEW, params).fetchall()}))

    async def release(self, holder: str, keys: Collection[str]) -> None:
        params = (check_key(holder, "holder"), json.dumps(check_keys(keys)))
        await self._run(lambda conn: _write(conn, lambda: conn.execute(_RELEASE, params)))

    async def holders(self, keys: Collection[str] | None = None) -> dict[str, Claim]:
        query: str = _HOLDERS
        params: tuple[str, ...] = ()
        if keys is not None:
            query, params = _HOLDERS + " AND key IN (SELECT value FROM json_each(?))", (json.dumps(check_keys(keys)),)
        rows = await self._run(lambda conn: conn.execute(query, params).fetchall())
        return {key: Claim(key, holder, expires_in_s) for key, holder, expires_in_s in rows}

    async def announce(self, worker: WorkerInfo, lease_s: float) -> None:
        data = encode_worker(worker)  # checks it is a WorkerInfo
        params = (worker.id, data.decode(), check_lease(lease_s))

        def announce(conn: sqlite3.Connection) -> None:
            for statement in _FORGET:
                conn.execute(statement, (FORGET_AFTER_S,))
            conn.execute(_ANNOUNCE, params)

        await self._run(lambda conn: _write(conn, lambda: announce(conn)))

    async def workers(self) -> list[WorkerInfo]:
        query = f"SELECT info FROM workers WHERE expires_at > {_NOW} ORDER BY since, id"
        rows = await self._run(lambda conn: conn.execute(query).fetchall())
        return [decode_worker(info) for (info,) in rows]

    async def retire(self, worker_id: str) -> None:
        check_key(worker_id, "worker id")

        def retire(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
            conn.execute("DELETE FROM work_claims WHERE holder = ?", (worker_id,))

        await self._run(lambda conn: _write(conn, lambda: retire(conn)))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued behind the calls already submitted, which finish first.
        await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown(wait=False)


# -- on the claims thread ------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the module must not open transactions behind our back.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = _wal(conn)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL mode (got {mode!r}); is it on a network file system?")
        # Claims are leases, not history: after a power cut every holder is gone anyway.
        conn.execute("PRAGMA synchronous = NORMAL")
        _write(conn, lambda: [conn.execute(statement) for statement in _SCHEMA])
        return conn
    except BaseException:
        conn.close()
        raise


def _wal(conn: sqlite3.Connection) -> object:
    """Switch to WAL mode. Two processes creating the file at once can see "database is locked"
    here at once, without the busy timeout: SQLite does not wait for the lock a journal mode
    change takes. So this waits itself, up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _write(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    """`work` in one write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on failure."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result
