"""Users, tokens and project memberships: what the server needs of them (`Accounts`), and the
values they hold.

`server/sqlite_accounts.py` keeps them in a SQLite file beside the log; `server/storage.py` opens
the backend a setting names, so they can later move into the same database as the log. Every
backend passes the contract tests in `tests/server/accounts_contract.py`.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from typing import Protocol

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class Role(enum.StrEnum):
    """Per project; a user whose account role is admin is admin of every project."""

    ADMIN = "admin"
    ANNOTATOR = "annotator"
    VIEWER = "viewer"


RANK = {Role.VIEWER: 0, Role.ANNOTATOR: 1, Role.ADMIN: 2}


class AccountError(ValueError):
    pass


class UnknownUser(AccountError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role  # account role: admin may create projects and is admin everywhere

    @property
    def actor(self) -> str:
        return f"user:{self.name}"


@dataclass(frozen=True, slots=True)
class Credential:
    """What a valid token stands for: its user, its public id (the first hex digits of its hash:
    safe to show and to log) and when it stops working (None: never)."""

    user: User
    token_id: str
    expires: float | None
    digest: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    created: float
    expires: float | None
    revoked: float | None


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token as stored: its SHA-256 (`token_digest`, never the token), its user and times."""

    digest: str
    name: str
    created: float
    expires: float | None
    revoked: float | None


@dataclass(frozen=True, slots=True)
class AccountRows:
    """Everything the accounts hold, as stored: what `masklog copy-log` moves from one backend
    to another so every token still works afterwards. Tokens in the order they were made."""

    users: tuple[User, ...] = ()
    tokens: tuple[TokenRow, ...] = ()
    members: tuple[tuple[str, str, Role], ...] = ()  # (project, user name, role)

    def __bool__(self) -> bool:
        return bool(self.users or self.tokens or self.members)


_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def check_rows(rows: AccountRows) -> None:
    """Raise AccountError for rows no backend may import: a bad name, role or digest, a token or
    membership of a user the rows do not have, the same user, token or membership twice."""
    if not isinstance(rows, AccountRows):
        raise AccountError(f"expected AccountRows, got {type(rows).__name__}")
    names: set[str] = set()
    for user in rows.users:
        if not isinstance(user, User) or not isinstance(user.name, str) or not USER_NAME.match(user.name) or not isinstance(user.role, Role):
            raise AccountError(f"not a valid user: {user!r}")
        if user.name in names:
            raise AccountError(f"user {user.name!r} appears twice")
        names.add(user.name)
    digests: set[str] = set()
    for token in rows.tokens:
        if not isinstance(token, TokenRow) or not isinstance(token.digest, str) or not _DIGEST.match(token.digest):
            raise AccountError(f"not a valid token row: {token!r}")
        if token.name not in names:
            raise AccountError(f"token {token.digest[:TOKEN_ID_LENGTH]} belongs to {token.name!r}, who is not among the users")
        if token.digest in digests:
            raise AccountError(f"token {token.digest[:TOKEN_ID_LENGTH]} appears twice")
        digests.add(token.digest)
        times = (token.created, token.expires, token.revoked)
        if not all(t is None or (isinstance(t, (int, float)) and math.isfinite(t)) for t in times) or token.created is None:
            raise AccountError(f"token {token.digest[:TOKEN_ID_LENGTH]} has a bad time")
    memberships: set[tuple[str, str]] = set()
    for member in rows.members:
        if not (isinstance(member, tuple) and len(member) == 3 and isinstance(member[0], str) and isinstance(member[2], Role)):
            raise AccountError(f"not a valid membership: {member!r}")
        project, name, _ = member
        if name not in names:
            raise AccountError(f"a member of {project!r}, {name!r}, is not among the users")
        if (project, name) in memberships:
            raise AccountError(f"{name!r} is a member of {project!r} twice")
        memberships.add((project, name))


TOKEN_ID_LENGTH = 12
DEFAULT_TOKEN_LIFETIME_S = 30 * 24 * 3600.0


def new_token(name: str, lifetime_s: float | None) -> str:
    """A fresh token for a user about to be added: checks the name and the lifetime first
    (AccountError), as every backend's `add_user` must."""
    if not USER_NAME.match(name):
        raise AccountError(f"user name {name!r} is not valid: 1-64 letters, digits, '_', '.', '@' or '-'")
    if lifetime_s is not None and lifetime_s <= 0:
        raise AccountError("a token's lifetime must be positive")
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What a backend stores of a token: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(token: str) -> str:
    """The public id of a token (what `masklog user revoke --token` and the admin route take)."""
    return token_digest(token)[:TOKEN_ID_LENGTH]


class MembershipCache:
    """The memberships a backend keeps in memory, (project, user name) -> role, and the
    synchronous reads of them every backend answers alike (account admins see everything)."""

    _members: dict[tuple[str, str], Role]

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


class Accounts(Protocol):
    """Users, their tokens and their roles in projects, as the server uses them.

    Token checks (`credential`, `authenticate`, `live_digests`) read the storage each time, so a
    token revoked or a user added by another process counts at once. Users and memberships are
    read from memory (`user`, `role_in`, `members`, `projects_of` are synchronous: they are
    checked for every command, under the ledger's lock); `refresh` reloads them when another
    process changed them, and a change made through this object is seen by it at once.
    Failures are `AccountError`s (`UnknownUser` for a name nobody has).
    """

    async def close(self) -> None: ...

    async def refresh(self) -> bool:
        """Reload users and memberships if another process changed them; whether it did."""
        ...

    # users and tokens

    async def add_user(self, name: str, role: Role, lifetime_s: float | None = DEFAULT_TOKEN_LIFETIME_S) -> str:
        """Create the user (or change their account role) and return a new token for them,
        valid for `lifetime_s` seconds (None: until revoked)."""
        ...

    def user(self, name: str) -> User | None: ...

    async def credential(self, token: str | None) -> Credential | None:
        """What the token stands for; None for unknown, revoked and expired tokens."""
        ...

    async def authenticate(self, token: str | None) -> User | None: ...

    async def live_digests(self, digests: set[str]) -> set[str]:
        """Those of these token digests that still work (not revoked, not expired)."""
        ...

    async def tokens(self, name: str) -> list[TokenInfo]: ...

    async def revoke(self, name: str, token: str | None = None) -> list[str]:
        """Revoke all of a user's live tokens, or one (`token`: the token or its id); the ids
        revoked."""
        ...

    # memberships

    def role_in(self, user: User, project: str) -> Role | None:
        """The user's role in the project (account admins: admin everywhere); None: no member."""
        ...

    def members(self, project: str) -> dict[str, Role]: ...

    def projects_of(self, user: User) -> set[str] | None:
        """The projects a user may see; None means all of them (account admins)."""
        ...

    async def set_member(self, project: str, name: str, role: Role | None) -> None:
        """Make `name` a member with `role`, or no member (None)."""
        ...

    # moving accounts between backends (masklog copy-log)

    async def export_rows(self) -> AccountRows:
        """Every user, token (as stored: digest and times, revoked ones too) and membership."""
        ...

    async def import_rows(self, rows: AccountRows) -> None:
        """Store `rows` as they are, into accounts that hold nothing yet (no user, no token):
        afterwards every token of `rows` works here as it did where they came from. All or
        nothing; AccountError (nothing stored) for rows `check_rows` refuses or for accounts
        that are not empty."""
        ...


