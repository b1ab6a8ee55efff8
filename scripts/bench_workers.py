"""Inference workers benchmark (issue 17): one `masklog serve --workers` on a SQLite log with
`masklog worker` processes (classical backend) on this machine, all in one run.

    python scripts/bench_workers.py [--frames 300] [--tracks 10] [--clicks 40] [--json]

Measured, each with websocket clients on 127.0.0.1, times in this process's clock:

1. Tracking throughput with 1 worker, then with 2: `--tracks` tracks of a `--frames`-frame video
   (`--size`, default 160x120, so a frame costs the tracker something), requested at once by 3
   users; frames/s = the track frames in the log / the time from sending the first request to
   receiving the last `track_completed`. Each frame is checked to be logged once. The ratio
   2 workers / 1 worker is reported, not asserted: on a machine with two cores the server,
   the clients and the workers share them.
2. Click→answer latency for one user (send `prompt_added`, until its `segment_proposed` arrives on
   that user's socket), `--clicks` clicks one after the other on a media item of its own, after
   one warm-up click: idle, then while another user keeps `--tracks` tracks running on another
   media item (each one that ends is replaced at once), with 1 worker and with 2 workers. With
   fewer than 100 clicks p99 is the slowest click. Goal of the issue: loaded p99 <= 2x idle p99.
3. Lease takeover: with 2 workers started with `--lease L` (for each L of `--leases`, default 2
   and the CLI default 10), a track runs until its first frame arrives, the worker holding it
   (`GET /api/media/{m}/tracks`) is killed with SIGKILL, and the time from the kill until the
   first frame after the last one logged arrives from the other worker is taken; `--kill-trials`
   times per lease. The track must end with every frame logged once. A track that ended before
   its worker could be killed is retried (counted as `ended_before_kill`).

The machine's load average at the start and the end is in the result: other work on the same
cores (a test run, a build) makes every figure here noisy.

Prints one JSON object (all it prints on stdout; `--json` is accepted for symmetry with the other
benchmarks) and exits 1 when a frame was logged twice or is missing, or a part failed (its
`error`). Every process it started is stopped and its folder removed at the end, also on an
error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from masklog.domain.events import Event, TrackFrameProduced
from masklog.server.accounts import Role
from scripts.live_server import WorkerSite, add_project, start_site, stopped_on_sigterm, upload, write_video

TRACK_USERS = ("u1", "u2", "u3")
LOADER, CLICKER, KILLER = "loader", "clicker", "killer"
DEFAULT_LEASE_S = 10.0  # `masklog worker --lease`'s default
GOAL_CLICK_P99_RATIO = 2.0  # loaded p99 / idle p99, issue 17
BOX = {"type": "bbox", "x": 0.0, "y": 0.0, "w": 20.0, "h": 20.0}  # placed per video size in `box`


# ---- a socket ---------------------------------------------------------------------------------------


class Socket:
    """One user's socket on one media item: replies by command id, and the arrival time of the
    events the benchmark times (track frames and ends, segment proposals)."""

    def __init__(self, site: WorkerSite, user: str, media: str) -> None:
        self.site, self.user, self.media = site, user, media
        self.ws: ClientConnection | None = None
        self.replies: dict[str, dict[str, Any]] = {}
        self.frames: dict[str, list[tuple[int, float]]] = defaultdict(list)  # track -> (frame, arrival)
        self.ended: dict[str, tuple[str, float]] = {}  # track -> (event type, arrival)
        self.proposed: dict[str, float] = {}  # prompt -> arrival of its segment_proposed
        self.frame_count = 0
        self.closed = False
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> Socket:
        server = self.site.servers[0]
        self.ws = await websockets.connect(server.ws_url(self.media), max_size=None)
        await self.ws.send(json.dumps({"type": "hello", "token": self.site.tokens[self.user], "last_seq": None, "frame": 0}))
        welcome = json.loads(await self.ws.recv())
        if welcome["type"] != "welcome":
            raise RuntimeError(f"{self.user} was refused on {self.media}: {welcome}")
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                now = time.perf_counter()  # before decoding: decoding is the client's own cost
                message = json.loads(raw)
                kind = message["type"]
                if kind == "events":
                    for event in message["events"]:
                        self._event(event["body"], now)
                elif kind in ("ack", "error") and message.get("id"):
                    self.replies[message["id"]] = message
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._changed.set()

    def _event(self, body: dict[str, Any], now: float) -> None:
        kind = body["type"]
        if kind == "track_frame_produced":
            self.frames[body["track"]].append((body["frame"], now))
            self.frame_count += 1
        elif kind in ("track_completed", "track_failed", "track_cancelled"):
            self.ended.setdefault(body["track"], (kind, now))
        elif kind == "segment_proposed":
            self.proposed.setdefault(body["prompt"], now)

    async def until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        async def loop() -> None:
            while not done():
                if self.closed:
                    raise RuntimeError(f"the server closed {self.user}'s socket while waiting for {what}")
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s") from None

    async def send(self, body: dict[str, Any], command_id: str | None = None) -> str:
        assert self.ws is not None
        command_id = command_id or str(uuid.uuid4())
        await self.ws.send(json.dumps({"type": "command", "id": command_id, "body": body}))
        return command_id

    async def reply(self, command_id: str, timeout: float = 30) -> dict[str, Any]:
        await self.until(lambda: command_id in self.replies, timeout, f"the reply to {command_id}")
        return self.replies[command_id]

    async def ok(self, body: dict[str, Any], command_id: str | None = None) -> str:
        command_id = await self.send(body, command_id)
        reply = await self.reply(command_id)
        if reply["type"] != "ack":
            raise RuntimeError(f"{body['type']} by {self.user} refused: {reply}")
        return command_id

    async def boxed_object(self, box: dict[str, Any]) -> str:
        """A new object with a box on frame 0: what a track starts from."""
        obj = f"o-{uuid.uuid4().hex[:10]}"
        await self.ok({"type": "object_created", "object": obj, "media": self.media, "class_id": "box", "label": {"frame": 0, "shape": box, "source": "manual"}})
        return obj

    async def request_track(self, obj: str, frames: int) -> str:
        """Sends a classical track of `obj` over the whole video; returns its id (not awaited)."""
        body = {"type": "track_requested", "media": self.media, "objects": [obj], "start": 0, "direction": "forward", "range": frames, "algorithm": "classical"}
        return await self.send(body, str(uuid.uuid4()))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


# ---- figures --------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else None


def logged_frames(log: list[Event], tracks: set[str]) -> dict[str, Counter[int]]:
    """Track -> how many times each frame was logged."""
    counts: dict[str, Counter[int]] = {track: Counter() for track in tracks}
    for event in log:
        body = event.body
        if isinstance(body, TrackFrameProduced) and body.track in tracks:
            counts[body.track][body.frame] += 1
    return counts


def frame_check(counts: dict[str, Counter[int]], frames: int) -> dict[str, int]:
    """Frames logged, logged more than once, and missing, over tracks of frames 1..frames-1."""
    expected = set(range(1, frames))
    return {
        "frames_logged": sum(sum(c.values()) for c in counts.values()),
        "duplicated": sum(n - 1 for c in counts.values() for n in c.values() if n > 1),
        "missing": sum(len(expected - set(c)) for c in counts.values()),
    }


# ---- the parts ------------------------------------------------------------------------------------


async def idle_workers(site: WorkerSite, media: str, timeout: float = 60) -> None:
    """Until no track of `media` is running (the previous part's are over)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=site.servers[0].url, headers={"Authorization": f"Bearer {site.tokens['admin']}"}) as http:
        while (await http.get(f"/api/media/{media}/tracks")).json()["tracks"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"tracks of {media} still running after {timeout} s")
            await asyncio.sleep(0.1)


async def throughput(site: WorkerSite, args: argparse.Namespace) -> dict[str, Any]:
    """`args.tracks` tracks over the whole long video from 3 users at once."""
    sockets = [await Socket(site, user, "long").open() for user in TRACK_USERS]
    try:
        owners = [sockets[n % len(sockets)] for n in range(args.tracks)]
        objects = [await owner.boxed_object(box(args)) for owner in owners]
        started = time.perf_counter()
        tracks = [await owner.request_track(obj, args.frames) for owner, obj in zip(owners, objects, strict=True)]
        for owner, track in zip(owners, tracks, strict=True):
            reply = await owner.reply(track)
            if reply["type"] != "ack":
                raise RuntimeError(f"a track was refused: {reply}")
        watcher = sockets[0]  # every socket on the media item sees every track's events
        await watcher.until(lambda: all(t in watcher.ended for t in tracks), track_timeout(args, args.tracks), "the tracks' ends")
        seconds = max(watcher.ended[t][1] for t in tracks) - started
    finally:
        for socket in sockets:
            await socket.close()
    check = frame_check(logged_frames(await site.log(), set(tracks)), args.frames)
    ends = Counter(watcher.ended[t][0] for t in tracks)
    return {
        "workers": len(site.workers),
        "tracks": args.tracks,
        "seconds": round(seconds, 3),
        "frames_per_s": round(check["frames_logged"] / seconds, 1),
        **check,
        "ended": dict(ends),
    }


async def click(socket: Socket, index: int, args: argparse.Namespace) -> float:
    """One click on a new object, on frame `index * 7 mod frames` (a new frame each time, mostly);
    returns send→segment_proposed in ms."""
    frame = index * 7 % args.frames
    width, height = args.size
    body = {"type": "prompt_added", "object": f"c-{uuid.uuid4().hex[:10]}", "media": socket.media, "class_id": "mask", "frame": frame,
            "points": [{"x": width / 2, "y": height / 2, "include": True}]}  # fmt: skip
    prompt = str(uuid.uuid4())
    started = time.perf_counter()
    await socket.send(body, prompt)
    reply = await socket.reply(prompt)
    if reply["type"] != "ack":
        raise RuntimeError(f"a click was refused: {reply}")
    await socket.until(lambda: prompt in socket.proposed, 60, f"the answer to click {index}")
    return (socket.proposed[prompt] - started) * 1000


async def clicks(site: WorkerSite, args: argparse.Namespace, load: int) -> dict[str, Any]:
    """`args.clicks` clicks one after the other, while another user keeps `load` tracks running."""
    clicker = await Socket(site, CLICKER, "clicks").open()
    loader = await Socket(site, LOADER, "long").open() if load else None
    keeping: asyncio.Task[None] | None = None
    running: set[str] = set()
    try:
        await click(clicker, args.clicks, args)  # warm-up: the worker opens the video, claims the item
        if loader is not None:
            for _ in range(load):
                running.add(await loader.request_track(await loader.boxed_object(box(args)), args.frames))
            keeping = asyncio.create_task(keep_running(loader, running, args))
            # The load is on once frames flow.
            await loader.until(lambda: loader.frame_count >= 10, track_timeout(args, 1), "the load's first frames")
        frames_before = loader.frame_count if loader else 0
        started = time.perf_counter()
        latencies = [await click(clicker, index, args) for index in range(args.clicks)]
        seconds = time.perf_counter() - started
        figures: dict[str, Any] = {
            "clicks": args.clicks,
            "p50_ms": pct(latencies, 0.50),
            "p90_ms": pct(latencies, 0.90),
            "p99_ms": pct(latencies, 0.99),
            "max_ms": round(max(latencies), 2),
        }
        if loader is not None:
            assert keeping is not None
            if keeping.done():
                keeping.result()  # its error, if it failed
            figures |= {"load_tracks": load, "load_frames_per_s": round((loader.frame_count - frames_before) / seconds, 1)}
        return figures
    finally:
        if keeping is not None:
            keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeping
        if loader is not None:
            for track in list(running):
                if track not in loader.ended:
                    with contextlib.suppress(Exception):
                        await loader.send({"type": "track_cancelled", "track": track})
            with contextlib.suppress(Exception):
                await loader.until(lambda: all(t in loader.ended for t in running), 30, "the load's cancelled tracks")
            await loader.close()
        await clicker.close()


async def keep_running(loader: Socket, running: set[str], args: argparse.Namespace) -> None:
    """Replaces each of the loader's tracks that ends, so `len(running)` keep running."""
    while True:
        await loader.until(lambda: any(t in loader.ended for t in running), 3600, "a load track's end")
        for track in [t for t in running if t in loader.ended]:
            if loader.ended[track][0] == "track_failed":
                raise RuntimeError(f"a load track failed: {track}")
            running.discard(track)
            running.add(await loader.request_track(await loader.boxed_object(box(args)), args.frames))


async def takeover(site: WorkerSite, args: argparse.Namespace, lease_s: float) -> dict[str, Any]:
    """SIGKILL of the worker holding a running track, `args.kill_trials` times."""
    socket = await Socket(site, KILLER, "takeover").open()
    trials: list[tuple[float, int]] = []
    tracks: set[str] = set()
    ended_before_kill = 0
    try:
        async with httpx.AsyncClient(base_url=site.servers[0].url, headers={"Authorization": f"Bearer {site.tokens[KILLER]}"}) as http:
            while len(trials) < args.kill_trials:
                if ended_before_kill > 3 * args.kill_trials:
                    raise RuntimeError(f"{ended_before_kill} tracks ended before their worker could be killed: use more --frames")
                track = await socket.request_track(await socket.boxed_object(box(args)), args.frames)
                tracks.add(track)
                trial = await kill_trial(site, socket, http, track, args, lease_s)
                if trial is None:
                    ended_before_kill += 1
                else:
                    trials.append(trial)
    finally:
        await socket.close()
    check = frame_check(logged_frames(await site.log(), tracks), args.frames)
    times = [seconds for seconds, _ in trials]
    return {
        "lease_s": lease_s,
        "trials": len(times),
        "takeover_s": [round(t, 3) for t in times],
        "mean_s": round(sum(times) / len(times), 3),
        "max_s": round(max(times), 3),
        "resumed_after_frame": [last for _, last in trials],
        "ended_before_kill": ended_before_kill,
        **check,
    }


async def kill_trial(site: WorkerSite, socket: Socket, http: httpx.AsyncClient, track: str, args: argparse.Namespace, lease_s: float) -> tuple[float, int] | None:
    """Kills the worker of `track` once its first frame arrives; returns the seconds from the kill
    to the other worker's first frame and the last frame logged before, or None when the track
    ended before its worker could be killed. The track has ended and the killed worker is
    replaced when this returns."""
    holder = await holder_of(http, socket, track)
    await socket.until(lambda: bool(socket.frames[track]) or track in socket.ended, track_timeout(args, 1), "the track's first frame")
    index = next((i for i, w in enumerate(site.workers) if holder is not None and w.pid == int(holder.split(":")[-2])), None)
    if track in socket.ended or index is None:
        await socket.until(lambda: track in socket.ended, track_timeout(args, 1), "the track's end")
        return None
    killed_at = time.perf_counter()
    site.workers[index].kill()
    # The killed worker logged its last frame before it died: any later frame is the other worker's.
    last = max(logged_frames(await site.log(), {track})[track], default=0)
    await socket.until(lambda: any(f > last for f, _ in socket.frames[track]), lease_s * 3 + 30, f"the takeover after {lease_s:g} s leases")
    seconds = min(at for f, at in socket.frames[track] if f > last) - killed_at
    await socket.until(lambda: track in socket.ended, track_timeout(args, 1), "the resumed track's end")
    site.start_worker(index)
    site.wait_workers(len(site.workers))
    return seconds, last


async def holder_of(http: httpx.AsyncClient, socket: Socket, track: str) -> str | None:
    """The worker that holds `track` (`GET /api/media/{m}/tracks`), once one does; None when the
    track ended first."""
    deadline = time.monotonic() + 60
    while track not in socket.ended:
        rows = (await http.get(f"/api/media/{socket.media}/tracks")).json()["tracks"]
        worker: str | None = next((row["worker"] for row in rows if row["track"] == track), None)
        if worker is not None:
            return worker
        if time.monotonic() > deadline:
            raise RuntimeError(f"no worker took track {track} within 60 s")
        await asyncio.sleep(0.01)
    return None


def box(args: argparse.Namespace) -> dict[str, Any]:
    """Around the moving disc's start (`write_video`): a box a tracker can follow."""
    _, height = args.size
    return BOX | {"x": 0.0, "y": height / 2 - 10}


def track_timeout(args: argparse.Namespace, tracks: int) -> float:
    """Generous: 5 frames/s per track on one worker still finishes."""
    return 60 + tracks * args.frames / 5


# ---- the run --------------------------------------------------------------------------------------


def open_site(root: Path, args: argparse.Namespace) -> WorkerSite:
    """The server with the project (classes box, mask), three media items of the long video
    ("long" for the tracks, "clicks" for the clicker, "takeover"), no worker yet."""
    users = {"admin": Role.ADMIN} | dict.fromkeys([*TRACK_USERS, LOADER, CLICKER, KILLER], Role.ANNOTATOR)
    # The loader keeps --tracks running alone; the default per-user limit is 8.
    site = start_site(root, users, server_args=["--max-running-tracks", str(max(8, args.tracks))], worker_args=worker_args(DEFAULT_LEASE_S))
    try:
        with site.http() as http:
            add_project(http, "bench", name="Bench", classes={"box": "bbox", "mask": "bitmask"}, members=dict.fromkeys([u for u in users if u != "admin"], "annotator"))
            video = write_video(root / "long.mp4", frames=args.frames, size=args.size)
            for media in ("long", "clicks", "takeover"):
                upload(http, "bench", media, "video", [video]).raise_for_status()
    except BaseException:
        site.stop()
        raise
    return site


def worker_args(lease_s: float) -> list[str]:
    return ["--backend", "classical", "--lease", str(lease_s)]


def add_workers(site: WorkerSite, count: int) -> None:
    progress(f"{count} worker(s) starting")
    while len(site.workers) < count:
        site.start_worker()
    site.wait_workers(count)


def restart_workers(site: WorkerSite, count: int, lease_s: float) -> None:
    """Stops the workers (SIGTERM: they let their leases go) and starts `count` with `lease_s`."""
    for worker in site.workers:
        worker.stop()
    site.workers.clear()
    site.worker_args = worker_args(lease_s)
    add_workers(site, count)


def part(name: str, result: dict[str, Any], site: WorkerSite, run: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """One part's figures, or its error (the site's log tails go to stderr) so the rest still runs.
    Each part says on stderr when it starts and how it ended: a run stopped from outside then
    shows where it was."""
    started = time.perf_counter()
    progress(f"{name} ...")
    try:
        figures = asyncio.run(run())
    except Exception as error:
        progress(f"{name} failed after {time.perf_counter() - started:.1f} s: {type(error).__name__}: {error}")
        print(log_tails(site.data.parent), file=sys.stderr, flush=True)
        result.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"
        return None
    progress(f"{name} done in {time.perf_counter() - started:.1f} s")
    return figures


def progress(line: str) -> None:
    print(f"bench_workers {time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def log_tails(root: Path) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}" for log in sorted(root.glob("*.log")))


def bench(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    width, height = args.size
    result: dict[str, Any] = {"frames": args.frames, "size": f"{width}x{height}", "tracks": args.tracks, "clicks": args.clicks, "backend": "classical",
                              "cpus": os.cpu_count(), "store": "sqlite, one `serve --workers`", "load_average_at_start": load_average()}  # fmt: skip
    site = open_site(root, args)
    try:
        throughputs: dict[str, Any] = {}
        click_figures: dict[str, Any] = {}
        for count in (1, 2):
            add_workers(site, count)
            throughputs[str(count)] = part(f"throughput_{count}", result, site, lambda: throughput(site, args))
            part(f"tracks_ended_before_clicks_{count}", result, site, lambda: idle_workers(site, "long"))
            idle = part(f"clicks_idle_{count}", result, site, lambda: clicks(site, args, 0))
            loaded = part(f"clicks_loaded_{count}", result, site, lambda: clicks(site, args, args.tracks))
            part(f"load_ended_{count}", result, site, lambda: idle_workers(site, "long"))
            ratio = round(loaded["p99_ms"] / idle["p99_ms"], 2) if idle and loaded and idle["p99_ms"] else None
            click_figures[str(count)] = {"workers": count, "idle": idle, "loaded": loaded, "p99_loaded_over_idle": ratio}
        one, two = throughputs["1"], throughputs["2"]
        throughputs["ratio_2_over_1"] = round(two["frames_per_s"] / one["frames_per_s"], 2) if one and two else None
        result["throughput"] = throughputs
        result["click_latency"] = click_figures
        takeovers = []
        for lease_s in args.leases:
            if site.worker_args != worker_args(lease_s):
                restart_workers(site, 2, lease_s)
            takeovers.append(part(f"takeover_{lease_s:g}", result, site, functools.partial(takeover, site, args, lease_s)))
        result["takeover"] = takeovers
    except BaseException:  # stopped from outside (SIGTERM, Ctrl-C) or a set-up step failed
        progress("stopped before the end")
        print(log_tails(site.data.parent), file=sys.stderr, flush=True)
        raise
    finally:
        site.stop()
    result["load_average_at_end"] = load_average()
    result["goals"] = {
        f"click_p99_loaded_over_idle_{count}_workers": {"goal": GOAL_CLICK_P99_RATIO, "measured": figures["p99_loaded_over_idle"],
                                                        "met": None if figures["p99_loaded_over_idle"] is None else figures["p99_loaded_over_idle"] <= GOAL_CLICK_P99_RATIO}
        for count, figures in click_figures.items()
    }  # fmt: skip
    return result


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load: anything else running skews every figure here."""
    return [round(load, 2) for load in os.getloadavg()]


def failed(result: dict[str, Any]) -> bool:
    checked = [*(result.get("throughput") or {}).values(), *(result.get("takeover") or [])]
    return bool(result.get("errors")) or any(isinstance(f, dict) and (f["duplicated"] or f["missing"]) for f in checked)


def size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300, help="frames of the video each track runs over")
    parser.add_argument("--size", type=size, default=(160, 120), help="the video's WIDTHxHEIGHT")
    parser.add_argument("--tracks", type=int, default=10, help="tracks at once, in the throughput runs and as the clicks' load")
    parser.add_argument("--clicks", type=int, default=40, help="clicks measured, idle and under load each")
    parser.add_argument("--leases", type=lambda text: [float(n) for n in text.split(",")], default=[2.0, DEFAULT_LEASE_S], help="worker leases (s) to time takeovers with, comma-separated")
    parser.add_argument("--kill-trials", type=int, default=3, help="SIGKILLs per lease")
    parser.add_argument("--json", action="store_true", help="print the JSON only (it is all this prints on stdout anyway)")
    args = parser.parse_args()
    if args.frames < 10 or args.tracks < 1 or args.clicks < 1 or args.kill_trials < 1 or min(args.size) < 32 or not all(lease > 0 for lease in args.leases):
        parser.error("--frames must be at least 10, --tracks, --clicks and --kill-trials at least 1, --size at least 32x32, --leases above 0")
    with stopped_on_sigterm(), tempfile.TemporaryDirectory(prefix="masklog-workers-") as tmp:
        result = bench(args, Path(tmp))
    print(json.dumps(result))
    if failed(result):
        sys.exit(1)


if __name__ == "__main__":
    main()
