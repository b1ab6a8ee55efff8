"""The prompts (clicks) waiting for the segmenter, answered fairly between the users who sent them.

A person waits on each click, so one user queueing many prompts must not hold up everyone else:
the queue serves requesters in turn, one prompt each. A requester with nothing pending who sends
a prompt joins the turn just before the requester served last, so another user's click waits for
at most one click of each other requester (plus the one being computed). Each requester's own
prompts are answered in the order they came. The newest prompt on an (object, frame) cell
supersedes an older one still waiting there, whoever sent it: only the newest is worth answering.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ClickQueue(Generic[T]):
    def __init__(self) -> None:
        self._turns: OrderedDict[str, OrderedDict[Hashable, T]] = OrderedDict()  # requester -> their prompts by cell
        self._owner: dict[Hashable, str] = {}  # cell -> who the waiting prompt there is from
        self._last_served: str | None = None

    def push(self, requester: str, cell: Hashable, prompt: T) -> None:
        """Queue `prompt` (on `cell`, e.g. (object, frame)) for `requester`, replacing one still
        waiting on the same cell."""
        if self._owner.get(cell, requester) != requester:
            self._discard(cell)
        prompts = self._turns.get(requester)
        if prompts is None:
            prompts = self._turns[requester] = OrderedDict()
            # Ahead of whoever was just served (the end of the turn, if still waiting).
            last = self._last_served
            if last is not None and last in self._turns and last != requester:
                self._turns.move_to_end(last)
        else:
            prompts.pop(cell, None)  # their own older prompt there: the new one queues after their others
        prompts[cell] = prompt
        self._owner[cell] = requester

    def pop(self) -> T | None:
        """The next prompt to answer, or None when none waits."""
        if not self._turns:
            return None
        requester, prompts = next(iter(self._turns.items()))
        cell, prompt = prompts.popitem(last=False)
        del self._owner[cell]
        if prompts:
            self._turns.move_to_end(requester)
        else:
            del self._turns[requester]
        self._last_served = requester
        return prompt

    def _discard(self, cell: Hashable) -> None:
        owner = self._owner.pop(cell, None)
        if owner is None:
            return
        prompts = self._turns[owner]
        del prompts[cell]
        if not prompts:
            del self._turns[owner]

    def __len__(self) -> int:
        return len(self._owner)

    def __bool__(self) -> bool:
        # Read from the model thread too (a track's burst yields to waiting clicks): one dict
        # length, atomic under the GIL.
        return bool(self._owner)
