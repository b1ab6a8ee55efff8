"""A real masklog server on 127.0.0.1 for tests: uvicorn in a thread, a real SQLite file, real
media files; and a small real-websocket client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from server.accounts import Role
from server.app import create_app
from server.settings import Settings
from server.storage import open_accounts

USERS = {"admin": Role.ADMIN, "alice": Role.ANNOTATOR, "bob": Role.ANNOTATOR, "viewer": Role.VIEWER, "outsider": Role.ANNOTATOR}
WIDTH, HEIGHT, FRAMES = 64, 48, 20


def write_video(path: Path, frames: int = FRAMES, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    for index in range(frames):
        frame = np.full((size[1], size[0], 3), 40, np.uint8)
        cv2.circle(frame, (5 + index * 2 % (size[0] - 10), size[1] // 2), 6, (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def write_image(path: Path, size: tuple[int, int] = (WIDTH, HEIGHT), value: int = 128) -> Path:
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), value, np.uint8))
    return path


@dataclass
class LiveServer:
    settings: Settings
    tokens: dict[str, str]
    thread: threading.Thread
    server: uvicorn.Server
    port: int = 0
    files: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, media: str) -> str:
        return f"ws://127.0.0.1:{self.port}/api/media/{media}/ws"

    def http(self, user: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(data: Path, **overrides: Any) -> LiveServer:
    """A server with `Settings` overrides. No models run unless `run_models=True`: the tests of
    rules and of the API write model results themselves (`rest.as_model`), and must not race a
    tracker doing the same."""
    overrides.setdefault("run_models", False)
    backends = overrides.pop("backends", None)
    settings = Settings(data=data, port=0, **overrides)
    data.mkdir(parents=True, exist_ok=True)

    async def make_users() -> dict[str, str]:
        accounts = await open_accounts(settings)
        try:
            return {name: await accounts.add_user(name, role) for name, role in USERS.items()}
        finally:
            await accounts.close()

    # In a thread of its own, so this also works from inside a running event loop (async tests).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        tokens = pool.submit(asyncio.run, make_users()).result()
    config = uvicorn.Config(create_app(settings, backends), host="127.0.0.1", port=0, log_level="warning", ws_max_size=2 * settings.max_message_bytes, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return LiveServer(settings, tokens, thread, server, port, data.parent)


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


def seed(live: LiveServer) -> None:
    """Projects p1 (media m1: a 20-frame video, g1: an image group, i1: an image) and p2 (m2),
    with alice and bob annotators, viewer a viewer of p1, outsider an annotator of p2 only."""
    files = live.settings.data.parent / "files"
    files.mkdir(exist_ok=True)
    with live.http("admin") as http:
        for project in ("p1", "p2"):
            http.post("/api/projects", json={"id": project, "name": project.upper()}).raise_for_status()
        for class_id, shape in [("box", "bbox"), ("mask", "bitmask"), ("poly", "polygon"), ("line", "polyline")]:
            http.post("/api/projects/p1/classes", json={"id": class_id, "name": class_id, "shape": shape, "color": "#ff8800"}).raise_for_status()
        http.post("/api/projects/p2/classes", json={"id": "box2", "name": "box", "shape": "bbox", "color": "#0088ff"}).raise_for_status()
        for user, role in [("alice", "annotator"), ("bob", "annotator"), ("viewer", "viewer")]:
            http.put(f"/api/projects/p1/members/{user}", json={"role": role}).raise_for_status()
        http.put("/api/projects/p2/members/outsider", json={"role": "annotator"}).raise_for_status()
        video = write_video(files / "clip.mp4")
        upload(http, "p1", "m1", "video", [video]).raise_for_status()
        upload(http, "p2", "m2", "video", [video]).raise_for_status()
        images = [write_image(files / f"{i}.png", value=40 * i) for i in range(3)]
        upload(http, "p1", "g1", "image_group", images).raise_for_status()
        upload(http, "p1", "i1", "image", images[:1]).raise_for_status()


def upload(http: httpx.Client, project: str, media: str, kind: str, paths: list[Path], name: str | None = None) -> httpx.Response:
    files = [("file", (path.name, path.read_bytes(), "application/octet-stream")) for path in paths]
    return http.post(f"/api/projects/{project}/media", data={"id": media, "name": name or media, "kind": kind}, files=files)


class Client:
    """A real websocket client: keeps every event it receives, in order."""

    def __init__(self, live: LiveServer, user: str, media: str = "m1") -> None:
        self.live, self.user, self.media = live, user, media
        self.events: list[dict[str, Any]] = []
        self.snapshot: dict[str, Any] | None = None
        self.presence: list[dict[str, Any]] = []
        self.replies: dict[str, dict[str, Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.resumed_from: int | None = None
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def last_seq(self) -> int | None:
        """The position this client has seen up to (what it would resume from)."""
        if self.events:
            return self.events[-1]["seq"]
        return self.snapshot["seq"] if self.snapshot else self.resumed_from

    async def connect(self, last_seq: int | None = None, frame: int = 0, token: str | None = None) -> dict[str, Any]:
        self.resumed_from = last_seq
        self.ws = await websockets.connect(self.live.ws_url(self.media), max_size=None)
        await self.ws.send(json.dumps({"type": "hello", "token": token or self.live.tokens[self.user], "last_seq": last_seq, "frame": frame}))
        welcome = json.loads(await self.ws.recv())
        if welcome["type"] == "welcome":
            self._reader = asyncio.create_task(self._read())
            if last_seq is None or last_seq > welcome["head"]:
                await self.wait_for(lambda: self.snapshot is not None)
        return welcome

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                kind = message["type"]
                if kind == "snapshot":
                    self.snapshot = message
                elif kind == "events":
                    self.events.extend(message["events"])
                elif kind == "presence":
                    self.presence.append(message)
                elif kind in ("ack", "error") and message.get("id"):
                    self.replies[message["id"]] = message
                if kind == "error":
                    self.errors.append(message)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = (self.ws.close_code or 0, self.ws.close_reason or "")
            self._changed.set()

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def send_raw(self, data: str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(data)

    async def command(self, body: dict[str, Any], command_id: str | None = None, panoptic: bool = False) -> dict[str, Any]:
        command_id = command_id or str(uuid.uuid4())
        self.replies.pop(command_id, None)
        await self.send_raw(json.dumps({"type": "command", "id": command_id, "body": body, "panoptic": panoptic}))
        await self.wait_for(lambda: command_id in self.replies or self.closed is not None)
        return self.replies.get(command_id, {"type": "closed"})

    async def presence_update(self, frame: int, cursor: tuple[float, float] | None = None) -> None:
        await self.send_raw(json.dumps({"type": "presence", "frame": frame, "cursor": cursor}))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
