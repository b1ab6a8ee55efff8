"""Operating the storage (issue 16, part 4): `masklog migrate`, `masklog copy-log` between SQLite
data folders and PostgreSQL databases, and the offline jobs (`export`, `import-log`) on
PostgreSQL. Real SQLite files, a real PostgreSQL server (tests/server/postgres_server.py), the
real `masklog` command in a process of its own, and a real server started on a copy."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from masklog.domain.events import MediaAdded
from masklog.domain.snapshots import media_part
from masklog.domain.state import LabelState
from masklog.server.accounts import Role
from masklog.server.operations import OperationError, copy_log, storage_at
from masklog.server.replay import replay_media
from masklog.server.settings import Settings
from masklog.server.snapshot_job import snapshot_all
from masklog.server.storage import inspect_storage, open_accounts, open_store
from masklog.server.store import EventStore
from scripts import loggen
from tests.server.live import seeded_server, start_server
from tests.server.rest import new_object, save_box
from tests.server.test_cli import masklog
from tests.server.test_postgres_store import Databases, _execute, _fetchval, databases  # noqa: F401 (a fixture)

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


# ---- building and reading logs ------------------------------------------------------------------


async def build_log(settings: Settings, total: int, *, seed: int = 7, snapshot_every: int | None = None) -> dict[str, str]:
    """A realistic log (scripts/loggen.py: videos, prompts, saves, tracks, deletes, undos) of
    about `total` events, appended in bursts of varying size, optionally snapshotted as a
    server would; users with live, revoked and never-expiring tokens and memberships. Returns
    the live tokens by user."""
    if settings.storage == "sqlite":
        settings.data.mkdir(parents=True, exist_ok=True)
    generator = loggen.Generator(seed)
    rng = random.Random(seed)
    store = await open_store(settings)
    try:
        pending = generator.setup()
        written = 0
        while written < total:
            pending.extend(generator.next_batch())
            if len(pending) >= rng.choice([1, 5, 40, 300]):
                await store.append(pending)
                written += len(pending)
                pending = []
        if pending:
            await store.append(pending)
        if snapshot_every:
            await snapshot_all(store, snapshot_every)
    finally:
        await store.close()
    accounts = await open_accounts(settings)
    try:
        tokens = {
            "alice": await accounts.add_user("alice", Role.ANNOTATOR),
            "root": await accounts.add_user("root", Role.ADMIN, lifetime_s=None),
        }
        revoked = await accounts.add_user("bob", Role.VIEWER)
        await accounts.revoke("bob", revoked)
        await accounts.set_member("bench", "alice", Role.ANNOTATOR)
        await accounts.set_member("bench", "bob", Role.VIEWER)
    finally:
        await accounts.close()
    return tokens


def sqlite_rows(data: Path) -> list[tuple[int, str, str, bytes]]:
    """The events table as stored: seq, id, stream and the payload's bytes."""
    conn = sqlite3.connect(data / "events.sqlite3")
    try:
        from uuid import UUID

        return [(seq, str(UUID(bytes=key)), stream, payload.encode()) for seq, key, stream, payload in conn.execute("SELECT seq, id, stream, payload FROM events ORDER BY seq")]
    finally:
        conn.close()


