"""Input that is valid in form but costly, or built to break a decoder (issue 12, items 4 and 7).

Each case is refused with a clear error, appends nothing and leaves the server serving: strings
and geometry over the protocol limits (`domain/limits.py`), imports over `max_import_bytes`,
integers past 64 bits, JSON nested thousands deep; and a long RLE is checked off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from masklog.domain.events import Event, LabelSaved, NewEvent, ProjectCreated, Source, encode
from masklog.domain.limits import INT64_MAX, MAX_JSON_DEPTH, MAX_RLE_CHARS, MAX_SHAPE_POINTS
from masklog.domain.shapes import BBox
from masklog.server.exchange.jobs import ExchangeError, import_log
from masklog.server.sqlite_store import SQLiteEventStore
from tests.server.live import HEIGHT, WIDTH, Client, LiveServer, seeded_server, start_server
from tests.server.rest import command, fresh, head, new_object, post_command

ROOT = Path(__file__).resolve().parents[2]
IMPORT_LIMIT = 1024 * 1024
DEEP = 5_000


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    with seeded_server(tmp_path_factory.mktemp("costly-input"), max_import_bytes=IMPORT_LIMIT) as live:
        yield live


@pytest.fixture(scope="module")
def http(server) -> dict[str, httpx.Client]:
    clients = {user: server.http(user) for user in ("admin", "alice")}
    yield clients
    for client in clients.values():
        client.close()


def error_of(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert error["code"] and error["message"]
    return error


def ring(points: int, cx: float = WIDTH / 2, cy: float = HEIGHT / 2, radius: float = 20) -> list[float]:
    """A closed ring of `points` vertices on a circle inside the test video's frame."""
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1).ravel().round(3).tolist()


def polygon_label(object_id: str, rings: list[list[float]]) -> dict[str, Any]:
    shape = {"type": "polygon", "parts": [{"outer": outer} for outer in rings]}
    return {"type": "label_saved", "object": object_id, "frame": 0, "shape": shape, "source": "manual"}


def snapshot_bytes(http: httpx.Client) -> int:
    response = http.get("/api/media/m1/snapshot")
    response.raise_for_status()
    return len(response.content)


# ---- strings and geometry over the protocol limits ------------------------------------------------


def test_a_7_mib_model_string_is_refused(server, http):
    alice = http["alice"]
    object_id = new_object(alice)
    before = head(alice)
    body = {"type": "label_saved", "object": object_id, "frame": 0, "shape": {"type": "bbox", "x": 1, "y": 1, "w": 5, "h": 5}, "source": "manual", "model": "m" * (7 * 1024**2)}
    error = error_of(post_command(alice, body), 422)
    assert error["code"] == "invalid_request" and "length <= 200" in error["message"] and "model" in error["message"]
    assert head(alice) == before


async def test_a_7_mib_model_string_is_refused_on_the_socket(server, http):
    alice = http["alice"]
    object_id = new_object(alice)
    before = head(alice)
    client = Client(server, "alice")
    await client.connect()
    try:
        body = {"type": "label_saved", "object": object_id, "frame": 0, "shape": {"type": "bbox", "x": 1, "y": 1, "w": 5, "h": 5}, "source": "manual", "model": "m" * (7 * 1024**2)}
        reply = await client.command(body)
        assert reply["type"] == "error" and reply["code"] == "invalid_message" and "model" in reply["message"]
        assert client.closed is None
        assert (await client.command({"type": "object_created", "object": fresh("obj"), "media": "m1", "class_id": "box"}))["type"] == "ack"
    finally:
        await client.close()
    assert head(alice) == before + 1


def test_a_450000_point_polygon_is_refused(server, http):
    alice = http["alice"]
    object_id = new_object(alice, class_id="poly")
    before = head(alice)
    # In one ring, the schema refuses it while decoding.
    error = error_of(post_command(alice, polygon_label(object_id, [ring(450_000)])), 422)
    assert error["code"] == "invalid_request" and "outer" in error["message"]
    # In 45 rings of 10,000 each, every ring is within the schema; the shape is not.
    error = error_of(post_command(alice, polygon_label(object_id, [ring(10_000, radius=r) for r in np.linspace(5, 20, 45)])), 422)
    assert error["code"] == "bad_geometry" and "450000 points" in error["message"]
    # So is a polyline.
    line = {"type": "label_saved", "object": new_object(alice, class_id="line"), "frame": 0, "shape": {"type": "polyline", "points": ring(MAX_SHAPE_POINTS + 1)}, "source": "manual"}
    assert error_of(post_command(alice, line), 422)["code"] == "invalid_request"
    assert head(alice) == before + 1  # the polyline's object
    # The largest allowed polygon is saved.
    assert post_command(alice, polygon_label(object_id, [ring(MAX_SHAPE_POINTS)])).status_code == 201


