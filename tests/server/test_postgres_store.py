"""The PostgreSQL store: the shared contract on a real server (tests/server/postgres_server.py),
plus what only PostgreSQL has."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import asyncpg
import pytest

from masklog.domain.events import encode
from masklog.server.postgres_store import CHANNEL, STORE_FORMAT, PostgresEventStore
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


# -- what only PostgreSQL has ------------------------------------------------------------------


POISON = """
CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.stream = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison();
"""


async def test_concurrent_appends_share_one_transaction(databases: Databases) -> None:
    async with await PostgresEventStore.open(await databases.new()) as store:
        await asyncio.gather(*(store.append(batch(2)) for _ in range(50)))
        assert store.commits <= 2  # all 50 queue before the writer first runs
        assert seqs(await store.read()) == list(range(1, 101))


async def test_a_batch_the_server_refuses_inside_a_group_fails_alone(databases: Databases) -> None:
    dsn = await databases.new()
    async with await PostgresEventStore.open(dsn) as store:
        await store.append(batch(1))
        await _execute(dsn, POISON)
        commits = store.commits
        bad = [label_saved(frame=50), label_saved(stream="poison")]  # a good event before the bad one
        good = [batch(3, first_frame=10 * i) for i in range(6)]
        outcomes = await asyncio.gather(*(store.append(b) for b in good[:3] + [bad] + good[3:]), return_exceptions=True)
        assert store.commits - commits <= 2  # they did share a transaction
        assert isinstance(outcomes[3], AppendFailed) and "poisoned" in str(outcomes[3].__cause__)
        assert all(isinstance(o, list) for i, o in enumerate(outcomes) if i != 3)
        assert seqs(await store.read()) == list(range(1, 1 + 1 + 18))
        assert await store.get(bad[0].id) is None
        # Alone, it fails with nothing stored and no position used.
        with pytest.raises(AppendFailed):
            await store.append(bad)
        assert seqs(await store.append(batch(1))) == [20]


async def test_the_payload_is_the_encoded_event_as_json(databases: Databases) -> None:
    dsn = await databases.new()
    async with await PostgresEventStore.open(dsn) as store:
        [event] = await store.append([label_saved(stream="m7", frame=3)])
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT seq, id::text, stream, payload::text, payload->'body'->>'frame', pg_typeof(payload)::text FROM events")
    finally:
        await conn.close()
    assert tuple(row) == (1, event.id, "m7", encode(event).decode(), "3", "json")


async def test_commits_are_announced_on_the_channel(databases: Databases) -> None:
    dsn = await databases.new()
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(dsn)
    try:
        async with await PostgresEventStore.open(dsn) as store:
            await listener.add_listener(CHANNEL, lambda _c, _p, _ch, payload: heard.put_nowait(payload))
            await store.append(batch(3))
            await store.append(batch(2))
            assert [await asyncio.wait_for(heard.get(), 5) for _ in range(2)] == ["3", "5"]
            events = batch(2)
            await store.append(events)
            await store.append(events)  # stores nothing: announces nothing
            await store.append(batch(1))
            assert [await asyncio.wait_for(heard.get(), 5) for _ in range(2)] == ["7", "8"]
    finally:
        await listener.close()


async def test_followers_hear_again_after_their_connection_is_cut(databases: Databases) -> None:
    dsn = await databases.new()
    async with await PostgresEventStore.open(dsn) as store, await PostgresEventStore.open(dsn, check=False) as other:
        async with store.subscribe() as heads:
            # Cut every connection of both stores (`store`'s listener among them); `other` reconnects
            # and keeps writing.
            await _execute(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            await other.append(batch(3))
            assert await asyncio.wait_for(anext(heads), 10) == 3
            await other.append(batch(1))
            assert await asyncio.wait_for(anext(heads), 10) == 4
        # Its own writer reconnects too: the append goes through on a new connection.
        assert seqs(await store.append(batch(2))) == [5, 6]
        assert seqs(await store.read()) == [1, 2, 3, 4, 5, 6]


async def test_two_stores_create_a_new_database_once(databases: Databases) -> None:
    dsn = await databases.new()
    first, second = await asyncio.gather(PostgresEventStore.open(dsn), PostgresEventStore.open(dsn))
    try:
        await first.append(batch(2))
        assert await second.head() == 2
    finally:
        await first.close()
        await second.close()
    assert await _fetchval(dsn, "SELECT version FROM masklog_store_format") == STORE_FORMAT


async def test_open_and_verify_refuse_a_log_with_a_gap(databases: Databases) -> None:
    dsn = await databases.new()
    async with await PostgresEventStore.open(dsn) as store:
        await store.append(batch(3))
        await _execute(dsn, "DELETE FROM events WHERE seq = 2")
        with pytest.raises(StoreCorrupted, match="gaps"):
            await store.verify()
    with pytest.raises(StoreCorrupted, match="gaps"):
        await PostgresEventStore.open(dsn)
    async with await PostgresEventStore.open(dsn, check=False):
        pass  # a server opens without the check and runs verify once it serves


async def test_open_refuses_a_newer_format(databases: Databases) -> None:
    dsn = await databases.new()
    async with await PostgresEventStore.open(dsn) as store:
        await store.append(batch(1))
    await _execute(dsn, "UPDATE masklog_store_format SET version = 99")
    with pytest.raises(StoreIncompatible, match="format 99"):
        await PostgresEventStore.open(dsn)
    assert await _fetchval(dsn, "SELECT version FROM masklog_store_format") == 99  # left as it was


async def test_an_unreachable_server_or_database_is_unavailable(postgres_server: PostgresServer) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreUnavailable):
        await PostgresEventStore.open(f"postgresql://postgres:secret@127.0.0.1:{port}/nothing")
    with pytest.raises(StoreUnavailable, match="does not exist") as raised:
        await PostgresEventStore.open(postgres_server.dsn("no_such_database").replace("postgres@", "postgres:secret@"))
    assert "secret" not in str(raised.value)
    for bad in ["/tmp/events.db", "sqlite:///x"]:
        with pytest.raises(ValueError):
            await PostgresEventStore.open(bad)


async def test_time_never_runs_backwards_across_writers(databases: Databases, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = await databases.new()
    async with await PostgresEventStore.open(dsn) as store, await PostgresEventStore.open(dsn, check=False) as other:
        [early] = await store.append(batch(1))
        monkeypatch.setattr("masklog.server.postgres_store.time.time", lambda: early.at - 3600)  # this clock is behind
        [late] = await other.append(batch(1))
        assert late.at == early.at
