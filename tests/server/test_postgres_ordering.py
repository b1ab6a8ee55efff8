"""Two processes appending to one PostgreSQL database at once: one gap-free order, and readers
see it in order.

Two child processes each open a store on the same database and append many small batches from
several tasks. Meanwhile the parent follows the log twice: with a store of its own
(`subscribe()` then `read` after the last position seen, as a server's sockets follow it) and
with a plain connection polling `seq > last` as fast as it can (reads land in the middle of the
others' commits). Neither may ever see a gap (a position missing that a later read fills in) or
a smaller position after a larger one.
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from masklog.domain.events import Event
from masklog.server.postgres_store import PostgresEventStore
from tests.server.killed_child import ROOT
from tests.server.postgres_server import PostgresServer

CHILD = """
import asyncio, random, sys
from masklog.server.postgres_store import PostgresEventStore
from tests.server.events_factory import batch

async def main(dsn, name, rounds):
    store = await PostgresEventStore.open(dsn, check=False)
    total = 0

    async def appender(task):
        nonlocal total
        rng = random.Random()
        for _ in range(rounds):
            events = await store.append(batch(rng.randint(1, 4), stream=f"{name}-{task}"))
            total += len(events)
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() / 500)

    await asyncio.gather(*(appender(task) for task in range(6)))
    await store.close()
    print(total, store.commits, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""

ROUNDS = 120  # per task, 6 tasks per process


async def _follow_with_a_store(store: PostgresEventStore, total: int, seen: list[int]) -> None:
    async with store.subscribe() as heads:
        last = 0
        while last < total:
            events: list[Event] = await store.read(last, limit=50)
            for event in events:
                assert event.seq == last + 1, f"after {last} the store reader got {event.seq}"
                last = event.seq
                seen.append(last)
            if not events:
                await asyncio.wait_for(anext(heads), 30)


async def _poll_with_a_connection(dsn: str, done: asyncio.Event, seen: list[int]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        last = 0
        while not done.is_set() or await conn.fetchval("SELECT count(*) FROM events WHERE seq > $1", last):
            for (seq,) in await conn.fetch("SELECT seq FROM events WHERE seq > $1 ORDER BY seq", last):
                assert seq == last + 1, f"after {last} the polling reader got {seq}"
                last = seq
                seen.append(seq)
            await asyncio.sleep(0)
    finally:
        await conn.close()


async def test_two_processes_share_one_order_that_readers_see_without_gaps(postgres_server: PostgresServer) -> None:
    dsn = await postgres_server.create_database()
    try:
        async with await PostgresEventStore.open(dsn) as store:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
            by_store: list[int] = []
            by_polling: list[int] = []
            children_done = asyncio.Event()
            polling = asyncio.create_task(_poll_with_a_connection(dsn, children_done, by_polling))
            children = [
                await asyncio.create_subprocess_exec(
                    sys.executable, "-c", CHILD, dsn, name, str(ROUNDS), cwd=ROOT, env=env,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )
                for name in ("a", "b")
            ]
            # The store reader learns the total only at the end; until then it follows.
            following: list[int] = []
            follower = asyncio.create_task(_follow_with_a_store(store, 10**9, following))
            outputs = [await child.communicate() for child in children]
            for child, (_out, err) in zip(children, outputs):
                assert child.returncode == 0, err.decode()[-3000:]
            counts = [tuple(map(int, out.split())) for out, _ in outputs]
            total = sum(count for count, _ in counts)
            children_done.set()
            await asyncio.wait_for(polling, 60)
            # Both processes' appends interleaved: each needed many transactions.
            assert all(commits > 10 for _, commits in counts), counts
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await asyncio.wait_for(_follow_with_a_store(store, total, by_store), 60)

            assert by_polling == list(range(1, total + 1))
            assert following == by_store[: len(following)]
            assert by_store == list(range(1, total + 1))
            streams = {event.stream[0] for event in await store.read()}
            assert streams == {"a", "b"} and await store.head() == total
            await store.verify()
    finally:
        await postgres_server.drop_database(dsn)