async def postgres_rows(dsn: str) -> list[tuple[int, str, str, bytes]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT seq, id::text, stream, payload::text FROM events ORDER BY seq")
        return [(row[0], row[1], row[2], row[3].encode()) for row in rows]
    finally:
        await conn.close()


async def states_by_position(settings: Settings) -> list[LabelState]:
    """The full fold after every event of the log."""
    store = await open_store(settings)
    try:
        states, state = [], LabelState()
        async for batch in store.iter_batches(0, batch_size=97):
            for event in batch:
                state.apply(event)
                states.append(state.copy())
        return states
    finally:
        await store.close()


async def replayed(store: EventStore, positions: list[int]) -> list[dict[str, Any]]:
    """Each media item's state replayed (server/replay.py: nearest snapshot, then its stream)
    at each position."""
    out = []
    everything = await store.read()
    for position in positions:
        media = {e.body.media: e.body for e in everything[:position] if isinstance(e.body, MediaAdded)}
        out.append({m: media_part(await replay_media(store, item, position), m) for m, item in sorted(media.items())})
    return out


def pg(dsn: str) -> Settings:
    return storage_at(dsn)


# ---- migrate --------------------------------------------------------------------------------------


def test_migrate_creates_then_finds_a_sqlite_folder_up_to_date(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = masklog("migrate", "--data", str(data))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"event log in {data / 'events.sqlite3'}: format none -> 3 (created)",
        f"accounts in {data / 'accounts.sqlite3'}: format none -> 2 (created)",
    ]
    again = masklog("migrate", "--data", str(data))
    assert again.returncode == 0 and "format 3 -> 3 (up to date)" in again.stdout and "format 2 -> 2 (up to date)" in again.stdout


def test_migrate_upgrades_an_old_accounts_file_and_refuses_a_newer_format(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # Accounts as a build before token expiry left them.
    with sqlite3.connect(data / "accounts.sqlite3") as conn:
        conn.executescript(
            "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL);"
            "CREATE TABLE tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL REFERENCES users(name));"
            "CREATE TABLE members (project TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (project, name));"
        )
    done = masklog("migrate", "--data", str(data))
    assert done.returncode == 0, done.stderr
    assert "accounts in" in done.stdout and "format 1 -> 2 (upgraded)" in done.stdout
    with sqlite3.connect(data / "events.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 99")
    before = (data / "accounts.sqlite3").read_bytes()
    refused = masklog("migrate", "--data", str(data))
    assert refused.returncode == 2 and "format 99" in refused.stderr and "newer" in refused.stderr
    assert (data / "accounts.sqlite3").read_bytes() == before


def test_migrate_a_postgresql_database(tmp_path: Path, databases: Databases) -> None:  # noqa: F811
    dsn = asyncio.run(databases.new())
    done = masklog("migrate", "--database", dsn)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"event log in {dsn}: format none -> 1 (created)", f"accounts in {dsn}: format none -> 1 (created)"]
    assert masklog("migrate", "--database", dsn).stdout.count("(up to date)") == 2
    # The tables a server needs are there: serving and `masklog user` need no more set-up.
    assert asyncio.run(_fetchval(dsn, "SELECT count(*) FROM events")) == 0
    asyncio.run(_execute(dsn, "UPDATE masklog_accounts_format SET version = 7"))
    refused = masklog("migrate", "--database", dsn)
    assert refused.returncode == 2 and "accounts" in refused.stderr and "format 7" in refused.stderr
    unreachable = masklog("migrate", "--database", UNREACHABLE)
    assert unreachable.returncode == 2 and "127.0.0.1:1" in unreachable.stderr


# ---- copy-log -------------------------------------------------------------------------------------


def test_a_small_log_goes_sqlite_to_postgresql_to_sqlite_equal_at_every_position(tmp_path: Path, databases: Databases) -> None:  # noqa: F811
    source, back = tmp_path / "a", tmp_path / "b"
    tokens = asyncio.run(build_log(Settings(data=source), 300, snapshot_every=20))
    dsn = asyncio.run(databases.new())

    there = masklog("copy-log", "--from", str(source), "--to", dsn)
    assert there.returncode == 0, there.stderr
    assert f"copying: {len(sqlite_rows(source))}/{len(sqlite_rows(source))} events" in there.stderr
    assert "users" in there.stdout and "snapshots are not copied" in there.stdout
    home = masklog("copy-log", "--from", dsn, "--to", str(back))
    assert home.returncode == 0, home.stderr

    # Byte for byte: positions, ids, streams and payloads (actor, time, cause, body inside).
    original = sqlite_rows(source)
    assert len(original) >= 300
    assert asyncio.run(postgres_rows(dsn)) == original
    assert sqlite_rows(back) == original

    # The projection at every position: the full fold, and each media item replayed the way the
    # server replays it (the source from its snapshots, the copies from their events).
    folded = asyncio.run(states_by_position(Settings(data=source)))
    assert asyncio.run(states_by_position(pg(dsn))) == folded
    assert asyncio.run(states_by_position(Settings(data=back))) == folded

    async def replays(settings: Settings) -> list[dict[str, Any]]:
        store = await open_store(settings)
        try:
            return await replayed(store, list(range(1, len(original) + 1)))
        finally:
            await store.close()

    assert asyncio.run(replays(pg(dsn))) == asyncio.run(replays(Settings(data=source)))

    # Accounts: every token works (or does not) as before, the memberships are the same.
    async def accounts_of(settings: Settings) -> tuple[object, ...]:
        accounts = await open_accounts(settings)
        try:
            credentials = [await accounts.credential(token) for token in tokens.values()]
            return (await accounts.export_rows(), credentials, accounts.members("bench"))
        finally:
            await accounts.close()

    before = asyncio.run(accounts_of(Settings(data=source)))
    assert asyncio.run(accounts_of(pg(dsn))) == before == asyncio.run(accounts_of(Settings(data=back)))
    assert all(before[1])  # type: ignore[arg-type]

    # Snapshots are not copied, and the copy is a log a server appends to.
    assert asyncio.run(_fetchval(dsn, "SELECT count(*) FROM snapshots")) == 0

    async def append_one(settings: Settings) -> int:
        store = await open_store(settings)
        try:
            from tests.server.events_factory import batch

            [event] = await store.append(batch(1, stream="media:video1"))
            return event.seq
        finally:
            await store.close()

    assert asyncio.run(append_one(pg(dsn))) == len(original) + 1


def test_a_larger_log_is_equal_at_sampled_positions_and_copied_in_batches(tmp_path: Path, databases: Databases) -> None:  # noqa: F811
    source = tmp_path / "a"
    asyncio.run(build_log(Settings(data=source), 12_000, seed=3, snapshot_every=500))
    dsn = asyncio.run(databases.new())
    progress: list[tuple[int, int]] = []
    report = asyncio.run(copy_log(Settings(data=source), pg(dsn), lambda done, total: progress.append((done, total)), batch_size=1000))
    assert report.events == progress[-1][0] == progress[-1][1] and (report.users, report.tokens, report.members) == (3, 3, 2)
    assert [done for done, _ in progress] == [*range(1000, report.events, 1000), report.events]
    back = tmp_path / "b"
    asyncio.run(copy_log(pg(dsn), Settings(data=back)))
    beside = tmp_path / "c"
    asyncio.run(copy_log(Settings(data=source), Settings(data=beside)))  # SQLite to SQLite too
    original = sqlite_rows(source)
    assert asyncio.run(postgres_rows(dsn)) == original and sqlite_rows(back) == original and sqlite_rows(beside) == original

    positions = sorted({1, len(original), *random.Random(5).sample(range(1, len(original)), 25)})

    async def replays(settings: Settings) -> list[dict[str, Any]]:
        store = await open_store(settings)
        try:
            return await replayed(store, positions)
        finally:
            await store.close()

    expected = asyncio.run(replays(Settings(data=source)))
    assert asyncio.run(replays(pg(dsn))) == expected
    assert asyncio.run(replays(Settings(data=back))) == expected


def test_a_server_on_the_copy_serves_the_same_labels_to_a_copied_token(tmp_path: Path, databases: Databases) -> None:  # noqa: F811
    with seeded_server(tmp_path / "first") as live:
        with live.http("alice") as alice:
            kept = new_object(alice)
            for frame in range(3):
                save_box(alice, kept, frame, x=frame + 1)
            labels = {frame: alice.get("/api/media/m1/labels", params={"frame": frame}).json() for frame in range(3)}
        tokens = live.tokens
        data = live.settings.data
    dsn = asyncio.run(databases.new())
    done = masklog("copy-log", "--from", str(data), "--to", dsn)
    assert done.returncode == 0, done.stderr
    back = tmp_path / "back"
    done = masklog("copy-log", "--from", dsn, "--to", str(back))
    assert done.returncode == 0, done.stderr
    shutil.copytree(data / "media", back / "media")  # media files are not the log's: copied apart

    for settings in ({"data": data, "storage": "postgresql", "database_url": dsn}, {"data": back}):
        server = start_server(users={}, **settings)  # type: ignore[arg-type]
        try:
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tokens['alice']}"}) as alice:
                assert {frame: alice.get("/api/media/m1/labels", params={"frame": frame}).json() for frame in range(3)} == labels
                assert alice.get("/api/media/m1/frames/1").status_code == 200
                # alice is still an annotator of p1 and nothing more.
                assert save_box(alice, kept, 5)["seq"] > labels[2]["seq"]
                assert alice.post("/api/projects/p1/classes", json={"id": "x", "name": "x", "shape": "bbox", "color": "#123456"}).status_code == 403
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tokens['outsider']}"}) as outsider:
                assert outsider.get("/api/media/m1/labels", params={"frame": 0}).status_code in (403, 404)
        finally:
            server.stop()


