"""Work claims and the workers registry (`server.claims.WorkClaims`) in the PostgreSQL database of
the event log: the workers of a cluster.

**Why a lease row, not a session advisory lock.** An advisory lock lives as long as the
connection that took it: a connection blip (a restarted pooler, a broken socket) would drop every
claim of a worker that is still working, and a connection could never be shared by a pool. A row
with an expiry outlives the connection and is what the SQLite backend keeps too, so both keep one
contract. `claim` is one `INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE expired OR same holder
RETURNING holder`: the unique index and the row lock make concurrent claims of one key queue, and
each re-checks the row the previous one committed, so exactly one holder wins.

**Time** is `clock_timestamp()`, the database server's clock when the statement runs, never a
worker's.

**A lost connection** is retried once on a fresh connection of the pool; every call is
idempotent (a claim that committed but whose answer was lost is, the second time, its holder's
renewal). A second failure, or any other database error, is `ClaimsUnavailable`.

**Tables** (created on open when missing, in one transaction under an advisory lock of their
own; no format row: everything in them expires within an hour, so a later layout can start
afresh):
- `masklog_work_claims (key, holder, expires_at)`.
- `masklog_workers (id, info, since, expires_at)`: `info` the `WorkerInfo` as JSON, `since`
  when it was first announced (the order of `workers()`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

import asyncpg

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
from masklog.server.postgres_store import (
    _CLAIMS_SCHEMA_LOCK,
    _CONNECTION_ERRORS,
    _DATABASE_ERRORS,
    _LOCK_SPACE,
    CONNECT_TIMEOUT_S,
    _setup_connection,
)
from masklog.server.settings import redact_url

T = TypeVar("T")

# Claims and announcements are small and every few seconds per worker: a small pool.
CONNECTIONS = 2

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS masklog_work_claims (key text PRIMARY KEY, holder text NOT NULL, expires_at timestamptz NOT NULL)",
    "CREATE INDEX IF NOT EXISTS masklog_work_claims_holder ON masklog_work_claims (holder)",
    """CREATE TABLE IF NOT EXISTS masklog_workers (
    id text PRIMARY KEY,
    info json NOT NULL,
    since timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
)""",
]

_LEASE = "clock_timestamp() + make_interval(secs => $3)"
_CLAIM = (
    f"INSERT INTO masklog_work_claims AS c (key, holder, expires_at) VALUES ($1, $2, {_LEASE}) "
    "ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
    "WHERE c.expires_at <= clock_timestamp() OR c.holder = excluded.holder "
    "RETURNING holder"
)
_RENEW = f"UPDATE masklog_work_claims SET expires_at = {_LEASE} WHERE holder = $1 AND key = ANY($2::text[]) RETURNING key"
_RELEASE = "DELETE FROM masklog_work_claims WHERE holder = $1 AND key = ANY($2::text[])"
_HOLDERS = (
    "SELECT key, holder, extract(epoch FROM expires_at - clock_timestamp())::float8 FROM masklog_work_claims "
    "WHERE expires_at > clock_timestamp() AND ($1::text[] IS NULL OR key = ANY($1::text[]))"
)
_ANNOUNCE = (
    "INSERT INTO masklog_workers AS w (id, info, since, expires_at) "
    "VALUES ($1, $2, clock_timestamp(), clock_timestamp() + make_interval(secs => $3)) "
    "ON CONFLICT (id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at, "
    "since = CASE WHEN w.expires_at > clock_timestamp() THEN w.since ELSE excluded.since END"
)
_FORGET = [
    "DELETE FROM masklog_work_claims WHERE expires_at < clock_timestamp() - make_interval(secs => $1)",
    "DELETE FROM masklog_workers WHERE expires_at < clock_timestamp() - make_interval(secs => $1)",
]
_WORKERS = "SELECT info FROM masklog_workers WHERE expires_at > clock_timestamp() ORDER BY since, id"


class PostgresClaims:
    """`WorkClaims` in PostgreSQL. Open with `await PostgresClaims.open(dsn)`."""

    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        self.dsn = dsn
        self.name = redact_url(dsn)
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(cls, dsn: str) -> PostgresClaims:
        """Open the claims in the database `dsn` (a postgresql:// URL), creating their tables when
        missing. An unreachable database is ClaimsUnavailable."""
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError("the PostgreSQL claims need a postgresql:// URL")
        name = redact_url(dsn)
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=CONNECTIONS, init=_setup_connection, timeout=CONNECT_TIMEOUT_S)
        except _DATABASE_ERRORS as error:
            raise ClaimsUnavailable(f"{name}: {error}") from error
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_SPACE, _CLAIMS_SCHEMA_LOCK)
                for statement in _SCHEMA:
                    await conn.execute(statement)
        except BaseException as error:
            await pool.close()
            if isinstance(error, _DATABASE_ERRORS):
                raise ClaimsUnavailable(f"{name}: {error}") from error
            raise
        return cls(dsn, pool)

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._closed:
            raise ClaimsClosed(f"the claims in {self.name} are closed")
        for attempt in range(2):
            try:
                async with self._pool.acquire() as conn:
                    return await work(conn)
            except _CONNECTION_ERRORS as error:
                if attempt or self._closed:
                    raise ClaimsUnavailable(f"{self.name}: {error}") from error
            except _DATABASE_ERRORS as error:
                raise ClaimsUnavailable(f"{self.name}: {error}") from error
        raise AssertionError("unreachable")

    async def claim(self, key: str, holder: str, lease_s: float) -> bool:
        params = (check_key(key), check_key(holder, "holder"), check_lease(lease_s))
        return await self._run(lambda conn: conn.fetchval(_CLAIM, *params)) is not None

    async def renew(self, holder: str, keys: Collection[str], lease_s: float) -> set[str]:
        params = (check_key(holder, "holder"), check_keys(keys), check_lease(lease_s))
        rows = await self._run(lambda conn: conn.fetch(_RENEW, *params))
        return {row[0] for row in rows}

    async def release(self, holder: str, keys: Collection[str]) -> None:
        params = (check_key(holder, "holder"), check_keys(keys))
        await self._run(lambda conn: conn.execute(_RELEASE, *params))

    async def holders(self, keys: Collection[str] | None = None) -> dict[str, Claim]:
        wanted = None if keys is None else check_keys(keys)
        rows = await self._run(lambda conn: conn.fetch(_HOLDERS, wanted))
        return {key: Claim(key, holder, expires_in_s) for key, holder, expires_in_s in rows}

    async def announce(self, worker: WorkerInfo, lease_s: float) -> None:
        data = encode_worker(worker)  # checks it is a WorkerInfo
        lease = check_lease(lease_s)

        async def announce(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                for statement in _FORGET:
                    await conn.execute(statement, FORGET_AFTER_S)
                await conn.execute(_ANNOUNCE, worker.id, data, lease)

        await self._run(announce)

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._run(lambda conn: conn.fetch(_WORKERS))
        return [decode_worker(row[0]) for row in rows]

    async def retire(self, worker_id: str) -> None:
        check_key(worker_id, "worker id")

        async def retire(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("DELETE FROM masklog_workers WHERE id = $1", worker_id)
                await conn.execute("DELETE FROM masklog_work_claims WHERE holder = $1", worker_id)

        await self._run(retire)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._pool.close(), CONNECT_TIMEOUT_S)
        except _DATABASE_ERRORS:  # TimeoutError among them
            self._pool.terminate()
