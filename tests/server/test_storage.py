"""Opening the log and the accounts by the storage a setting names."""

from __future__ import annotations

from pathlib import Path

import pytest

from masklog.server.accounts import Role
from masklog.server.settings import Settings
from masklog.server.sqlite_accounts import SQLiteAccounts
from masklog.server.sqlite_store import SQLiteEventStore
from masklog.server.storage import STORAGE_BACKENDS, open_accounts, open_store
from tests.server.events_factory import batch


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
    with pytest.raises(ValueError, match="unknown storage 'postgres-someday': use one of sqlite"):
        await open_store(settings)
    with pytest.raises(ValueError, match="unknown storage"):
        await open_accounts(settings)
    assert not settings.data.exists()
