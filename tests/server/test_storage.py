"""Opening the log and the accounts by the storage a setting names."""

from __future__ import annotations

from pathlib import Path

import pytest

from masklog.server.accounts import Role
from masklog.server.postgres_accounts import PostgresAccounts
from masklog.server.postgres_store import PostgresEventStore
from masklog.server.settings import Settings, redact_url, storage_from
from masklog.server.sqlite_accounts import SQLiteAccounts
from masklog.server.sqlite_store import SQLiteEventStore
from masklog.server.storage import STORAGE_BACKENDS, open_accounts, open_store
from tests.server.events_factory import batch
from tests.server.postgres_server import PostgresServer


async def test_sqlite_is_the_default_and_keeps_both_in_the_data_folder(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path)
    assert settings.storage == "sqlite" and "sqlite" in STORAGE_BACKENDS
    store = await open_store(settings)
    try:
        assert isinstance(store, SQLiteEventStore)
        await store.append(batch(2))
    finally:
        await store.close()
    accounts = await open_accounts(settings)
    try:
        assert isinstance(accounts, SQLiteAccounts)
        await accounts.add_user("ann", Role.VIEWER)
    finally:
        await accounts.close()
    assert settings.database.exists() and settings.accounts_database.exists()
    again = await open_store(settings)
    try:
        assert await again.head() == 2
    finally:
        await again.close()


async def test_an_unknown_storage_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path / "data", storage="postgres-someday")
    with pytest.raises(ValueError, match="unknown storage 'postgres-someday': use one of postgresql, sqlite"):
        await open_store(settings)
    with pytest.raises(ValueError, match="unknown storage"):
        await open_accounts(settings)
    assert not settings.data.exists()


async def test_postgresql_keeps_the_log_and_the_accounts_in_the_database(tmp_path: Path, postgres_server: PostgresServer) -> None:
    dsn = await postgres_server.create_database()
    try:
        settings = Settings(data=tmp_path, storage="postgresql", database_url=dsn)
        store = await open_store(settings)
        try:
            assert isinstance(store, PostgresEventStore)
            await store.append(batch(2))
        finally:
            await store.close()
        again = await open_store(settings, verify_on_open=False)
        try:
            assert await again.head() == 2
        finally:
            await again.close()
        accounts = await open_accounts(settings)
        try:
            assert isinstance(accounts, PostgresAccounts)
            token = await accounts.add_user("ann", Role.ANNOTATOR)
        finally:
            await accounts.close()
        accounts = await open_accounts(settings)
        try:
            assert (await accounts.authenticate(token)) is not None
        finally:
            await accounts.close()
        assert not settings.database.exists() and not settings.accounts_database.exists()
        assert settings.log_location == dsn
    finally:
        await postgres_server.drop_database(dsn)


async def test_postgresql_without_a_database_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a database URL"):
        await open_store(Settings(data=tmp_path, storage="postgresql"))
    with pytest.raises(ValueError, match="needs a database URL"):
        await open_accounts(Settings(data=tmp_path, storage="postgresql"))


def test_storage_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASKLOG_STORAGE", raising=False)
    monkeypatch.delenv("MASKLOG_DATABASE", raising=False)
    url = "postgresql://masklog:secret@db.example:5432/labels"
    assert storage_from(None, None) == ("sqlite", None)
    assert storage_from(None, url) == ("postgresql", url)
    assert storage_from("postgresql", url) == ("postgresql", url)
    monkeypatch.setenv("MASKLOG_DATABASE", url)
    assert storage_from(None, None) == ("postgresql", url)
    monkeypatch.delenv("MASKLOG_DATABASE")
    for storage, database, error in [
        ("postgresql", None, "needs --database"),
        ("sqlite", url, "storage is sqlite"),
        (None, "sqlite:///x.db", "must be a postgresql:// URL"),
    ]:
        with pytest.raises(ValueError, match=error):
            storage_from(storage, database)
    # The password never reaches a message.
    assert redact_url(url) == "postgresql://masklog:***@db.example:5432/labels"
    assert Settings(data=Path("d"), storage="postgresql", database_url=url).log_location == "postgresql://masklog:***@db.example:5432/labels"


async def test_the_work_claims_open_on_the_configured_storage(tmp_path: Path) -> None:
    from masklog.server.sqlite_claims import SQLiteClaims
    from masklog.server.storage import open_claims

    claims = await open_claims(Settings(data=tmp_path))
    try:
        assert isinstance(claims, SQLiteClaims) and claims.path == tmp_path / "work.sqlite3"
    finally:
        await claims.close()
    with pytest.raises(ValueError, match="needs a database URL"):
        await open_claims(Settings(data=tmp_path, storage="postgresql"))
    with pytest.raises(ValueError, match="unknown storage"):
        await open_claims(Settings(data=tmp_path, storage="postgres-someday"))
