"""Operating the storage: `masklog migrate` and `masklog copy-log` (server/cli.py).

`migrate` creates or upgrades the schema of the log and of the accounts by opening them: the
stores' own open-time migration (`_migrate` in each backend) is the one code path, so a server
that starts on a storage nobody migrated creates it the same way. `copy-log` moves a whole log
and its accounts from one storage to another (SQLite data folder or PostgreSQL database, either
way): every event as it was (`EventStore.copy_in`), in batches, so memory stays constant; every
user, token (hashes as stored) and membership (`Accounts.export_rows` / `import_rows`), so a
token that worked on the source works on the copy. Snapshots are not copied: they are a cache of
the projection, rebuilt as a server serves (or at once with `masklog snapshots`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from masklog.server.settings import Settings, redact_url
from masklog.server.storage import StoredFormats, inspect_storage, open_accounts, open_store
from masklog.server.store import StoreError

# Events per `copy_in` transaction (and per read of the source).
COPY_BATCH = 10_000


class OperationError(Exception):
    """A migration or copy that cannot be done; the message says why. Nothing was changed
    unless the message says otherwise."""


@dataclass(frozen=True, slots=True)
class Migration:
    what: str  # "event log" or "accounts"
    where: str
    before: int | None  # the schema version found (None: none yet)
    after: int

    def __str__(self) -> str:
        before = "none" if self.before is None else str(self.before)
        outcome = "created" if self.before is None else "up to date" if self.before == self.after else "upgraded"
        return f"{self.what} in {self.where}: format {before} -> {self.after} ({outcome})"


def storage_at(spec: str) -> Settings:
    """The settings of a `--from` / `--to` argument: a postgresql:// URL, or a data folder."""
    if "://" in spec:
        if not spec.startswith(("postgresql://", "postgres://")):
            raise OperationError(f"{spec.split('://')[0]}:// is not a storage: give a data folder or a postgresql:// URL")
        return Settings(data=Path.cwd(), storage="postgresql", database_url=spec)
    return Settings(data=Path(spec).resolve())


def where(settings: Settings) -> str:
    return redact_url(settings.database_url) if settings.database_url else str(settings.data)


async def migrate(settings: Settings) -> list[Migration]:
    """Create or upgrade the log's and the accounts' schema; what was found and what is there
    now. A storage of a newer format is refused by the stores' open (StoreIncompatible,
    AccountError), before anything is written."""
    before = await inspect_storage(settings)
    for found, current, what in ((before.log, before.current_log, "event log"), (before.accounts, before.current_accounts, "accounts")):
        if found is not None and found > current:
            raise OperationError(f"the {what} in {where(settings)} has format {found}; this build reads up to {current}: use a newer masklog")
    if settings.storage == "sqlite":
        settings.data.mkdir(parents=True, exist_ok=True)
    store = await open_store(settings, verify_on_open=False)
    await store.close()
    accounts = await open_accounts(settings)
    await accounts.close()
    after = await inspect_storage(settings)
    log_where = str(settings.database) if settings.storage == "sqlite" else where(settings)
    accounts_where = str(settings.accounts_database) if settings.storage == "sqlite" else where(settings)
    return [
        Migration("event log", log_where, before.log, after.log if after.log is not None else after.current_log),
        Migration("accounts", accounts_where, before.accounts, after.accounts if after.accounts is not None else after.current_accounts),
    ]


@dataclass(frozen=True, slots=True)
class CopyReport:
    events: int
    users: int
    tokens: int
    members: int
    seconds: float


def _same_storage(a: Settings, b: Settings) -> bool:
    if a.storage != b.storage:
        return False
    if a.database_url is None or b.database_url is None:
        return a.database.resolve() == b.database.resolve()
    return _database_key(a.database_url) == _database_key(b.database_url)


def _database_key(url: str) -> tuple[str, int, str]:
    """Host, port and database of a URL: two URLs naming the same database differ only in
    spelling (user, password, options)."""
    parts = urlsplit(url)
    host = (parts.hostname or "localhost").lower()
    if host in ("127.0.0.1", "::1"):
        host = "localhost"
    database = parts.path.lstrip("/") or (parts.username or "")
    return host, parts.port or 5432, database


async def copy_log(
    source: Settings,
    target: Settings,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = COPY_BATCH,
) -> CopyReport:
    """Copy the log and the accounts of `source` into `target`, whose log and accounts must be
    empty. Events keep their positions, ids, times and bodies, byte for byte; the copy is of
    the log as of the source's head when it starts (stop the servers first: later events would
    be left behind). `progress(done, total)` after each batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if _same_storage(source, target):
        raise OperationError(f"the source and the destination are the same storage ({where(source)})")
    started = time.perf_counter()
    # Both sides are looked at before anything is opened: a refusal changes nothing anywhere.
    found = await _inspect("source", source)
    if found.log is None:
        raise OperationError(f"there is no event log in {where(source)} to copy")
    there = await _inspect("destination", target)
    if there.head:
        raise OperationError(
            f"the destination {where(target)} already holds {there.head} events: copy-log fills only an empty log "
            "(drop that database, or pick a new data folder)"
        )
    if there.account_rows:
        raise OperationError(f"the destination {where(target)} already holds users or tokens: copy-log fills only empty accounts")
    for formats, side in ((found, source), (there, target)):
        for version, current, what in ((formats.log, formats.current_log, "event log"), (formats.accounts, formats.current_accounts, "accounts")):
            if version is not None and version > current:
                raise OperationError(f"the {what} in {where(side)} has format {version}; this build reads up to {current}")

    src = await open_store(source, verify_on_open=False)
    try:
        dst = await open_store(target, verify_on_open=False)
        try:
            head = await src.head()
            done = 0
            try:
                # copy_in checks that each batch continues the destination's head: a gap in
                # the source, or a writer on the destination meanwhile, stops the copy there.
                async for batch in src.iter_batches(0, batch_size=batch_size, upto=head):
                    await dst.copy_in(batch)
                    done += len(batch)
                    if progress is not None:
                        progress(done, head)
            except StoreError as error:
                raise OperationError(
                    f"the copy stopped after {done} of {head} events: {error}; "
                    f"the destination {where(target)} holds those {done}: empty it before copying again"
                ) from error
            if await dst.head() != head:
                raise OperationError(f"the copy holds {await dst.head()} events, the source {head}")
        finally:
            await dst.close()
    finally:
        await src.close()

    users = tokens = members = 0
    if found.accounts is not None:
        source_accounts = await open_accounts(source)
        try:
            rows = await source_accounts.export_rows()
        finally:
            await source_accounts.close()
        target_accounts = await open_accounts(target)
        try:
            if rows:
                await target_accounts.import_rows(rows)
        finally:
            await target_accounts.close()
        users, tokens, members = len(rows.users), len(rows.tokens), len(rows.members)
    return CopyReport(head, users, tokens, members, time.perf_counter() - started)


async def _inspect(side: str, settings: Settings) -> StoredFormats:
    try:
        return await inspect_storage(settings)
    except StoreError as error:
        raise OperationError(f"cannot read the {side}: {error}") from error
