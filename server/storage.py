"""Opening the storage a setting names (`Settings.storage`): the event log and the accounts.

Every place that needs the log or the accounts (the app, the offline export and import jobs,
the `masklog` command) opens them here, never a backend's class directly, so a backend is
chosen in one place. A backend's modules are imported only when it is chosen: a PostgreSQL
driver need not be installed to run on SQLite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from masklog.server.accounts import Accounts
from masklog.server.settings import Settings
from masklog.server.store import EventStore


@dataclass(frozen=True, slots=True)
class StorageBackend:
    # (settings, verify_on_open): False leaves the whole-log checks to `EventStore.verify`.
    open_store: Callable[[Settings, bool], Awaitable[EventStore]]
    open_accounts: Callable[[Settings], Awaitable[Accounts]]


async def _sqlite_store(settings: Settings, verify_on_open: bool) -> EventStore:
    from masklog.server.sqlite_store import SQLiteEventStore

    return await SQLiteEventStore.open(settings.database, check="quick" if verify_on_open else "none")


async def _postgres_store(settings: Settings, verify_on_open: bool) -> EventStore:
    from masklog.server.postgres_store import PostgresEventStore

    if settings.database_url is None:
        raise ValueError("the postgresql storage needs a database URL (--database postgresql://..., MASKLOG_DATABASE)")
    return await PostgresEventStore.open(settings.database_url, check=verify_on_open)


async def _sqlite_accounts(settings: Settings) -> Accounts:
    from masklog.server.sqlite_accounts import SQLiteAccounts

    return await SQLiteAccounts.open(settings.accounts_database)


async def _postgres_accounts(settings: Settings) -> Accounts:
    from masklog.server.postgres_accounts import PostgresAccounts

    if settings.database_url is None:
        raise ValueError("the postgresql storage needs a database URL (--database postgresql://..., MASKLOG_DATABASE)")
    return await PostgresAccounts.open(settings.database_url)


# Storage backends by the name `Settings.storage` (and `--storage`, MASKLOG_STORAGE) takes.
# "postgresql": the log and the accounts in the PostgreSQL database `Settings.database_url`
# (several server processes can share it); media files stay in the data folder.
STORAGE_BACKENDS: dict[str, StorageBackend] = {
    "sqlite": StorageBackend(_sqlite_store, _sqlite_accounts),
    "postgresql": StorageBackend(_postgres_store, _postgres_accounts),
}


def storage_backend(settings: Settings) -> StorageBackend:
    try:
        return STORAGE_BACKENDS[settings.storage]
    except KeyError:
        known = ", ".join(sorted(STORAGE_BACKENDS))
        raise ValueError(f"unknown storage {settings.storage!r}: use one of {known}") from None


async def open_store(settings: Settings, *, verify_on_open: bool = True) -> EventStore:
    """The event log of `settings.data` (or `settings.database_url`) on the configured backend. `verify_on_open=False` skips
    the integrity checks that read the whole log (a server runs `verify` once it serves, so its
    start-up does not grow with the history)."""
    return await storage_backend(settings).open_store(settings, verify_on_open)


async def open_accounts(settings: Settings) -> Accounts:
    """The accounts of `settings.data` (or `settings.database_url`) on the configured backend."""
    return await storage_backend(settings).open_accounts(settings)
