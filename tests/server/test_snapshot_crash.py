"""Kill -9 a process while it appends events and writes snapshots: whatever snapshot then loads
is valid, and (newest snapshot + the stream's events after it) is the media item's part of a
full fold, at the head and at earlier positions. A snapshot row truncated by hand is ignored.

The child keeps a live log of real domain events over three media items (the ops of
tests/domain/test_snapshots.py), appends them, and after every append starts a snapshot of each
media item's state as of the new head without awaiting it, so kills land in the middle of
snapshot transactions too. It prints each acknowledged head. The parent kills it at a random
point, checks the file, and restarts it (which continues the same log) for a few rounds.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from pathlib import Path

from masklog.domain.snapshots import PROJECTION_VERSION, decode_media_state, media_part, media_view
from masklog.domain.state import fold
from masklog.server.sqlite_store import SQLiteEventStore
from tests.server.killed_child import acks_until_killed

MEDIA = ["m1", "m2", "m3"]

CHILD = """
import asyncio, random, sys
from masklog.domain.events import NewEvent
from masklog.domain.snapshots import PROJECTION_VERSION, encode_media_state, media_view
from masklog.domain.state import fold
from masklog.server.sqlite_store import SQLiteEventStore
from masklog.server.store import Snapshot
from tests.domain.builders import ALICE, BOB
from tests.domain.test_snapshots import MEDIA, StreamLog, run, setup

OPS = ["create", "create", "save", "save", "save", "save", "delete_label", "delete_object", "reclass", "rename",
       "undo", "redo", "track", "accept", "discard"]
EXTRAS = [None] * 12 + ["prompt", "save_segment"]

async def main(path, seed):
    store = await SQLiteEventStore.open(path)
    existing = await store.read()
    if existing:
        log = StreamLog()
        log.events = existing
        log.state = fold(existing)
    else:
        log = setup()
    stored = len(existing)
    base = fold(e for e in log.events[:stored] if e.stream.startswith("project:"))
    views = {m: fold((e for e in log.events[:stored] if e.stream == f"media:{m}"), media_view(base)) for m in MEDIA}
    rng = random.Random(seed)
    writing = set()
    while True:
        for _ in range(rng.randint(1, 4)):
            op = (rng.choice(OPS), rng.choice([ALICE, BOB]), rng.randrange(12), rng.randrange(12), rng.randrange(41))
            run(log, op, rng.randrange(len(MEDIA)), rng.choice(EXTRAS))
        new = log.events[stored:]
        if not new:
            continue
        got = await store.append([NewEvent(id=e.id, stream=e.stream, actor=e.actor, body=e.body) for e in new])
        assert [e.seq for e in got] == [e.seq for e in new], "the child is the only writer"
        stored = len(log.events)
        for event in got:
            if event.stream.startswith("project:"):
                base.apply(event)
            else:
                views[event.stream.removeprefix("media:")].apply(event)
        head = got[-1].seq
        for m in MEDIA:
            snapshot = Snapshot(stream=f"media:{m}", seq=head, version=PROJECTION_VERSION, data=encode_media_state(views[m]))
            task = asyncio.create_task(store.save_snapshot(snapshot))
            writing.add(task)
            task.add_done_callback(writing.discard)
        sys.stdout.write(f"{head}\\n")
        sys.stdout.flush()
        if len(writing) > 30:
            await asyncio.sleep(0.001)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def run_and_kill(path: Path, seed: int, acks_before_kill: int, stderr_path: Path) -> int:
    """Run the child until it acknowledged `acks_before_kill` appends, kill -9 it; the last
    acknowledged head."""
    return max(int(line) for line in acks_until_killed(CHILD, [str(path), str(seed)], acks_before_kill, stderr_path))


def snapshot_rows(path: Path) -> list[tuple[str, int, int, bytes, bytes]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute("SELECT stream, seq, version, checksum, data FROM snapshots ORDER BY stream, seq"))
    finally:
        conn.close()


async def check_store(path: Path, seed: int, rng: random.Random) -> int:
    """Every loadable snapshot is valid, and snapshot + tail equals the full fold's media part."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"seed {seed}"
    finally:
        conn.close()
    async with await SQLiteEventStore.open(path) as store:
        events = await store.read()
        head = events[-1].seq
        base = fold(e for e in events if e.stream.startswith("project:"))
        streams = {m: [e for e in events if e.stream == f"media:{m}"] for m in MEDIA}

        # Each stored row whose checksum holds is exactly the state of its stream at its seq.
        rows = snapshot_rows(path)
        assert rows, f"seed {seed}: no snapshot was written"
        checksums = {(stream, seq): checksum for stream, seq, _, checksum, _ in rows}
        for stream, seq, version, checksum, data in rows:
            assert version == PROJECTION_VERSION
            if hashlib.sha256(data).digest() != checksum:
                continue  # a damaged row: load_snapshot must skip it (checked below)
            media = stream.removeprefix("media:")
            expected = fold((e for e in streams[media] if e.seq <= seq), media_view(base))
            assert decode_media_state(data, base) == expected, f"seed {seed}: snapshot {stream}@{seq}"

        # Newest snapshot + tail at the head and at random earlier positions.
        positions = sorted({head, *(rng.randint(1, head) for _ in range(15))})
        for position in positions:
            full = fold(e for e in events if e.seq <= position)
            base_then = fold(e for e in events if e.seq <= position and e.stream.startswith("project:"))
            for media in MEDIA:
                snapshot = await store.load_snapshot(f"media:{media}", PROJECTION_VERSION, at_or_before=position)
                if snapshot is None:
                    state = media_view(base_then)
                else:
                    assert hashlib.sha256(snapshot.data).digest() == checksums[(snapshot.stream, snapshot.seq)]
                    state = decode_media_state(snapshot.data, base_then)
                fold((e for e in streams[media] if state.seq < e.seq <= position), state)
                assert media_part(state, media) == media_part(full, media), f"seed {seed}: {media} at {position}"
        return head


def truncate_newest(path: Path, stream: str) -> int:
    conn = sqlite3.connect(path)
    try:
        with conn:
            seq, length = conn.execute(
                "SELECT seq, length(data) FROM snapshots WHERE stream = ? ORDER BY seq DESC LIMIT 1", (stream,)
            ).fetchone()
            conn.execute("UPDATE snapshots SET data = substr(data, 1, ?) WHERE stream = ? AND seq = ?", (length // 2, stream, seq))
        return int(seq)
    finally:
        conn.close()


async def test_snapshots_stay_valid_across_kill_9(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    path = tmp_path / "log.db"
    acked = 0
    for round in range(4):
        last = run_and_kill(path, rng.randrange(2**32), rng.randint(20, 400), tmp_path / f"stderr{round}.txt")
        acked = max(acked, last)
        head = await check_store(path, seed, rng)
        assert head >= acked, f"seed {seed}: acknowledged head {acked} lost (file head {head})"

    # A snapshot truncated by hand is never trusted: the next older one is used instead.
    truncated = truncate_newest(path, "media:m1")
    async with await SQLiteEventStore.open(path) as store:
        for bound in (None, truncated):
            found = await store.load_snapshot("media:m1", PROJECTION_VERSION, at_or_before=bound)
            assert found is None or found.seq < truncated, f"seed {seed}"
    await check_store(path, seed, rng)
