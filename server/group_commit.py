"""Group commit, shared by the store backends: appends queue up while a transaction runs, and the
writer then commits everything queued in ONE transaction, so under load one durable commit covers
many callers.

A backend gives `GroupCommits` a `commit(batches)` coroutine that stores the batches in one
transaction and returns, per batch, its events or the error that undid that batch alone (a
backend puts each batch in a savepoint; a `StoreError` such as `StreamChanged` reaches the
caller as it is, any other error as `AppendFailed`); an exception from `commit` fails the whole
group. The
backend keeps its own bookkeeping (head, commit count, wake-ups) inside `commit`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from masklog.domain.events import Event, NewEvent
from masklog.server.store import AppendFailed, StoreClosed, StoreError

Outcome = list[Event] | Exception


@dataclass(slots=True)
class Batch:
    """One caller's checked events, and what it expects of the log (`EventStore.append`)."""

    events: list[NewEvent]
    expect: dict[str, int] = field(default_factory=dict)
    ignoring: str | None = None  # events by actors with this prefix do not count against `expect`

    def counts(self, actor: str) -> bool:
        """Whether an event by `actor` written after the expected position breaks `expect`."""
        return self.ignoring is None or not actor.startswith(self.ignoring)


Commit = Callable[[list[Batch]], Awaitable[list[Outcome]]]


@dataclass(slots=True)
class _Pending:
    batch: Batch
    future: asyncio.Future[list[Event]]


class GroupCommits:
    """The queue of checked batches and the one task that commits them, a group at a time."""

    def __init__(self, name: str, commit: Commit, max_group_events: int) -> None:
        self.name = name
        self._commit = commit
        self._max_group_events = max_group_events
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._loop(), name=f"group-commits:{name}")

    async def append(self, batch: list[NewEvent], expect: dict[str, int] | None = None, ignoring: str | None = None) -> list[Event]:
        """Queue a checked, non-empty batch; its events once its group commits."""
        if self._closing or self._task.done():  # done: only if the writer crashed (a bug)
            raise StoreClosed(f"{self.name} is closed")
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(Batch(batch, expect or {}, ignoring), future))
        self._wake.set()
        # A caller cancelled before its group starts is dropped; after that its batch commits
        # anyway (appending the same ids again is then a harmless no-op).
        return await future

    async def close(self) -> None:
        """Commit what was queued before, then stop."""
        self._closing = True
        self._wake.set()
        await self._task

    async def _loop(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                group = self._take_group()
                if group:
                    await self._run(group)
        finally:
            # Only reached with work left when the task itself is cancelled (loop shutdown).
            while self._queue:
                fail(self._queue.popleft().future, StoreClosed(f"{self.name} closed before this append ran"))

    def _take_group(self) -> list[_Pending]:
        group: list[_Pending] = []
        size = 0
        while self._queue and (not group or size + len(self._queue[0].batch.events) <= self._max_group_events):
            pending = self._queue.popleft()
            if pending.future.done():  # cancelled by its caller: nothing of it was written yet
                continue
            group.append(pending)
            size += len(pending.batch.events)
        return group

    async def _run(self, group: list[_Pending]) -> None:
        try:
            outcomes = await self._commit([pending.batch for pending in group])
        except Exception as error:
            for pending in group:
                fail(pending.future, append_failed(error))
            return
        except BaseException:
            for pending in group:
                fail(pending.future, StoreClosed(f"{self.name}: the writer stopped during this append"))
            raise
        for pending, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, StoreError):
                fail(pending.future, outcome)
            elif isinstance(outcome, Exception):
                fail(pending.future, append_failed(outcome))
            elif not pending.future.done():
                pending.future.set_result(outcome)


def fail(future: asyncio.Future[list[Event]], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def append_failed(error: BaseException) -> AppendFailed:
    """The store's error for a refused transaction, the backend's own as its cause."""
    failure = AppendFailed(f"append failed, nothing of the batch was stored: {error}")
    failure.__cause__ = error
    return failure

