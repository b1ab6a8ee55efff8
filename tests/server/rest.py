"""Helpers shared by the REST tests: fresh ids, commands through the REST route, the log's head,
and writes by a model actor (what the tracking actor does: commands straight into the ledger).

Reuse httpx clients within a test module: making one costs about 0.1 s (it loads the system's
TLS certificates), far more than a request to the test server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from masklog.domain.decide import Command
from masklog.domain.events import Event
from tests.server.live import LiveServer

MODEL_ACTOR = "model:test/tracker@1"


def fresh(prefix: str) -> str:
    """An id no other test case uses (servers are shared by a whole module)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def bbox(x: float = 1, y: float = 1, w: float = 5, h: float = 5) -> dict[str, Any]:
    return {"type": "bbox", "x": x, "y": y, "w": w, "h": h}


def head(http: httpx.Client) -> int:
    """The position of the last event in the log (any stream), read by a member of p1."""
    response = http.get("/api/media/m1/labels", params={"frame": 0})
    response.raise_for_status()
    return response.json()["seq"]


def post_command(http: httpx.Client, body: dict[str, Any], media: str = "m1", command_id: str | None = None) -> httpx.Response:
    return http.post(f"/api/media/{media}/commands", json={"id": command_id or str(uuid.uuid4()), "body": body})


def command(http: httpx.Client, body: dict[str, Any], media: str = "m1") -> dict[str, Any]:
    """A command that must be accepted (test set-up)."""
    response = post_command(http, body, media)
    assert response.status_code == 201, response.text
    return response.json()


def new_object(http: httpx.Client, media: str = "m1", class_id: str = "box") -> str:
    object_id = fresh("obj")
    command(http, {"type": "object_created", "object": object_id, "media": media, "class_id": class_id}, media)
    return object_id


def save_box(http: httpx.Client, object_id: str, frame: int, media: str = "m1", x: float = 1) -> dict[str, Any]:
    return command(http, {"type": "label_saved", "object": object_id, "frame": frame, "shape": bbox(x=x), "source": "manual"}, media)


def request_track(http: httpx.Client, object_id: str, media: str = "m1", start: int = 0, frames: int = 5) -> str:
    """A running track of one labelled object (no tracking actor runs in the test server, so it
    stays running); returns its id."""
    save_box(http, object_id, start, media)
    return command(
        http,
        {"type": "track_requested", "media": media, "objects": [object_id], "start": start, "direction": "forward", "range": frames},
        media,
    )["id"]


def as_model(live: LiveServer, body: Command) -> Event:
    """Append `body` as a model actor through the server's own ledger, on the server's loop."""
    ctx = live.server.config.app.state.ctx
    loop = live.server.servers[0].get_loop()
    future = asyncio.run_coroutine_threadsafe(ctx.ledger.execute(MODEL_ACTOR, body, str(uuid.uuid4())), loop)
    event, _ = future.result(timeout=30)
    return event


MULTIPART_BOUNDARY = "masklog-test-boundary"
MULTIPART = f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"


def multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> bytes:
    """A multipart body written by hand (content type `MULTIPART`), so file names reach the
    server byte for byte (clients escape or strip what these tests need to send)."""
    out = b""
    for name, value in fields.items():
        out += f'--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for filename, data in files:
        out += f'--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode()
        out += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    return out + f"--{MULTIPART_BOUNDARY}--\r\n".encode()
