"""The PostgreSQL accounts: the shared contract on a real server (tests/server/postgres_server.py),
plus what only they have: their tables beside the store's in one database."""

from __future__ import annotations

import pytest

from masklog.server.accounts import AccountError, Accounts, Role, User, token_digest
from masklog.server.postgres_accounts import ACCOUNTS_FORMAT, PostgresAccounts
from masklog.server.postgres_store import PostgresEventStore
from tests.server.accounts_contract import AccountsContract
from tests.server.events_factory import batch
from tests.server.postgres_server import PostgresServer
from tests.server.test_postgres_store import Databases, _execute, _fetchval, databases  # noqa: F401 (a fixture)


class TestPostgresAccounts(AccountsContract):
    @pytest.fixture(autouse=True)
    def _databases(self, databases: Databases) -> None:  # noqa: F811
        self.databases = databases

    async def open_accounts(self) -> Accounts:
        return await PostgresAccounts.open(await self.databases.new())

    async def open_another(self, accounts: Accounts) -> Accounts:
        assert isinstance(accounts, PostgresAccounts)
        return await PostgresAccounts.open(accounts.dsn)


async def test_accounts_and_the_log_share_one_database(databases: Databases) -> None:  # noqa: F811
    dsn = await databases.new()
    async with await PostgresEventStore.open(dsn) as store:
        accounts = await PostgresAccounts.open(dsn)
        try:
            token = await accounts.add_user("ann", Role.ANNOTATOR)
            await store.append(batch(2))
            assert await accounts.authenticate(token) == User("ann", Role.ANNOTATOR)
        finally:
            await accounts.close()
    # Only the digest is stored, never the token; reopening finds the user again.
    assert await _fetchval(dsn, "SELECT hash FROM masklog_accounts_tokens") == token_digest(token)
    assert await _fetchval(dsn, "SELECT count(*) FROM events") == 2
    again = await PostgresAccounts.open(dsn)
    try:
        assert again.user("ann") == User("ann", Role.ANNOTATOR)
    finally:
        await again.close()


async def test_a_newer_accounts_format_is_refused(databases: Databases) -> None:  # noqa: F811
    dsn = await databases.new()
    await (await PostgresAccounts.open(dsn)).close()
    await _execute(dsn, "UPDATE masklog_accounts_format SET version = $1", ACCOUNTS_FORMAT + 1)
    with pytest.raises(AccountError, match="accounts format"):
        await PostgresAccounts.open(dsn)


async def test_names_postgresql_cannot_store_are_nobody(databases: Databases) -> None:  # noqa: F811
    accounts = await PostgresAccounts.open(await databases.new())
    try:
        await accounts.add_user("ann", Role.ANNOTATOR)
        for name in ("a\x00b", "x" * 10_000):
            with pytest.raises(AccountError):
                await accounts.tokens(name)
            with pytest.raises(AccountError):
                await accounts.set_member("p", name, Role.VIEWER)
        with pytest.raises(AccountError):
            await accounts.revoke("ann", "\x00" * 12)  # neither the token nor an id
        with pytest.raises(AccountError):
            await accounts.set_member("p\x00", "ann", Role.VIEWER)
        assert accounts.members("p\x00") == {} and len(await accounts.tokens("ann")) == 1
    finally:
        await accounts.close()


async def test_an_unreachable_database_is_an_account_error(postgres_server: PostgresServer) -> None:
    with pytest.raises(AccountError, match="no_such_database"):
        await PostgresAccounts.open(postgres_server.dsn("no_such_database"))