async def test_a_450000_point_polygon_is_refused_on_the_socket(server, http):
    alice = http["alice"]
    object_id = new_object(alice, class_id="poly")
    before = head(alice)
    client = Client(server, "alice")
    await client.connect()
    try:
        reply = await client.command(polygon_label(object_id, [ring(450_000)]))
        assert reply["type"] == "error" and reply["code"] == "invalid_message"
        reply = await client.command(polygon_label(object_id, [ring(10_000) for _ in range(45)]))
        assert reply["type"] == "error" and reply["code"] == "bad_geometry"
        assert client.closed is None
    finally:
        await client.close()
    assert head(alice) == before


def test_the_snapshot_stays_bounded(server, http):
    """20 commands with 450,000-point polygons once made every joining client's snapshot 139 MB."""
    alice = http["alice"]
    objects = [new_object(alice, class_id="poly") for _ in range(20)]
    size = snapshot_bytes(alice)
    for object_id in objects:
        assert post_command(alice, polygon_label(object_id, [ring(450_000)])).status_code == 422
        assert post_command(alice, polygon_label(object_id, [ring(10_000) for _ in range(45)])).status_code == 422
    assert snapshot_bytes(alice) == size


async def test_a_long_rle_is_checked_off_the_event_loop(server, http):
    """While one client's RLE of the largest allowed length is checked, another client's pings
    are answered: the check does not hold the event loop (it held it 1.2 s for 7 MiB)."""
    alice = http["alice"]
    object_id = new_object(alice, class_id="mask")
    before = head(alice)
    # Characters of the RLE alphabet all the way; the runs do not add up to the frame, which
    # only the full check finds.
    counts = "".join(np.random.default_rng(7).choice(list("123456789"), MAX_RLE_CHARS))
    body = {"type": "label_saved", "object": object_id, "frame": 0, "shape": {"type": "bitmask", "rle": {"size": [HEIGHT, WIDTH], "counts": counts}}, "source": "manual"}
    sender = Client(server, "alice")
    await sender.connect()
    async with websockets.connect(server.ws_url("m1"), max_size=None) as pinger:
        await pinger.send(json.dumps({"type": "hello", "token": server.tokens["admin"], "last_seq": None}))
        while json.loads(await pinger.recv())["type"] != "snapshot":
            pass
        command_id = str(uuid.uuid4())
        await sender.send_raw(json.dumps({"type": "command", "id": command_id, "body": body}))
        pongs = 0
        while command_id not in sender.replies:
            await pinger.send('{"type": "ping"}')
            while json.loads(await asyncio.wait_for(pinger.recv(), 30))["type"] != "pong":
                pass
            pongs += 1
    reply = sender.replies[command_id]
    await sender.close()
    assert reply["type"] == "error" and reply["code"] == "bad_geometry" and "RLE runs cover" in reply["message"]
    assert pongs >= 20, f"only {pongs} pings were answered while the RLE was checked"
    assert head(alice) == before


# ---- imports ---------------------------------------------------------------------------------------


