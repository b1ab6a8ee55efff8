"""The accounts (`server.accounts.Accounts`) in their own SQLite file.

Accounts are not labelling history, so they live beside the log, in a file of their own. Tokens
are stored hashed, each with an expiry and a revocation time. Every check of a token reads the
database (one indexed row), so a token revoked or a user added by another process (`masklog
user revoke`, `masklog user add`) counts at once. Memberships and account roles are also kept in
memory for the synchronous per-command checks; `refresh` reloads them when another process has
written the file (SQLite's `data_version`).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import aiosqlite

from masklog.server.accounts import (
    DEFAULT_TOKEN_LIFETIME_S,
    TOKEN_ID_LENGTH,
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

# The file's layout, in SQLite's user_version: 1 tokens without times (before expiry existed),
# 2 tokens with creation, expiry and revocation times. A file of a newer layout is refused. (Files
# written before the number was kept have user_version 0: their layout is read off the tables.)
ACCOUNTS_FORMAT = 2


async def _migrate(conn: aiosqlite.Connection, legacy_lifetime_s: float | None) -> None:
    """Bring an accounts file of an older version up to date: tokens gained creation, expiry and
    revocation times. Tokens made before expiry existed expire `legacy_lifetime_s` from now."""
    async with conn.execute("PRAGMA table_info(tokens)") as rows:
        columns = {row[1] async for row in rows}
    if "expires" in columns:
        return
    now = time.time()
    await conn.execute("ALTER TABLE tokens ADD COLUMN created REAL NOT NULL DEFAULT 0")
    await conn.execute("ALTER TABLE tokens ADD COLUMN expires REAL")
    await conn.execute("ALTER TABLE tokens ADD COLUMN revoked REAL")
    expires = now + legacy_lifetime_s if legacy_lifetime_s is not None else None
    await conn.execute("UPDATE tokens SET created = ?, expires = ?", (now, expires))


class SQLiteAccounts(MembershipCache):
    """`Accounts` in their own SQLite file (WAL), beside the log."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._users: dict[str, User] = {}
        self._members: dict[tuple[str, str], Role] = {}
        self._data_version = -1

    @classmethod
    async def open(cls, path: Path, legacy_token_lifetime_s: float | None = DEFAULT_TOKEN_LIFETIME_S) -> SQLiteAccounts:
        conn = await aiosqlite.connect(path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA busy_timeout=5000")  # the CLI may write while the server runs
        await conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL REFERENCES users(name));
            CREATE TABLE IF NOT EXISTS members (
                project TEXT NOT NULL, name TEXT NOT NULL REFERENCES users(name), role TEXT NOT NULL,
                PRIMARY KEY (project, name));
            """
        )
        async with conn.execute("PRAGMA user_version") as rows:
            row = await rows.fetchone()
        if row is not None and row[0] > ACCOUNTS_FORMAT:
            await conn.close()
            raise AccountError(f"{path} has accounts format {row[0]}; this build reads up to {ACCOUNTS_FORMAT}")
        await _migrate(conn, legacy_token_lifetime_s)
        await conn.execute(f"PRAGMA user_version = {ACCOUNTS_FORMAT}")
        await conn.commit()
        accounts = cls(conn)
        await accounts._load()
        return accounts

    async def _load(self) -> None:
        async with self._conn.execute("SELECT name, role FROM users") as rows:
            self._users = {name: User(name, Role(role)) async for name, role in rows}
        async with self._conn.execute("SELECT project, name, role FROM members") as rows:
            self._members = {(project, name): Role(role) async for project, name, role in rows}
        self._data_version = await self._version()

    async def _version(self) -> int:
        async with self._conn.execute("PRAGMA data_version") as rows:
            row = await rows.fetchone()
        return int(row[0]) if row else 0

    async def refresh(self) -> bool:
        """Reload users and memberships if another connection (another process) changed the
        file since the last load; returns whether it did. Cheap enough to call every second."""
        if await self._version() == self._data_version:
            return False
        await self._load()
        return True

    async def close(self) -> None:
        await self._conn.close()

    # ---- users and tokens -----------------------------------------------------------------

    async def add_user(self, name: str, role: Role, lifetime_s: float | None = DEFAULT_TOKEN_LIFETIME_S) -> str:
        """Create the user (or change their account role) and return a new token for them, valid
        for `lifetime_s` seconds (None: until revoked)."""
        token = new_token(name, lifetime_s)
        now = time.time()
        await self._conn.execute(
            "INSERT INTO users (name, role) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET role = excluded.role",
            (name, role.value),
        )
        await self._conn.execute(
            "INSERT INTO tokens (hash, name, created, expires) VALUES (?, ?, ?, ?)",
            (token_digest(token), name, now, now + lifetime_s if lifetime_s is not None else None),
        )
        await self._conn.commit()
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
            "SELECT users.name, users.role, tokens.expires FROM tokens JOIN users ON users.name = tokens.name "
            "WHERE tokens.hash = ? AND tokens.revoked IS NULL AND (tokens.expires IS NULL OR tokens.expires > ?)"
        )
        async with self._conn.execute(query, (digest, time.time())) as rows:
            row = await rows.fetchone()
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
        marks = ",".join("?" * len(digests))
        query = f"SELECT hash FROM tokens WHERE hash IN ({marks}) AND revoked IS NULL AND (expires IS NULL OR expires > ?)"
        async with self._conn.execute(query, [*digests, time.time()]) as rows:
            return {digest async for (digest,) in rows}

    async def tokens(self, name: str) -> list[TokenInfo]:
        await self._require_user(name)
        async with self._conn.execute("SELECT hash, created, expires, revoked FROM tokens WHERE name = ? ORDER BY created", (name,)) as rows:
            return [TokenInfo(digest[:TOKEN_ID_LENGTH], created, expires, revoked) async for digest, created, expires, revoked in rows]

    async def revoke(self, name: str, token: str | None = None) -> list[str]:
        """Revoke all of a user's live tokens, or one of them (`token`: the token itself or its
        id). Returns the ids revoked; an unknown user or token is an AccountError."""
        await self._require_user(name)
        condition = "name = ? AND revoked IS NULL"
        params: list[str | int] = [name]
        if token is not None:
            condition += " AND (hash = ? OR substr(hash, 1, ?) = ?)"
            params += [token_digest(token), TOKEN_ID_LENGTH, token.lower()]
        async with self._conn.execute(f"SELECT hash FROM tokens WHERE {condition}", params) as rows:
            ids = [digest[:TOKEN_ID_LENGTH] async for (digest,) in rows]
        if token is not None and not ids:
            raise AccountError(f"user {name!r} has no live token like that")
        await self._conn.execute(f"UPDATE tokens SET revoked = ? WHERE {condition}", [time.time(), *params])
        await self._conn.commit()
        self._data_version = -1  # make the next refresh reload
        return ids

    async def export_rows(self) -> AccountRows:
        async with self._conn.execute("SELECT name, role FROM users ORDER BY name") as rows:
            users = tuple([User(name, Role(role)) async for name, role in rows])
        async with self._conn.execute("SELECT hash, name, created, expires, revoked FROM tokens ORDER BY created, rowid") as rows:
            tokens = tuple([TokenRow(*row) async for row in rows])
        async with self._conn.execute("SELECT project, name, role FROM members ORDER BY project, name") as rows:
            members = tuple([(project, name, Role(role)) async for project, name, role in rows])
        return AccountRows(users, tokens, members)

    async def import_rows(self, rows: AccountRows) -> None:
        check_rows(rows)
        try:
            await self._conn.execute("BEGIN IMMEDIATE")  # the emptiness checked is the one written to
            try:
                async with self._conn.execute("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM tokens)") as found:
                    row = await found.fetchone()
                if row is not None and row[0]:
                    raise AccountError("the accounts are not empty: users or tokens are already there")
                await self._conn.executemany("INSERT INTO users (name, role) VALUES (?, ?)", [(u.name, u.role.value) for u in rows.users])
                await self._conn.executemany(
                    "INSERT INTO tokens (hash, name, created, expires, revoked) VALUES (?, ?, ?, ?, ?)",
                    [(t.digest, t.name, t.created, t.expires, t.revoked) for t in rows.tokens],
                )
                await self._conn.executemany("INSERT INTO members (project, name, role) VALUES (?, ?, ?)", [(p, n, r.value) for p, n, r in rows.members])
                await self._conn.commit()
            except BaseException:
                await self._conn.rollback()
                raise
        except sqlite3.Error as error:
            raise AccountError(str(error)) from error
        await self._load()

    async def _require_user(self, name: str) -> None:
        async with self._conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)) as rows:
            if await rows.fetchone() is None:
                raise UnknownUser(f"unknown user {name!r}")

    # ---- memberships ---------------------------------------------------------------------

    async def set_member(self, project: str, name: str, role: Role | None) -> None:
        # The database, not the in-memory copy: the user may have been added by another process.
        await self._require_user(name)
        await self.refresh()
        try:
            if role is None:
                await self._conn.execute("DELETE FROM members WHERE project = ? AND name = ?", (project, name))
            else:
                await self._conn.execute(
                    "INSERT INTO members (project, name, role) VALUES (?, ?, ?) "
                    "ON CONFLICT(project, name) DO UPDATE SET role = excluded.role",
                    (project, name, role.value),
                )
            await self._conn.commit()
        except sqlite3.Error as error:  # pragma: no cover - disk trouble
            raise AccountError(str(error)) from error
        if role is None:
            self._members.pop((project, name), None)
        else:
            self._members[(project, name)] = role


def stored_format(path: Path) -> int | None:
    """The layout of the accounts file at `path` (see ACCOUNTS_FORMAT), read without changing
    anything; None when there is no file or no accounts in it yet."""
    if not path.exists():
        return None
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version:
            return version
        columns = {row[1] for row in conn.execute("PRAGMA table_info(tokens)")}
        if not columns:
            return None
        return 2 if "expires" in columns else 1
    except sqlite3.DatabaseError as error:
        raise AccountError(f"{path}: {error}") from error
    finally:
        conn.close()
