"""Kill -9 a process while it appends events and writes snapshots: whatever snapshot then loads
is valid, and (newest snapshot + the stream's events after it) is the media item's part of a
full fold, at the head and at earlier positions. A snapshot row truncated by hand, or a part
damaged by hand, is ignored.

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

from masklog.domain.snapshots import PROJECTION_VERSION, decode_media_snapshot, media_part, media_view, read_manifest
from masklog.domain.state import fold
from masklog.server.snapshot_io import load_media_snapshot
from masklog.server.sqlite_store import SQLiteEventStore
from tests.server.killed_child import acks_until_killed

MEDIA = ["m1", "m2", "m3"]

CHILD = """
import asyncio, random, sys
from masklog.domain.events import NewEvent
from masklog.domain.snapshots import encode_media_snapshot, media_view
from masklog.domain.state import fold
from masklog.server.snapshot_io import stored_snapshot
from masklog.server.sqlite_store import SQLiteEventStore
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
            snapshot = stored_snapshot(f"media:{m}", head, encode_media_snapshot(views[m]))
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
        for stream, seq, version, checksum, data in rows:
            assert version == PROJECTION_VERSION
            if hashlib.sha256(data).digest() != checksum:
                continue  # a damaged row: load_snapshot must skip it (checked below)
            manifest = read_manifest(data)
            keys = manifest.parts_for()
            parts = await store.load_parts(keys)
            if parts is None:
                continue  # a damaged part: loading must skip the snapshot (checked below)
            media = stream.removeprefix("media:")
            expected = fold((e for e in streams[media] if e.seq <= seq), media_view(base))
            assert decode_media_snapshot(manifest, dict(zip(keys, parts)), base) == expected, f"seed {seed}: snapshot {stream}@{seq}"

        # Newest snapshot + tail at the head and at random earlier positions.
        positions = sorted({head, *(rng.randint(1, head) for _ in range(15))})
        for position in positions:
            full = fold(e for e in events if e.seq <= position)
            base_then = fold(e for e in events if e.seq <= position and e.stream.startswith("project:"))
            for media in MEDIA:
                loaded = await load_media_snapshot(store, media, base_then, at_or_before=position)
                state = media_view(base_then) if loaded is None else loaded.state
                fold((e for e in streams[media] if state.seq < e.seq <= position), state)
                assert media_part(state, media) == media_part(full, media), f"seed {seed}: {media} at {position}"
        return head


def damage_a_part_of_newest(path: Path, streams: list[str]) -> tuple[str, int] | None:
    """Flip a byte of one part of the newest snapshot of the first of `streams` whose newest
    snapshot has a part (its key stays): that stream and the snapshot's seq. None when none has
    one (a kill can come before any snapshot of an item, and a snapshot with no label block has
    no part)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for stream in streams:
                seq = conn.execute("SELECT max(seq) FROM snapshots WHERE stream = ?", (stream,)).fetchone()[0]
                ref = conn.execute("SELECT key FROM snapshot_refs WHERE stream = ? AND seq = ? LIMIT 1", (stream, seq)).fetchone()
                if ref is not None:
                    conn.execute("UPDATE snapshot_parts SET data = CAST(data || x'00' AS BLOB) WHERE key = ?", (ref[0],))
                    return stream, int(seq)
        return None
    finally:
        conn.close()


def orphans(path: Path) -> tuple[int, int]:
    """References to missing parts, and parts no snapshot refers to: neither survives a kill."""
    conn = sqlite3.connect(path)
    try:
        dangling = conn.execute("SELECT count(*) FROM snapshot_refs WHERE key NOT IN (SELECT key FROM snapshot_parts)").fetchone()[0]
        unused = conn.execute("SELECT count(*) FROM snapshot_parts WHERE key NOT IN (SELECT key FROM snapshot_refs)").fetchone()[0]
        return int(dangling), int(unused)
    finally:
        conn.close()


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
        assert orphans(path) == (0, 0), f"seed {seed}"

    # A snapshot truncated by hand is never trusted: the next older one is used instead.
    truncated = truncate_newest(path, "media:m1")
    async with await SQLiteEventStore.open(path) as store:
        for bound in (None, truncated):
            found = await store.load_snapshot("media:m1", PROJECTION_VERSION, at_or_before=bound)
            assert found is None or found.seq < truncated, f"seed {seed}"
    await check_store(path, seed, rng)

    # A damaged part is never trusted either: loading falls back to an older snapshot.
    damaged = damage_a_part_of_newest(path, ["media:m2", "media:m3"])
    assert damaged is not None, f"seed {seed}: no snapshot with a part to damage"
    stream, seq = damaged
    async with await SQLiteEventStore.open(path) as store:
        base = fold(e for e in await store.read_streams("project:"))
        loaded = await load_media_snapshot(store, stream.removeprefix("media:"), base)
        assert loaded is None or loaded.seq < seq, f"seed {seed}"
    await check_store(path, seed, rng)
