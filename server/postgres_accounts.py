"""The accounts (`server.accounts.Accounts`) in the PostgreSQL database of the event log.

The same model as `server/sqlite_accounts.py`: tokens are stored hashed, each with a creation, an
expiry and a revocation time; every token check reads the database (one indexed row), so a token
revoked or a user added by another process counts at once; users and memberships are also kept
in memory for the synchronous per-command checks, and `refresh` reloads them when another process
changed them.

**Seeing other processes' changes.** SQLite's `data_version` has no PostgreSQL equivalent, so
every transaction that writes users or memberships also adds one to a counter
(`masklog_accounts_format.changes`); `refresh` reads the counter (one row) and reloads when it
moved. The load reads the counter, users and memberships in one REPEATABLE READ snapshot, so the
copy in memory and the counter it is stamped with always belong together. Tokens do not move the
counter: they are never cached.

**Tables** (names prefixed `masklog_accounts_` so they cannot meet the store's; created on open
when missing, in one transaction under an advisory lock of their own):
- `masklog_accounts_format` (one row): the schema version (ACCOUNTS_FORMAT; a newer one is
  refused) and the change counter.
- `masklog_accounts_users (name, role)`.
- `masklog_accounts_tokens (hash, name, created, expires, revoked, n)`: `hash` the token's SHA-256
  (never the token); `n` orders tokens made within the same clock tick.
- `masklog_accounts_members (project, name, role)`.
"""

from __future__ import annotations

import re
import time

import asyncpg

from masklog.server.accounts import (
    DEFAULT_TOKEN_LIFETIME_S,
    TOKEN_ID_LENGTH,
    USER_NAME,
    AccountError,
    AccountRows,
    Credential,
    MembershipCache,
    Role,
    TokenInfo,
    TokenRow,
    UnknownUser,
    User,
    check_rows,
    new_token,
    token_digest,
)
from masklog.server.postgres_store import _ACCOUNTS_SCHEMA_LOCK, _DATABASE_ERRORS, _LOCK_SPACE, CONNECT_TIMEOUT_S
from masklog.server.settings import redact_url

# The schema version this build writes; a database of a newer one is refused.
ACCOUNTS_FORMAT = 1

# Token checks run concurrently (every request, every socket's sweep): a few connections.
CONNECTIONS = 4

