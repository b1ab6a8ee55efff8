"""Presence between the processes of one machine sharing a SQLite log (`serve --workers` and its
`masklog worker`s): the `PresenceRelay` of the SQLite storage, through `work.sqlite3`.

What it is for: a worker warms the image embeddings of the frames users are on (issue 19), and
only the server sees the users. PostgreSQL carries seat changes as notifications
(server.postgres_presence); SQLite has none, so each process writes its seats' latest changes
into a table of the claims file and reads the others' by polling a version number every
POLL_S. One row per (process, seat, media item), the latest change only: presence is never
logged, and a row not rewritten for FORGET_S is deleted (its process re-announces every
`presence.REFRESH_S` while it lives; the boards expire what they stop hearing of on their own).

As with the PostgreSQL relay, changes queue in memory and one task writes them; a seat that
changed again before it was written is written once, as it is now, and writes are at least
MIN_WRITE_INTERVAL_S apart (a cursor dragged across the frame is not a write per pixel). A
failing file (locked past the busy timeout) is logged and tried again; the board's seats are
announced again once it works.

Tables (created on open when missing), beside the claims':
- `presence (origin, seat, media, change, version, written_at)`: `change` a `SeatChange` as JSON.
- `presence_head (id = 0, version)`: the last version given out (rows may be deleted; versions
  never go back, so a reader's position stays valid).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from masklog.server.presence import EXPIRE_S, Outbox, PresenceBoard, SeatChange
from masklog.server.sqlite_claims import _NOW, BUSY_TIMEOUT_MS, _wal, _write

log = logging.getLogger("masklog.presence")

POLL_S = 0.1
MIN_WRITE_INTERVAL_S = 0.05
FORGET_S = 2 * EXPIRE_S
_RETRY_S = 1.0

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS presence (origin TEXT NOT NULL, seat INTEGER NOT NULL, media TEXT NOT NULL,"
    " change TEXT NOT NULL, version INTEGER NOT NULL, written_at REAL NOT NULL, PRIMARY KEY (origin, seat, media))",
    "CREATE INDEX IF NOT EXISTS presence_version ON presence (version)",
    "CREATE TABLE IF NOT EXISTS presence_head (id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO presence_head VALUES (0, 0)",
]
_UPSERT = (
    f"INSERT INTO presence VALUES (?, ?, ?, ?, (SELECT version FROM presence_head), {_NOW})"
    " ON CONFLICT (origin, seat, media) DO UPDATE SET change = excluded.change, version = excluded.version, written_at = excluded.written_at"
)
_decoder = msgspec.json.Decoder(SeatChange)
T = TypeVar("T")


class SQLitePresenceRelay:
    def __init__(self, path: Path, board: PresenceBoard) -> None:
        self.path = path
        self._board = board
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="masklog-presence")
        self._conn: sqlite3.Connection | None = None
        self._outbox = Outbox()
        self._read = 0  # the last version heard
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(cls, path: Path, board: PresenceBoard) -> SQLitePresenceRelay:
        relay = cls(Path(path), board)
        loop = asyncio.get_running_loop()
        relay._conn = await loop.run_in_executor(relay._thread, _connect, relay.path)
        # What the others announced before this process started (the rows still fresh).
        relay._read, rows = await relay._run(_current)
        relay._hear(rows)
        board.connect(relay)
        relay._tasks = [
            asyncio.create_task(relay._send_loop(), name="presence-write"),
            asyncio.create_task(relay._poll_loop(), name="presence-read"),
            asyncio.create_task(board.keep_fresh(), name="presence-refresh"),
        ]
        return relay

    def send(self, change: SeatChange) -> None:
        self._outbox.put(change)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown(wait=False)

    async def _send_loop(self) -> None:
        failed = False
        while True:
            if not self._outbox:
                self._outbox.wake.clear()
                await self._outbox.wake.wait()
            changes = self._outbox.take()
            try:
                await self._run(_write_changes, changes)
            except sqlite3.Error as error:
                log.warning("%s: writing presence failed (%s); trying again", self.path, error)
                self._outbox.put_back(changes)
                failed = True
                await asyncio.sleep(_RETRY_S)
                continue
            if failed:  # the others may have expired this process's seats meanwhile
                failed = False
                self._board.announce_all()
            await asyncio.sleep(MIN_WRITE_INTERVAL_S)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self._poll()
            except sqlite3.Error as error:
                log.warning("%s: reading presence failed (%s); trying again", self.path, error)
                await asyncio.sleep(_RETRY_S)

    async def _poll(self) -> None:
        rows = await self._run(_changes_after, self._read)
        if rows:
            self._read = rows[-1][1]
        self._hear(rows)

    def _hear(self, rows: list[tuple[str, int]]) -> None:
        for change, _ in rows:
            try:
                decoded = _decoder.decode(change)
            except msgspec.DecodeError:
                log.warning("ignored a presence row that does not decode")
                continue
            self._board.heard(decoded)

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        assert self._conn is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, self._conn, *args)


# -- on the relay's thread -------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")  # presence is not history
        _write(conn, lambda: [conn.execute(statement) for statement in _SCHEMA])
        return conn
    except BaseException:
        conn.close()
        raise


def _write_changes(conn: sqlite3.Connection, changes: list[SeatChange]) -> None:
    def work() -> None:
        conn.execute(f"DELETE FROM presence WHERE written_at < {_NOW} - ?", (FORGET_S,))
        for change in changes:
            conn.execute("UPDATE presence_head SET version = version + 1 WHERE id = 0")
            conn.execute(_UPSERT, (change.origin, change.seat, change.media, msgspec.json.encode(change).decode()))

    _write(conn, work)


def _changes_after(conn: sqlite3.Connection, version: int) -> list[tuple[str, int]]:
    rows = conn.execute("SELECT change, version FROM presence WHERE version > ? ORDER BY version", (version,)).fetchall()
    return [(str(change), int(v)) for change, v in rows]


def _current(conn: sqlite3.Connection) -> tuple[int, list[tuple[str, int]]]:
    """The last version given out, and the rows written within EXPIRE_S (one read transaction)."""
    conn.execute("BEGIN")
    try:
        (head,) = conn.execute("SELECT version FROM presence_head WHERE id = 0").fetchone()
        query = f"SELECT change, version FROM presence WHERE written_at > {_NOW} - ? AND NOT json_extract(change, '$[6]') ORDER BY version"
        rows = conn.execute(query, (EXPIRE_S,)).fetchall()
    finally:
        conn.execute("COMMIT")
    return int(head), [(str(change), int(v)) for change, v in rows]
