"""The behaviour every `Accounts` backend must have, written once.

A backend's test module subclasses `AccountsContract` (not collected by itself: its name does
not start with `Test`) and implements `open_accounts` (fresh, empty accounts) and
`open_another` (a second handle on the same storage, as another process opens it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from masklog.server.accounts import TOKEN_ID_LENGTH, AccountError, AccountRows, Accounts, Role, TokenRow, UnknownUser, User, token_digest, token_id


class AccountsContract:
    # -- what a backend provides --------------------------------------------------------------

    async def open_accounts(self) -> Accounts:
        """New, empty accounts; the suite closes them."""
        raise NotImplementedError

    async def open_another(self, accounts: Accounts) -> Accounts:
        """A second handle on the same storage as `accounts`; the suite closes it."""
        raise NotImplementedError

    @pytest.fixture
    async def accounts(self) -> AsyncIterator[Accounts]:
        accounts = await self.open_accounts()
        try:
            yield accounts
        finally:
            await accounts.close()

    # -- users and tokens ---------------------------------------------------------------------

    async def test_a_new_users_token_authenticates_them(self, accounts: Accounts) -> None:
        token = await accounts.add_user("ann", Role.ANNOTATOR)
        assert await accounts.authenticate(token) == User("ann", Role.ANNOTATOR)
        assert accounts.user("ann") == User("ann", Role.ANNOTATOR)
        credential = await accounts.credential(token)
        assert credential is not None
        assert credential.token_id == token_id(token) and len(credential.token_id) == TOKEN_ID_LENGTH
        assert credential.digest == token_digest(token)
        assert credential.expires is not None

    @pytest.mark.parametrize("token", [None, "", "not-a-token", "x" * 500])
    async def test_unknown_tokens_stand_for_nobody(self, accounts: Accounts, token: str | None) -> None:
        await accounts.add_user("ann", Role.ANNOTATOR)
        assert await accounts.credential(token) is None
        assert await accounts.authenticate(token) is None

    async def test_adding_a_user_again_changes_their_role_and_adds_a_token(self, accounts: Accounts) -> None:
        first = await accounts.add_user("ann", Role.ANNOTATOR)
        second = await accounts.add_user("ann", Role.ADMIN, lifetime_s=None)
        assert first != second
        assert await accounts.authenticate(first) == User("ann", Role.ADMIN)
        assert (await accounts.credential(second)).expires is None  # type: ignore[union-attr]
        assert [t.id for t in await accounts.tokens("ann")] == [token_id(first), token_id(second)]

    @pytest.mark.parametrize("name", ["", "-lead", "has space", "x" * 65])
    async def test_bad_user_names_are_refused(self, accounts: Accounts, name: str) -> None:
        with pytest.raises(AccountError):
            await accounts.add_user(name, Role.VIEWER)

    async def test_a_token_stops_working_when_it_expires(self, accounts: Accounts) -> None:
        token = await accounts.add_user("ann", Role.ANNOTATOR, lifetime_s=0.2)
        digest = token_digest(token)
        assert await accounts.live_digests({digest}) == {digest}
        await asyncio.sleep(0.3)
        assert await accounts.authenticate(token) is None
        assert await accounts.live_digests({digest}) == set()
        with pytest.raises(AccountError):
            await accounts.add_user("ann", Role.ANNOTATOR, lifetime_s=0)

    async def test_revoking_one_token_or_all(self, accounts: Accounts) -> None:
        one, two, three = [await accounts.add_user("ann", Role.ANNOTATOR) for _ in range(3)]
        assert await accounts.revoke("ann", token_id(one)) == [token_id(one)]
        assert await accounts.revoke("ann", two) == [token_id(two)]  # the token itself works too
        assert await accounts.authenticate(one) is None and await accounts.authenticate(two) is None
        assert await accounts.authenticate(three) is not None
        assert await accounts.revoke("ann") == [token_id(three)]
        assert await accounts.live_digests({token_digest(t) for t in (one, two, three)}) == set()
        assert all(t.revoked is not None for t in await accounts.tokens("ann"))
        with pytest.raises(AccountError):
            await accounts.revoke("ann", token_id(one))  # no live token like that any more

    async def test_unknown_users(self, accounts: Accounts) -> None:
        assert accounts.user("nobody") is None
        with pytest.raises(UnknownUser):
            await accounts.tokens("nobody")
        with pytest.raises(UnknownUser):
            await accounts.revoke("nobody")
        with pytest.raises(UnknownUser):
            await accounts.set_member("p", "nobody", Role.VIEWER)

    # -- memberships --------------------------------------------------------------------------

    async def test_memberships(self, accounts: Accounts) -> None:
        await accounts.add_user("ann", Role.ANNOTATOR)
        await accounts.add_user("root", Role.ADMIN)
        ann, root = User("ann", Role.ANNOTATOR), User("root", Role.ADMIN)
        assert accounts.role_in(ann, "p") is None and accounts.projects_of(ann) == set()
        await accounts.set_member("p", "ann", Role.VIEWER)
        await accounts.set_member("q", "ann", Role.ANNOTATOR)
        await accounts.set_member("p", "ann", Role.ADMIN)
        assert accounts.role_in(ann, "p") == Role.ADMIN and accounts.role_in(ann, "q") == Role.ANNOTATOR
        assert accounts.members("p") == {"ann": Role.ADMIN}
        assert accounts.projects_of(ann) == {"p", "q"}
        await accounts.set_member("p", "ann", None)
        assert accounts.role_in(ann, "p") is None and accounts.members("p") == {}
        # An account admin is admin of every project, member or not, and sees them all.
        assert accounts.role_in(root, "anything") == Role.ADMIN and accounts.projects_of(root) is None

    # -- another process ----------------------------------------------------------------------

    async def test_changes_by_another_process_count(self, accounts: Accounts) -> None:
        other = await self.open_another(accounts)
        try:
            token = await other.add_user("ann", Role.ANNOTATOR)
            # Tokens are checked against the storage every time...
            assert await accounts.authenticate(token) == User("ann", Role.ANNOTATOR)
            # ...users and memberships once `refresh` has seen the change.
            await other.set_member("p", "ann", Role.ANNOTATOR)
            assert await accounts.refresh() is True
            assert accounts.user("ann") == User("ann", Role.ANNOTATOR)
            assert accounts.role_in(User("ann", Role.ANNOTATOR), "p") == Role.ANNOTATOR
            assert await accounts.refresh() is False
            # A member may be added here although the user was made elsewhere.
            await other.add_user("bob", Role.VIEWER)
            await accounts.set_member("p", "bob", Role.VIEWER)
            assert accounts.members("p") == {"ann": Role.ANNOTATOR, "bob": Role.VIEWER}
            await other.revoke("ann")
            assert await accounts.authenticate(token) is None
        finally:
            await other.close()

    # -- moving accounts between backends (export_rows / import_rows, masklog copy-log) -----------

    async def _filled(self, accounts: Accounts) -> dict[str, str]:
        """Users with live, never-expiring, revoked and expired tokens, and memberships."""
        tokens = {
            "ann": await accounts.add_user("ann", Role.ANNOTATOR),
            "ann-forever": await accounts.add_user("ann", Role.ANNOTATOR, lifetime_s=None),
            "root": await accounts.add_user("root", Role.ADMIN),
            "vic": await accounts.add_user("vic", Role.VIEWER),
            "vic-revoked": await accounts.add_user("vic", Role.VIEWER),
            "vic-expired": await accounts.add_user("vic", Role.VIEWER, lifetime_s=0.05),
        }
        await accounts.revoke("vic", tokens["vic-revoked"])
        await accounts.set_member("p", "ann", Role.ANNOTATOR)
        await accounts.set_member("p", "vic", Role.VIEWER)
        await accounts.set_member("q", "ann", Role.ADMIN)
        await asyncio.sleep(0.1)
        return tokens

    async def test_exported_rows_imported_elsewhere_work_the_same(self, accounts: Accounts) -> None:
        tokens = await self._filled(accounts)
        rows = await accounts.export_rows()
        assert [u.name for u in rows.users] == ["ann", "root", "vic"]
        assert len(rows.tokens) == 6 and all(t.digest != token for t, token in zip(rows.tokens, tokens.values(), strict=True))
        copy = await self.open_accounts()
        try:
            assert not await copy.export_rows()
            await copy.import_rows(rows)
            assert await copy.export_rows() == rows
            for name, token in tokens.items():
                assert await copy.credential(token) == await accounts.credential(token), name
            assert await copy.authenticate(tokens["vic-revoked"]) is None and await copy.authenticate(tokens["vic-expired"]) is None
            assert await copy.authenticate(tokens["ann"]) == User("ann", Role.ANNOTATOR)
            assert await copy.tokens("vic") == await accounts.tokens("vic")
            assert await copy.tokens("ann") == await accounts.tokens("ann")
            ann = User("ann", Role.ANNOTATOR)
            assert copy.members("p") == accounts.members("p") and copy.projects_of(ann) == {"p", "q"}
            # The copy goes on as accounts do.
            await copy.revoke("ann", tokens["ann"])
            assert await copy.authenticate(tokens["ann"]) is None and await accounts.authenticate(tokens["ann"]) is not None
        finally:
            await copy.close()

    async def test_import_refuses_accounts_that_are_not_empty_and_bad_rows(self, accounts: Accounts) -> None:
        tokens = await self._filled(accounts)
        rows = await accounts.export_rows()
        copy = await self.open_accounts()
        try:
            await copy.add_user("zed", Role.VIEWER)
            before = await copy.export_rows()
            with pytest.raises(AccountError, match="not empty"):
                await copy.import_rows(rows)
            assert await copy.export_rows() == before
        finally:
            await copy.close()
        bad = [
            AccountRows(rows.users[:1], rows.tokens, rows.members),  # tokens of users it lacks
            AccountRows((*rows.users, rows.users[0]), rows.tokens, rows.members),
            AccountRows(rows.users, (*rows.tokens[:1], rows.tokens[0]), rows.members),
            AccountRows(rows.users, (TokenRow("not-a-digest", "ann", 1.0, None, None),), ()),
            AccountRows(rows.users, (TokenRow("0" * 64, "ann", float("nan"), None, None),), ()),
            AccountRows((User("-bad", Role.VIEWER),), (), ()),
            AccountRows(rows.users, (), (("p", "nobody", Role.VIEWER),)),
        ]
        for rows_of in bad:
            empty = await self.open_accounts()
            try:
                with pytest.raises(AccountError):
                    await empty.import_rows(rows_of)
                assert not await empty.export_rows()
                assert await empty.authenticate(tokens["ann"]) is None
            finally:
                await empty.close()
