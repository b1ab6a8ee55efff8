"""Kill -9 a process in the middle of appending: what it acknowledged must survive, in place.

The child opens the store with default settings, appends bursts from several tasks at once and
prints each acknowledged `seq id` only after `append` returned. The parent kills it at a random
point, then checks the file with plain sqlite3 and reopens it with the store.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from uuid import UUID

from masklog.server.sqlite_store import SQLiteEventStore
from tests.server.events_factory import batch
from tests.server.killed_child import appends_until_killed


async def test_acknowledged_appends_survive_kill_9(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    path = tmp_path / "log.db"
    acked: dict[int, UUID] = {}
    for round in range(3):
        for seq, id in appends_until_killed("masklog.server.sqlite_store.SQLiteEventStore", str(path), rng.randint(1, 1500), tmp_path / f"stderr{round}.txt"):
            assert acked.setdefault(seq, id) == id, f"seed {seed}: seq {seq} acknowledged twice"

        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"seed {seed}"
            stored = {seq: str(UUID(bytes=id)) for seq, id in conn.execute("SELECT seq, id FROM events")}
        finally:
            conn.close()
        head = max(stored)
        assert sorted(stored) == list(range(1, head + 1)), f"seed {seed}: positions have gaps"
        lost = {seq: id for seq, id in acked.items() if stored.get(seq) != id}
        assert not lost, f"seed {seed}: {len(lost)} acknowledged events lost or moved, e.g. {list(lost.items())[:3]}"

        async with await SQLiteEventStore.open(path) as store:
            assert await store.head() == head
            more = await store.append(batch(3, stream="after-crash"))
            assert [e.seq for e in more] == [head + 1, head + 2, head + 3]
            acked.update((e.seq, e.id) for e in more)
