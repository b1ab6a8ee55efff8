"""The socket compresses (permessage-deflate) at a cheap level: a long item's snapshot is MBs of
JSON, and zlib's default level costs a third of a cold open (server/ws_deflate.py)."""

from __future__ import annotations

import json
from pathlib import Path

import websockets
from uvicorn.config import Config
from uvicorn.server import ServerState

from masklog.server.ws_deflate import LEVEL, CheapDeflateProtocol, socket_options
from tests.server.live import seeded_server
from tests.server.rest import new_object, save_box


async def _app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]  # never called
    raise AssertionError("not served")


def _protocol(deflate: bool) -> CheapDeflateProtocol:
    config = Config(_app, ws_per_message_deflate=deflate, **socket_options(1000))
    return CheapDeflateProtocol(config=config, server_state=ServerState(), app_state={})


async def test_the_protocol_offers_deflate_at_the_cheap_level_and_none_when_it_is_off() -> None:
    # async: uvicorn's protocol takes the running loop (there may be no current loop otherwise).
    [deflate] = _protocol(True).conn.available_extensions
    assert deflate.compress_settings == {"memLevel": 5, "level": LEVEL} and LEVEL == 1  # type: ignore[attr-defined]
    assert _protocol(False).conn.available_extensions == []
    assert _protocol(True).conn.max_message_size == 2000  # uvicorn's other settings kept


async def test_a_real_client_negotiates_deflate_and_gets_a_large_snapshot_whole(tmp_path: Path) -> None:
    with seeded_server(tmp_path) as live:
        with live.http("alice") as http:
            objects = [new_object(http) for _ in range(3)]
            for frame in range(20):
                for index, object_id in enumerate(objects):
                    save_box(http, object_id, frame, x=1 + index + frame)
        async with websockets.connect(live.ws_url("m1"), max_size=None) as ws:
            assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")  # type: ignore[union-attr]
            await ws.send(json.dumps({"type": "hello", "token": live.tokens["alice"], "last_seq": None, "frame": 0}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            snapshot = json.loads(await ws.recv())
        assert snapshot["type"] == "snapshot" and len(snapshot["labels"]) == 60
