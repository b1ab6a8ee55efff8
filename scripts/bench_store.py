"""Event store benchmark: append throughput, and rebuilding the projection from a large log.

    python scripts/bench_store.py [--events 1000000] [--synchronous FULL]

Prints JSON: append_single_per_s (one event per append, awaited one after another),
append_batched_per_s (100 events per append), rebuild_1m_s (read + decode + fold of the whole
log from the SQLite file into a LabelState; named for the default 1,000,000 events),
open_check_s (opening the file, with its integrity and gap checks, timed apart) and peak_rss_mb
(of the rebuilding process, which is a fresh one, as a server starting up). The log is a realistic mix for a video labelling project: objects, SAM prompts and
saves (bitmask RLEs of 854x480 masks, polygons, boxes), tracking requests with per-frame results,
reviews, deletions and undos.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from masklog.domain import events as ev
from masklog.domain.shapes import BBox
from masklog.domain.state import LabelState
from masklog.server.ledger import rebuild
from masklog.server.sqlite_store import SQLiteEventStore
from scripts import loggen
from scripts.loggen import Generator


async def fill(store: SQLiteEventStore, total: int) -> LabelState:
    """Append generated work (`scripts/loggen.py`) until the log holds at least `total` events."""
    generator = Generator()
    await loggen.fill(store.append, generator, total)
    return generator.state


def small_event(index: int) -> ev.NewEvent:
    body = ev.LabelSaved(object="o1", frame=index % 100, shape=BBox(x=1, y=1, w=10, h=10), source="manual")
    return ev.NewEvent(id=str(uuid.uuid4()), stream="media:m1", actor="user:bench", body=body)


async def appends(path: Path, synchronous: str, single: int, batched: int) -> tuple[float, float]:
    store = await SQLiteEventStore.open(path, synchronous=synchronous)  # type: ignore[arg-type]
    try:
        started = time.perf_counter()
        for index in range(single):
            await store.append([small_event(index)])
        single_rate = single / (time.perf_counter() - started)
        batches = [[small_event(i) for i in range(100)] for _ in range(batched // 100)]
        started = time.perf_counter()
        for batch in batches:
            await store.append(batch)
        batched_rate = len(batches) * 100 / (time.perf_counter() - started)
    finally:
        await store.close()
    return single_rate, batched_rate


def digest(state: LabelState) -> str:
    """A fingerprint of a projection, to check a rebuild in another process against the state
    that was live while writing."""
    h = hashlib.sha256()
    for oid in sorted(state.labels):
        for frame, label in sorted(state.labels[oid].items()):
            h.update(f"{oid}/{frame}/{label.written_by};".encode())
    for track in sorted(state.proposals):
        h.update(f"{track}:{len(state.proposals[track])};".encode())
    for track, info in sorted(state.tracks.items()):
        h.update(f"{track}:{info.status}:{info.produced};".encode())
    h.update(f"{state.seq}/{len(state.objects)}/{len(state.actions)}".encode())
    return h.hexdigest()


async def rebuild_only(path: Path) -> None:
    """Open the log and fold it, as a server does at start-up; prints JSON."""
    started = time.perf_counter()
    store = await SQLiteEventStore.open(path)
    open_s = time.perf_counter() - started
    started = time.perf_counter()
    state = await rebuild(store)
    rebuild_s = time.perf_counter() - started
    await store.close()
    print(json.dumps({
        "rebuild_s": rebuild_s,
        "open_s": open_s,
        "digest": digest(state),
        "labels": sum(len(frames) for frames in state.labels.values()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--batched", type=int, default=100_000)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--dir", type=Path, help="where to put the SQLite files (default: a temporary folder)")
    parser.add_argument("--rebuild-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rebuild_only:
        await rebuild_only(args.rebuild_only)
        return

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        single_rate, batched_rate = await appends(Path(tmp) / "append.sqlite3", args.synchronous, args.single, args.batched)

        log_path = Path(tmp) / "log.sqlite3"
        store = await SQLiteEventStore.open(log_path, synchronous="NORMAL")
        started = time.perf_counter()
        expected = await fill(store, args.events)
        fill_s = time.perf_counter() - started
        await store.close()
        expected_digest, events = digest(expected), expected.seq
        del expected
        size_mb = log_path.stat().st_size / 1e6

        # The rebuild runs in a fresh process, as at a server's start-up: this one still holds
        # the writer's state, whose heap would slow the fold and inflate the memory figure.
        done = subprocess.run([sys.executable, __file__, "--rebuild-only", str(log_path)], capture_output=True, text=True, check=True)
        rebuilt = json.loads(done.stdout)
        if rebuilt["digest"] != expected_digest:
            raise SystemExit("rebuilt state differs from the state live while writing")

    print(json.dumps({
        "append_single_per_s": round(single_rate),
        "append_batched_per_s": round(batched_rate),
        "rebuild_1m_s": round(rebuilt["rebuild_s"], 2),
        "open_check_s": round(rebuilt["open_s"], 2),
        "events": events,
        "labels": rebuilt["labels"],
        "log_mb": round(size_mb, 1),
        "fill_s": round(fill_s, 1),
        "synchronous": args.synchronous,
        "peak_rss_mb": round(rebuilt["peak_rss_mb"]),
    }))


if __name__ == "__main__":
    asyncio.run(main())