# ---- copy-log: what it refuses --------------------------------------------------------------------


def test_copy_log_refuses_a_destination_that_is_not_empty(tmp_path: Path, databases: Databases) -> None:  # noqa: F811
    source, other = tmp_path / "a", tmp_path / "b"
    asyncio.run(build_log(Settings(data=source), 50))
    asyncio.run(build_log(Settings(data=other), 30, seed=9))
    dsn = asyncio.run(databases.new())
    assert masklog("copy-log", "--from", str(source), "--to", dsn).returncode == 0
    before_pg, before_other = asyncio.run(postgres_rows(dsn)), sqlite_rows(other)

    for target in (dsn, str(other)):
        refused = masklog("copy-log", "--from", str(source), "--to", target)
        assert refused.returncode == 2 and "already holds" in refused.stderr and "empty" in refused.stderr, refused.stderr
    refused = masklog("copy-log", "--from", str(other), "--to", dsn)
    assert refused.returncode == 2 and "already holds" in refused.stderr
    assert asyncio.run(postgres_rows(dsn)) == before_pg and sqlite_rows(other) == before_other

    # Accounts alone count too: a user made first (the log still empty) is refused, and the
    # refusal writes nothing, not even the log's tables.
    users_only = asyncio.run(databases.new())
    assert masklog("user", "add", "zed", "--database", users_only).returncode == 0
    refused = masklog("copy-log", "--from", str(source), "--to", users_only)
    assert refused.returncode == 2 and "users or tokens" in refused.stderr
    assert asyncio.run(_fetchval(users_only, "SELECT to_regclass('events')")) is None


