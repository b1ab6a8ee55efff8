"""The SQLite accounts: the shared contract on a real file. (The migration of an accounts file
of the first schema is tested in test_access.py.)"""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from masklog.server.accounts import Accounts
from masklog.server.sqlite_accounts import SQLiteAccounts
from tests.server.accounts_contract import AccountsContract


class TestSQLiteAccounts(AccountsContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    async def open_accounts(self) -> Accounts:
        self.path = self.directory / f"{uuid4().hex}.sqlite3"
        return await SQLiteAccounts.open(self.path)

    async def open_another(self, accounts: Accounts) -> Accounts:
        return await SQLiteAccounts.open(self.path)