def _raw_request(server: LiveServer, head_lines: list[str], body_parts: list[bytes]) -> tuple[int, bytes]:
    """Send a request by hand (headers, then body parts, never finishing a chunked body) and
    read the answer: a server that stops at its limit answers without the rest."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(("\r\n".join(head_lines) + "\r\n\r\n").encode())
        for part in body_parts:
            try:
                conn.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + int(answer.split(b"content-length: ")[1].split(b"\r\n")[0]):
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def test_an_import_over_the_limit_is_refused_before_it_is_read(server, http):
    before = head(http["alice"])
    token = server.tokens["alice"]
    start = ["POST /api/media/m1/import HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {token}", "Content-Type: application/json"]
    # Says it is 10 GiB: refused before a byte of it is read (only 1 KiB is ever sent).
    status, answer = _raw_request(server, [*start, f"Content-Length: {10 * 1024**3}"], [b"{" + b" " * 1023])
    assert status == 413 and json.loads(answer)["error"]["code"] == "too_large"
    # Chunked, with no length: refused once past the limit, though the body never ends.
    chunk = b" " * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (IMPORT_LIMIT // len(chunk) + 2)
    status, answer = _raw_request(server, [*start, "Transfer-Encoding: chunked"], chunks)
    assert status == 413 and str(IMPORT_LIMIT) in json.loads(answer)["error"]["message"]
    # As a multipart part too.
    response = http["alice"].post("/api/media/m1/import", files={"file": ("big.json", b" " * (IMPORT_LIMIT + 1), "application/json")})
    assert error_of(response, 413)["code"] == "too_large"
    assert head(http["alice"]) == before


def test_an_import_under_the_limit_still_works(server, http):
    coco = {"images": [{"id": 1, "file_name": "000003.jpg", "width": WIDTH, "height": HEIGHT}],
            "categories": [{"id": 1, "name": "box"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]}]}  # fmt: skip
    response = http["alice"].post("/api/media/m1/import", content=json.dumps(coco))
    assert response.status_code == 201, response.text
    assert response.json()["labels"] == 1


def test_rle_counts_past_64_bits_in_an_import(server, http):
    before = head(http["alice"])
    crowd = {"size": [HEIGHT, WIDTH], "counts": [99999999999999999999999, 10, HEIGHT * WIDTH - 10]}
    coco = {"images": [{"id": 1, "file_name": "000001.jpg"}], "categories": [{"id": 1, "name": "mask"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": crowd, "iscrowd": 1}]}  # fmt: skip
    error = error_of(http["alice"].post("/api/media/m1/import", content=json.dumps(coco)), 422)
    assert error["code"] == "invalid_import" and "RLE runs cover" in error["message"]
    coco["annotations"][0]["segmentation"] = {"size": [99999999999999999999999, "x"], "counts": "0"}
    assert error_of(http["alice"].post("/api/media/m1/import", content=json.dumps(coco)), 422)["code"] == "invalid_import"
    assert head(http["alice"]) == before


def test_an_import_is_held_to_the_protocol_limits(server, http):
    """A COCO file is turned into commands in code; they meet the limits a client's do."""
    before = head(http["admin"])
    image = {"id": 1, "file_name": "000001.jpg"}
    huge_ring = [v + 0.5 for v in ring(MAX_SHAPE_POINTS + 1_000)]
    coco = {"images": [image], "categories": [{"id": 1, "name": "poly"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [huge_ring]}]}  # fmt: skip
    error = error_of(http["admin"].post("/api/media/m1/import", content=json.dumps(coco)), 422)
    assert error["code"] == "invalid_import" and "outer" in error["message"]
    names = {"id": 1, "name": "new-skeleton", "keypoints": ["k" * 1000, "b"], "skeleton": [[1, 2]]}
    coco = {"images": [image], "categories": [names], "annotations": []}
    error = error_of(http["admin"].post("/api/media/m1/import", content=json.dumps(coco)), 422)
    assert error["code"] == "invalid_import" and "length <= 200" in error["message"]
    assert head(http["admin"]) == before


# ---- integers past 64 bits, JSON nested deep ---------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/api/media/m1/history?after={2**63}",
        f"/api/media/m1/history?after={10**40}",
        f"/api/media/m1/history?limit={2**63}",
        f"/api/media/m1/labels?seq={2**63}",
        f"/api/media/m1/labels?frame={2**64}",
        f"/api/projects/p1/export?seq={2**63}",
        f"/api/projects/p1/export?first={2**63}",
    ],
)
def test_integer_parameters_past_64_bits(server, http, path):
    error = error_of(http["alice"].get(path), 422)
    assert error["code"] == "invalid_request" and str(INT64_MAX) in error["message"]


def test_the_largest_position_is_answered(server, http):
    response = http["alice"].get(f"/api/media/m1/history?after={INT64_MAX}")
    assert response.status_code == 200 and response.json()["events"] == []


def deep(levels: int = DEEP) -> str:
    return "[" * levels + "]" * levels


def test_deep_json_in_an_import(server, http):
    before = head(http["alice"])
    body = '{"images": [], "categories": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": %s}]}' % deep()
    error = error_of(http["alice"].post("/api/media/m1/import", content=body), 422)
    assert error["code"] == "invalid_import" and f"more than {MAX_JSON_DEPTH} levels" in error["message"]
    response = http["alice"].post("/api/media/m1/import", files={"file": ("deep.json", body.encode(), "application/json")})
    assert error_of(response, 422)["code"] == "invalid_import"
    assert head(http["alice"]) == before


def test_deep_json_in_a_request(server, http):
    before = head(http["alice"])
    body = '{"id": "%s", "body": {"type": "object_created", "object": %s}}' % (uuid.uuid4(), deep())
    response = http["alice"].post("/api/media/m1/commands", content=body, headers={"content-type": "application/json"})
    error = error_of(response, 422)
    assert error["code"] == "too_deep" and f"more than {MAX_JSON_DEPTH} levels" in error["message"]
    # Brackets inside strings do not count; nesting to the limit is fine.
    assert post_command(http["alice"], {"type": "object_created", "object": "[" * 60, "media": "m1", "class_id": "box"}).status_code == 422
    shallow = '{"id": "%s", "body": %s}' % (uuid.uuid4(), deep(MAX_JSON_DEPTH - 1))
    assert error_of(http["alice"].post("/api/media/m1/commands", content=shallow), 422)["code"] == "invalid_request"
    assert head(http["alice"]) == before