def test_copy_log_refuses_an_unreachable_database_the_same_storage_and_a_missing_log(tmp_path: Path, databases: Databases) -> None:  # noqa: F811
    source = tmp_path / "a"
    asyncio.run(build_log(Settings(data=source), 40))
    rows = sqlite_rows(source)
    files = sorted(p.name for p in source.iterdir())

    unreachable = masklog("copy-log", "--from", str(source), "--to", UNREACHABLE)
    assert unreachable.returncode == 2 and "cannot read the destination" in unreachable.stderr and "127.0.0.1:1" in unreachable.stderr
    nowhere = tmp_path / "new"
    from_unreachable = masklog("copy-log", "--from", UNREACHABLE, "--to", str(nowhere))
    assert from_unreachable.returncode == 2 and "cannot read the source" in from_unreachable.stderr
    assert not nowhere.exists()

    for same in (str(source), str(tmp_path / "a" / ".." / "a")):
        refused = masklog("copy-log", "--from", str(source), "--to", same)
        assert refused.returncode == 2 and "same storage" in refused.stderr
    dsn = asyncio.run(databases.new())
    assert masklog("copy-log", "--from", str(source), "--to", dsn).returncode == 0
    spelled_otherwise = dsn.replace("127.0.0.1", "localhost")
    refused = masklog("copy-log", "--from", dsn, "--to", spelled_otherwise)
    assert refused.returncode == 2 and "same storage" in refused.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    missing = masklog("copy-log", "--from", str(empty), "--to", str(nowhere))
    assert missing.returncode == 2 and "no event log" in missing.stderr
    assert list(empty.iterdir()) == [] and not nowhere.exists()
    not_a_storage = masklog("copy-log", "--from", str(source), "--to", "mysql://x/y")
    assert not_a_storage.returncode == 2 and "not a storage" in not_a_storage.stderr

    assert sqlite_rows(source) == rows and sorted(p.name for p in source.iterdir()) == files


async def test_a_copy_that_meets_another_writer_stops_with_a_clear_error(tmp_path: Path, databases: Databases) -> None:  # noqa: F811
    source = tmp_path / "a"
    await build_log(Settings(data=source), 3000)
    dsn = await databases.new()

    async def intrude() -> None:
        from tests.server.events_factory import batch

        store = await open_store(pg(dsn))
        try:
            await store.append(batch(1))
        finally:
            await store.close()

    def meddle(done: int, total: int) -> None:
        # Another process appends once the first batch is in: done before the copy goes on.
        if done == 1000:
            other = threading.Thread(target=asyncio.run, args=(intrude(),))
            other.start()
            other.join()

    with pytest.raises(OperationError, match="stopped after 1000 of") as raised:
        await copy_log(Settings(data=source), pg(dsn), meddle, batch_size=1000)
    assert "does not continue" in str(raised.value) and "empty it" in str(raised.value)
    assert await _fetchval(dsn, "SELECT count(*) FROM events") == 1001


