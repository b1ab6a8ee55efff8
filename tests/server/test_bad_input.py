"""Bad input, hand-picked and generated, through REST and the socket.

Whatever a client sends, the server answers with an error that has a code and a readable message,
appends nothing, writes no file (least of all outside `media/<id>`), and keeps serving: the
socket that sent it stays usable, unless a message is far over the limit, which closes it (1009).

One server with small limits serves the whole module (hypothesis runs many examples against
it; a function-scoped fixture would not be reset between them anyway).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect as sync_connect

from tests.server.live import Client, LiveServer, seeded_server, write_image, write_video
from tests.server.rest import MULTIPART, bbox, command, fresh, head, multipart, new_object, post_command, save_box

MESSAGE_LIMIT = 2048  # uvicorn drops socket messages over twice this (live.py)
REQUEST_LIMIT = 4096
UPLOAD_LIMIT = 64 * 1024
TARGET = "target"  # an object of m1 with a label on frame 0, made by alice


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    with seeded_server(
        tmp_path_factory.mktemp("bad-input"),
        max_message_bytes=MESSAGE_LIMIT,
        max_request_bytes=REQUEST_LIMIT,
        max_upload_bytes=UPLOAD_LIMIT,
        max_running_tracks=10_000,  # generated track requests stay running (no models here)
        command_burst=10_000,  # generated commands come faster than anyone works
    ) as live:
        with live.http("alice") as alice:
            command(alice, {"type": "object_created", "object": TARGET, "media": "m1", "class_id": "box"})
            save_box(alice, TARGET, 0)
        yield live


@pytest.fixture(scope="module")
def http(server) -> dict[str, httpx.Client]:
    clients = {user: server.http(user) for user in ("admin", "alice", "bob")}
    yield clients
    for client in clients.values():
        client.close()


def files_under(root: Path) -> set[Path]:
    """Every file below `root`, except the databases (their journals change on every read)."""
    return {p for p in root.rglob("*") if p.is_file() and not p.name.startswith(("events.sqlite3", "accounts.sqlite3"))}


@contextlib.contextmanager
def refused(live: LiveServer, http: dict[str, httpx.Client]) -> Iterator[None]:
    """Whatever happens inside appends no event and leaves no file behind (anywhere in the test's
    folder, which holds the data dir), and the server answers afterwards."""
    root = live.settings.data.parent
    before, files = head(http["admin"]), files_under(root)
    yield
    assert head(http["admin"]) == before, "nothing may be appended"
    assert files_under(root) == files, "no file may be written"


def error_of(response: httpx.Response) -> dict[str, str]:
    """The JSON error of a refused request, checked for shape."""
    assert response.headers["content-type"] == "application/json", response.text
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error


# ---- commands: the same mistakes through REST and the socket ----------------------------------------


def label(frame: Any = 1, shape: Any = None, **fields: Any) -> dict[str, Any]:
    return {"type": "label_saved", "object": TARGET, "frame": frame, "shape": shape or bbox(), "source": "manual", **fields}


def created(object_id: Any = None, **fields: Any) -> dict[str, Any]:
    return {"type": "object_created", "object": object_id if object_id is not None else fresh("obj"), "media": "m1", "class_id": "box", **fields}


# name: (command body, REST status, error code[, the media item whose route or socket it goes to]).
# Schema errors are `invalid_request` on REST and `invalid_message` on the socket; everything else
# has the same code on both.
BAD_COMMANDS: dict[str, tuple[Any, ...]] = {
    "not an object": ([], 422, "invalid_request"),
    "no kind": ({"object": TARGET}, 422, "invalid_request"),
    "unknown kind": ({"type": "teleport", "object": TARGET}, 422, "invalid_request"),
    "extra field": (label(colour="red"), 422, "invalid_request"),
    "frame as text": (label(frame="3"), 422, "invalid_request"),
    "object id as number": ({**label(), "object": 7}, 422, "invalid_request"),
    "negative frame": (label(frame=-1), 422, "invalid_request"),
    "frame past any video": (label(frame=10**12), 422, "invalid_request"),
    "frame past 64 bits": (label(frame=10**30), 422, "invalid_request"),
    "coordinate past the schema's bound": (label(shape=bbox(x=1e300)), 422, "invalid_request"),
    "shape of unknown kind": (label(shape={"type": "blob", "x": 1}), 422, "invalid_request"),
    "unknown object": ({**label(), "object": "nobody"}, 404, "unknown_id"),
    "unknown media": (created(media="nowhere"), 404, "unknown_id"),
    "unknown class": (created(class_id="no-such-class"), 404, "unknown_id"),
    "unknown track": ({"type": "track_cancelled", "track": str(uuid.uuid4())}, 404, "unknown_id"),
    "frame out of range": (label(frame=20), 422, "frame_out_of_range"),
    "delete a label that is not there": ({"type": "label_deleted", "object": TARGET, "frame": 19}, 404, "unknown_id"),
    "box outside the frame": (label(shape=bbox(x=500, y=500)), 422, "bad_geometry"),
    "click outside the frame": ({"type": "prompt_added", "object": TARGET, "frame": 0, "points": [{"x": 999, "y": 5}]}, 422, "bad_geometry"),
    "empty prompt": ({"type": "prompt_added", "object": TARGET, "frame": 0}, 422, "invalid"),
    "shape of another kind than the class": (label(shape={"type": "keypoint", "x": 3, "y": 3}), 422, "wrong_shape_kind"),
    "tracked label from a user": (label(source="tracked"), 403, "not_allowed"),
    "track a single image": ({"type": "track_requested", "media": "i1", "objects": ["x"], "start": 0, "direction": "forward"}, 422, "modality_refused", "i1"),
    "track an image group backwards": ({"type": "track_requested", "media": "g1", "objects": ["x"], "start": 2, "direction": "backward"}, 422, "modality_refused", "g1"),
    "nothing to undo": ({"type": "undo", "media": "g1"}, 422, "nothing_to_undo", "g1"),
    "track from a frame without label": ({"type": "track_requested", "media": "m1", "objects": [TARGET], "start": 5, "direction": "forward"}, 422, "invalid"),
    "object id already used": (created(TARGET), 409, "already_exists"),
    "path-like object id": (created("../../etc/passwd"), 422, "invalid_id"),
    "absolute object id": (created("/etc/passwd"), 422, "invalid_id"),
    "object id with a backslash": (created("..\\..\\boot.ini"), 422, "invalid_id"),
    "object id with NUL": (created("a\x00b"), 422, "invalid_id"),
    "object id too long": (created("a" * 65), 422, "invalid_request"),
    "empty object id": (created(""), 422, "invalid_request"),
}  # fmt: skip


@pytest.mark.parametrize("name", BAD_COMMANDS)
def test_bad_command_through_rest(server, http, name):
    body, status, code, media = (*BAD_COMMANDS[name], "m1")[:4]
    with refused(server, http):
        response = post_command(http["alice"], body, media)
        assert response.status_code == status, response.text
        assert error_of(response)["code"] == code


@pytest.mark.parametrize("name", BAD_COMMANDS)
async def test_bad_command_through_the_socket(server, http, name):
    body, _, code, media = (*BAD_COMMANDS[name], "m1")[:4]
    client = Client(server, "alice", media)
    await client.connect()
    try:
        with refused(server, http):
            command_id = str(uuid.uuid4())
            reply = await client.command(body, command_id)
            assert reply["type"] == "error" and reply["id"] == command_id, reply
            assert reply["code"] == {"invalid_request": "invalid_message"}.get(code, code)
            assert reply["message"]
        # The socket stays usable (on i1 and g1, with a command that is answered but changes
        # nothing, so "nothing to undo" stays true there).
        probe = created() if media == "m1" else {"type": "label_deleted", "object": "nobody", "frame": 0}
        assert (await client.command(probe))["type"] == ("ack" if media == "m1" else "error")
    finally:
        await client.close()


# ---- malformed requests and messages ----------------------------------------------------------------

RAW_REST: dict[str, tuple[bytes, int, str]] = {
    "not JSON": (b"{not json", 400, "malformed_json"),
    "empty body": (b"", 400, "malformed_json"),
    "truncated JSON": (b'{"id": "', 400, "malformed_json"),
    "not UTF-8": (b'{"id": "%s", "body": {"type": "object_created", "object": "\xff\xfe", "media": "m1", "class_id": "box"}}' % str(uuid.uuid4()).encode(), 400, "malformed_json"),
    "NaN": (json.dumps({"id": str(uuid.uuid4()), "body": label(shape=bbox(x=float("nan")))}).encode(), 400, "malformed_json"),
    "a number past float": (json.dumps({"id": str(uuid.uuid4()), "body": label(score=1)}).replace('"score": 1', '"score": 1e400').encode(), 422, "invalid_request"),
    "JSON null": (b"null", 422, "invalid_request"),
    "id not a UUID": (json.dumps({"id": "42", "body": created()}).encode(), 422, "invalid_request"),
    "no body": (json.dumps({"id": str(uuid.uuid4())}).encode(), 422, "invalid_request"),
    "unknown envelope field": (json.dumps({"id": str(uuid.uuid4()), "body": created(), "priority": 1}).encode(), 422, "invalid_request"),
}


@pytest.mark.parametrize("name", RAW_REST)
def test_malformed_request(server, http, name):
    data, status, code = RAW_REST[name]
    with refused(server, http):
        response = http["alice"].post("/api/media/m1/commands", content=data, headers={"content-type": "application/json"})
        assert response.status_code == status, response.text
        assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    "path,status,code",
    [
        ("/api/media/m1/frames/20", 404, "frame_out_of_range"),
        ("/api/media/m1/frames/-1", 404, "frame_out_of_range"),
        ("/api/media/m1/frames/99999999999999999999999", 404, "frame_out_of_range"),
        ("/api/media/m1/frames/one", 422, "invalid_request"),
        ("/api/media/%2E%2E/frames/0", 404, "unknown_id"),
        ("/api/media/..%5C..%5Cetc/labels", 404, "unknown_id"),
        (f"/api/media/m1/cells/{TARGET}/20", 404, "frame_out_of_range"),
        ("/api/media/m1/cells/%2E%2E/0", 404, "unknown_id"),
        ("/api/media/m1/labels?frame=x", 422, "invalid_request"),
        ("/api/media/m1/labels?frame=-1", 422, "invalid_request"),
        ("/api/media/m1/labels?frame=20", 404, "frame_out_of_range"),
        ("/api/media/m1/labels?seq=soon", 422, "invalid_request"),
        ("/api/media/m1/history?limit=0", 422, "invalid_request"),
        ("/api/media/m1/history?after=-5", 422, "invalid_request"),
        ("/api/media/m1/audit?by=mood", 422, "invalid_request"),
        ("/api/projects/%2E%2E", 404, "unknown_id"),
    ],
)
def test_bad_query(server, http, path, status, code):
    with refused(server, http):
        response = http["alice"].get(path)
        assert response.status_code == status, response.text
        assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    "path,body,status,code",
    [
        ("/api/projects", {"id": "../../etc", "name": "x"}, 422, "invalid_id"),
        ("/api/projects", {"id": "a\x00b", "name": "x"}, 422, "invalid_id"),
        ("/api/projects", {"id": "p1", "name": "again"}, 409, "already_exists"),
        ("/api/projects", {"id": "p9"}, 422, "invalid_request"),
        ("/api/projects/p1/classes", {"id": "c/../x", "name": "c", "shape": "bbox", "color": "#000000"}, 422, "invalid_id"),
        ("/api/projects/p1/classes", {"id": "c9", "name": "c", "shape": "bbox", "color": "red"}, 422, "invalid_request"),
        ("/api/projects/p1/classes", {"id": "c9", "name": "c", "shape": "hexagon", "color": "#000000"}, 422, "invalid_request"),
        ("/api/projects/p1/classes", {"id": "c9", "name": "c", "shape": "skeleton", "color": "#000000"}, 422, "invalid"),
        ("/api/projects/p1/classes", {"id": "box", "name": "c", "shape": "bbox", "color": "#000000"}, 409, "already_exists"),
    ],
)
def test_bad_project_and_class(server, http, path, body, status, code):
    with refused(server, http):
        response = http["admin"].post(path, json=body)
        assert response.status_code == status, response.text
        assert error_of(response)["code"] == code


@pytest.mark.parametrize("role", ["bob", "nobody"])
def test_bad_membership(server, http, role):
    response = http["admin"].put(f"/api/projects/p1/members/{role}", json={"role": "owner" if role == "bob" else "viewer"})
    assert response.status_code == 422 and error_of(response)["code"] == "invalid_request"
    assert http["admin"].get("/api/projects/p1/members").json()["bob"] == "annotator"


def test_request_body_over_the_limit(server, http):
    big = json.dumps({"id": str(uuid.uuid4()), "body": created(), "pad": "x" * REQUEST_LIMIT}).encode()
    with refused(server, http):
        response = http["alice"].post("/api/media/m1/commands", content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413 and error_of(response)["code"] == "too_large"
        # Without Content-Length (chunked), the body is cut off while it is read.
        response = http["alice"].post("/api/media/m1/commands", content=iter([big[:1000], big[1000:]]))
        assert response.status_code == 413 and error_of(response)["code"] == "too_large"


# What the socket says to each malformed message; the socket stays open after every one.
RAW_SOCKET: dict[str, tuple[str | bytes, str]] = {
    "not JSON": ("{not json", "malformed_message"),
    "binary garbage": (b"\xff\xfe\x00\x01", "malformed_message"),
    "a number": ("42", "invalid_message"),
    "a list": ("[1, 2]", "invalid_message"),
    "no type": ("{}", "invalid_message"),
    "unknown type": ('{"type": "teleport"}', "invalid_message"),
    "second hello": ('{"type": "hello", "token": "x"}', "unexpected_message"),
    "presence with a negative frame": ('{"type": "presence", "frame": -3}', "invalid_message"),
    "presence with a cursor of text": ('{"type": "presence", "frame": 1, "cursor": "here"}', "invalid_message"),
    "command with an id that is no UUID": (json.dumps({"type": "command", "id": "7", "body": created()}), "invalid_message"),
    "command without body": (json.dumps({"type": "command", "id": str(uuid.uuid4())}), "invalid_message"),
}


@pytest.mark.parametrize("name", RAW_SOCKET)
async def test_malformed_socket_message(server, http, name):
    data, code = RAW_SOCKET[name]
    client = Client(server, "alice")
    await client.connect()
    try:
        with refused(server, http):
            await client.send_raw(data)
            await client.wait_for(lambda: client.errors or client.closed)
            assert client.closed is None
            [error] = client.errors
            assert error["code"] == code and error["message"]
        assert (await client.command(created()))["type"] == "ack", "the socket stays usable"
    finally:
        await client.close()


async def test_binary_message_with_a_string_that_is_not_utf8(server, http):
    client = Client(server, "alice")
    await client.connect()
    try:
        with refused(server, http):
            await client.send_raw(b'{"type": "command", "id": "%s", "body": {"type": "object_created", "object": "\xff", "media": "m1", "class_id": "box"}}' % str(uuid.uuid4()).encode())
            await client.wait_for(lambda: client.errors or client.closed)
            assert client.closed is None and client.errors[0]["code"] == "malformed_message"
    finally:
        await client.close()


async def test_socket_message_over_the_limit(server, http):
    client = Client(server, "alice")
    await client.connect()
    try:
        padding = "x" * (MESSAGE_LIMIT + 500)  # over the limit, under twice the limit
        with refused(server, http):
            await client.send_raw(json.dumps({"type": "command", "id": str(uuid.uuid4()), "body": created(), "pad": padding}))
            await client.send_raw(padding.encode())  # binary frames count the same
            await client.wait_for(lambda: len(client.errors) == 2 or client.closed)
            assert [e["code"] for e in client.errors] == ["message_too_large"] * 2 and client.closed is None
        assert (await client.command(created()))["type"] == "ack", "the socket stays usable"
        # Far over: the server does not even read it; it closes the socket.
        with refused(server, http):
            await client.send_raw("x" * (4 * MESSAGE_LIMIT))
            await client.wait_for(lambda: client.closed is not None)
        assert client.closed[0] == 1009
    finally:
        await client.close()
    # Other sockets never noticed.
    other = Client(server, "alice")
    assert (await other.connect())["type"] == "welcome"
    assert (await other.command(created()))["type"] == "ack"
    await other.close()


# ---- uploads ----------------------------------------------------------------------------------------------





def send_upload(http: httpx.Client, media_id: str, kind: str, files: list[tuple[str, bytes]], project: str = "p1") -> httpx.Response:
    return http.post(
        f"/api/projects/{project}/media",
        content=multipart({"id": media_id, "name": "upload", "kind": kind}, files),
        headers={"content-type": MULTIPART},
    )


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, bytes]:
    """Upload contents: a good video, a streaming MP4 (frame table first) whole and cut short,
    and images of two sizes."""
    folder = tmp_path_factory.mktemp("samples")
    streaming = folder / "streaming.mp4"
    with av.open(str(streaming), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 10, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    whole = streaming.read_bytes()
    return {
        "video": write_video(folder / "clip.mp4").read_bytes(),
        "streaming": whole,
        "streaming cut short": whole[: len(whole) * 7 // 10],
        "image": write_image(folder / "a.png").read_bytes(),
        "other size": write_image(folder / "b.png", size=(32, 32)).read_bytes(),
        "too wide": cv2.imencode(".png", np.zeros((1, 70_000, 3), np.uint8))[1].tobytes(),
    }


# name: (kind, files as (name, sample or raw bytes), status, code)
BAD_UPLOADS: dict[str, tuple[str, list[tuple[str, str | bytes]], int, str]] = {
    "random bytes as a video": ("video", [("clip.mp4", bytes(range(256)) * 8)], 422, "invalid_media"),
    "a video cut short (frame table at the end)": ("video", [("clip.mp4", "video cut")], 422, "invalid_media"),
    "a video cut short (frame table first)": ("video", [("clip.mp4", "streaming cut short")], 422, "invalid_media"),
    "text as an image": ("image", [("photo.png", b"this is not a picture\n" * 10)], 422, "invalid_media"),
    "a video as an image": ("image", [("photo.png", "video")], 422, "invalid_media"),
    "images of two sizes in a group": ("image_group", [("a.png", "image"), ("b.png", "other size")], 422, "invalid_media"),
    "an image wider than the log can hold": ("image", [("wide.png", "too wide")], 422, "invalid_media"),
    # The content decides, not the name (an image named notes.txt is an image): these are refused for what they hold.
    "text with a text file's name": ("image", [("notes.txt", b"plain text notes\n" * 10)], 422, "invalid_media"),
    "an image without a file type as a video": ("video", [("clip", "image")], 422, "invalid_media"),
    "two files as one video": ("video", [("a.mp4", "video"), ("b.mp4", "video")], 422, "invalid_media"),
    "two files as one image": ("image", [("a.png", "image"), ("b.png", "image")], 422, "invalid_media"),
    "no file": ("image", [], 422, "invalid_media"),
    "an image as a DICOM series": ("dicom_series", [("a.png", "image")], 422, "invalid_media"),
    "an unknown kind": ("hologram", [("a.png", "image")], 422, "invalid_request"),
    "path up and out": ("video", [("../../etc/passwd.mp4", "video")], 422, "invalid_file_name"),
    "path up and out, Windows style": ("video", [("..\\..\\etc\\passwd.mp4", "video")], 422, "invalid_file_name"),
    "path up from inside a folder": ("video", [("shots/../../../passwd.mp4", "video")], 422, "invalid_file_name"),
    "absolute path": ("video", [("/etc/passwd.mp4", "video")], 422, "invalid_file_name"),
    "drive path": ("image", [("C:/Windows/evil.png", "image")], 422, "invalid_file_name"),
    "NUL in the name": ("image", [("a.png\x00.mp4", "image")], 422, "invalid_file_name"),
    "control character in the name": ("image", [("a\tb.png", "image")], 422, "invalid_file_name"),
}  # fmt: skip


def _content(samples: dict[str, bytes], value: str | bytes) -> bytes:
    if value == "video cut":
        return samples["video"][: len(samples["video"]) // 2]
    return samples[value] if isinstance(value, str) else value


@pytest.mark.parametrize("name", BAD_UPLOADS)
def test_bad_upload(server, http, samples, name):
    kind, files, status, code = BAD_UPLOADS[name]
    media_id = fresh("up")
    with refused(server, http):
        response = send_upload(http["admin"], media_id, kind, [(n, _content(samples, v)) for n, v in files])
        assert response.status_code == status, response.text
        assert error_of(response)["code"] == code
    assert not (server.settings.media_dir / media_id).exists()
    assert not Path("/etc/passwd.mp4").exists()
    assert http["admin"].get(f"/api/media/{media_id}").status_code == 404


@pytest.mark.parametrize("media_id", ["../../evil", "/abs", "..", "a/b", "a\\b", "a\x00b", ".hidden", "x" * 65, ""])
def test_path_like_media_id(server, http, samples, media_id):
    with refused(server, http):
        response = send_upload(http["admin"], media_id, "image", [("a.png", samples["image"])])
        assert response.status_code == 422, response.text
        assert error_of(response)["code"] == ("invalid_request" if len(media_id) in (0, 65) else "invalid_id")


def test_upload_of_an_existing_id(server, http, samples):
    with refused(server, http):
        response = send_upload(http["admin"], "m1", "image", [("a.png", samples["image"])])
        assert response.status_code == 409 and error_of(response)["code"] == "already_exists"
        # Media ids are global: another project's id is taken too.
        response = send_upload(http["admin"], "m2", "image", [("a.png", samples["image"])])
        assert response.status_code == 409


def test_malformed_multipart(server, http):
    with refused(server, http):
        no_boundary = http["admin"].post("/api/projects/p1/media", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
        assert no_boundary.status_code == 400 and error_of(no_boundary)["code"] == "malformed_upload"
        not_a_form = http["admin"].post("/api/projects/p1/media", json={"id": "j1", "name": "j", "kind": "image"})
        assert not_a_form.status_code == 422 and error_of(not_a_form)["code"] == "invalid_request"


def test_upload_over_the_limit(server, http):
    body = multipart({"id": fresh("big"), "name": "big", "kind": "video"}, [("big.mp4", b"\x00" * (UPLOAD_LIMIT + 1))])
    headers = {"content-type": MULTIPART}
    with refused(server, http):
        response = http["admin"].post("/api/projects/p1/media", content=body, headers=headers)
        assert response.status_code == 413 and error_of(response)["code"] == "too_large"
        chunks = [body[i : i + 8192] for i in range(0, len(body), 8192)]
        response = http["admin"].post("/api/projects/p1/media", content=iter(chunks), headers=headers)
        assert response.status_code == 413 and error_of(response)["code"] == "too_large"


def test_good_uploads_write_only_under_their_media_folder(server, http, samples):
    """The accepted counterparts of the refused uploads above: a streaming MP4, and a group whose
    file names carry a folder (as a folder upload may send them)."""
    root = server.settings.data.parent
    before = files_under(root)
    video, group = fresh("vid"), fresh("grp")
    response = send_upload(http["admin"], video, "video", [("clip.mp4", samples["streaming"])])
    assert response.status_code == 201, response.text
    assert response.json()["media"]["frames"] == 20
    # A Windows path with a drive reaches the server as its last part (the multipart parser
    # strips it), so it is an ordinary name by then.
    names = ["shots/b.png", "shots\\a.png", "C:\\Users\\me\\c.png"]
    response = send_upload(http["admin"], group, "image_group", [(name, samples["image"]) for name in names])
    assert response.status_code == 201, response.text
    media = server.settings.media_dir
    assert files_under(root) - before == {media / video / "video.mp4", *(media / group / f"00000{i}.png" for i in range(3))}
    assert not any((media / ".staging").iterdir())


# ---- generated input ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)

TEMPLATES = [
    label(),
    created(),
    {"type": "prompt_added", "object": TARGET, "frame": 0, "points": [{"x": 3, "y": 4, "include": False}], "box": {"x0": 1, "y0": 1, "x1": 9, "y1": 9}},
    {"type": "label_deleted", "object": TARGET, "frame": 0},
    {"type": "track_requested", "media": "m1", "objects": [TARGET], "start": 0, "direction": "forward", "range": 3},
    {"type": "object_reclassed", "object": TARGET, "class_id": "box"},
    {"type": "object_renamed", "object": TARGET, "name": "a name"},
    {"type": "undo", "media": "m1"},
    {"type": "save_segment", "prompt": "5f0c3a52-7a0e-4c1e-9d7b-2b8f6c1d9e01"},
    {"type": "track_requested", "media": "m1", "objects": [TARGET], "start": 0, "direction": "forward", "range": 3, "replaces": "5f0c3a52-7a0e-4c1e-9d7b-2b8f6c1d9e01"},
]


# Values that fit some field somewhere, so mutations also reach the domain rules, not just the schema.
near_misses = st.sampled_from([TARGET, "m1", "g1", "i1", "m2", "box", "poly", "box2", "nobody", 0, 1, 19, 20, -1, True, bbox(), bbox(x=70)])


@st.composite
def mutated_commands(draw) -> Any:
    """A valid command with one field replaced, dropped or added, or anything at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    body = dict(draw(st.sampled_from(TEMPLATES)))
    key = draw(st.sampled_from(sorted(body)))
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "replace":
        body[key] = draw(near_misses | json_values)
    elif action == "drop":
        del body[key]
    else:
        body[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    return body


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(body=mutated_commands())
def test_generated_commands_through_rest(server, http, body):
    before = head(http["admin"])
    response = post_command(http["alice"], body)
    event(f"status {response.status_code}")
    assert response.status_code in (201, 400, 403, 404, 409, 422), response.text
    if response.status_code == 201:
        assert head(http["admin"]) == before + 1
    else:
        error_of(response)
        assert head(http["admin"]) == before


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_generated_request_bodies(server, http, data):
    before = head(http["admin"])
    response = http["alice"].post("/api/media/m1/commands", content=data, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    error_of(response)
    assert head(http["admin"]) == before


@pytest.fixture(scope="module")
def socket(server) -> Iterator[Any]:
    """One socket for every generated message: it must survive all of them."""
    with sync_connect(server.ws_url("m1"), max_size=None) as ws:
        ws.send(json.dumps({"type": "hello", "token": server.tokens["alice"], "last_seq": 0}))
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        yield ws


def _socket_messages() -> st.SearchStrategy[str | bytes]:
    as_command = mutated_commands().map(lambda body: json.dumps({"type": "command", "id": str(uuid.uuid4()), "body": body}))
    anything = json_values.map(json.dumps)
    return as_command | anything | st.binary(max_size=100)


@FUZZ
@given(message=_socket_messages())
def test_generated_socket_messages(server, http, socket, message):
    before = head(http["admin"])
    socket.send(message)
    # A ping after it: every answer to the message itself comes first, except a command's reply,
    # which may come later (commands commit concurrently); wait for that one by its id.
    socket.send('{"type": "ping"}')
    parsed = _json_or_none(message)
    pending = str(uuid.UUID(parsed["id"])) if isinstance(parsed, dict) and parsed.get("type") == "command" and _is_uuid(parsed.get("id")) else None
    ponged, acked = False, False
    while not ponged or pending:
        reply = json.loads(socket.recv(timeout=10))
        assert reply["type"] in ("error", "ack", "pong", "events", "presence", "snapshot"), reply
        if reply["type"] == "error":
            assert reply["code"] and reply["message"]
        if reply["type"] == "pong":
            ponged = True
        if reply["type"] in ("ack", "error") and reply.get("id") == pending:
            acked, pending = reply["type"] == "ack", None
    assert head(http["admin"]) == before + (1 if acked else 0)


def _json_or_none(message: str | bytes) -> Any:
    try:
        return json.loads(message)
    except ValueError:
        return None


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
        return True
    except (TypeError, ValueError, AttributeError):
        return False


# ---- and after all of it ------------------------------------------------------------------------------


async def test_the_server_still_serves(server, http):
    object_id = new_object(http["alice"])
    assert save_box(http["alice"], object_id, 3)["seq"] == head(http["admin"])
    client = Client(server, "bob")
    assert (await client.connect())["type"] == "welcome"
    assert (await client.command(label(frame=4)))["type"] == "ack"
    await client.close()
    frame = cv2.imdecode(np.frombuffer(http["alice"].get("/api/media/m1/frames/0").content, np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (48, 64, 3)
