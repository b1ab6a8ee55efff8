"""Inference workers (issue 17): `masklog serve --workers` with two `masklog worker` processes on
one SQLite file (and on PostgreSQL with two servers): tracks of several users complete with each
frame logged once, clicks are answered meanwhile, a worker killed mid-track is taken over from the
last produced frame, and a request no live worker can serve is refused with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from masklog.domain.events import Event, TrackCompleted, TrackFrameProduced
from scripts.live_server import ServerProcess, seed, start_site, upload, write_video
from scripts.live_server import WorkerSite as Site
from tests.server.live import Client
from tests.server.postgres_server import postgres_server  # noqa: F401 (fixture)

LEASE_S = 2.0
LONG_FRAMES = 240


class _Seedable:
    def __init__(self, process: ServerProcess, files: Path) -> None:
        self.files = files
        self.http = process.http


@contextlib.contextmanager
def running_site(root: Path, *, database: str | None = None, servers: int = 1, workers: int = 2, worker_args: list[str] | None = None) -> Iterator[Site]:
    site = start_site(root, database=database, servers=servers, worker_args=["--lease", str(LEASE_S), *(worker_args or [])])
    try:
        seed(_Seedable(site.servers[0], root))  # type: ignore[arg-type]
        with site.http() as http:
            upload(http, "p1", "long", "video", [write_video(root / "files" / "long.mp4", frames=LONG_FRAMES)]).raise_for_status()
        for _ in range(workers):
            site.start_worker()
        site.wait_workers(workers)
        yield site
    finally:
        site.stop()


def client(site: Site, user: str, media: str, server: int = 0) -> Client:
    c = Client(site.servers[server], user, media)  # type: ignore[arg-type]
    return c


async def ok(c: Client, body: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
    reply = await c.command(body, command_id)
    assert reply["type"] == "ack", reply
    return reply


async def boxed_object(c: Client, media: str) -> str:
    obj = f"o-{uuid.uuid4().hex[:8]}"
    await ok(c, {"type": "object_created", "object": obj, "media": media, "class_id": "box2" if media == "m2" else "box"})
    await ok(c, {"type": "label_saved", "object": obj, "frame": 0, "shape": {"type": "bbox", "x": 0.0, "y": 14.0, "w": 16.0, "h": 20.0}, "source": "manual"})
    return obj


async def request_track(c: Client, media: str, obj: str, range_: int, algorithm: str = "classical") -> dict[str, Any]:
    track = str(uuid.uuid4())
    reply = await c.command({"type": "track_requested", "media": media, "objects": [obj], "start": 0, "direction": "forward", "range": range_, "algorithm": algorithm}, track)
    return {"track": track, "reply": reply}


def frames_of(log: list[Event], track: str) -> Counter[tuple[str, int]]:
    return Counter((e.body.object, e.body.frame) for e in log if isinstance(e.body, TrackFrameProduced) and e.body.track == track)


def completed(log: list[Event], track: str) -> bool:
    return any(isinstance(e.body, TrackCompleted) and e.body.track == track for e in log)


async def wait_completed(site: Site, tracks: list[str], timeout: float = 120) -> list[Event]:
    deadline = time.monotonic() + timeout
    while True:
        log = await site.log()
        if all(completed(log, t) for t in tracks):
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"tracks not completed: {[t for t in tracks if not completed(log, t)]}")
        await asyncio.sleep(0.2)


async def _ten_tracks_and_clicks(site: Site) -> None:
    """10 tracks from 3 users complete, each frame logged once; a fourth user's clicks are
    answered while they run."""
    users = [("alice", "m1"), ("bob", "m1"), ("outsider", "m2")]
    clients = {user: client(site, user, media, server=n % len(site.servers)) for n, (user, media) in enumerate(users)}
    clicker = client(site, "admin", "m1", server=len(site.servers) - 1)
    for c in [*clients.values(), clicker]:
        await c.connect()
    try:
        tracks: list[str] = []
        for n in range(10):
            user, media = users[n % 3]
            obj = await boxed_object(clients[user], media)
            asked = await request_track(clients[user], media, obj, range_=20)
            assert asked["reply"]["type"] == "ack", asked
            tracks.append(asked["track"])
        answered = 0
        for n in range(5):
            prompt = str(uuid.uuid4())
            obj = f"click-{uuid.uuid4().hex[:6]}"
            await ok(clicker, {"type": "prompt_added", "object": obj, "media": "m1", "class_id": "mask", "frame": n, "points": [{"x": 10.0, "y": 24.0, "include": True}]}, prompt)
            await clicker.wait_for(lambda prompt=prompt: any(e["body"]["type"] == "segment_proposed" and e["body"]["prompt"] == prompt for e in clicker.events), timeout=30)
            answered += 1
        assert answered == 5
        log = await wait_completed(site, tracks)
        for track in tracks:
            counts = frames_of(log, track)
            assert sorted(frame for _, frame in counts) == list(range(1, 20)), f"track {track}: frames {sorted(counts.values())}"
            assert set(counts.values()) == {1}, f"track {track}: a frame logged twice"
    finally:
        for c in [*clients.values(), clicker]:
            await c.close()


async def _kill_trials(site: Site, trials: int) -> None:
    """SIGKILL of the worker holding a track, mid-track: the other finishes it from the last
    produced frame; no frame twice, none missing; the takeover is shown over REST."""
    alice = client(site, "alice", "long")
    await alice.connect()
    try:
        for trial in range(trials):
            obj = await boxed_object(alice, "long")
            asked = await request_track(alice, "long", obj, range_=LONG_FRAMES)
            assert asked["reply"]["type"] == "ack", asked
            track = asked["track"]
            # Wait until a worker holds it and has produced some frames (seen on alice's socket),
            # then kill that worker.
            holder = None
            deadline = time.monotonic() + 30
            with site.http("alice") as http:
                while holder is None or not _produced_on(alice, track):
                    assert time.monotonic() < deadline, "no worker took the track"
                    row = next((t for t in http.get("/api/media/long/tracks").json()["tracks"] if t["track"] == track), None)
                    holder = row["worker"] if row is not None else None
                    await asyncio.sleep(0.02)
                pid = int(holder.rsplit(":", 2)[1])
                index = next(i for i, w in enumerate(site.workers) if w.pid == pid)
                site.workers[index].kill()
                produced_before = sum(frames_of(await site.log(), track).values())
                # Taken over by the other worker: visible over REST while it runs (polled often: a
                # short track is soon done once taken over).
                seen_resumed = False
                polls: list[Any] = []
                killed_at = time.monotonic()
                deadline = time.monotonic() + 60
                while True:
                    assert time.monotonic() < deadline, f"trial {trial}: the track was not taken over"
                    rows = [t for t in http.get("/api/media/long/tracks").json()["tracks"] if t["track"] == track]
                    if not rows:
                        break  # no longer running
                    seen_resumed |= rows[0]["resumed"]
                    polls.append((round(time.monotonic() - killed_at, 2), rows[0]["worker"], rows[0]["resumed"]))
                    await asyncio.sleep(0.02)
            log = await wait_completed(site, [track], timeout=30)
            counts = frames_of(log, track)
            assert sorted(frame for _, frame in counts) == list(range(1, LONG_FRAMES)), f"trial {trial}: missing frames"
            assert set(counts.values()) == {1}, f"trial {trial}: a frame logged twice"
            assert produced_before < LONG_FRAMES - 1, f"trial {trial}: killed after the end"
            assert seen_resumed, f"trial {trial}: the takeover was never shown ({produced_before} frames before; {polls[-8:]})"
            site.start_worker(index)
            site.wait_workers(len(site.workers))
    finally:
        await alice.close()


def _produced_on(c: Client, track: str) -> bool:
    return any(e["body"]["type"] == "track_frame_produced" and e["body"]["track"] == track for e in c.events)


async def _refusals(site: Site) -> None:
    """Classical workers take no 'advanced' or 'sam2' track; with none alive that can, the request
    is refused naming why."""
    alice = client(site, "alice", "m1")
    await alice.connect()
    try:
        obj = await boxed_object(alice, "m1")
        for algorithm in ("advanced", "sam2"):
            asked = await request_track(alice, "m1", obj, range_=5, algorithm=algorithm)
            reply = asked["reply"]
            assert reply["type"] == "error" and reply["code"] == "no_worker", reply
            assert algorithm in reply["message"] and "classical" in reply["message"], reply
    finally:
        await alice.close()


@pytest.fixture(scope="module")
def sqlite_site(tmp_path_factory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("workers")) as site:
        yield site


async def test_tracks_of_three_users_and_a_fourth_users_clicks(sqlite_site: Site) -> None:
    await _ten_tracks_and_clicks(sqlite_site)


async def test_a_request_no_live_worker_can_serve_is_refused(sqlite_site: Site) -> None:
    await _refusals(sqlite_site)
    # The workers say what they run.
    live = sqlite_site.live_workers()
    assert all(w["backend"] == "classical" and "classical" in w["trackers"] and "advanced" not in w["trackers"] for w in live)


async def test_a_worker_killed_mid_track_is_taken_over(sqlite_site: Site) -> None:
    await _kill_trials(sqlite_site, 20)


async def test_no_worker_at_all_refuses_tracks_and_clicks(tmp_path) -> None:
    with running_site(tmp_path, workers=0) as site:
        alice = client(site, "alice", "m1")
        await alice.connect()
        try:
            obj = await boxed_object(alice, "m1")
            asked = await request_track(alice, "m1", obj, range_=5)
            assert asked["reply"]["code"] == "no_worker" and "masklog worker" in asked["reply"]["message"], asked
            reply = await alice.command({"type": "prompt_added", "object": "x1", "media": "m1", "class_id": "mask", "frame": 0, "points": [{"x": 1.0, "y": 1.0, "include": True}]})
            assert reply["code"] == "no_worker", reply
        finally:
            await alice.close()


async def test_waiting_tracks_show_their_place_in_a_fair_queue(tmp_path) -> None:
    """One worker taking one track at a time: alice's three tracks and bob's one wait their turn,
    bob's ahead of alice's second (requesters in turn), each with its place over REST."""
    with running_site(tmp_path, workers=1, worker_args=["--max-tracks", "1"]) as site:
        alice, bob = client(site, "alice", "long"), client(site, "bob", "long")
        await alice.connect()
        await bob.connect()
        try:
            asked = []
            for c in (alice, alice, alice, bob):
                obj = await boxed_object(c, "long")
                reply = await request_track(c, "long", obj, range_=LONG_FRAMES)
                assert reply["reply"]["type"] == "ack", reply
                asked.append(reply["track"])
            a1, a2, a3, b1 = asked
            with site.http("bob") as http:
                deadline = time.monotonic() + 20
                while True:
                    rows = {t["track"]: t for t in http.get("/api/media/long/tracks").json()["tracks"]}
                    if rows.get(a1, {}).get("worker") or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
            assert rows[a1]["worker"] is not None and rows[a1]["position"] is None
            assert [rows[t]["position"] for t in (b1, a2, a3)] == [1, 2, 3], rows
            assert all(rows[t]["worker"] is None for t in (b1, a2, a3))
            log = await wait_completed(site, asked, timeout=180)
            assert all(set(frames_of(log, t).values()) == {1} for t in asked)
        finally:
            await alice.close()
            await bob.close()


async def test_the_same_on_postgresql_with_two_servers(postgres_server, tmp_path) -> None:  # noqa: F811
    dsn = await postgres_server.create_database()
    with running_site(tmp_path, database=dsn, servers=2) as site:
        await _ten_tracks_and_clicks(site)
        await _refusals(site)
        await _kill_trials(site, 20)