_TOKEN_ID = re.compile(f"^[0-9a-f]{{{TOKEN_ID_LENGTH}}}$")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS masklog_accounts_format (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version integer NOT NULL,
    changes bigint NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS masklog_accounts_users (
    name text PRIMARY KEY,
    role text NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS masklog_accounts_tokens (
    hash text PRIMARY KEY,
    name text NOT NULL REFERENCES masklog_accounts_users (name),
    created double precision NOT NULL,
    expires double precision,
    revoked double precision,
    n bigint GENERATED ALWAYS AS IDENTITY
)""",
    "CREATE INDEX IF NOT EXISTS masklog_accounts_tokens_name ON masklog_accounts_tokens (name)",
    """CREATE TABLE IF NOT EXISTS masklog_accounts_members (
    project text NOT NULL,
    name text NOT NULL REFERENCES masklog_accounts_users (name),
    role text NOT NULL,
    PRIMARY KEY (project, name)
)""",
    f"INSERT INTO masklog_accounts_format (version) VALUES ({ACCOUNTS_FORMAT}) ON CONFLICT DO NOTHING",
]

_BUMP = "UPDATE masklog_accounts_format SET changes = changes + 1"


class PostgresAccounts(MembershipCache):
    """`Accounts` in PostgreSQL. Open with `await PostgresAccounts.open(dsn)`."""

    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        self.dsn = dsn
        self.name = redact_url(dsn)
        self._pool = pool
        self._users: dict[str, User] = {}
        self._members: dict[tuple[str, str], Role] = {}
        self._changes = -1

    @classmethod
    async def open(cls, dsn: str) -> PostgresAccounts:
        """Open the accounts in the database `dsn` (a postgresql:// URL), creating their tables
        when missing. An unreachable database or a newer schema is an AccountError."""
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError("the PostgreSQL accounts need a postgresql:// URL")
        name = redact_url(dsn)
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=CONNECTIONS, timeout=CONNECT_TIMEOUT_S)
        except _DATABASE_ERRORS as error:
            raise AccountError(f"{name}: {error}") from error
        accounts = cls(dsn, pool)
        try:
            async with pool.acquire() as conn:
                await _migrate(conn, name)
            await accounts._load()
        except BaseException:
            await pool.close()
            raise
        return accounts

    async def _load(self) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                changes = await conn.fetchval("SELECT changes FROM masklog_accounts_format")
                users = await conn.fetch("SELECT name, role FROM masklog_accounts_users")
                members = await conn.fetch("SELECT project, name, role FROM masklog_accounts_members")
        except _DATABASE_ERRORS as error:
            raise AccountError(f"{self.name}: {error}") from error
        if int(changes) < self._changes:
            return  # a load that started earlier finished later: keep the newer copy
        self._users = {name: User(name, Role(role)) for name, role in users}
        self._members = {(project, name): Role(role) for project, name, role in members}
        self._changes = int(changes)

    async def refresh(self) -> bool:
        """Reload users and memberships if another process changed them since the last load;
        returns whether it did. One row read: cheap enough to call every second."""
        try:
            changes = await self._pool.fetchval("SELECT changes FROM masklog_accounts_format")
        except _DATABASE_ERRORS as error:
            raise AccountError(f"{self.name}: {error}") from error
        if changes == self._changes:
            return False
        await self._load()
        return True

    async def close(self) -> None:
        await self._pool.close()

    # ---- users and tokens -----------------------------------------------------------------

    async def add_user(self, name: str, role: Role, lifetime_s: float | None = DEFAULT_TOKEN_LIFETIME_S) -> str:
        """Create the user (or change their account role) and return a new token for them, valid
        for `lifetime_s` seconds (None: until revoked)."""
        token = new_token(name, lifetime_s)
        now = time.time()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO masklog_accounts_users (name, role) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET role = excluded.role",
                    name, role.value,
                )
                await conn.execute(
                    "INSERT INTO masklog_accounts_tokens (hash, name, created, expires) VALUES ($1, $2, $3, $4)",
                    token_digest(token), name, now, now + lifetime_s if lifetime_s is not None else None,
                )
                await conn.execute(_BUMP)
        except _DATABASE_ERRORS as error:
            raise AccountError(f"{self.name}: {error}") from error
        await self._load()
        return token

    def user(self, name: str) -> User | None:
        return self._users.get(name)

    async def credential(self, token: str | None) -> Credential | None:
        """The token's user, read from the database: unknown, revoked and expired tokens all
        give None."""
        if not token or len(token) > 200:
            return None
        digest = token_digest(token)
        query = (
            "SELECT u.name, u.role, t.expires FROM masklog_accounts_tokens t JOIN masklog_accounts_users u ON u.name = t.name "
            "WHERE t.hash = $1 AND t.revoked IS NULL AND (t.expires IS NULL OR t.expires > $2)"
        )
        row = await self._pool.fetchrow(query, digest, time.time())
        if row is None:
            return None
        name, role, expires = row
        return Credential(User(name, Role(role)), digest[:TOKEN_ID_LENGTH], expires, digest)

    async def authenticate(self, token: str | None) -> User | None:
        credential = await self.credential(token)
        return credential.user if credential else None

    async def live_digests(self, digests: set[str]) -> set[str]:
        """Those of these token hashes that still work (not revoked, not expired)."""
        if not digests:
            return set()
        rows = await self._pool.fetch(
            "SELECT hash FROM masklog_accounts_tokens WHERE hash = ANY($1::text[]) AND revoked IS NULL AND (expires IS NULL OR expires > $2)",
            list(digests), time.time(),
        )
        return {row[0] for row in rows}

    async def tokens(self, name: str) -> list[TokenInfo]:
        await self._require_user(name)
        rows = await self._pool.fetch("SELECT hash, created, expires, revoked FROM masklog_accounts_tokens WHERE name = $1 ORDER BY created, n", name)
        return [TokenInfo(digest[:TOKEN_ID_LENGTH], created, expires, revoked) for digest, created, expires, revoked in rows]

    async def revoke(self, name: str, token: str | None = None) -> list[str]:
        """Revoke all of a user's live tokens, or one of them (`token`: the token itself or its
        id). Returns the ids revoked; an unknown user or token is an AccountError."""
        await self._require_user(name)
        condition = "name = $2 AND revoked IS NULL"
        params: list[object] = [time.time(), name]
        if token is not None:
            # Only a well-formed id is compared with the stored hashes' heads (they are hex); any
            # other text can match only as the token itself, and never reaches the server.
            as_id = token.lower() if _TOKEN_ID.match(token.lower()) else None
            condition += f" AND (hash = $3 OR (left(hash, {TOKEN_ID_LENGTH}) = $4))"
            params += [token_digest(token), as_id]
        rows = await self._pool.fetch(
            f"WITH done AS (UPDATE masklog_accounts_tokens SET revoked = $1 WHERE {condition} RETURNING hash, created, n) "
            "SELECT hash FROM done ORDER BY created, n",
            *params,
        )
        ids = [row[0][:TOKEN_ID_LENGTH] for row in rows]
        if token is not None and not ids:
            raise AccountError(f"user {name!r} has no live token like that")
        return ids

    async def export_rows(self) -> AccountRows:
        try:
            async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                users = await conn.fetch("SELECT name, role FROM masklog_accounts_users ORDER BY name")
                tokens = await conn.fetch("SELECT hash, name, created, expires, revoked FROM masklog_accounts_tokens ORDER BY created, n")
                members = await conn.fetch("SELECT project, name, role FROM masklog_accounts_members ORDER BY project, name")
        except _DATABASE_ERRORS as error:
            raise AccountError(f"{self.name}: {error}") from error
        return AccountRows(
            tuple(User(name, Role(role)) for name, role in users),
            tuple(TokenRow(*row) for row in tokens),
            tuple((project, name, Role(role)) for project, name, role in members),
        )

    async def import_rows(self, rows: AccountRows) -> None:
        check_rows(rows)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                # Under the accounts' lock, so two imports cannot both find the tables empty.
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_SPACE, _ACCOUNTS_SCHEMA_LOCK)
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM masklog_accounts_users) OR EXISTS (SELECT 1 FROM masklog_accounts_tokens)"):
                    raise AccountError(f"the accounts in {self.name} are not empty: users or tokens are already there")
                await conn.executemany("INSERT INTO masklog_accounts_users (name, role) VALUES ($1, $2)", [(u.name, u.role.value) for u in rows.users])
                # In the order made: `n` keeps that order among tokens of the same tick.
                await conn.executemany(
                    "INSERT INTO masklog_accounts_tokens (hash, name, created, expires, revoked) VALUES ($1, $2, $3, $4, $5)",
                    [(t.digest, t.name, t.created, t.expires, t.revoked) for t in rows.tokens],
                )
                await conn.executemany(
                    "INSERT INTO masklog_accounts_members (project, name, role) VALUES ($1, $2, $3)", [(p, n, r.value) for p, n, r in rows.members]
                )
                await conn.execute(_BUMP)
        except _DATABASE_ERRORS as error:
            raise AccountError(f"{self.name}: {error}") from error
        await self._load()

    async def _require_user(self, name: str) -> None:
        # A name no user can have is nobody's (and text PostgreSQL refuses, a NUL, never reaches it).
        if not USER_NAME.match(name) or await self._pool.fetchval("SELECT 1 FROM masklog_accounts_users WHERE name = $1", name) is None:
            raise UnknownUser(f"unknown user {name!r}")

    # ---- memberships ---------------------------------------------------------------------

    async def set_member(self, project: str, name: str, role: Role | None) -> None:
        # The database, not the in-memory copy: the user may have been added by another process.
        await self._require_user(name)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if role is None:
                    await conn.execute("DELETE FROM masklog_accounts_members WHERE project = $1 AND name = $2", project, name)
                else:
                    await conn.execute(
                        "INSERT INTO masklog_accounts_members (project, name, role) VALUES ($1, $2, $3) "
                        "ON CONFLICT (project, name) DO UPDATE SET role = excluded.role",
                        project, name, role.value,
                    )
                await conn.execute(_BUMP)
        except _DATABASE_ERRORS as error:
            raise AccountError(f"{self.name}: {error}") from error
        await self._load()  # this change and any other process's since the last load


async def _migrate(conn: asyncpg.Connection, name: str) -> None:
    """Create what is missing, in one transaction under the accounts' schema lock (two processes
    opening a new database create the tables once); refuse a newer schema."""
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_SPACE, _ACCOUNTS_SCHEMA_LOCK)
            if await conn.fetchval("SELECT to_regclass('masklog_accounts_format')") is not None:
                version = await conn.fetchval("SELECT version FROM masklog_accounts_format")
                if version is not None and version > ACCOUNTS_FORMAT:
                    raise AccountError(f"{name} has accounts format {version}; this build reads up to {ACCOUNTS_FORMAT}")
            for statement in _SCHEMA:
                await conn.execute(statement)
    except _DATABASE_ERRORS as error:
        raise AccountError(f"{name}: {error}") from error


async def stored_format(conn: asyncpg.Connection) -> int | None:
    """The accounts' schema version in the database of `conn`, read without changing anything;
    None when their tables are not there yet."""
    if await conn.fetchval("SELECT to_regclass('masklog_accounts_format')") is None:
        return None
    version = await conn.fetchval("SELECT version FROM masklog_accounts_format")
    return int(version) if version is not None else None
