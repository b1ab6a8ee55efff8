"""Presence between server processes through PostgreSQL notifications (`PresenceRelay`).

Each process LISTENs on PRESENCE_CHANNEL on a connection of its own and sends its seat changes
there with `pg_notify`: nothing is written to a table, so presence is never logged, and it
costs nothing when nobody moves. Changes queue in memory and a sender task sends them; a seat
that changed again before it was sent is sent once, as it is now (a cursor dragged across the
frame is not worth a notification per pixel to every process). When the connection drops, the
relay reconnects and the board announces all its seats again; the others' seats of this
process meanwhile expire on their own (`presence.EXPIRE_S`) if it never comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import msgspec

from masklog.server.postgres_store import _DATABASE_ERRORS, CONNECT_TIMEOUT_S
from masklog.server.presence import Outbox, PresenceBoard, SeatChange
from masklog.server.settings import redact_url

log = logging.getLogger("masklog.presence")

PRESENCE_CHANNEL = "masklog_presence"
_RECONNECT_MAX_S = 2.0
_decoder = msgspec.json.Decoder(SeatChange)


class PostgresPresenceRelay:
    def __init__(self, dsn: str, board: PresenceBoard) -> None:
        self.dsn = dsn
        self.name = redact_url(dsn)
        self._board = board
        self._outbox = Outbox()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, dsn: str, board: PresenceBoard, *, wait_s: float = CONNECT_TIMEOUT_S) -> PostgresPresenceRelay:
        relay = cls(dsn, board)
        relay._task = asyncio.create_task(relay._run(), name="presence-relay")
        with contextlib.suppress(TimeoutError):  # serving goes on; presence joins when it connects
            await asyncio.wait_for(relay._connected.wait(), wait_s)
        board.connect(relay)
        relay._refresh = asyncio.create_task(board.keep_fresh(), name="presence-refresh")
        return relay

    def send(self, change: SeatChange) -> None:
        self._outbox.put(change)

    async def close(self) -> None:
        for task in (self._refresh, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        delay = 0.05
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_S)
                await conn.add_listener(PRESENCE_CHANNEL, self._on_notify)
                if self._connected.is_set():  # reconnected: the others may have expired our seats
                    self._board.announce_all()
                self._connected.set()
                delay = 0.05
                while True:
                    if not self._outbox:
                        self._outbox.wake.clear()
                        with contextlib.suppress(TimeoutError):  # now and then: is the connection alive?
                            await asyncio.wait_for(self._outbox.wake.wait(), 5.0)
                        if not self._outbox:
                            await conn.fetchval("SELECT 1")
                            continue
                    changes = self._outbox.take()
                    await conn.executemany("SELECT pg_notify($1, $2)", [(PRESENCE_CHANNEL, msgspec.json.encode(c).decode()) for c in changes])
            except asyncio.CancelledError:
                raise
            except _DATABASE_ERRORS as error:  # OSError among them
                log.warning("%s: presence relay failed (%s); reconnecting", self.name, error)
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_S)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            change = _decoder.decode(str(payload))
        except msgspec.DecodeError:
            log.warning("ignored a presence notification that does not decode")
            return
        self._board.heard(change)