# ---- export and import-log on PostgreSQL ----------------------------------------------------------


@pytest.fixture
def labelled(tmp_path: Path) -> Iterator[Path]:
    """A seeded server's data folder (p1 with labels of three shape families), the server
    stopped."""
    with seeded_server(tmp_path / "first") as live:
        with live.http("alice") as alice:
            for class_id in ("box", "mask", "poly"):
                new_object(alice, class_id=class_id)
            kept = new_object(alice)
            save_box(alice, kept, 0)
            save_box(alice, kept, 4, x=3)
        data = live.settings.data
    yield data


def test_export_and_import_log_take_a_postgresql_database(tmp_path: Path, labelled: Path, databases: Databases) -> None:  # noqa: F811
    log = tmp_path / "log.jsonl"
    assert masklog("export", "--data", str(labelled), "--format", "events", "--out", str(log)).returncode == 0
    dsn = asyncio.run(databases.new())
    done = masklog("import-log", str(log), "--database", dsn)
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    assert f"imported {len(lines)} events" in done.stderr
    again = masklog("import-log", str(log), "--database", dsn)
    assert again.returncode == 2 and "already holds" in again.stderr

    # Labels out of PostgreSQL, frames from the data folder's media: the same files as from SQLite.
    for kind, name in (("coco", "p1.json"), ("yolo", "p1.zip")):
        from_sqlite, from_pg = tmp_path / f"sqlite-{name}", tmp_path / f"pg-{name}"
        flags = ["--project", "p1", "--format", kind] + (["--images"] if kind == "yolo" else [])
        assert masklog("export", "--data", str(labelled), *flags, "--out", str(from_sqlite)).returncode == 0
        done = masklog("export", "--data", str(labelled), "--database", dsn, *flags, "--out", str(from_pg))
        assert done.returncode == 0, done.stderr
        if kind == "coco":
            documents = [json.loads(path.read_text()) for path in (from_pg, from_sqlite)]
            for document in documents:
                del document["info"]["date_created"]
            assert documents[0] == documents[1] and len(documents[0]["annotations"]) == 2
        else:
            import zipfile

            with zipfile.ZipFile(from_pg) as a, zipfile.ZipFile(from_sqlite) as b:
                assert sorted(a.namelist()) == sorted(b.namelist()) and any(n.endswith(".jpg") for n in a.namelist())
                assert all(a.read(n) == b.read(n) for n in a.namelist() if n.endswith(".txt"))
    events_out = tmp_path / "pg-log.jsonl"
    assert masklog("export", "--database", dsn, "--format", "events", "--out", str(events_out)).returncode == 0
    assert len(events_out.read_text().splitlines()) == len(lines)

    # An export never creates a log: a database without one is an error, and stays empty.
    empty = asyncio.run(databases.new())
    missing = masklog("export", "--database", empty, "--format", "events", "--out", str(tmp_path / "x.jsonl"))
    assert missing.returncode == 2 and "no event log" in missing.stderr
    assert asyncio.run(_fetchval(empty, "SELECT to_regclass('events')")) is None
    unreachable = masklog("export", "--database", UNREACHABLE, "--format", "events", "--out", str(tmp_path / "x.jsonl"))
    assert unreachable.returncode == 2 and "127.0.0.1:1" in unreachable.stderr
    assert not (tmp_path / "x.jsonl").exists()


async def test_inspecting_a_storage_changes_nothing(tmp_path: Path, databases: Databases) -> None:  # noqa: F811
    folder = tmp_path / "nothing"
    found = await inspect_storage(Settings(data=folder))
    assert (found.log, found.head, found.accounts, found.account_rows) == (None, 0, None, 0) and not folder.exists()
    dsn = await databases.new()
    found = await inspect_storage(pg(dsn))
    assert (found.log, found.accounts) == (None, None)
    assert await _fetchval(dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
