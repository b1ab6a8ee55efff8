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
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from masklog.domain import events as ev
from masklog.domain.decide import Undo, decide
from masklog.domain.geometry import mask_to_polygon, rle_encode
from masklog.domain.shapes import BBox, Bitmask
from masklog.domain.state import LabelState
from masklog.server.ledger import rebuild
from masklog.server.sqlite_store import SQLiteEventStore

WIDTH, HEIGHT, FRAMES = 854, 480, 300
USERS = [f"user:annotator{i}" for i in range(8)]
MODEL = "model:sam2/sam2.1_hiera_tiny@1.1.0"


def sample_masks(rng: random.Random, count: int = 40) -> list[np.ndarray]:
    masks = []
    for _ in range(count):
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        centre = (rng.randint(100, WIDTH - 100), rng.randint(80, HEIGHT - 80))
        cv2.ellipse(mask, centre, (rng.randint(20, 90), rng.randint(20, 70)), rng.randint(0, 180), 0, 360, 1, -1)
        if rng.random() < 0.5:
            cv2.circle(mask, (centre[0] + rng.randint(-40, 40), centre[1] + rng.randint(-40, 40)), rng.randint(10, 30), 1, -1)
        masks.append(mask.astype(bool))
    return masks


class Generator:
    """Produces a valid, realistic log by construction, keeping a live state to stay valid."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        masks = sample_masks(self.rng)
        self.rles = [rle_encode(m) for m in masks]
        self.polygons = [mask_to_polygon(m, tolerance=1.0) for m in masks]
        self.state = LabelState()
        self.seq = 0
        self.media_count = 0
        self.objects: list[tuple[str, str, str]] = []  # (object, media, class)

    def _event(self, actor: str, body: ev.Body, stream: str) -> ev.NewEvent:
        event_id = str(uuid.uuid4())
        self.seq += 1
        self.state.apply(ev.Event(seq=self.seq, id=event_id, stream=stream, actor=actor, at=0.0, body=body))
        return ev.NewEvent(id=event_id, stream=stream, actor=actor, body=body)

    def setup(self) -> list[ev.NewEvent]:
        out = [self._event("user:admin", ev.ProjectCreated(project="bench", name="Bench"), "project:bench")]
        for class_id, shape in [("car", "bitmask"), ("person", "polygon"), ("sign", "bbox")]:
            out.append(self._event("user:admin", ev.ClassAdded(project="bench", class_id=class_id, name=class_id, shape=shape, color="#ff0000"), "project:bench"))
        return out

    def _shape(self, class_id: str, index: int) -> ev.Shape:
        if class_id == "car":
            return Bitmask(rle=self.rles[index % len(self.rles)])
        if class_id == "person":
            return self.polygons[index % len(self.polygons)]
        return BBox(x=index % 700, y=index % 400, w=40, h=30)

    def next_batch(self) -> list[ev.NewEvent]:
        """One user's burst of work: usually a few saves; sometimes a new media item, a track
        with its results and a review, a delete or an undo."""
        rng = self.rng
        roll = rng.random()
        user = rng.choice(USERS)
        if not self.objects or roll < 0.01:
            self.media_count += 1
            media = f"video{self.media_count}"
            out = [self._event("user:admin", ev.MediaAdded(project="bench", media=media, name=f"{media}.mp4", kind="video", width=WIDTH, height=HEIGHT, frames=FRAMES, fps=30.0), "project:bench")]
            for index in range(20):
                object_id = f"{media}-o{index}"
                class_id = ("car", "person", "sign")[index % 3]
                out.append(self._event(user, ev.ObjectCreated(object=object_id, media=media, class_id=class_id), f"media:{media}"))
                self.objects.append((object_id, media, class_id))
            return out
        object_id, media, class_id = rng.choice(self.objects[-200:])
        stream = f"media:{media}"
        if object_id not in self.state.objects:
            return []
        frame = rng.randrange(FRAMES)
        if roll < 0.12:
            # Track 30 frames forward and accept: 1 + 30 + 1 + 1 events.
            start = rng.randrange(FRAMES - 30)
            out = [self._event(user, ev.LabelSaved(object=object_id, frame=start, shape=self._shape(class_id, start), source="manual"), stream)]
            request = self._event(user, ev.TrackRequested(media=media, objects=[object_id], start=start, direction="forward", range=30), stream)
            out.append(request)
            for offset in range(1, 30):
                shape = self._shape(class_id, start + offset)
                out.append(self._event(MODEL, ev.TrackFrameProduced(track=request.id, object=object_id, frame=start + offset, shape=shape, score=0.9, model="sam2/tiny@1.1.0"), stream))
            out.append(self._event(MODEL, ev.TrackCompleted(track=request.id, frames=30), stream))
            out.append(self._event(user, ev.TrackedAccepted(track=request.id), stream))
            return out
        if roll < 0.15:
            label = self.state.label(object_id, frame)
            if label is not None:
                return [self._event(user, ev.LabelDeleted(object=object_id, frame=frame), stream)]
        if roll < 0.17:
            if self.state.stacks_of(user, media).undo:
                return [self._event(user, decide(self.state, user, Undo(media=media)), stream)]
        out = []
        if class_id != "sign":
            prompt = self._event(user, ev.PromptAdded(object=object_id, frame=frame, points=[ev.Point(x=400, y=200), ev.Point(x=420, y=230, include=False)]), stream)
            out.append(prompt)
            out.append(self._event(user, ev.LabelSaved(object=object_id, frame=frame, shape=self._shape(class_id, frame), source="sam", model="sam2/tiny@1.1.0", prompt=prompt.id, score=0.93), stream))
        else:
            out.append(self._event(user, ev.LabelSaved(object=object_id, frame=frame, shape=self._shape(class_id, frame), source="manual"), stream))
        return out


async def fill(store: SQLiteEventStore, total: int) -> LabelState:
    """Append generated work until the log holds at least `total` events (a burst is never cut)."""
    generator = Generator()
    pending = generator.setup()
    written = 0
    while written + len(pending) < total:
        pending.extend(generator.next_batch())
        if len(pending) >= 5000:
            await store.append(pending)
            written += len(pending)
            pending = []
    if pending:
        await store.append(pending)
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
