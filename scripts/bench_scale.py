"""Scale benchmark (issue 15): does a server's start-up, memory and replay grow with the history?

    python scripts/bench_scale.py [--sizes 1000000,10000000] [--media 2000] [--projects 20]
        [--hot-events 50000] [--probe-events 5000] [--probes 9] [--cache DIR]
        [--max-rss-mb 8000] [--ready-timeout 900] [--replays 50] [--rebuild]

Run from the repository root with the package importable, e.g. in a worktree:
`PYTHONPATH=$PWD/build/typecheck:$PWD .venv/bin/python scripts/bench_scale.py --cache /tmp/masklog-scale`.
Prints one JSON object (and progress on stderr). A benchmark, never a timed test.

Logs. For each size, `scripts/loggen.py`'s `ScaleGenerator` writes a realistic log (the work mix
of `scripts/bench_store.py`) over `--projects` projects and `--media` media items: one item `hot`
with about `--hot-events` events of its own and `--probes` items `probe1..` with `--probe-events`
each, their events spread over the whole log, and the other items sharing the rest. The events go
in through the store's own `append` in batches of 10,000 (so every table and index the store keeps
is filled as in real use), in a child process per size. The built data folder is cached under
`--cache` (default: a temporary folder, removed at the end) in a folder named after the
parameters, a hash of scripts/loggen.py and the store's file format, so a re-run reuses it and a
change of either builds afresh; `--rebuild` forces it. A built log is served once before it is
measured (`first_serve_s`: that start reads the whole log once and leaves the server's base
snapshot), then `masklog snapshots` writes the media items' snapshots a server writes as it goes
(`snapshots_s`), so the log is as one a server wrote. `build` says how long building took (null: reused)
and `disk` how big the files are and what room is left.

Measures, per size, in a FRESH server process (`python -m masklog.server.cli serve --no-models` on
the data folder; models are not what is measured):
- `ready_s`: from starting the process until GET /api/health answers;
- `rss_mb_ready`: the server's resident memory then (VmRSS of /proc/<pid>/status);
- `open_media_ms`: a websockets client connects to `hot`'s socket, says hello (no last_seq, the
  labels window the page asks for on frame 0: frames 0-63) and waits for the snapshot message
  (and decodes it, with msgspec as every answer here): the first open of that item after the start (cold);
- `replay_ms` / `replay_ms_p95`: GET /api/media/hot/snapshot?seq=S&from=F&to=F+15 (what the
  page's replay slider asks, F the 16-frame block of a random frame) at `--replays`
  random positions of `hot`'s own events (median and 95th percentile), answer decoded;
- `rss_mb_10_open`: the RSS once sockets on 10 items (`hot` and the probes; the same working set
  whatever the log's length) are open and have their snapshots, and their states are loaded (a
  cold open is greeted from the log and loads the state behind it: a REST read of each waits);
- `peak_rss_mb`: the highest RSS seen (`killed_after_s`: when the watchdog killed it);
- `restart_ready_s`, `restart_rss_mb_ready`: a second start after stopping the first with SIGTERM
  (a server may save state at shutdown);
- `verify_s`: the log's integrity checks (which a server runs in the background once it serves,
  not before), in a process of its own.
`ratios` divides each figure of the largest size by the smallest's (e.g. 10M / 1M).

A watchdog reads the server's RSS every 0.1 s: past `--max-rss-mb` it kills the server and the
figures not measured yet read "killed: rss over N MB" (a server that folds the whole log at start
would otherwise take the machine down at 10M events); one that does not answer in
`--ready-timeout` seconds reads "timeout: ...". Either way the JSON is printed.

`served_before` says whether this cached folder was served by an earlier run (a server may have
written snapshots into it since it was built).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import msgspec  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from masklog.server.accounts import Role  # noqa: E402
from masklog.server.settings import Settings  # noqa: E402
from scripts import loggen  # noqa: E402
from scripts.live_server import ROOT, add_users, free_port  # noqa: E402

APPEND_BATCH = 10_000
USER = "bench"
# The frames whose labels the page asks for on frame 0 (web/js/model.js: LABEL_BLOCK), and the
# size of a replay's window (REPLAY_BLOCK).
WINDOW = (0, 63)
REPLAY_BLOCK = 16
METRICS = ["ready_s", "rss_mb_ready", "open_media_ms", "replay_ms", "replay_ms_p95", "rss_mb_10_open", "peak_rss_mb", "restart_ready_s", "restart_rss_mb_ready", "verify_s"]
RATIOS = ["ready_s", "rss_mb_ready", "open_media_ms", "replay_ms_p95", "rss_mb_10_open", "restart_ready_s"]


def log(message: str) -> None:
    print(f"[bench_scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- building the logs ----------------------------------------------------------------------------


def code_hash() -> str:
    """What the built file depends on: the generator and the store's file format (its tables;
    not the store's code, nor the event types: a log must read the same whatever is added later)."""
    from masklog.domain.snapshots import PROJECTION_VERSION
    from masklog.server.settings import Settings
    from masklog.server.sqlite_store import STORE_FORMAT

    h = hashlib.sha256()
    h.update((ROOT / "scripts/loggen.py").read_bytes())
    # The media snapshots written into it: another layout is ignored by the server (it would fold
    # from position 0), another spacing is not what a server writes.
    h.update(f"format {STORE_FORMAT}; served once; media snapshots {PROJECTION_VERSION} every {Settings.snapshot_every}".encode())
    return h.hexdigest()[:12]


