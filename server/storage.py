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
from masklog.server.presence import PresenceBoard, PresenceRelay
from masklog.server.settings import Settings
from masklog.server.store import EventStore


@dataclass(frozen=True, slots=True)
class StorageBackend:
    # (settings, verify_on_open): False leaves the whole-log checks to `EventStore.verify`.
    open_store: Callable[[Settings, bool], Awaitable[EventStore]]
    open_accounts: Callable[[Settings], Awaitable[Accounts]]
    # The presence relay between processes sharing the log (None: the backend has none).
    open_presence: Callable[[Settings, PresenceBoard], Awaitable[PresenceRelay | None]]


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


async def _no_presence(settings: Settings, board: PresenceBoard) -> PresenceRelay | None:
    return None


async def _postgres_presence(settings: Settings, board: PresenceBoard) -> PresenceRelay | None:
    from masklog.server.postgres_presence import PostgresPresenceRelay

    assert settings.database_url is not None  # the store opened with it
    return await PostgresPresenceRelay.open(settings.database_url, board)


# Storage backends by the name `Settings.storage` (and `--storage`, MASKLOG_STORAGE) takes.
# "postgresql": the log and the accounts in the PostgreSQL database `Settings.database_url`
# (several server processes can share it); media files stay in the data folder.
STORAGE_BACKENDS: dict[str, StorageBackend] = {
    "sqlite": StorageBackend(_sqlite_store, _sqlite_accounts, _no_presence),
    "postgresql": StorageBackend(_postgres_store, _postgres_accounts, _postgres_presence),
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


async def open_presence(settings: Settings, board: PresenceBoard) -> PresenceRelay | None:
    """The relay that shares `board`'s seats with the other server processes of the log, when
    several share it (`Settings.follows_log`) and the backend can; else None."""
    if not settings.follows_log:
        return None
    return await storage_backend(settings).open_presence(settings, board)
