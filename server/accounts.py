"""Users, tokens and project memberships.

Accounts are not labelling history, so they live beside the log, in their own SQLite file.
Tokens are stored hashed; the whole table is small and kept in memory for the per-request check.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class Role(enum.StrEnum):
    """Per project; a user whose account role is admin is admin of every project."""

    ADMIN = "admin"
    ANNOTATOR = "annotator"
    VIEWER = "viewer"


RANK = {Role.VIEWER: 0, Role.ANNOTATOR: 1, Role.ADMIN: 2}


class AccountError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role  # account role: admin may create projects and is admin everywhere

    @property
    def actor(self) -> str:
        return f"user:{self.name}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._by_token: dict[str, User] = {}
        self._users: dict[str, User] = {}
        self._members: dict[tuple[str, str], Role] = {}
        self._loaded_at = 0.0

    @classmethod
    async def open(cls, path: Path) -> Accounts:
        conn = await aiosqlite.connect(path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL REFERENCES users(name));
            CREATE TABLE IF NOT EXISTS members (
                project TEXT NOT NULL, name TEXT NOT NULL REFERENCES users(name), role TEXT NOT NULL,
                PRIMARY KEY (project, name));
            """
        )
        await conn.commit()
        accounts = cls(conn)
        await accounts._load()
        return accounts

    async def _load(self) -> None:
        async with self._conn.execute("SELECT name, role FROM users") as rows:
            self._users = {name: User(name, Role(role)) async for name, role in rows}
        async with self._conn.execute("SELECT hash, name FROM tokens") as rows:
            self._by_token = {digest: self._users[name] async for digest, name in rows}
        async with self._conn.execute("SELECT project, name, role FROM members") as rows:
            self._members = {(project, name): Role(role) async for project, name, role in rows}
        self._loaded_at = time.monotonic()

    async def close(self) -> None:
        await self._conn.close()

    # ---- users and tokens -----------------------------------------------------------------

    async def add_user(self, name: str, role: Role) -> str:
        """Create the user (or change their account role) and return a new token for them."""
        if not USER_NAME.match(name):
            raise AccountError(f"user name {name!r} is not valid: 1-64 letters, digits, '_', '.', '@' or '-'")
        token = secrets.token_urlsafe(32)
        await self._conn.execute(
            "INSERT INTO users (name, role) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET role = excluded.role",
            (name, role.value),
        )
        await self._conn.execute("INSERT INTO tokens (hash, name) VALUES (?, ?)", (_hash(token), name))
        await self._conn.commit()
        await self._load()
        return token

    def user(self, name: str) -> User | None:
        return self._users.get(name)

    async def authenticate(self, token: str | None) -> User | None:
        """The token's user. An unknown token triggers a reload (at most once a second), so a
        user added by `masklog user add` while the server runs can log in at once."""
        if not token or len(token) > 200:
            return None
        digest = _hash(token)
        user = self._by_token.get(digest)
        if user is None and time.monotonic() - self._loaded_at > 1.0:
            await self._load()
            user = self._by_token.get(digest)
        return user

    # ---- memberships ---------------------------------------------------------------------

    def role_in(self, user: User, project: str) -> Role | None:
        if user.role == Role.ADMIN:
            return Role.ADMIN
        return self._members.get((project, user.name))

    def members(self, project: str) -> dict[str, Role]:
        return {name: role for (p, name), role in self._members.items() if p == project}

    def projects_of(self, user: User) -> set[str] | None:
        """The projects a user may see; None means all of them (account admins)."""
        if user.role == Role.ADMIN:
            return None
        return {project for project, name in self._members if name == user.name}

    async def set_member(self, project: str, name: str, role: Role | None) -> None:
        if name not in self._users:
            raise AccountError(f"unknown user {name!r}")
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