async def test_deep_json_on_the_socket(server, http):
    before = head(http["alice"])
    client = Client(server, "alice")
    await client.connect()
    try:
        command_id = str(uuid.uuid4())
        await client.send_raw('{"type": "command", "id": "%s", "body": %s}' % (command_id, deep()))
        await client.send_raw(deep())
        await client.wait_for(lambda: len(client.errors) == 2 or client.closed)
        assert client.closed is None, "the socket stays open"
        assert [e["code"] for e in client.errors] == ["too_deep", "too_deep"]
        assert (await client.command({"type": "object_created", "object": fresh("obj"), "media": "m1", "class_id": "box"}))["type"] == "ack"
    finally:
        await client.close()
    assert head(http["alice"]) == before + 1


async def assert_hello_refused(server, hello: str, code: str) -> None:
    """The hello is answered with an error `code`, then the socket is closed with 4002."""
    async with websockets.connect(server.ws_url("m1")) as ws:
        await ws.send(hello)
        reply = json.loads(await ws.recv())
        assert reply["type"] == "error" and reply["code"] == code, reply
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4002


async def test_deep_json_in_the_hello(server, http):
    for hello in ('{"type": "hello", "token": %s}' % deep(), deep()):
        await assert_hello_refused(server, hello, "too_deep")
    # The server still serves.
    client = Client(server, "alice")
    assert (await client.connect())["type"] == "welcome"
    await client.close()


async def test_presence_and_hello_numbers_past_64_bits(server, http):
    await assert_hello_refused(server, json.dumps({"type": "hello", "token": server.tokens["alice"], "last_seq": 2**64}), "invalid_message")
    client = Client(server, "alice")
    await client.connect()
    try:
        await client.send_raw(json.dumps({"type": "presence", "frame": 2**64}))
        await client.wait_for(lambda: client.errors or client.closed)
        assert client.closed is None and client.errors[0]["code"] == "invalid_message"
    finally:
        await client.close()


# ---- a log written before the limits ---------------------------------------------------------------


def test_a_log_with_values_over_todays_limits_still_loads(tmp_path):
    """Limits bound what clients may send from now on; events already in a log keep loading."""
    with seeded_server(tmp_path) as live:
        with live.http("alice") as alice:
            object_id = new_object(alice)
            command(alice, {"type": "label_saved", "object": object_id, "frame": 0, "shape": {"type": "bbox", "x": 1, "y": 1, "w": 5, "h": 5}, "source": "manual"})
    # What the server before the limits accepted: a 7 MiB model name.
    huge = LabelSaved(object=object_id, frame=1, shape=BBox(x=1, y=1, w=5, h=5), source=Source.MANUAL, model="m" * (7 * 1024**2))

    async def append() -> Event:
        store = await SQLiteEventStore.open(tmp_path / "data" / "events.sqlite3")
        try:
            [event] = await store.append([NewEvent(id=str(uuid.uuid4()), stream="media:m1", actor="user:alice", body=huge)])
            return event
        finally:
            await store.close()

    event = asyncio.run(append())
    assert len(encode(event)) > 7 * 1024**2
    live = start_server(tmp_path / "data")
    try:
        with live.http("alice") as alice:
            labels = alice.get("/api/media/m1/labels", params={"frame": 1}).json()["labels"]
            assert [entry["label"]["model"] for entry in labels] == ["m" * (7 * 1024**2)]
            assert len(alice.get("/api/media/m1/history").json()["events"]) >= 3
    finally:
        live.stop()


# ---- the event-log import (`masklog import-log`) -------------------------------------------------------


def test_an_event_log_over_the_limit_is_refused(tmp_path):
    event = encode(Event(seq=1, id=str(uuid.uuid4()), stream="project:p", actor="user:alice", at=1.0, body=ProjectCreated(project="p", name="P"))) + b"\n"
    log = tmp_path / "log.jsonl"
    log.write_bytes(event + b" " * 4096 + b"\n")
    done = subprocess.run([sys.executable, "-m", "masklog.server.cli", "import-log", str(log), "--data", str(tmp_path / "a"), "--max-bytes", "1024"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "over 1024 bytes" in done.stderr
    assert not (tmp_path / "a" / "events.sqlite3").exists()
    with pytest.raises(ExchangeError, match="over 100 bytes"):
        asyncio.run(import_log(tmp_path / "b", iter([event] * 10), max_bytes=100))
    with pytest.raises(ExchangeError, match="line 2 .*nested too deep"):
        asyncio.run(import_log(tmp_path / "c", iter([event, deep().encode() + b"\n"])))
    assert asyncio.run(import_log(tmp_path / "d", iter([event]))) == 1
