"""The SQLite store: the shared contract on a real file, plus what only SQLite has."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from uuid import UUID, uuid4

import msgspec
import pytest

from masklog.server.sqlite_store import STORE_FORMAT, SQLiteEventStore, snapshots_to_drop
from masklog.server.store import AppendFailed, EventStore, StoreCorrupted, StoreIncompatible
from tests.server.events_factory import batch, label_saved, object_created, prompt_added
from tests.server.store_contract import EventStoreContract, seqs


class TestSQLiteEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    async def open_store(self) -> EventStore:
        return await SQLiteEventStore.open(self.directory / f"{uuid4().hex}.db")

    async def reopen_store(self, store: EventStore) -> EventStore:
        assert isinstance(store, SQLiteEventStore)
        await store.close()
        return await SQLiteEventStore.open(store.path)

    async def open_another(self, store: EventStore) -> EventStore:
        assert isinstance(store, SQLiteEventStore)
        return await SQLiteEventStore.open(store.path, check="none")

    async def corrupt_snapshot(self, store: EventStore, stream: str, seq: int, version: int, data: bytes) -> None:
        assert isinstance(store, SQLiteEventStore)
        with sqlite3.connect(store.path) as conn:
            changed = conn.execute(
                "UPDATE snapshots SET data = ? WHERE stream = ? AND seq = ? AND version = ?", (data, stream, seq, version)
            ).rowcount
        conn.close()
        assert changed == 1

    async def corrupt_part(self, store: EventStore, key: bytes, data: bytes | None) -> None:
        assert isinstance(store, SQLiteEventStore)
        with sqlite3.connect(store.path) as conn:
            if data is None:
                changed = conn.execute("DELETE FROM snapshot_parts WHERE key = ?", (key,)).rowcount
            else:
                changed = conn.execute("UPDATE snapshot_parts SET data = ? WHERE key = ?", (data, key)).rowcount
        conn.close()
        assert changed == 1

    async def part_count(self, store: EventStore) -> int:
        assert isinstance(store, SQLiteEventStore)
        with sqlite3.connect(store.path) as conn:
            count: int = conn.execute("SELECT count(*) FROM snapshot_parts").fetchone()[0]
        conn.close()
        return count

    async def forget_object_index(self, store: EventStore) -> EventStore:
        assert isinstance(store, SQLiteEventStore)
        await store.close()
        make_format_1(Path(store.path))
        return await SQLiteEventStore.open(store.path)


def make_format_1(path: Path) -> None:
    """What a build of store format 1 left: the events table only."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE objects")
        conn.execute("DROP TABLE snapshots")
        conn.execute("PRAGMA user_version = 1")
    conn.close()


