"""The server tests' live servers (from `scripts.live_server`, shared with the benchmarks) and a
small real-websocket client."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from scripts.live_server import (
    FRAMES,
    HEIGHT,
    USERS,
    WIDTH,
    LiveServer,
    seed,
    seeded_server,
    start_server,
    upload,
    write_image,
    write_video,
)

__all__ = [
    "FRAMES",
    "HEIGHT",
    "USERS",
    "WIDTH",
    "Client",
    "LiveServer",
    "seed",
    "seeded_server",
    "start_server",
    "upload",
    "write_image",
    "write_video",
]


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

    async def connect(
        self, last_seq: int | None = None, frame: int = 0, token: str | None = None, window: tuple[int, int] | None = None
    ) -> dict[str, Any]:
        self.resumed_from = last_seq
        self.ws = await websockets.connect(self.live.ws_url(self.media), max_size=None)
        hello: dict[str, Any] = {"type": "hello", "token": token or self.live.tokens[self.user], "last_seq": last_seq, "frame": frame}
        if window is not None:
            hello["labels_window"] = list(window)
        await self.ws.send(json.dumps(hello))
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
