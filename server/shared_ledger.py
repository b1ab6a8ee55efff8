"""The write path when several server processes share one log (PostgreSQL, `Settings.shared_log`).

The embedded `Ledger` is the log's only writer: it applies a decided event at once, at the
position it predicts, and lets commits overlap. With other writers positions cannot be
predicted, so this ledger changes its states only from the log:

- **Following.** A task follows the log's head (`EventStore.subscribe`: PostgreSQL's
  LISTEN/NOTIFY wakes it; a slow poll covers a lost wake-up) and applies every committed event,
  whoever wrote it, in position order, to the base and the loaded media states, then publishes
  it to this process's sockets (`Hub`). `published` is that position; every state is as of it.
- **Deciding.** A command is decided against the state of the media item it lands on, as of
  `published`, and appended with that expectation: "nothing of this stream after `published`"
  (`EventStore.append(expect=...)`, checked in the appending transaction). If another process
  wrote to the stream meanwhile the append is refused (`StreamChanged`): the ledger reads the
  log up to its head and decides again, up to MAX_ATTEMPTS times, then answers `Contended`.
  A project-level command expects every project stream unchanged (ids of media items and
  projects are global).
- **One command per media item in flight.** A command waits while an earlier one of this process
  on the same media item commits (it must be decided against a state that holds it); commands
  on different media items commit together (the store's group commit).
- A command id already in the log is answered with the stored event (C5), whichever process
  stored it; two processes given the same id at once store it once (the store is idempotent by
  id, and a retry's expectation is not checked).

A batch (`execute_batch`: the tracking actor's frame results) is decided command by command
against the same state, without the earlier ones of the batch applied: its commands must not
depend on each other (frame results of different objects or later frames do not). An
all-or-nothing batch (`execute_all`: an import) is decided on a copy, as in `Ledger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from masklog.domain.decide import Command, DomainError, ErrorCode, Scope
from masklog.domain.events import (
    Body,
    Event,
    LabelDeleted,
    LabelSaved,
    NewEvent,
    ObjectCreated,
    ObjectDeleted,
    ObjectReclassed,
    ObjectRenamed,
    PromptAdded,
    TrackCancelled,
    TrackedAccepted,
    TrackedDiscarded,
    TrackRequested,
    is_derived_event_id,
    project_stream,
)
from masklog.domain.shapes import Bitmask
from masklog.domain.state import LabelState
from masklog.server.ledger import Ledger, LedgerError, _decide_all, _with_id
from masklog.server.projections import LoadReport
from masklog.server.store import StoreError, StreamChanged

log = logging.getLogger("masklog.ledger")

# Decisions refused because another process wrote first, before the command is given up; a
# model's results (nobody waits on them, and giving up stops a track) are tried longer, and so
# is a person's cancel: it must be decided again after each frame a running track appends (it
# does not commute: the track may have ended), so against a fast track it meets a change on most
# attempts, and a cancel refused leaves the track running.
MAX_ATTEMPTS = 16
MODEL_ATTEMPTS = 64
PERSON_PREFIX = "user:"
MODEL_PREFIX = "model:"
# The events of a person's commands whose decision reads nothing a model writes (proposals, segments, ended
# tracks, model-written labels): a model's result landing between decision and append changes
# nothing about whether they are allowed (models only add results and end their own tracks; a
# track request's conditioning is taken when it is applied). Undo/redo (they read cells a model
# may have written) and cancels (the track may have ended) are not among them; a saved
# segment is a label_saved or object_created whose mask was fixed when it was decided.
# tests/server/test_commuting.py checks the rule on random histories (`commutes_with_models`).
COMMUTES_WITH_MODELS: frozenset[type] = frozenset(
    {LabelSaved, LabelDeleted, ObjectCreated, ObjectDeleted, ObjectRenamed, ObjectReclassed, PromptAdded, TrackRequested, TrackedAccepted, TrackedDiscarded}
)


def commutes_with_models(body: Body, panoptic: bool) -> bool:
    """Whether a person's decided event stays what deciding it again would give, whatever the
    models append to its media item meanwhile. A mask saved in the panoptic mode does not: it
    was trimmed by the frame's masks as decided, and an auto-saving track may be about to write
    one more there."""
    if type(body) not in COMMUTES_WITH_MODELS:
        return False
    if panoptic:
        shape = body.shape if isinstance(body, LabelSaved) else body.label.shape if isinstance(body, ObjectCreated) and body.label else None
        return not isinstance(shape, Bitmask)
    return True


# How often the follower asks for the head when no wake-up came (a lost notification, a
# listener reconnecting): the longest another process's event can take to show here then.
FOLLOW_POLL_S = 2.0

_BASE = ""  # the in-flight key of project-level commands


class Contended(LedgerError):
    """A command was decided MAX_ATTEMPTS times and each time another process had written to its
    media item first; nothing of it was stored."""


class SharedLedger(Ledger):
    """A `Ledger` for a log that other processes write too (see the module's text)."""

    shared = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Media item (or _BASE) -> the commit of this process's command on it under way.
        self._busy: dict[str, asyncio.Task[list[Event]]] = {}
        self._follower: asyncio.Task[None] | None = None
        # Commands take their turn to be decided in arrival order (see `_in_turn`).
        self._order = asyncio.Lock()

    async def load(self) -> LoadReport:
        report = await super().load()
        self._follower = asyncio.create_task(self._follow(), name="ledger-follower")
        return report

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await asyncio.gather(*self._busy.values(), return_exceptions=True)
        await super().close()

    # ---- following the log --------------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            try:
                async with self.store.subscribe() as heads:
                    await self.catch_up()
                    while True:
                        try:
                            head = await asyncio.wait_for(anext(heads), FOLLOW_POLL_S)
                        except TimeoutError:
                            head = await self.store.head()
                        await self.catch_up(head)
            except asyncio.CancelledError:
                raise
            except StopAsyncIteration:
                return  # the store closed
            except Exception:  # a read failed: the log is still there; try again shortly
                log.exception("following the log failed; trying again")
                await asyncio.sleep(FOLLOW_POLL_S)

    async def catch_up(self, seq: int | None = None) -> None:
        """Apply and publish every event up to `seq` (None: the log's head)."""
        if seq is not None and seq <= self._published:
            return
        async with self._lock:
            await self._advance(seq if seq is not None else await self.store.head())

    async def _advance(self, upto: int) -> None:
        """Apply and publish the log's events after `published` up to `upto` (under the lock)."""
        if upto <= self._published:
            return
        async for batch in self.store.iter_batches(self._published, upto=upto):
            for event in batch:
                self.projections.follow(event)
                self._published = event.seq
                self._next_seq = event.seq + 1
                self.hub.publish(event)
            self.projections.committed(self._published)

    async def _load(self, media: str) -> LabelState:
        # As of what is applied: the log may already hold more, which the follower applies.
        return await self.projections.load(media, upto=self._published)

    # ---- the write paths ------------------------------------------------------------------------

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
        self._check_writable()
        if is_derived_event_id(command_id):
            raise DomainError(ErrorCode.INVALID_ID, "command ids of UUID version 8 are reserved for the events the server derives; use a random (version 4) UUID")
        refused = 0
        while True:
            in_flight: asyncio.Task[list[Event]] | None = None
            existing: Event | None = None
            commit: asyncio.Task[list[Event]] | None = None

            async def attempt() -> asyncio.Task[list[Event]] | None:
                nonlocal in_flight, existing, commit
                in_flight, existing = await self._earlier(command, command_id)
                if in_flight is not None or existing is not None:
                    return None
                key = await self._key(command)
                busy = self._waiting_for(key)
                if busy is None:
                    new = await self._decide_routed(actor, command, command_id, authorize=authorize, panoptic=panoptic, cause=cause)
                    commit = self._start_shared_commit([new], {key}, panoptic=panoptic)
                return busy

            if not await self._in_turn_on_current_state(attempt, refused):
                refused += 1
                continue
            if in_flight is not None or existing is not None:
                return await self._answer_earlier(in_flight, existing, actor, command_id), True
            assert commit is not None
            try:
                [event] = await asyncio.shield(commit)
            except StreamChanged:
                refused += 1
                await self._refused(refused, command_id, actor, patient=isinstance(command, TrackCancelled))
                continue
            return event, False

    async def execute_batch(
        self, actor: str, commands: list[tuple[Command, str]], *, cause: str | None = None
    ) -> list[Event | DomainError]:
        self._check_writable()
        refused = 0
        while True:
            turn = _BatchTurn(len(commands))
            await self._in_turn(lambda: self._decide_batch(turn, actor, commands, cause))  # noqa: B023 (awaited at once)
            results = turn.results
            for index, wait in turn.waits.items():
                results[index] = _with_id(await asyncio.shield(wait), commands[index][1])
            if turn.commit is not None:
                try:
                    events = await asyncio.shield(turn.commit)
                except StreamChanged:
                    refused += 1
                    await self._refused(refused, commands[turn.accepted[0]][1], actor)
                    continue
                for index, event in zip(turn.accepted, events, strict=True):
                    results[index] = event
            return results  # type: ignore[return-value]

    async def _decide_batch(
        self, turn: _BatchTurn, actor: str, commands: list[tuple[Command, str]], cause: str | None
    ) -> asyncio.Task[list[Event]] | None:
        """One attempt of `execute_batch` (under the lock): a commit to wait for, or None."""
        decided: list[NewEvent] = []
        keys: set[str] = set()
        for index, (command, command_id) in enumerate(commands):
            in_flight, existing = await self._earlier(command, command_id)
            if in_flight is not None:
                turn.waits[index] = in_flight
                continue
            if existing is not None:
                turn.results[index] = existing
                continue
            key = await self._key(command)
            busy = self._waiting_for(key)
            if busy is not None:
                turn.reset()
                return busy
            try:
                new = await self._decide_routed(actor, command, command_id, cause=cause)
            except DomainError as error:
                turn.results[index] = error
                continue
            decided.append(new)
            turn.accepted.append(index)
            keys.add(key)
        if decided:
            turn.commit = self._start_shared_commit(decided, keys)
        return None

    async def execute_all(
        self, actor: str, commands: list[Command], *, authorize: Callable[[Scope], None] | None = None, ids: list[str] | None = None
    ) -> list[Event]:
        if ids is not None and len(ids) != len(commands):
            raise ValueError("one id per command")
        self._check_writable()
        refused = 0
        while True:
            commit: asyncio.Task[list[Event]] | None = None

            async def attempt() -> asyncio.Task[list[Event]] | None:
                nonlocal commit
                keys = {await self._key(command) for command in commands}
                busy = next((task for task in map(self._waiting_for, keys) if task is not None), None)
                if busy is not None:
                    return busy
                involved = {key for key in keys if key != _BASE}
                with self._pinned(involved):
                    for media in involved:
                        await self._load(media)
                    trial = self._combined(involved)
                    claims = await self._claims(commands)
                    decided = await asyncio.to_thread(_decide_all, trial, actor, commands, authorize, self.trackers, ids, claims)
                if decided:
                    commit = self._start_shared_commit(decided, keys | {self._key_of_stream(new.stream) for new in decided})
                return None

            if not await self._in_turn_on_current_state(attempt, refused):
                refused += 1
                continue
            if commit is None:
                return []
            try:
                return await asyncio.shield(commit)
            except StreamChanged:
                refused += 1
                await self._refused(refused, None, actor)

    async def _in_turn(self, attempt: Callable[[], Awaitable[asyncio.Task[list[Event]] | None]]) -> None:
        """Run `attempt` under the lock, in the order commands arrived: it decides and starts a
        commit, or returns an earlier commit it must wait for (on its media item). Meanwhile
        the commands behind it wait too, so a client's commands are decided in the order sent;
        the commit being waited for, and the follower, still apply events (they need only the
        lock)."""
        async with self._order:
            while True:
                async with self._lock:
                    busy = await attempt()
                if busy is None:
                    return
                await asyncio.wait([busy])

    # ---- the steps they share -------------------------------------------------------------------

    async def _key(self, command: Command) -> str:
        """The media item a command lands on, or _BASE for a project-level one (or one naming
        ids nobody knows yet)."""
        media = await self._route(command)
        return media if media is not None else _BASE

    def _waiting_for(self, key: str) -> asyncio.Task[list[Event]] | None:
        """A commit of this process the command on `key` must wait for: one on the same media
        item; for _BASE, any (a command naming an object whose creation is still committing
        finds its media item only once that is applied)."""
        if key == _BASE:
            return next(iter(self._busy.values()), None)
        return self._busy.get(key)

    @staticmethod
    def _key_of_stream(stream: str) -> str:
        return stream[len("media:") :] if stream.startswith("media:") else _BASE

    def _expectation(self, news: list[NewEvent], panoptic: bool = False) -> tuple[dict[str, int], str | None]:
        """What the decisions relied on: their streams as of `published`; for project-level
        ones, every project's stream (media and project ids are global). And whose events do
        not count: a person's edit that reads nothing models write (COMMUTES_WITH_MODELS) is not
        decided again because a model's result landed meanwhile, or a person could not save
        while trackers write frames of the same media item many times a second; the models'
        own results always are (they must see a person's label, a deletion, a cancel)."""
        expect = {new.stream: self._published for new in news}
        if any(not new.stream.startswith("media:") for new in news):
            expect.update((project_stream(project), self._published) for project in self.base.projects)
        commutes = all(new.actor.startswith(PERSON_PREFIX) and commutes_with_models(new.body, panoptic) for new in news)
        return expect, MODEL_PREFIX if commutes else None

    def _start_shared_commit(self, news: list[NewEvent], keys: set[str], *, panoptic: bool = False) -> asyncio.Task[list[Event]]:
        """Start appending decided events (under the lock) as a task no caller's cancellation
        reaches; retries of their ids wait on it, and so do commands on the same media items.
        `panoptic`: they were decided in the panoptic mode (see `commutes_with_models`)."""
        expect, ignoring = self._expectation(news, panoptic)
        commit = asyncio.ensure_future(self._commit_shared(news, expect, ignoring))
        commit.add_done_callback(_consume_error)
        for new in news:
            self._pending[new.id] = commit
        for key in keys:
            self._busy[key] = commit
        commit.add_done_callback(lambda task: self._settle(task, news, keys))
        return commit

    def _settle(self, commit: asyncio.Task[list[Event]], news: list[NewEvent], keys: set[str]) -> None:
        for new in news:
            if self._pending.get(new.id) is commit:
                del self._pending[new.id]
        for key in keys:
            if self._busy.get(key) is commit:
                del self._busy[key]

    async def _commit_shared(self, news: list[NewEvent], expect: dict[str, int], ignoring: str | None) -> list[Event]:
        """Append, then apply and publish the log up to the appended events."""
        try:
            events = await self.store.append(news, expect=expect, expect_ignoring=ignoring)
        except StreamChanged:
            self.conflicts += 1
            raise
        except StoreError as error:  # refused, nothing of it stored: no state changed either
            raise LedgerError(f"the log refused the append: {error}") from error
        await self.catch_up(max(event.seq for event in events))
        return events

    async def _in_turn_on_current_state(self, attempt: Callable[[], Awaitable[asyncio.Task[list[Event]] | None]], attempts: int) -> bool:
        """`_in_turn(attempt)`; False when the attempt was refused on a state behind the log,
        which has caught up since (`_stale`): decide again."""
        try:
            await self._in_turn(attempt)
        except DomainError:
            if await self._stale(attempts):
                return False
            raise
        return True

    async def _stale(self, attempts: int) -> bool:
        """After a command was refused (unknown id, a rule broken): whether that was decided on a
        state behind the log, and the state has now caught up with it, so the command is decided
        again. Another process's object creation, say, may not have reached this process's
        follower yet when its creator's next command arrives here: that is not the person's
        error. Bounded by MAX_ATTEMPTS, like refused appends."""
        if attempts >= MAX_ATTEMPTS:
            return False
        head = await self.store.head()
        if head <= self._published:
            return False
        await self.catch_up(head)
        return True

    async def _refused(self, attempts: int, command_id: str | None, actor: str | None = None, *, patient: bool = False) -> None:
        """Another process wrote first: read what it wrote, or give up after MAX_ATTEMPTS (a
        model's results, which nobody waits on, and `patient` commands such as cancels, after
        MODEL_ATTEMPTS); a short random pause first, so writers that keep meeting do not stay in
        step."""
        limit = MODEL_ATTEMPTS if patient or (actor is not None and actor.startswith(MODEL_PREFIX)) else MAX_ATTEMPTS
        if attempts >= limit:
            self.contended += 1
            raise Contended(
                f"the media item kept changing while this command was decided ({attempts} attempts): nothing was stored; send it again"
            )
        log.debug("command %s met a change by another process; deciding again (attempt %d)", command_id, attempts + 1)
        await asyncio.sleep(random.uniform(0, 0.002 * min(attempts, 10)))
        await self.catch_up()


@dataclass
class _BatchTurn:
    """What one attempt of `execute_batch` found and started."""

    size: int
    results: list[Event | DomainError | None] = field(default_factory=list)
    waits: dict[int, asyncio.Task[list[Event]]] = field(default_factory=dict)
    accepted: list[int] = field(default_factory=list)
    commit: asyncio.Task[list[Event]] | None = None

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.results = [None] * self.size
        self.waits.clear()
        self.accepted.clear()


def _consume_error(commit: asyncio.Task[list[Event]]) -> None:
    if not commit.cancelled():
        commit.exception()

