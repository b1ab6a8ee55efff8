"""The write path: decide a command against the live state, append it, apply it, fan it out.

One ledger per server process owns the in-memory projection of the whole log. Commands are
serialised by a lock so each is decided against the state that includes every event before it
(one log, one order). A command id already in the log is answered with the stored event, so a
retried command is applied once (C5).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from domain.decide import Command, DomainError, ErrorCode, Scope, decide, scope_of
from domain.events import Event, NewEvent
from domain.state import LabelState, fold
from server.hub import Hub
from server.store import EventStore


class Ledger:
    def __init__(self, store: EventStore, hub: Hub) -> None:
        self.store = store
        self.hub = hub
        self.state = LabelState()
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Rebuild the projection from the log (at start-up)."""
        async for batch in self.store.iter_batches(self.state.seq):
            fold(batch, self.state)

    async def execute(
        self,
        actor: str,
        command: Command,
        command_id: uuid.UUID,
        *,
        authorize: Callable[[Scope], None] | None = None,
        panoptic: bool = False,
        cause: uuid.UUID | None = None,
    ) -> tuple[Event, bool]:
        """Apply one command; returns its event and whether it was a retry of an earlier one.

        `authorize` sees where the command lands before anything is decided and raises to refuse.
        Raises DomainError for a refused command; nothing is appended then.
        """
        async with self._lock:
            existing = await self.store.get(command_id)
            if existing is not None:
                if existing.actor != actor:
                    raise DomainError(ErrorCode.EXISTS, f"command id {command_id} was already used by someone else")
                return existing, True
            scope = scope_of(self.state, command)
            if authorize is not None:
                authorize(scope)
            body = decide(self.state, actor, command, panoptic=panoptic)
            [event] = await self.store.append([NewEvent(id=command_id, stream=scope.stream, actor=actor, body=body, cause=cause)])
            # No await between apply and publish: a socket that snapshots the state and
            # subscribes in one step sees every event exactly once.
            self.state.apply(event)
            self.hub.publish(event)
            return event, False
