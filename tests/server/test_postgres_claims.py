"""The PostgreSQL claims: the shared contract on a real server (tests/server/postgres_server.py),
real OS processes sharing the tables, and what only they have: tables beside the log's in one
database, a retry over a lost connection, an unreachable server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from masklog.server.claims import ClaimsUnavailable, WorkClaims
from masklog.server.postgres_claims import PostgresClaims
from masklog.server.postgres_store import PostgresEventStore
from masklog.server.settings import Settings
from masklog.server.storage import open_claims
from tests.server.claims_contract import LONG, ClaimsContract, check_disjoint_and_complete, claims_in_processes, worker
from tests.server.events_factory import batch
from tests.server.postgres_server import PostgresServer
from tests.server.test_postgres_store import Databases, _fetchval, databases  # noqa: F401 (a fixture)


class TestPostgresClaims(ClaimsContract):
    @pytest.fixture(autouse=True)
    def _databases(self, databases: Databases) -> None:  # noqa: F811
        self.databases = databases

    async def open_claims(self) -> WorkClaims:
        return await PostgresClaims.open(await self.databases.new())

    async def open_another(self, claims: WorkClaims) -> WorkClaims:
        assert isinstance(claims, PostgresClaims)
        return await PostgresClaims.open(claims.dsn)


async def test_two_processes_claiming_the_same_keys_share_them_out(databases: Databases) -> None:  # noqa: F811
    dsn = await databases.new()
    await (await PostgresClaims.open(dsn)).close()  # the tables exist before the race
    keys = [f"track:{i}" for i in range(100)]
    won = await asyncio.to_thread(claims_in_processes, "postgresql", dsn, keys, ["A", "B"])
    check_disjoint_and_complete(won, keys)
    claims = await PostgresClaims.open(dsn)
    try:
        stored = {key: claim.holder for key, claim in (await claims.holders()).items()}
    finally:
        await claims.close()
    assert stored == {key: holder for holder, keys_won in won.items() for key in keys_won}


async def test_claims_and_the_log_share_one_database(tmp_path: Path, databases: Databases) -> None:  # noqa: F811
    dsn = await databases.new()
    async with await PostgresEventStore.open(dsn) as store:
        claims = await open_claims(Settings(data=tmp_path, storage="postgresql", database_url=dsn))
        try:
            assert isinstance(claims, PostgresClaims)
            await store.append(batch(2))
            assert await claims.claim("track:1", "w1", LONG)
            await claims.announce(worker("w1"), LONG)
        finally:
            await claims.close()
    assert await _fetchval(dsn, "SELECT holder FROM masklog_work_claims WHERE key = 'track:1'") == "w1"
    assert await _fetchval(dsn, "SELECT info->>'backend' FROM masklog_workers") == "classical"
    assert await _fetchval(dsn, "SELECT count(*) FROM events") == 2
    assert not (tmp_path / "work.sqlite3").exists()


async def test_opening_a_new_database_at_once_creates_the_tables_once(databases: Databases) -> None:  # noqa: F811
    dsn = await databases.new()
    opened = await asyncio.gather(*(PostgresClaims.open(dsn) for _ in range(4)))
    try:
        assert await opened[0].claim("k", "w1", LONG)
        assert not await opened[3].claim("k", "w2", LONG)
    finally:
        await asyncio.gather(*(claims.close() for claims in opened))


async def test_claims_outlive_a_lost_connection(databases: Databases) -> None:  # noqa: F811
    dsn = await databases.new()
    claims = await PostgresClaims.open(dsn)
    try:
        assert await claims.claim("k", "w1", LONG)
        await claims.announce(worker("w1"), LONG)
        # An administrator (or a restarted pooler) ends every session of the claims' pool.
        admin = await asyncpg.connect(dsn)
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert ended >= 1
        # The lease is a row, not a session's lock: still held, and renewed over a new connection.
        assert await claims.renew("w1", ["k"], LONG) == {"k"}
        assert [w.id for w in await claims.workers()] == ["w1"]
        assert not await claims.claim("k", "w2", LONG)
    finally:
        await claims.close()


async def test_a_claim_whose_connection_is_cut_mid_statement_is_tried_again(databases: Databases) -> None:  # noqa: F811
    dsn = await databases.new()
    claims = await PostgresClaims.open(dsn)
    admin = await asyncpg.connect(dsn)
    try:
        assert await claims.claim("k", "w1", LONG)
        # Hold the row, so the holder's renewal waits on it while its session is ended.
        locked = admin.transaction()
        await locked.start()
        await admin.execute("SELECT 1 FROM masklog_work_claims WHERE key = 'k' FOR UPDATE")
        renewal = asyncio.create_task(claims.claim("k", "w1", LONG))
        await asyncio.sleep(0.3)
        assert not renewal.done()
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert ended >= 1
        await asyncio.sleep(0.3)
        await locked.rollback()
        assert await asyncio.wait_for(renewal, 10)  # answered over a new connection
        assert {key: c.holder for key, c in (await claims.holders()).items()} == {"k": "w1"}
    finally:
        await admin.close()
        await claims.close()


async def test_an_unreachable_database_is_claims_unavailable(postgres_server: PostgresServer) -> None:
    with pytest.raises(ClaimsUnavailable, match="no_such_database"):
        await PostgresClaims.open(postgres_server.dsn("no_such_database"))


async def test_a_server_that_went_away_is_claims_unavailable(databases: Databases) -> None:  # noqa: F811
    dsn = await databases.new()
    claims = await PostgresClaims.open(dsn)
    try:
        await databases.server.drop_database(dsn)  # FORCE: ends the claims' sessions too
        with pytest.raises(ClaimsUnavailable):
            await claims.claim("k", "w1", LONG)
    finally:
        await claims.close()