def cache_folder(cache: Path, size: int, args: argparse.Namespace) -> Path:
    return cache / f"scale-{size}ev-{args.media}m-{args.projects}p-hot{args.hot_events}-probe{args.probes}x{args.probe_events}-{code_hash()}"


async def build(data: Path, size: int, media: int, projects: int, hot_events: int, probe_events: int, probes: int) -> dict[str, Any]:
    """Write the log into `data` (a new folder) through the store's append."""
    from masklog.server.sqlite_store import SQLiteEventStore

    generator = loggen.ScaleGenerator(size, media=media, projects=projects, hot_events=hot_events, probe_events=probe_events, probes=probes)
    store = await SQLiteEventStore.open(Settings(data=data).database, synchronous="NORMAL", check="none")
    started = time.perf_counter()
    try:
        events = await loggen.fill(store.append, generator, size, batch=APPEND_BATCH, overlap=True)
    finally:
        await store.close()
    return {"events": events, "build_s": round(time.perf_counter() - started, 1)}


def ensure_built(folder: Path, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """The cached data folder of this size, built in a child process if missing."""
    done = folder / "build.json"
    if done.exists() and not args.rebuild:
        info = json.loads(done.read_text())
        return {**info, "build_s": None, "cached_build_s": info["build_s"]}
    shutil.rmtree(folder, ignore_errors=True)
    free = shutil.disk_usage(folder.parent).free
    needed = size * 700  # bytes an event takes in the file, with its index (measured: about 600)
    if free < needed * 1.2:
        raise RuntimeError(f"not built: about {needed / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free under {folder.parent}")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    log(f"building {size:,} events in {folder}")
    command = [sys.executable, __file__, "--build", str(partial / "data"), "--sizes", str(size)]
    command += ["--media", str(args.media), "--projects", str(args.projects), "--hot-events", str(args.hot_events), "--probe-events", str(args.probe_events), "--probes", str(args.probes)]
    finished = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if finished.returncode != 0:
        raise RuntimeError(f"building {size} events failed: {finished.stderr[-2000:]}")
    info = json.loads(finished.stdout)
    # A log a server wrote has been served: the server left its snapshots in it as it ran (the
    # base every so many events, and at shutdown). A bulk-written one has not, so it is served
    # once here; its first start reads the whole log once (`first_serve_s`), as an upgraded
    # server's first start on an old file does. `ready_s` measures the starts after that.
    with serving(partial / "data", args.max_rss_mb, partial / "first-serve.log") as server:
        try:
            info["first_serve_s"] = round(server.wait_ready(args.ready_timeout), 3)
            server.stop()
        except Stopped as error:
            info["first_serve_s"] = str(error)
    # And the media snapshots a server writes as it goes (every snapshot_every events of an item
    # it has loaded): `masklog snapshots` writes them for a log that never had them.
    started = time.perf_counter()
    written = subprocess.run([sys.executable, "-m", "masklog.server.cli", "snapshots", "--data", str(partial / "data")], capture_output=True, text=True, cwd=ROOT)
    if written.returncode != 0:
        raise RuntimeError(f"masklog snapshots failed: {written.stderr[-2000:]}")
    info["snapshots_s"] = round(time.perf_counter() - started, 1)
    (partial / "build.json").write_text(json.dumps(info))
    partial.rename(folder)  # only a finished build is ever reused
    log(f"built {info['events']:,} events in {info['build_s']} s")
    return {**info, "cached_build_s": None}


def folder_mb(folder: Path) -> float:
    return round(sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6, 1)


# ---- the server process and its watchdog ----------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class Stopped(Exception):
    """The server is gone: killed by the watchdog, timed out, or exited."""


class Server:
    """`masklog serve` on the data folder, watched: past `max_rss_mb` it is killed."""

    def __init__(self, data: Path, max_rss_mb: float, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.max_rss_mb = max_rss_mb
        self.peak_mb = 0.0
        self.killed: str | None = None
        self.killed_after_s: float | None = None
        self.started = time.perf_counter()
        with open(log_path, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "masklog.server.cli", "serve", "--data", str(data), "--port", str(self.port), "--no-models"],
                cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self._watching = True
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        while self._watching and self.process.poll() is None:
            rss = rss_mb(self.process.pid)
            if rss is not None:
                self.peak_mb = max(self.peak_mb, rss)
                if rss > self.max_rss_mb:
                    self.killed = f"killed: rss over {self.max_rss_mb:g} MB"
                    self.killed_after_s = round(time.perf_counter() - self.started, 1)
                    self.process.kill()
                    log(f"server killed at {rss:.0f} MB after {self.killed_after_s} s")
                    return
            time.sleep(0.1)

    def check(self) -> None:
        if self.killed:
            raise Stopped(self.killed)
        if self.process.poll() is not None:
            raise Stopped(f"exited: code {self.process.returncode}")

    def wait_ready(self, timeout: float) -> float:
        """Seconds from the start until /api/health answers."""
        while time.perf_counter() - self.started < timeout:
            self.check()
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1, trust_env=False).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        self.killed = f"timeout: no answer in {timeout:g} s"
        raise Stopped(self.killed)

    def rss(self) -> float:
        self.check()
        value = rss_mb(self.process.pid)
        if value is None:
            raise Stopped("exited")
        return value

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited in 60 s."""
        self._watching = False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        self._watching = False
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@contextlib.contextmanager
def serving(data: Path, max_rss_mb: float, log_path: Path) -> Iterator[Server]:
    server = Server(data, max_rss_mb, log_path)
    try:
        yield server
    finally:
        server.kill()


# ---- the client's side ----------------------------------------------------------------------------


def open_socket(sockets: contextlib.ExitStack, server: Server, media: str, token: str) -> float:
    """Connect, say hello and wait for the snapshot; the socket stays open until `sockets`
    closes. Returns the milliseconds from connecting to the snapshot."""
    started = time.perf_counter()
    url = f"ws://127.0.0.1:{server.port}/api/media/{media}/ws"
    ws = sockets.enter_context(connect(url, max_size=None, open_timeout=600, ping_interval=None, proxy=None))
    ws.send(json.dumps({"type": "hello", "token": token, "labels_window": list(WINDOW)}))
    while True:
        message = msgspec.json.decode(ws.recv(timeout=600))
        if message["type"] == "snapshot":
            return (time.perf_counter() - started) * 1000
        if message["type"] == "error":
            raise RuntimeError(f"socket for {media} refused: {message}")


def positions(http: httpx.Client, media: str) -> list[int]:
    """The positions of the item's own events (paged)."""
    seqs: list[int] = []
    after = 0
    while True:
        page = http.get(f"/api/media/{media}/positions", params={"after": after})
        page.raise_for_status()
        body = page.json()
        seqs += body["seqs"]
        if body["next_after"] is None:
            return seqs
        after = body["next_after"]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def measure(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure for one built data folder; those not measured name why."""
    data = folder / "data"
    result: dict[str, Any] = {}
    token = add_users(Settings(data=data), {USER: Role.ADMIN})[USER]
    try:
        with serving(data, args.max_rss_mb, folder / "serve.log") as server, contextlib.ExitStack() as sockets:
            try:
                result["ready_s"] = round(server.wait_ready(args.ready_timeout), 3)
                result["rss_mb_ready"] = round(server.rss())
                log(f"ready in {result['ready_s']} s at {result['rss_mb_ready']} MB")
                result["open_media_ms"] = round(open_socket(sockets, server, loggen.HOT, token), 1)
                server.check()
                with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=600, trust_env=False) as http:
                    seqs = positions(http, loggen.HOT)
                    result["hot_events"] = len(seqs)
                    rng = random.Random(15)
                    picked = rng.sample(seqs, min(args.replays, len(seqs)))
                    frames = http.get(f"/api/media/{loggen.HOT}").json()["frames"]
                    times = []
                    for seq in picked:
                        first = rng.randrange(frames) // REPLAY_BLOCK * REPLAY_BLOCK
                        started = time.perf_counter()
                        answer = http.get(f"/api/media/{loggen.HOT}/snapshot", params={"seq": seq, "from": first, "to": first + REPLAY_BLOCK - 1})
                        answer.raise_for_status()
                        msgspec.json.decode(answer.content)
                        times.append((time.perf_counter() - started) * 1000)
                        server.check()
                result["replay_ms"] = round(statistics.median(times), 1)
                result["replay_ms_p95"] = round(percentile(times, 0.95), 1)
                log(f"open {result['open_media_ms']} ms, replay p95 {result['replay_ms_p95']} ms")
                for index in range(1, args.probes + 1):
                    open_socket(sockets, server, loggen.probe_name(index), token)
                with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=600, trust_env=False) as http:
                    # A cold open is greeted from the log and loads the item's state behind the
                    # greeting: a read of each waits until its state is loaded.
                    for media in [loggen.HOT, *(loggen.probe_name(i) for i in range(1, args.probes + 1))]:
                        http.get(f"/api/media/{media}/labels", params={"frame": 0}).raise_for_status()
                result["rss_mb_10_open"] = round(server.rss())
                result["open_sockets"] = 1 + args.probes
            except Stopped as stopped:
                result["outcome"] = str(stopped)
            except Exception as error:  # a socket or request the server broke off
                server.check()  # a kill explains it (Stopped)
                result["outcome"] = f"failed: {error!r}"
            finally:
                sockets.close()
                if server.killed and "outcome" not in result:
                    result["outcome"] = server.killed
                if server.killed_after_s is not None:
                    result["killed_after_s"] = server.killed_after_s
                result["peak_rss_mb"] = round(server.peak_mb)
                server.stop()
    except Stopped as stopped:
        result.setdefault("outcome", str(stopped))
    (folder / "served").touch()
    if "outcome" not in result:
        with serving(data, args.max_rss_mb, folder / "serve.log") as server:
            try:
                result["restart_ready_s"] = round(server.wait_ready(args.ready_timeout), 3)
                result["restart_rss_mb_ready"] = round(server.rss())
            except Stopped as stopped:
                result["restart_outcome"] = str(stopped)
            finally:
                server.stop()
    result["verify_s"] = verify_s(data)
    reason = result.get("outcome") or result.get("restart_outcome")
    for key in METRICS:
        result.setdefault(key, reason)
    return result


def verify_s(data: Path) -> float:
    """The log's integrity checks (`EventStore.verify`, which a server runs in the background),
    in a fresh process."""
    code = (
        "import asyncio, sys, time\n"
        "from masklog.server.settings import Settings\n"
        "from masklog.server.storage import open_store\n"
        "async def main():\n"
        f"    store = await open_store(Settings(data=__import__('pathlib').Path({str(data)!r})), verify_on_open=False)\n"
        "    started = time.perf_counter()\n"
        "    await store.verify()\n"
        "    print(time.perf_counter() - started)\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return round(float(done.stdout.strip().splitlines()[-1]), 3)


# ---- main -----------------------------------------------------------------------------------------


def ratios(results: dict[str, dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    small, large = results.get(str(min(sizes)), {}), results.get(str(max(sizes)), {})
    out: dict[str, Any] = {"of": f"{max(sizes)} / {min(sizes)}"}
    for key in RATIOS:
        a, b = small.get(key), large.get(key)
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0
        out[key] = round(b / a, 2) if ok else None  # type: ignore[operator]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000", help="log sizes in events, comma-separated")
    parser.add_argument("--media", type=int, default=2000, help="media items in each log")
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--hot-events", type=int, default=50_000, help="events of the item opened and replayed")
    parser.add_argument("--probe-events", type=int, default=5_000, help="events of each other item of the 10 opened")
    parser.add_argument("--probes", type=int, default=9, help="items opened besides the hot one")
    parser.add_argument("--cache", type=Path, help="folder for the built logs, reused by later runs (default: a temporary one)")
    parser.add_argument("--rebuild", action="store_true", help="build the logs even if cached")
    parser.add_argument("--max-rss-mb", type=float, default=8000, help="the watchdog kills a server using more")
    parser.add_argument("--ready-timeout", type=float, default=900, help="seconds a server may take to answer")
    parser.add_argument("--replays", type=int, default=50, help="positions replayed")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # child: build this data folder
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    if args.build:
        info = asyncio.run(build(args.build, sizes[0], args.media, args.projects, args.hot_events, args.probe_events, args.probes))
        print(json.dumps(info))
        return

    temporary = None if args.cache else tempfile.TemporaryDirectory(prefix="masklog-scale-")
    cache: Path = args.cache or Path(temporary.name)  # type: ignore[union-attr]
    cache.mkdir(parents=True, exist_ok=True)
    try:
        disk_before = shutil.disk_usage(cache)
        results: dict[str, dict[str, Any]] = {}
        builds: dict[str, Any] = {}
        files: dict[str, float] = {}
        for size in sizes:
            folder = cache_folder(cache, size, args)
            try:
                builds[str(size)] = ensure_built(folder, size, args)
            except RuntimeError as error:
                builds[str(size)] = {"error": str(error)}
                continue
            files[str(size)] = folder_mb(folder / "data")
        for size in sizes:
            folder = cache_folder(cache, size, args)
            if "error" in builds[str(size)]:
                results[str(size)] = {key: builds[str(size)]["error"] for key in METRICS}
                continue
            log(f"measuring {size:,} events")
            served_before = (folder / "served").exists()
            results[str(size)] = {"events": builds[str(size)]["events"], "served_before": served_before, **measure(folder, args)}
            files[str(size)] = folder_mb(folder / "data")
        disk_after = shutil.disk_usage(cache)
        print(json.dumps({
            "sizes": results,
            "ratios": ratios(results, sizes),
            "build": builds,
            "disk": {"cache": str(cache), "data_mb": files, "free_gb_before": round(disk_before.free / 1e9, 1), "free_gb_after": round(disk_after.free / 1e9, 1)},
            "settings": {key: getattr(args, key) for key in ["media", "projects", "hot_events", "probe_events", "probes", "replays", "max_rss_mb"]},
        }, indent=1))  # fmt: skip
    finally:
        if temporary is not None:
            temporary.cleanup()


if __name__ == "__main__":
    main()
