"""The open sockets, by user, token and project, so that a change of who may read ends them at once.

A socket's right to read was checked at its hello; afterwards it can be lost: the member is
removed from the project, the token is revoked or expires, the account role changes. Each of
those ends the user's sockets it concerns: `end` marks the session ended (the socket's sender
closes it with the given code) and stops its subscription at once, so not one more event reaches
it. `sweep` finds the sessions that lost their right by another process's doing (`masklog user
revoke`, `masklog user add --role`) or by expiry; the server runs it about once a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from masklog.server.accounts import Accounts, Credential, Role
from masklog.server.protocol import Close, CloseCode


@dataclass(eq=False)
class Session:
    credential: Credential
    project: str
    stop: Callable[[], None]  # stops the socket's subscription
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    close: Close | None = None  # how the socket is closed; set by `end`, with `ended`

    @property
    def user(self) -> str:
        return self.credential.user.name

    def end(self, close: Close) -> None:
        if self.ended.is_set():
            return
        self.close = close
        self.stop()
        self.ended.set()


class Sessions:
    def __init__(self) -> None:
        self._open: set[Session] = set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, credential: Credential, project: str, stop: Callable[[], None]) -> Session:
        session = Session(credential, project, stop)
        self._open.add(session)
        return session

    def remove(self, session: Session) -> None:
        self._open.discard(session)

    def _end(self, which: Callable[[Session], bool], code: CloseCode, reason: str) -> int:
        ended = [s for s in self._open if which(s)]
        for session in ended:
            session.end(Close(code, reason))
            self._open.discard(session)
        return len(ended)

    def member_changed(self, accounts: Accounts, project: str, name: str) -> int:
        """After a membership change: a user who may no longer read the project loses its
        sockets there. A lowered role keeps reading; every command is checked against the role
        of the moment, so a viewer's socket writes nothing."""
        user = accounts.user(name)
        if user is not None and accounts.role_in(user, project) is not None:
            return 0
        return self._end(lambda s: s.user == name and s.project == project, CloseCode.FORBIDDEN, "no longer a member of this project")

    def tokens_revoked(self, name: str, token_ids: list[str]) -> int:
        revoked = set(token_ids)
        return self._end(lambda s: s.user == name and s.credential.token_id in revoked, CloseCode.UNAUTHORIZED, "token revoked")

    async def sweep(self, accounts: Accounts) -> int:
        """End the sessions whose token stopped working, whose account role changed, or whose
        user is no longer a member of their project.

        Only the sessions open when the sweep starts are judged: one opened while it awaits the
        accounts was checked at its hello against newer data than this sweep read (its token is
        not among the digests asked about), and the next sweep judges it."""
        checked = set(self._open)
        await accounts.refresh()
        now = time.time()
        live = await accounts.live_digests({s.credential.digest for s in checked})

        def stale(session: Session) -> bool:
            expires = session.credential.expires
            return session.credential.digest not in live or (expires is not None and expires <= now)

        ended = self._end(lambda s: s in checked and stale(s), CloseCode.UNAUTHORIZED, "token revoked or expired")

        def lost(session: Session) -> bool:
            if session not in checked:
                return False
            user = accounts.user(session.user)
            if user is None or user.role != session.credential.user.role:
                return True  # re-open to be welcomed with the new role
            role: Role | None = accounts.role_in(user, session.project)
            return role is None

        return ended + self._end(lost, CloseCode.FORBIDDEN, "your access to this project changed")
