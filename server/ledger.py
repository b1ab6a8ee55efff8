"""The write path: decide a command against the live state, append it, apply it, fan it out.

One ledger per server process owns the in-memory projection of the whole log. Commands are
serialised by a lock so each is decided against the state that includes every event before it
(one log, one order). A command id already in the log is answered with the stored event, so a
retried command is applied once (C5).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Collection

from masklog.domain.decide import FIRST_TRACKERS, Command, DomainError, ErrorCode, Scope, decide, scope_of
from masklog.domain.events import Event, NewEvent, TrackFrameProduced, is_derived_event_id, new_event_id, stored
from masklog.domain.state import LabelState, fold
from masklog.server.hub import Hub
from masklog.server.store import EventStore, StoreError


async def rebuild(store: EventStore, state: LabelState | None = None) -> LabelState:
    """Fold the whole log (after `state.seq`) into a state.

    The cyclic garbage collector is paused meanwhile: a rebuild allocates millions of objects
    that all stay alive, and each collection would walk them again for nothing (about a third
    of the time on a large log). Afterwards they are moved to the permanent generation so later
    collections skip them too.
    """
    state = state if state is not None else LabelState()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        async for batch in store.iter_batches(state.seq):
            fold(batch, state)
    finally:
        if was_enabled:
            gc.enable()
        gc.freeze()
    return state


def _decide(
    state: LabelState,
    actor: str,
    command: Command,
    event_id: str,
    *,
    authorize: Callable[[Scope], None] | None = None,
    panoptic: bool = False,
    cause: str | None = None,
    trackers: Collection[str] = FIRST_TRACKERS,
) -> NewEvent:
    """The decision every write path makes: where the command lands, whether `authorize` lets
    it land there (it raises to refuse), and the event it makes. Raises DomainError for a
    refused command."""
    scope = scope_of(state, command)
    if authorize is not None:
        authorize(scope)
    body = decide(state, actor, command, panoptic=panoptic, trackers=trackers)
    return NewEvent(id=event_id, stream=scope.stream, actor=actor, body=body, cause=cause)


def _decide_all(
    state: LabelState,
    actor: str,
    commands: list[Command],
    authorize: Callable[[Scope], None] | None,
    trackers: Collection[str],
    ids: list[str] | None = None,
) -> list[NewEvent]:
    """Decide `commands` in order, each against a copy of `state` that includes the ones before
    it; `state` itself is not touched. Raises for the first refused, naming its place. `ids`:
    the event ids to give them (the server's derived ids), else random ones."""
    trial = state.copy()
    decided: list[NewEvent] = []
    for index, command in enumerate(commands):
        try:
            new = _decide(trial, actor, command, ids[index] if ids is not None else new_event_id(), authorize=authorize, trackers=trackers)
        except DomainError as error:
            raise DomainError(error.code, f"item {index + 1} of {len(commands)}: {error.message}") from None
        trial.apply(stored(new, trial.seq + 1, 0.0))
        decided.append(new)
    return decided


def _with_id(events: list[Event], event_id: str) -> Event:
    return next(event for event in events if event.id == event_id)


class LedgerError(Exception):
    """The log refused an append; the ledger rebuilt its state from the log."""


class Ledger:
    """Decides commands one at a time but lets their commits overlap.

    Deciding needs the state including every earlier command, but waiting for each commit
    (an fsync) before deciding the next would cap the whole server at one command per disk
    flush. So a decided event is applied to the state at once, with the position it will get
    (this process is the log's only writer, so positions are predictable), and its append joins
    the store's next group commit. Acks and fan-out wait for the commit, and events are
    published in position order. Should an append fail, the state is rebuilt from the log.

    Each commit (the append, then the fan-out) runs as a task of its own, never in the caller:
    a caller that goes away (a socket closed while its command commits cancels its task) must
    not keep a committed event from being published, or every later one would wait for it.
    """

    def __init__(self, store: EventStore, hub: Hub, trackers: Collection[str] = FIRST_TRACKERS) -> None:
        self.store = store
        self.hub = hub
        # The tracker names a track request may give: those this server's backends offer.
        self.trackers = frozenset(trackers)
        self.state = LabelState()
        self._lock = asyncio.Lock()
        self._next_seq = 1
        # Command id -> its commit under way (append and fan-out): a retry waits for it.
        self._pending: dict[str, asyncio.Task[list[Event]]] = {}
        # Appends under way: recovering waits for them before reading the log.
        self._appends: set[asyncio.Future[list[Event]]] = set()
        self._committed: dict[int, Event] = {}
        self._published = 0

    async def load(self) -> None:
        """Rebuild the projection from the log (at start-up)."""
        self.state = await rebuild(self.store, self.state)
        self._next_seq = self._published = self.state.seq
        self._next_seq += 1

    async def execute(
        self,
        actor: str,
        command: Command,
        command_id: str,
        *,
        authorize: Callable[[Scope], None] | None = None,
        panoptic: bool = False,
        cause: str | None = None,
    ) -> tuple[Event, bool]:
        """Apply one command; returns its committed event and whether it was a retry of an
        earlier one (then nothing new was appended).

        `authorize` sees where the command lands before anything is decided and raises to refuse.
        Raises DomainError for a refused command; nothing is appended then.
        """
        if is_derived_event_id(command_id):
            raise DomainError(ErrorCode.INVALID_ID, "command ids of UUID version 8 are reserved for the events the server derives; use a random (version 4) UUID")
        async with self._lock:
            in_flight = self._pending.get(command_id)
            existing = None if in_flight else await self.store.get(command_id)
            if in_flight is None and existing is None:
                new = _decide(self.state, actor, command, command_id, authorize=authorize, panoptic=panoptic, cause=cause, trackers=self.trackers)
                predicted = [self._apply_new(new)]
                commit = self._start_commit(predicted)
        if existing is not None:
            return self._check_owner(existing, actor), True
        if in_flight is not None:
            event = _with_id(await asyncio.shield(in_flight), command_id)
            return self._check_owner(event, actor), True
        [event] = await asyncio.shield(commit)
        return event, False

    async def execute_batch(
        self, actor: str, commands: list[tuple[Command, str]], *, cause: str | None = None
    ) -> list[Event | DomainError]:
        """Decide several commands of one actor, in order, and append the accepted ones in one
        commit: the tracking actor writes a frame's results for all its objects this way.

        Returns, per command, its committed event (the stored one when its id was already in
        the log: re-running never duplicates) or the DomainError that refused it. Raises
        LedgerError when the log refuses the append.
        """
        results: list[Event | DomainError | None] = [None] * len(commands)
        waits: dict[int, asyncio.Task[list[Event]]] = {}
        commit: asyncio.Task[list[Event]] | None = None
        predicted: list[Event] = []
        accepted: list[int] = []  # the indexes of `predicted`'s commands
        async with self._lock:
            for index, (command, command_id) in enumerate(commands):
                in_flight = self._pending.get(command_id)
                if in_flight is not None:
                    waits[index] = in_flight
                    continue
                # A frame result needs no look-up: the rules refuse a frame its track already
                # produced, so its id (derived from track, object and frame) cannot be in the
                # log. It saves a read per frame on the tracking path.
                existing = None if isinstance(command, TrackFrameProduced) else await self.store.get(command_id)
                if existing is not None:
                    results[index] = existing
                    continue
                try:
                    new = _decide(self.state, actor, command, command_id, cause=cause, trackers=self.trackers)
                except DomainError as error:
                    results[index] = error
                    continue
                predicted.append(self._apply_new(new))
                accepted.append(index)
            if predicted:
                commit = self._start_commit(predicted)
        for index, wait in waits.items():
            results[index] = _with_id(await asyncio.shield(wait), commands[index][1])
        if commit is not None:
            for index, event in zip(accepted, await asyncio.shield(commit), strict=True):
                results[index] = event
        return results  # type: ignore[return-value]

    async def execute_all(
        self, actor: str, commands: list[Command], *, authorize: Callable[[Scope], None] | None = None, ids: list[str] | None = None
    ) -> list[Event]:
        """Apply every command or none (an import): each is decided, once, on a copy of the
        state that includes the ones before it; only if all pass are their events applied to
        the state and appended, in one commit. A refusal raises DomainError (or what `authorize`
        raises), its message naming the command's place in the list. `ids`, one per command:
        the event ids to log them under (ids the server derives, e.g. an import's), else random."""
        if ids is not None and len(ids) != len(commands):
            raise ValueError("one id per command")
        async with self._lock:
            # Decided on a copy, on a worker thread: copying a large projection takes a while, and
            # the loop keeps serving meanwhile. Only this lock's holder changes the state, so the
            # state is still the one the copy was taken from and the decided events are applied
            # to it as they are.
            decided = await asyncio.to_thread(_decide_all, self.state, actor, commands, authorize, self.trackers, ids)
            if not decided:
                return []
            commit = self._start_commit([self._apply_new(new) for new in decided])
        return await asyncio.shield(commit)

    # ---- the steps every write path shares ---------------------------------------------------------

    def _apply_new(self, new: NewEvent) -> Event:
        """Apply a decided event to the state at once, at the position it will get (call under
        the lock)."""
        event = stored(new, self._next_seq, time.time())
        self.state.apply(event)
        self._next_seq += 1
        return event

    def _start_commit(self, predicted: list[Event]) -> asyncio.Task[list[Event]]:
        """Start committing applied events (one append, then their fan-out) as a task that no
        caller's cancellation reaches; retries of their ids wait on it."""
        news = [NewEvent(id=e.id, stream=e.stream, actor=e.actor, body=e.body, cause=e.cause) for e in predicted]
        append = asyncio.ensure_future(self.store.append(news))
        self._appends.add(append)
        append.add_done_callback(self._appends.discard)
        commit = asyncio.ensure_future(self._commit(predicted, append))
        commit.add_done_callback(_consume_error)
        for event in predicted:
            self._pending[event.id] = commit
        return commit

    async def _commit(self, predicted: list[Event], append: asyncio.Future[list[Event]]) -> list[Event]:
        """Wait for the append, then publish; if it failed, or the log gave other positions than
        predicted (someone else wrote to it), rebuild the state from the log."""
        try:
            try:
                events = await append
            except StoreError as error:  # the store's contract: refused, nothing of it stored
                await self._recover()
                raise LedgerError(f"the log refused the append: {error}") from error
            if [e.seq for e in events] != [e.seq for e in predicted]:
                await self._recover()
            for event in events:
                self._publish(event)
            return events
        finally:
            # Only now: until it is published, a retry must wait for this commit rather than
            # find nothing in flight and decide the command again.
            for event in predicted:
                self._pending.pop(event.id, None)

    @property
    def published(self) -> int:
        """The last position fanned out to subscribers: every event up to it is committed."""
        return self._published

    @staticmethod
    def _check_owner(event: Event, actor: str) -> Event:
        if event.actor != actor:
            raise DomainError(ErrorCode.EXISTS, f"command id {event.id} was already used by someone else")
        return event

    def _publish(self, event: Event) -> None:
        """Fan out committed events strictly in position order."""
        if event.seq <= self._published:
            return  # published already, by a recovery
        self._committed[event.seq] = event
        while self._published + 1 in self._committed:
            self._published += 1
            self.hub.publish(self._committed.pop(self._published))

    async def _recover(self) -> None:
        async with self._lock:
            await asyncio.gather(*self._appends, return_exceptions=True)
            self.state = await rebuild(self.store)
            self._next_seq = self.state.seq + 1
            # Publish whatever did commit, in order; nothing past the log's head is pending now.
            for event in await self.store.read(self._published):
                self._committed.pop(event.seq, None)
                self._published = event.seq
                self.hub.publish(event)
            self._committed.clear()
            # Sockets may have been sent a snapshot holding an event that never committed.
            self.hub.drop_all()


def _consume_error(commit: asyncio.Task[list[Event]]) -> None:
    """A commit whose caller went away still fails loudly enough: the ledger has recovered and
    logged; this only keeps asyncio from reporting the error a second time."""
    if not commit.cancelled():
        commit.exception()
