"""A real masklog server on 127.0.0.1, its users and its first data: what the benchmarks and the
tests start from.

- `start_server`: uvicorn on a thread of this process (`LiveServer`): the test fixtures and
  the page benchmark, which reach into the running app.
- `start_process`: `masklog serve` in a process of its own (`ServerProcess`): benchmarks that
  measure the server apart from their clients, and tests that kill it.
- `add_users`, `add_project`, `add_class`, `upload`: the set-up both do, over REST like a client.
- `seed`, `seeded_server`: the world the server tests share (projects p1 and p2, see `seed`).
- `start_worker`, `WorkerSite`, `start_site`: `masklog worker` processes, and a site of servers
  and workers on one log (the worker tests and `bench_workers.py`).

Test and benchmark support only: nothing in `server/` imports it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import cv2
import httpx
import numpy as np
import uvicorn

from masklog.domain.events import Event
from masklog.server.accounts import Role
from masklog.server.app import create_app
from masklog.server.settings import Settings
from masklog.server.storage import open_accounts
from masklog.server.ws_deflate import socket_options

ROOT = Path(__file__).resolve().parent.parent

# The users `start_server` makes, and the seeded projects' frames (see `seed`).
USERS = {"admin": Role.ADMIN, "alice": Role.ANNOTATOR, "bob": Role.ANNOTATOR, "viewer": Role.VIEWER, "outsider": Role.ANNOTATOR}
WIDTH, HEIGHT, FRAMES = 64, 48, 20


# ---- media files ----------------------------------------------------------------------------------


def write_video(path: Path, frames: int = FRAMES, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Path:
    """A small mp4: a disc moving right over a plain background."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, size)
    for index in range(frames):
        frame = np.full((size[1], size[0], 3), 40, np.uint8)
        cv2.circle(frame, (5 + index * 2 % (size[0] - 10), size[1] // 2), 6, (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def write_image(path: Path, size: tuple[int, int] = (WIDTH, HEIGHT), value: int = 128) -> Path:
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), value, np.uint8))
    return path


# ---- servers --------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    """A server listening on 127.0.0.1, and the tokens of its users by name."""

    port: int
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, media: str) -> str:
        return f"ws://127.0.0.1:{self.port}/api/media/{media}/ws"

    def http(self, user: str | None = None, timeout: float = 30) -> httpx.Client:
        """A client, signed in as `user` when given. Reuse it: making one costs about 0.1 s."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def stop(self) -> None:
        raise NotImplementedError


@dataclass
class LiveServer(RunningServer):
    settings: Settings
    thread: threading.Thread
    server: uvicorn.Server
    files: Path

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class _OwnProcess:
    """A masklog process this one started: stopped as an operator would, or killed as a crash."""

    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it has not exited in 20 s): a server closes cleanly, a worker
        lets its leases go."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed or closed; a worker's leases run out on their own."""
        self.process.kill()
        self.process.wait(timeout=10)


@dataclass
class ServerProcess(_OwnProcess, RunningServer):
    process: subprocess.Popen[bytes]
    log: Path


def add_users(settings: Settings, roles: Mapping[str, Role]) -> dict[str, str]:
    """Make the users in `roles` (name -> account role); returns their tokens by name. Runs in a
    thread of its own, so it also works from inside a running event loop (async tests)."""

    async def make() -> dict[str, str]:
        accounts = await open_accounts(settings)
        try:
            return {name: await accounts.add_user(name, role) for name, role in roles.items()}
        finally:
            await accounts.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


