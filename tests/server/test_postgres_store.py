"""The PostgreSQL store: the shared contract on a real server (tests/server/postgres_server.py),
plus what only PostgreSQL has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from masklog.server.postgres_store import CHANNEL, STORE_FORMAT, PostgresEventStore, redact
from masklog.server.store import AppendFailed, EventStore, StoreCorrupted, StoreIncompatible, StoreUnavailable
from tests.server.events_factory import batch, label_saved
from tests.server.postgres_server import PostgresServer
from tests.server.store_contract import EventStoreContract, seqs


async def _execute(dsn: str, sql: str, *params: object) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        result: str = await conn.execute(sql, *params)
        return result
    finally:
        await conn.close()


async def _fetchval(dsn: str, sql: str, *params: object) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *params)
    finally:
        await conn.close()


class Databases:
    """Fresh databases of the session's server, dropped when the test ends."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.made: list[str] = []

    async def new(self) -> str:
        dsn = await self.server.create_database()
        self.made.append(dsn)
        return dsn

    async def drop_all(self) -> None:
        for dsn in self.made:
            await self.server.drop_database(dsn)


@pytest.fixture
async def databases(postgres_server: PostgresServer) -> AsyncIterator[Databases]:
    made = Databases(postgres_server)
    try:
        yield made
    finally:
        await made.drop_all()


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _databases(self, databases: Databases) -> None:
        self.databases = databases

    async def open_store(self) -> EventStore:
        return await PostgresEventStore.open(await self.databases.new())

    async def reopen_store(self, store: EventStore) -> EventStore:
        assert isinstance(store, PostgresEventStore)
        await store.close()
        return await PostgresEventStore.open(store.dsn)

    async def open_another(self, store: EventStore) -> EventStore:
        assert isinstance(store, PostgresEventStore)
        return await PostgresEventStore.open(store.dsn, check=False)

    async def corrupt_snapshot(self, store: EventStore, stream: str, seq: int, version: int, data: bytes) -> None:
        assert isinstance(store, PostgresEventStore)
        changed = await _execute(store.dsn, "UPDATE snapshots SET data = $1 WHERE stream = $2 AND seq = $3 AND version = $4", data, stream, seq, version)
        assert changed == "UPDATE 1"

    async def corrupt_part(self, store: EventStore, key: bytes, data: bytes | None) -> None:
        assert isinstance(store, PostgresEventStore)
        if data is None:
            changed = await _execute(store.dsn, "DELETE FROM snapshot_parts WHERE key = $1", key)
            assert changed == "DELETE 1"
        else:
            changed = await _execute(store.dsn, "UPDATE snapshot_parts SET data = $1 WHERE key = $2", data, key)
            assert changed == "UPDATE 1"

    async def part_count(self, store: EventStore) -> int:
        assert isinstance(store, PostgresEventStore)
        count = await _fetchval(store.dsn, "SELECT count(*) FROM snapshot_parts")
        assert isinstance(count, int)
        return count

    async def forget_object_index(self, store: EventStore) -> EventStore:
        # There is no older PostgreSQL layout without the index; what comes closest is a
        # database that lost it (the table dropped by hand, to rebuild it): the store's open
        # creates the table again and fills it from the events, as SQLite's upgrade of format 1.
        assert isinstance(store, PostgresEventStore)
        await store.close()
        await _execute(store.dsn, "DROP TABLE objects")
        return await PostgresEventStore.open(store.dsn)
