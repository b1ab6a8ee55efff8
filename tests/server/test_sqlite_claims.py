"""The SQLite claims: the shared contract on a real file, and real OS processes sharing it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from uuid import uuid4

import pytest

from masklog.server.claims import ClaimsUnavailable, WorkClaims
from masklog.server.settings import Settings
from masklog.server.sqlite_claims import SQLiteClaims
from masklog.server.storage import open_claims
from tests.server.claims_contract import LONG, ClaimsContract, check_disjoint_and_complete, claims_in_processes, worker


class TestSQLiteClaims(ClaimsContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    async def open_claims(self) -> WorkClaims:
        return await SQLiteClaims.open(self.directory / f"{uuid4().hex}.sqlite3")

    async def open_another(self, claims: WorkClaims) -> WorkClaims:
        assert isinstance(claims, SQLiteClaims)
        return await SQLiteClaims.open(claims.path)


def test_two_processes_claiming_the_same_keys_share_them_out(tmp_path: Path) -> None:
    path = tmp_path / "work.sqlite3"
    keys = [f"track:{i}" for i in range(100)]
    won = claims_in_processes("sqlite", str(path), keys, ["A", "B"])
    check_disjoint_and_complete(won, keys)

    async def stored() -> dict[str, str]:
        claims = await SQLiteClaims.open(path)
        try:
            return {key: claim.holder for key, claim in (await claims.holders()).items()}
        finally:
            await claims.close()

    assert asyncio.run(stored()) == {key: holder for holder, keys_won in won.items() for key in keys_won}


async def test_the_storage_setting_opens_work_sqlite3_beside_the_log(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path / "data")
    claims = await open_claims(settings)
    try:
        assert isinstance(claims, SQLiteClaims)
        assert await claims.claim("k", "w1", LONG)
        await claims.announce(worker("w1"), LONG)
    finally:
        await claims.close()
    assert settings.work_database == tmp_path / "data" / "work.sqlite3" and settings.work_database.exists()
    assert not settings.database.exists()  # the log's file is not touched
    with sqlite3.connect(settings.work_database) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT key, holder FROM work_claims").fetchall() == [("k", "w1")]


async def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "work.sqlite3"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(ClaimsUnavailable, match="work.sqlite3"):
        await SQLiteClaims.open(path)


async def test_a_file_locked_by_another_process_past_the_busy_timeout_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("masklog.server.sqlite_claims.BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "work.sqlite3"
    claims = await SQLiteClaims.open(path)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(ClaimsUnavailable, match="locked"):
            await claims.claim("k", "w1", LONG)
        blocker.execute("ROLLBACK")
        assert await claims.claim("k", "w1", LONG)  # nothing half-done: the next call works
    finally:
        blocker.close()
        await claims.close()
