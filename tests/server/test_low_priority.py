"""Chores run on a thread of their own at the lowest CPU priority, and hand back their outcome."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from masklog.server.low_priority import LOWEST, run_at_low_priority


def _where() -> tuple[int, int, str]:
    tid = threading.get_native_id()
    return tid, os.getpriority(os.PRIO_PROCESS, tid), threading.current_thread().name


async def test_a_chore_runs_on_its_own_thread_at_the_lowest_priority_and_the_caller_keeps_its_own() -> None:
    caller_tid, caller_nice, _ = _where()
    tid, nice, name = await run_at_low_priority(_where, name="masklog-test-chore")
    assert tid != caller_tid and name == "masklog-test-chore"
    if sys.platform == "linux":
        assert nice == LOWEST
    assert _where()[1] == caller_nice  # only the chore's thread was lowered
    # A second chore gets a fresh thread: no pool thread is ever left lowered for other work.
    assert (await run_at_low_priority(_where))[0] != tid


async def test_a_chore_hands_back_its_result_and_its_error() -> None:
    assert await run_at_low_priority(sum, [1, 2, 3]) == 6

    def broken() -> None:
        raise ValueError("damaged")

    with pytest.raises(ValueError, match="damaged"):
        await run_at_low_priority(broken)


async def test_the_store_check_runs_as_a_chore(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`SQLiteEventStore.verify` reads the whole file: it must not compete with serving."""
    import masklog.server.sqlite_store as sqlite_store
    from tests.server.events_factory import batch

    seen: list[tuple[int, int, str]] = []
    real = sqlite_store._verify

    def watched(path: str, check: str) -> None:
        seen.append(_where())
        real(path, check)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_store, "_verify", watched)
    store = await sqlite_store.SQLiteEventStore.open(tmp_path / "log.sqlite3")
    try:
        await store.append(batch(3))
        await store.verify()
    finally:
        await store.close()
    [(tid, nice, name)] = seen
    assert name == "masklog-verify" and tid != threading.get_native_id()
    if sys.platform == "linux":
        assert nice == LOWEST
