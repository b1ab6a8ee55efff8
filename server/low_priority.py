"""Chores that must not slow down serving: run on a thread of their own at the lowest CPU priority.

The log's integrity check reads the whole file once a server serves (minutes at 10M events). On
asyncio's shared executor it would compete at full priority with the event loop and with the
threads that read snapshots for users (a replay measured 60 -> 160 ms p95 while it ran on two
cores). On Linux a thread has its own nice value (`setpriority` on its thread id), so the chore
gets a thread of its own, never reused by other work, set to nice 19; elsewhere it runs as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

LOWEST = 19  # the nice value the chore's thread runs at


def lower_this_thread() -> bool:
    """Set the calling thread's nice value to LOWEST (Linux); whether it could."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST)
        return True
    return False


async def run_at_low_priority(function: Callable[..., T], *args: object, name: str = "masklog-chore") -> T:
    """`function(*args)` on a new thread at the lowest CPU priority; its result or its error."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not done.done():
            outcome()

    def work() -> None:
        lower_this_thread()
        try:
            result = function(*args)
        except BaseException as error:  # handed to the awaiting task, never lost in the thread
            caught = error
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(settle, lambda: done.set_exception(caught))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: done.set_result(result))

    threading.Thread(target=work, name=name, daemon=True).start()
    return await done