def poison(path: Path) -> None:
    """Make SQLite itself refuse rows of stream 'poison', after the store's own checks passed."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.stream = 'poison'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
    conn.close()


async def test_reopen_continues_positions_and_time(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SQLiteEventStore.open(path) as store:
        first = await store.append(batch(3))
    async with await SQLiteEventStore.open(path) as store:
        assert await store.head() == 3
        later = await store.append(batch(2))
        assert seqs(later) == [4, 5]
        assert later[0].at >= first[-1].at
        assert seqs(await store.read()) == [1, 2, 3, 4, 5]


async def test_wal_mode_and_synchronous_setting(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SQLiteEventStore.open(path, synchronous="NORMAL") as store:
        await store.append(batch(1))
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.close()
        # synchronous is per connection: ask the writer's own connection, on its thread.
        level = await asyncio.get_running_loop().run_in_executor(
            store._executor, lambda: store._writer.execute("PRAGMA synchronous").fetchone()[0]
        )
        assert level == 1  # NORMAL
    async with await SQLiteEventStore.open(path) as store:
        level = await asyncio.get_running_loop().run_in_executor(
            store._executor, lambda: store._writer.execute("PRAGMA synchronous").fetchone()[0]
        )
        assert level == 2  # FULL, the default


async def test_payload_is_the_encoded_event_as_json_text(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SQLiteEventStore.open(path) as store:
        [event] = await store.append([label_saved(stream="m7", frame=3)])
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT seq, typeof(payload), json_extract(payload, '$.seq'), json_extract(payload, '$.body.frame'),"
            " stream, id FROM events"
        ).fetchone()
    conn.close()
    assert row == (1, "text", 1, 3, "m7", UUID(event.id).bytes)


async def test_concurrent_appends_share_one_transaction(tmp_path: Path) -> None:
    async with await SQLiteEventStore.open(tmp_path / "log.db") as store:
        await asyncio.gather(*(store.append(batch(2)) for _ in range(50)))
        # All 50 queue before the writer first runs, so they commit together.
        assert store.commits <= 2
        assert seqs(await store.read()) == list(range(1, 101))


async def test_a_batch_sqlite_refuses_inside_a_group_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SQLiteEventStore.open(path) as store:
        await store.append(batch(1))
        poison(path)
        commits = store.commits
        # The poisoned batch has a good event before the bad one: the savepoint must undo it.
        bad = [label_saved(frame=50), label_saved(stream="poison")]
        good = [batch(3, first_frame=10 * i) for i in range(6)]
        outcomes = await asyncio.gather(
            *(store.append(b) for b in good[:3] + [bad] + good[3:]), return_exceptions=True
        )
        assert store.commits - commits <= 2  # they did share a transaction
        assert isinstance(outcomes[3], AppendFailed)
        assert "poisoned" in str(outcomes[3].__cause__)
        assert all(isinstance(o, list) for i, o in enumerate(outcomes) if i != 3)
        assert seqs(await store.read()) == list(range(1, 1 + 1 + 18))
        assert await store.get(bad[0].id) is None


async def test_positions_stay_gap_free_after_a_failed_transaction(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SQLiteEventStore.open(path) as store:
        await store.append(batch(2))
        poison(path)
        with pytest.raises(AppendFailed):
            await store.append([label_saved(), label_saved(stream="poison")])
        assert await store.head() == 2
        assert seqs(await store.append(batch(2))) == [3, 4]
    async with await SQLiteEventStore.open(path) as store:
        assert seqs(await store.read()) == [1, 2, 3, 4]


async def test_open_refuses_a_log_with_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SQLiteEventStore.open(path) as store:
        await store.append(batch(3))
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM events WHERE seq = 2")
    conn.close()
    with pytest.raises(StoreCorrupted, match="gaps"):
        await SQLiteEventStore.open(path)


async def test_open_refuses_a_newer_format_and_a_non_database(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    async with await SQLiteEventStore.open(newer):
        pass
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreIncompatible, match="format 99"):
        await SQLiteEventStore.open(newer)

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 400)
    with pytest.raises(StoreCorrupted, match="not a database"):
        await SQLiteEventStore.open(garbage)


async def test_time_never_runs_backwards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with await SQLiteEventStore.open(tmp_path / "log.db") as store:
        [early] = await store.append(batch(1))
        monkeypatch.setattr("masklog.server.sqlite_store.time.time", lambda: early.at - 3600)  # the clock steps back
        [late] = await store.append(batch(1))
        assert late.at == early.at


async def test_memory_databases_are_refused() -> None:
    with pytest.raises(ValueError):
        await SQLiteEventStore.open(":memory:")


async def test_a_batch_sqlite_refuses_claims_no_object_id(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SQLiteEventStore.open(path) as store:
        pass
    poison(path)
    async with await SQLiteEventStore.open(path) as store:
        bad = msgspec.structs.replace(object_created("o1", "m1"), stream="poison")
        results = await asyncio.gather(store.append([bad]), store.append([object_created("o2", "m2")]), return_exceptions=True)
        assert isinstance(results[0], AppendFailed) and not isinstance(results[1], Exception)
        assert (await store.object_media("o1"), await store.object_media("o2")) == (None, "m2")


async def test_a_format_1_file_is_upgraded_once_and_its_index_filled(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SQLiteEventStore.open(path) as store:
        await store.append([object_created("o1", "m1"), prompt_added("o2", "m2")])
    make_format_1(path)
    # Two stores opening the old file at once: the upgrade happens once, under the write lock.
    first, second = await asyncio.gather(SQLiteEventStore.open(path), SQLiteEventStore.open(path, check="none"))
    try:
        assert (await second.object_media("o1"), await first.object_media("o2")) == ("m1", "m2")
        await first.append([object_created("o3", "m3")])
        assert await second.object_media("o3") == "m3"
    finally:
        await first.close()
        await second.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == STORE_FORMAT
        assert conn.execute("SELECT count(*) FROM objects").fetchone()[0] == 3
    conn.close()


def test_retention_rule_keeps_the_newest_and_the_oldest_and_thins_geometrically() -> None:
    assert snapshots_to_drop([]) == [] and snapshots_to_drop([5, 6, 7]) == []
    seqs = list(range(1, 1001))
    for _ in range(3):  # applying the rule again to what it kept drops nothing more at once
        drop = set(snapshots_to_drop(seqs))
        seqs = [s for s in seqs if s not in drop]
    assert seqs[0] == 1 and seqs[-3:] == [998, 999, 1000]
    assert len(seqs) < 120  # (THIN_RATIO 16: 110 of 1,000)
    for position in range(1, 1001):
        nearest = max(s for s in seqs if s <= position)
        assert position - nearest <= (1000 - position) / 2 + 1
    assert max(b - a for a, b in zip(seqs, seqs[1:], strict=False)) > 20  # old ones are far apart (about age / 32)