def start_server(data: Path, users: Mapping[str, Role] = USERS, **overrides: Any) -> LiveServer:
    """A server in this process with `Settings` overrides (`backends=` passes model backends).

    No models run unless `run_models=True`: the tests of rules and of the API write model
    results themselves (`tests.server.rest.as_model`), and must not race a tracker doing the same.
    """
    overrides.setdefault("run_models", False)
    backends = overrides.pop("backends", None)
    settings = Settings(data=data, port=0, **overrides)
    data.mkdir(parents=True, exist_ok=True)
    tokens = add_users(settings, users)
    config = uvicorn.Config(create_app(settings, backends), host="127.0.0.1", port=0, log_level="warning", lifespan="on", **socket_options(settings.max_message_bytes))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return LiveServer(port=port, tokens=tokens, settings=settings, thread=thread, server=server, files=data.parent)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(
    data: Path,
    users: Mapping[str, Role] | None = None,
    *,
    port: int | None = None,
    database: str | None = None,
    args: Sequence[str] = (),
    log: Path | None = None,
    timeout: float = 60,
) -> ServerProcess:
    """`masklog serve --data data` in its own process, with `users` made first (None: none, as
    when starting again on the same data, or a further process on the same `database`); with a
    `database` (postgresql://...) the log and the accounts are kept there (`--database`). Extra
    command-line `args` go to `serve`. Returns once it answers; its output goes to `log`
    (default `data.parent / "serve.log"`: give each process of a shared data folder its own)."""
    data.mkdir(parents=True, exist_ok=True)
    settings = Settings(data=data, storage="postgresql", database_url=database) if database else Settings(data=data)
    tokens = add_users(settings, users) if users else {}
    port = port or free_port()
    log = log or data.parent / "serve.log"
    storage = ["--database", database] if database else []
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "masklog.server.cli", "serve", "--data", str(data), "--port", str(port), *storage, *args],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    served = ServerProcess(port=port, tokens=tokens, process=process, log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{served.url}/api/health", timeout=1).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}); see {log}")
        time.sleep(0.1)
    served.kill()
    raise RuntimeError(f"the server did not answer in {timeout} s; see {log}")


@dataclass
class WorkerProcess(_OwnProcess):
    """`masklog worker` in its own process."""

    process: subprocess.Popen[bytes]
    log: Path


def start_worker(data: Path, *, database: str | None = None, args: Sequence[str] = (), log: Path | None = None) -> WorkerProcess:
    """`masklog worker --data data` (on `database` when given) in its own process; returns at
    once (it announces itself in the workers registry when it works: `GET /api/workers`)."""
    log = log or data.parent / "worker.log"
    storage = ["--database", database] if database else []
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "masklog.server.cli", "worker", "--data", str(data), *storage, *args],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    return WorkerProcess(process, log)


