"""Opening the storage a setting names (`Settings.storage`): the event log, the accounts and
the work claims (inference workers' leases and registry).

Every place that needs the log or the accounts (the app, the offline export and import jobs,
the `masklog` command) opens them here, never a backend's class directly, so a backend is
chosen in one place. A backend's modules are imported only when it is chosen: a PostgreSQL
driver need not be installed to run on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from masklog.server.accounts import Accounts
from masklog.server.claims import WorkClaims
from masklog.server.presence import PresenceBoard, PresenceRelay
from masklog.server.settings import Settings
from masklog.server.store import EventStore


@dataclass(frozen=True, slots=True)
class StoredFormats:
    """What a storage holds, read without changing anything (`inspect_storage`): the log's and
    the accounts' schema versions (None: not created yet), the log's head and how many users
    and tokens the accounts hold. `current_*`: the versions this build writes."""

    log: int | None
    head: int
    accounts: int | None
    account_rows: int
    current_log: int
    current_accounts: int


@dataclass(frozen=True, slots=True)
class StorageBackend:
    # (settings, verify_on_open): False leaves the whole-log checks to `EventStore.verify`.
    open_store: Callable[[Settings, bool], Awaitable[EventStore]]
    open_accounts: Callable[[Settings], Awaitable[Accounts]]
    inspect: Callable[[Settings], Awaitable[StoredFormats]]
    # The presence relay between processes sharing the log (None: the backend has none).
    open_presence: Callable[[Settings, PresenceBoard], Awaitable[PresenceRelay | None]]
    open_claims: Callable[[Settings], Awaitable[WorkClaims]]


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


async def _sqlite_claims(settings: Settings) -> WorkClaims:
    from masklog.server.sqlite_claims import SQLiteClaims

    return await SQLiteClaims.open(settings.work_database)


async def _postgres_claims(settings: Settings) -> WorkClaims:
    from masklog.server.postgres_claims import PostgresClaims

    if settings.database_url is None:
        raise ValueError("the postgresql storage needs a database URL (--database postgresql://..., MASKLOG_DATABASE)")
    return await PostgresClaims.open(settings.database_url)


async def _sqlite_inspect(settings: Settings) -> StoredFormats:
    import sqlite3

    from masklog.server import sqlite_accounts, sqlite_store
    from masklog.server.store import StoreCorrupted

    def read() -> StoredFormats:
        log = sqlite_store.stored_format(settings.database)
        accounts = sqlite_accounts.stored_format(settings.accounts_database)
        head = rows = 0
        try:
            if log is not None:
                with contextlib.closing(sqlite3.connect(settings.database.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
                    head = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            if accounts is not None:
                with contextlib.closing(sqlite3.connect(settings.accounts_database.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
                    rows = conn.execute("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM tokens)").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise StoreCorrupted(f"{settings.data}: {error}") from error
        return StoredFormats(log, head, accounts, rows, sqlite_store.STORE_FORMAT, sqlite_accounts.ACCOUNTS_FORMAT)

    return await asyncio.to_thread(read)


async def _postgres_inspect(settings: Settings) -> StoredFormats:
    import asyncpg

    from masklog.server import postgres_accounts, postgres_store
    from masklog.server.settings import redact_url
    from masklog.server.store import StoreUnavailable

    if settings.database_url is None:
        raise ValueError("the postgresql storage needs a database URL (--database postgresql://..., MASKLOG_DATABASE)")
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=postgres_store.CONNECT_TIMEOUT_S)
    except postgres_store._DATABASE_ERRORS as error:
        raise StoreUnavailable(f"{redact_url(settings.database_url)}: {error}") from error
    try:
        log = await postgres_store.stored_format(conn)
        accounts = await postgres_accounts.stored_format(conn)
        head = int(await conn.fetchval(postgres_store._HEAD)) if log is not None else 0
        rows = 0
        if accounts is not None:
            rows = int(await conn.fetchval("SELECT (SELECT count(*) FROM masklog_accounts_users) + (SELECT count(*) FROM masklog_accounts_tokens)"))
    except postgres_store._DATABASE_ERRORS as error:
        raise StoreUnavailable(f"{redact_url(settings.database_url)}: {error}") from error
    finally:
        await conn.close()
    return StoredFormats(log, head, accounts, rows, postgres_store.STORE_FORMAT, postgres_accounts.ACCOUNTS_FORMAT)


async def _sqlite_presence(settings: Settings, board: PresenceBoard) -> PresenceRelay | None:
    from masklog.server.sqlite_presence import SQLitePresenceRelay

    return await SQLitePresenceRelay.open(settings.work_database, board)


async def _postgres_presence(settings: Settings, board: PresenceBoard) -> PresenceRelay | None:
    from masklog.server.postgres_presence import PostgresPresenceRelay

    assert settings.database_url is not None  # the store opened with it
    return await PostgresPresenceRelay.open(settings.database_url, board)


# Storage backends by the name `Settings.storage` (and `--storage`, MASKLOG_STORAGE) takes.
# "postgresql": the log and the accounts in the PostgreSQL database `Settings.database_url`
# (several server processes can share it); media files stay in the data folder.
STORAGE_BACKENDS: dict[str, StorageBackend] = {
    "sqlite": StorageBackend(_sqlite_store, _sqlite_accounts, _sqlite_inspect, _sqlite_presence, _sqlite_claims),
    "postgresql": StorageBackend(_postgres_store, _postgres_accounts, _postgres_inspect, _postgres_presence, _postgres_claims),
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


async def open_claims(settings: Settings) -> WorkClaims:
    """The work claims and workers registry of `settings.data` (`work.sqlite3`) or of
    `settings.database_url`, on the configured backend. (The embedded server, where one process
    does everything, can use `claims.MemoryClaims` instead.) Raises ClaimsUnavailable when the
    storage does not answer."""
    return await storage_backend(settings).open_claims(settings)


async def inspect_storage(settings: Settings) -> StoredFormats:
    """What the configured storage holds, without creating or changing anything. Raises
    StoreUnavailable (a database server not answering), StoreCorrupted (a file that is not a
    database), AccountError (an accounts file that is not one)."""
    return await storage_backend(settings).inspect(settings)


async def open_presence(settings: Settings, board: PresenceBoard) -> PresenceRelay | None:
    """The relay that shares `board`'s seats with the other server processes of the log, when
    several share it (`Settings.follows_log`) and the backend can; else None."""
    if not settings.follows_log:
        return None
    return await storage_backend(settings).open_presence(settings, board)
