"""`Sessions.sweep` on real SQLite accounts: it ends the sockets whose token stopped working, and
never a socket that opened while it was reading the accounts (that socket's token was not among
those it asked about, so it would look revoked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from masklog.server.accounts import Credential, Role
from masklog.server.sessions import Session, Sessions
from masklog.server.sqlite_accounts import SQLiteAccounts


@pytest.fixture
async def accounts(tmp_path: Path) -> AsyncIterator[SQLiteAccounts]:
    accounts = await SQLiteAccounts.open(tmp_path / "accounts.sqlite3")
    try:
        yield accounts
    finally:
        await accounts.close()


async def credential_of(accounts: SQLiteAccounts, token: str) -> Credential:
    credential = await accounts.credential(token)
    assert credential is not None
    return credential


async def test_a_socket_opened_during_a_sweep_is_left_to_the_next_one(accounts: SQLiteAccounts, monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = Sessions()
    early = sessions.add(await credential_of(accounts, await accounts.add_user("ann", Role.ADMIN)), "p", lambda: None)
    late_credential = await credential_of(accounts, await accounts.add_user("bob", Role.ADMIN))
    opened: list[Session] = []
    read_live = accounts.live_digests

    async def live_digests_while_bob_says_hello(digests: set[str]) -> set[str]:
        opened.append(sessions.add(late_credential, "p", lambda: None))  # bob's hello lands mid-sweep
        return await read_live(digests)

    monkeypatch.setattr(accounts, "live_digests", live_digests_while_bob_says_hello)
    assert await sessions.sweep(accounts) == 0
    [late] = opened
    assert not early.ended.is_set() and not late.ended.is_set()
    monkeypatch.undo()
    assert await sessions.sweep(accounts) == 0  # the next sweep judges bob's socket too: live
    assert len(sessions) == 2


async def test_a_revoked_token_opened_mid_sweep_is_ended_by_the_next_sweep(accounts: SQLiteAccounts, monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = Sessions()
    ann_token = await accounts.add_user("ann", Role.ADMIN)
    ann = sessions.add(await credential_of(accounts, ann_token), "p", lambda: None)
    bob_token = await accounts.add_user("bob", Role.ADMIN)
    bob_credential = await credential_of(accounts, bob_token)
    await accounts.revoke("ann")
    await accounts.revoke("bob")  # between bob's hello and his socket's registration
    opened: list[Session] = []
    read_live = accounts.live_digests

    async def live_digests_while_bob_says_hello(digests: set[str]) -> set[str]:
        opened.append(sessions.add(bob_credential, "p", lambda: None))
        return await read_live(digests)

    monkeypatch.setattr(accounts, "live_digests", live_digests_while_bob_says_hello)
    assert await sessions.sweep(accounts) == 1
    assert ann.ended.is_set() and ann.close is not None and ann.close.reason == "token revoked or expired"
    [bob] = opened
    assert not bob.ended.is_set()
    monkeypatch.undo()
    assert await sessions.sweep(accounts) == 1
    assert bob.ended.is_set() and bob.close is not None and bob.close.code == 4001