@dataclass
class WorkerSite:
    """Servers and workers on one log: the SQLite file of `data` (one server, `serve --workers`)
    or `database` (PostgreSQL, `serve --no-models` each). Workers are started with `worker_args`
    and log to `data.parent / worker-N.log`."""

    data: Path
    database: str | None
    tokens: dict[str, str]
    worker_args: Sequence[str] = ()
    servers: list[ServerProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, index: int | None = None) -> WorkerProcess:
        """A further worker (appended), or one in place of `workers[index]` (one that was killed)."""
        worker = start_worker(self.data, database=self.database, args=self.worker_args, log=self.data.parent / f"worker-{len(self.workers)}.log")
        if index is None:
            self.workers.append(worker)
        else:
            self.workers[index] = worker
        return worker

    def http(self, user: str = "admin", server: int = 0) -> httpx.Client:
        return self.servers[server].http(user)

    def live_workers(self) -> list[dict[str, Any]]:
        """`GET /api/workers`: the workers the registry holds as live."""
        with self.http() as http:
            workers: list[dict[str, Any]] = http.get("/api/workers").json()["workers"]
            return workers

    def wait_workers(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Until `count` of this site's running worker processes have announced themselves."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = self.live_workers()
            pids = {w.pid for w in self.workers if w.process.poll() is None}
            if len([w for w in live if w["pid"] in pids]) >= count:
                return live
            time.sleep(0.2)
        raise RuntimeError(f"{count} workers did not announce themselves; see {self.data.parent}/worker-*.log")

    async def log(self) -> list[Event]:
        """The whole log, read from the store itself."""
        from masklog.server.postgres_store import PostgresEventStore
        from masklog.server.sqlite_store import SQLiteEventStore

        if self.database is not None:
            async with await PostgresEventStore.open(self.database, check=False) as store:
                return await store.read()
        async with await SQLiteEventStore.open(self.data / "events.sqlite3", check="none") as store:
            return await store.read()

    def stop(self) -> None:
        """Workers first (SIGTERM), then the servers; a process that will not stop is killed."""
        processes: list[WorkerProcess | ServerProcess] = [*self.workers, *self.servers]
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop()


def start_site(
    root: Path,
    users: Mapping[str, Role] = USERS,
    *,
    database: str | None = None,
    servers: int = 1,
    server_args: Sequence[str] = (),
    worker_args: Sequence[str] = (),
) -> WorkerSite:
    """`servers` server processes on `root / "data"` (and `database`), doing no model work, with
    `users` made first; no workers yet (`WorkerSite.start_worker`). Stop it with `stop()`, also
    when this raises (it stops what it started before raising)."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    settings = Settings(data=data, storage="postgresql", database_url=database) if database else Settings(data=data)
    site = WorkerSite(data, database, add_users(settings, users), worker_args)
    try:
        for index in range(servers):
            mode = ["--workers"] if database is None else ["--no-models"]
            process = start_process(data, None, database=database, args=[*mode, *server_args], log=root / f"serve-{index}.log")
            process.tokens = site.tokens
            site.servers.append(process)
    except BaseException:
        site.stop()
        raise
    return site


@contextlib.contextmanager
def stopped_on_sigterm() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (a benchmark's processes are then stopped by its cleanup
    either way)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- set-up over REST -------------------------------------------------------------------------


def add_class(http: httpx.Client, project: str, class_id: str, shape: str, *, name: str | None = None, color: str = "#ff8800", **extra: Any) -> None:
    """A class of `project` (named after its id unless `name` is given); `extra` fields such as
    `skeleton` go into the request as they are."""
    http.post(f"/api/projects/{project}/classes", json={"id": class_id, "name": name or class_id, "shape": shape, "color": color, **extra}).raise_for_status()


def add_project(http: httpx.Client, project: str, *, name: str | None = None, classes: Mapping[str, str] | None = None, members: Mapping[str, str] | None = None) -> None:
    """A project (its creator becomes its admin), with `classes` (id -> shape kind) and
    `members` (user -> project role)."""
    http.post("/api/projects", json={"id": project, "name": name or project}).raise_for_status()
    for class_id, shape in (classes or {}).items():
        add_class(http, project, class_id, shape)
    for user, role in (members or {}).items():
        http.put(f"/api/projects/{project}/members/{user}", json={"role": role}).raise_for_status()


def upload(http: httpx.Client, project: str, media: str, kind: str, paths: list[Path], name: str | None = None) -> httpx.Response:
    """Upload a media item (one file, or the frames in order); the response is not checked."""
    files = [("file", (path.name, path.read_bytes(), "application/octet-stream")) for path in paths]
    return http.post(f"/api/projects/{project}/media", data={"id": media, "name": name or media, "kind": kind}, files=files)


def seed(live: LiveServer) -> None:
    """Projects p1 (media m1: a 20-frame video, g1: an image group, i1: an image; classes box,
    mask, poly, line) and p2 (m2; class box2), made by admin, with alice and bob annotators and
    viewer a viewer of p1, outsider an annotator of p2 only. Media files go next to the data."""
    files = live.files / "files"
    files.mkdir(exist_ok=True)
    with live.http("admin") as http:
        # This order fixes every event's position, which some tests count on.
        add_project(http, "p1", name="P1")
        add_project(http, "p2", name="P2")
        for class_id, shape in [("box", "bbox"), ("mask", "bitmask"), ("poly", "polygon"), ("line", "polyline")]:
            add_class(http, "p1", class_id, shape)
        add_class(http, "p2", "box2", "bbox", name="box", color="#0088ff")
        for user, role in [("alice", "annotator"), ("bob", "annotator"), ("viewer", "viewer")]:
            http.put(f"/api/projects/p1/members/{user}", json={"role": role}).raise_for_status()
        http.put("/api/projects/p2/members/outsider", json={"role": "annotator"}).raise_for_status()
        video = write_video(files / "clip.mp4")
        upload(http, "p1", "m1", "video", [video]).raise_for_status()
        upload(http, "p2", "m2", "video", [video]).raise_for_status()
        images = [write_image(files / f"{i}.png", value=40 * i) for i in range(3)]
        upload(http, "p1", "g1", "image_group", images).raise_for_status()
        upload(http, "p1", "i1", "image", images[:1]).raise_for_status()


@contextlib.contextmanager
def seeded_server(root: Path, **overrides: Any) -> Iterator[LiveServer]:
    """`start_server(root / "data", **overrides)` with `seed`'s projects, stopped on exit: a test
    module's (or test's) own server."""
    live = start_server(root / "data", **overrides)
    try:
        seed(live)
        yield live
    finally:
        live.stop()
