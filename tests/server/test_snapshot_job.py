"""`masklog snapshots` writes the media snapshots a server would have written, for a log that
never had them: afterwards a media item loads from its newest snapshot (not from position 0),
replays start from one near the position, and both still equal a full fold."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from masklog.domain import events as ev
from masklog.domain.snapshots import PROJECTION_VERSION, media_part
from masklog.domain.state import fold, state_at
from masklog.server.hub import Hub
from masklog.server.ledger import Ledger
from masklog.server.replay import replay_media
from masklog.server.snapshot_job import snapshot_all
from masklog.server.sqlite_store import SQLiteEventStore
from tests.server.test_projections import ALICE, box, project

ROOT = Path(__file__).resolve().parents[2]


async def written_without_snapshots(path: Path) -> None:
    """A log of two media items written through a ledger that never snapshots a media item."""
    store = await SQLiteEventStore.open(path)
    try:
        ledger = Ledger(store, Hub(), snapshot_every=10**9)
        await ledger.load()
        await project(ledger, ["a", "b"])
        for item in ("a", "b"):
            await ledger.execute(ALICE, ev.ObjectCreated(object=f"{item}0", media=item, class_id="box"), str(uuid.uuid4()))
        for step in range(120):
            item = "ab"[step % 2]
            await ledger.execute(ALICE, ev.LabelSaved(object=f"{item}0", frame=step % 20, shape=box(step), source=ev.Source.MANUAL), str(uuid.uuid4()))
    finally:
        await store.close()


async def test_the_job_writes_snapshots_that_load_and_replay_like_a_full_fold(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    await written_without_snapshots(path)
    store = await SQLiteEventStore.open(path)
    try:
        assert await store.load_snapshot("media:a", PROJECTION_VERSION) is None
        report = await snapshot_all(store, every=25)
        assert (report.media, report.events) == (2, 122)
        assert report.snapshots == 6  # a and b: 61 events each, a snapshot at 25, 50 and the end
        events = await store.read()
        full = fold(events)
        newest = await store.load_snapshot("media:a", PROJECTION_VERSION)
        assert newest is not None and newest.seq == max(e.seq for e in events if e.stream == "media:a")
        ledger = Ledger(store, Hub())
        await ledger.load()
        loaded = await ledger.state_of("a")
        assert media_part(loaded, "a") == media_part(full, "a")
        for seq in range(1, events[-1].seq + 1, 7):
            snapshot = await store.load_snapshot("media:a", PROJECTION_VERSION, at_or_before=seq)
            if seq >= 60:  # past a's 25th event
                assert snapshot is not None  # a replay starts from one, not from position 0
            replayed = await replay_media(store, full.media["a"], seq)
            assert media_part(replayed, "a") == media_part(state_at(events, seq), "a")
    finally:
        await store.close()


def test_the_command_line(tmp_path: Path) -> None:
    import asyncio

    data = tmp_path / "data"
    data.mkdir()
    asyncio.run(written_without_snapshots(data / "events.sqlite3"))
    done = subprocess.run([sys.executable, "-m", "masklog.server.cli", "snapshots", "--data", str(data), "--every", "30"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "wrote 6 snapshots of 2 media items (122 events)" in done.stderr
    refused = subprocess.run([sys.executable, "-m", "masklog.server.cli", "snapshots", "--data", str(data), "--every", "0"], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "every 1 or more events" in refused.stderr
