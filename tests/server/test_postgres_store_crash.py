"""Kill -9 a process in the middle of appending to PostgreSQL: what it acknowledged must survive,
in place, and positions stay gap-free.

The child opens the store, appends bursts from several tasks at once and prints each
acknowledged `seq id` only after `append` returned. The parent kills it at a random point, then
checks the table with a plain connection and opens the store again. (The server itself is not
killed: its durability is PostgreSQL's, run here with fsync on.)
"""

from __future__ import annotations

import random
from pathlib import Path

import asyncpg

from masklog.server.postgres_store import PostgresEventStore
from tests.server.events_factory import batch
from tests.server.killed_child import appends_until_killed
from tests.server.postgres_server import PostgresServer


async def test_acknowledged_appends_survive_kill_9(tmp_path: Path, postgres_server: PostgresServer) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    dsn = await postgres_server.create_database()
    try:
        acked: dict[int, str] = {}
        for round in range(3):
            for seq, id in appends_until_killed("masklog.server.postgres_store.PostgresEventStore", dsn, rng.randint(1, 1500), tmp_path / f"stderr{round}.txt"):
                assert acked.setdefault(seq, id) == id, f"seed {seed}: seq {seq} acknowledged twice"

            conn = await asyncpg.connect(dsn)
            try:
                stored = {row[0]: row[1] for row in await conn.fetch("SELECT seq, id::text FROM events")}
            finally:
                await conn.close()
            head = max(stored)
            assert sorted(stored) == list(range(1, head + 1)), f"seed {seed}: positions have gaps"
            lost = {seq: id for seq, id in acked.items() if stored.get(seq) != id}
            assert not lost, f"seed {seed}: {len(lost)} acknowledged events lost or moved, e.g. {list(lost.items())[:3]}"

            async with await PostgresEventStore.open(dsn) as store:
                assert await store.head() == head
                more = await store.append(batch(3, stream="after-crash"))
                assert [e.seq for e in more] == [head + 1, head + 2, head + 3]
                acked.update((e.seq, e.id) for e in more)
    finally:
        await postgres_server.drop_database(dsn)
