"""Run a Python child that prints one line per acknowledged write, kill -9 it after some, and
collect every whole line it printed: what the crash tests check survived."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def acks_until_killed(code: str, args: list[str], acks_before_kill: int, stderr_path: Path) -> list[bytes]:
    """Run `python -c code *args` until it printed `acks_before_kill` lines, then SIGKILL it.
    Returns its whole lines: acks already in the pipe were given before the kill; a torn last
    line was not."""
    # The parent's import path too: `masklog` must be this checkout's, not an installed one.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    with open(stderr_path, "wb") as stderr:
        child = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr)
    assert child.stdout is not None
    lines: list[bytes] = []
    try:
        while len(lines) < acks_before_kill:
            line = child.stdout.readline()
            if not line:
                raise AssertionError(f"child exited early: {stderr_path.read_text()[-3000:]}")
            lines.append(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    lines += child.stdout.read().splitlines(keepends=True)
    child.stdout.close()
    return [line for line in lines if line.endswith(b"\n")]


def burst_appender(store_class: str) -> str:
    """A child that appends bursts of 1-40 events from 8 concurrent callers to the store
    `store_class` (a module path and class, e.g. "masklog.server.sqlite_store.SQLiteEventStore")
    opens on its first argument, printing "seq id" for each acknowledged event."""
    module, name = store_class.rsplit(".", 1)
    return f"""
import asyncio, random, sys
from {module} import {name}
from tests.server.events_factory import batch

async def main(where):
    store = await {name}.open(where)

    async def bursts(worker):
        rng = random.Random()
        while True:
            events = await store.append(batch(rng.randint(1, 40), stream=f"w{{worker}}"))
            sys.stdout.write("".join(f"{{e.seq}} {{e.id}}\\n" for e in events))
            sys.stdout.flush()

    await asyncio.gather(*(bursts(worker) for worker in range(8)))

asyncio.run(main(sys.argv[1]))
"""


def appends_until_killed(store_class: str, where: str, acks_before_kill: int, stderr_path: Path) -> list[tuple[int, str]]:
    """Run `burst_appender(store_class)` on `where` until it acknowledged `acks_before_kill`
    events, SIGKILL it; the (seq, id) of every event it acknowledged."""
    acked = []
    for line in acks_until_killed(burst_appender(store_class), [where], acks_before_kill, stderr_path):
        seq, id = line.split()
        acked.append((int(seq), id.decode()))
    return acked
