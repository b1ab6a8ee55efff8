"""Access that changes while sockets are open (issue 12, items 5, 6, 11, 12): membership removal,
token revocation and expiry, the socket's Host and Origin checks, tokens kept out of logs, users
added by another process, and clients that stop reading. All against a real server."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import websockets

from masklog.server.accounts import DEFAULT_TOKEN_LIFETIME_S, token_id
from masklog.server.redact import REDACTED, RedactTokens, redact
from masklog.server.sqlite_accounts import SQLiteAccounts
from tests.server.live import Client, LiveServer, seed, start_server
from tests.server.rest import fresh, new_object

ROOT = Path(__file__).resolve().parents[2]


def masklog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "masklog.server.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def ctx_of(live: LiveServer):  # type: ignore[no-untyped-def]
    return live.server.config.app.state.ctx


async def wait_until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


# ---- membership ------------------------------------------------------------------------------------


async def test_a_removed_member_is_closed_with_4003_and_receives_nothing_more(live):
    alice, bob = Client(live, "alice"), Client(live, "bob")
    await alice.connect()
    await bob.connect()
    with live.http("admin") as admin:
        assert admin.delete("/api/projects/p1/members/alice").status_code == 200
        await alice.wait_for(lambda: alice.closed is not None)
        assert alice.closed[0] == 4003
        seen = len(alice.events)
        with live.http("bob") as http:
            new_object(http)
        await bob.wait_for(lambda: any(e["body"]["type"] == "object_created" for e in bob.events))
        assert len(alice.events) == seen
        # And she cannot come back.
        again = Client(live, "alice")
        welcome = await again.connect()
        assert welcome["type"] == "error" and welcome["code"] == "unknown_id"
    await bob.close()


async def test_a_lowered_role_keeps_reading_but_writes_nothing(live):
    alice, bob = Client(live, "alice"), Client(live, "bob")
    await alice.connect()
    await bob.connect()
    with live.http("admin") as admin:
        assert admin.put("/api/projects/p1/members/alice", json={"role": "viewer"}).status_code == 200
    refused = await alice.command({"type": "object_created", "object": fresh("o"), "media": "m1", "class_id": "box"})
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    accepted = await bob.command({"type": "object_created", "object": fresh("o"), "media": "m1", "class_id": "box"})
    assert accepted["type"] == "ack"
    await alice.wait_for(lambda: any(e["seq"] == accepted["seq"] for e in alice.events))
    assert alice.closed is None
    await alice.close()
    await bob.close()


# ---- tokens: revocation and expiry ------------------------------------------------------------------


async def test_revoking_a_users_tokens_over_rest_closes_their_sockets_and_refuses_them(live):
    alice = Client(live, "alice")
    await alice.connect()
    with live.http("alice") as as_alice:
        assert as_alice.delete("/api/users/bob/tokens").status_code == 403
    with live.http("admin") as admin:
        [listed] = admin.get("/api/users/alice/tokens").json()["tokens"]
        assert listed["id"] == token_id(live.tokens["alice"]) and listed["revoked"] is None
        assert listed["expires"] == pytest.approx(time.time() + DEFAULT_TOKEN_LIFETIME_S, abs=600)
        assert admin.delete("/api/users/nobody/tokens").status_code == 404
        done = admin.delete("/api/users/alice/tokens")
        assert done.status_code == 200 and done.json()["revoked"] == [listed["id"]]
        await alice.wait_for(lambda: alice.closed is not None)
        assert alice.closed[0] == 4001
        assert admin.get("/api/users/alice/tokens").json()["tokens"][0]["revoked"] is not None
    with live.http("alice") as as_alice:
        assert as_alice.get("/api/projects").status_code == 401
    welcome = await Client(live, "alice").connect()
    assert welcome["type"] == "error" and welcome["code"] == "unauthorized"


def test_one_token_is_revoked_by_its_id_and_the_others_keep_working(live):
    made = masklog("user", "add", "bob", "--role", "annotator", "--data", str(live.settings.data))
    assert made.returncode == 0, made.stderr
    second = made.stdout.strip()
    with live.http("admin") as admin:
        assert admin.delete(f"/api/users/bob/tokens/{live.tokens['bob']}").status_code == 422  # ids only: no token in a URL
        assert admin.delete(f"/api/users/bob/tokens/{token_id(second)}").json()["revoked"] == [token_id(second)]
        assert admin.delete(f"/api/users/bob/tokens/{token_id(second)}").status_code == 404
    with live.http("bob") as bob:
        assert bob.get("/api/me").status_code == 200
    with live.http() as anyone:
        assert anyone.get("/api/me", headers={"Authorization": f"Bearer {second}"}).status_code == 401


async def test_masklog_user_revoke_while_the_server_runs_ends_rest_and_open_sockets(live):
    alice = Client(live, "alice")
    await alice.connect()
    done = await asyncio.to_thread(masklog, "user", "revoke", "alice", "--data", str(live.settings.data))
    assert done.returncode == 0 and "revoked 1 token" in done.stdout, done.stderr
    with live.http("alice") as as_alice:
        assert as_alice.get("/api/projects").status_code == 401
    await alice.wait_for(lambda: alice.closed is not None, timeout=20)
    assert alice.closed[0] == 4001
    unknown = await asyncio.to_thread(masklog, "user", "revoke", "alice", "--token", "0123456789ab", "--data", str(live.settings.data))
    assert unknown.returncode == 2 and "no live token" in unknown.stderr


async def test_an_expired_token_is_refused_and_its_socket_closed(live):
    alice = Client(live, "alice")
    await alice.connect()
    with sqlite3.connect(live.settings.accounts_database) as db:
        db.execute("UPDATE tokens SET expires = ? WHERE name = 'alice'", (time.time() - 1,))
    with live.http("alice") as as_alice:
        assert as_alice.get("/api/me").status_code == 401
    await alice.wait_for(lambda: alice.closed is not None, timeout=20)
    assert alice.closed[0] == 4001


def test_user_add_expires_sets_the_tokens_lifetime(tmp_path):
    done = masklog("user", "add", "carol", "--expires", "2", "--data", str(tmp_path))
    forever = masklog("user", "add", "carol", "--expires", "0", "--data", str(tmp_path))
    assert done.returncode == 0 and forever.returncode == 0, done.stderr + forever.stderr
    with sqlite3.connect(tmp_path / "accounts.sqlite3") as db:
        expires = dict(db.execute("SELECT substr(hash, 1, 12), expires FROM tokens"))
    assert expires[token_id(done.stdout.strip())] == pytest.approx(time.time() + 2 * 86400, abs=600)
    assert expires[token_id(forever.stdout.strip())] is None
    listed = masklog("user", "tokens", "carol", "--data", str(tmp_path))
    assert listed.returncode == 0 and token_id(done.stdout.strip()) in listed.stdout


async def test_an_accounts_file_of_the_old_schema_is_migrated(tmp_path):
    path = tmp_path / "accounts.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL);
            CREATE TABLE tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL REFERENCES users(name));
            CREATE TABLE members (project TEXT NOT NULL, name TEXT NOT NULL REFERENCES users(name), role TEXT NOT NULL, PRIMARY KEY (project, name));
            INSERT INTO users VALUES ('old', 'annotator');
            INSERT INTO members VALUES ('p1', 'old', 'viewer');
            """
        )
        import hashlib

        db.execute("INSERT INTO tokens VALUES (?, 'old')", (hashlib.sha256(b"old-token").hexdigest(),))
    accounts = await SQLiteAccounts.open(path)
    try:
        credential = await accounts.credential("old-token")
        assert credential is not None and credential.user.name == "old"
        assert credential.expires == pytest.approx(time.time() + DEFAULT_TOKEN_LIFETIME_S, abs=600)
        assert accounts.members("p1") == {"old": "viewer"}
        assert await accounts.revoke("old") == [token_id("old-token")]
        assert await accounts.credential("old-token") is None
    finally:
        await accounts.close()
    reopened = await SQLiteAccounts.open(path)  # a second open migrates nothing more
    await reopened.close()


# ---- a user added by another process -------------------------------------------------------------


def test_a_user_added_while_the_server_runs_can_be_made_a_member_at_once(live):
    done = masklog("user", "add", "carol", "--role", "annotator", "--data", str(live.settings.data))
    assert done.returncode == 0, done.stderr
    carol = done.stdout.strip()
    with live.http("admin") as admin:
        added = admin.put("/api/projects/p1/members/carol", json={"role": "annotator"})
        assert added.status_code == 200, added.text
        assert admin.put("/api/projects/p1/members/nobody", json={"role": "viewer"}).status_code == 422
    with live.http() as http:
        projects = http.get("/api/projects", headers={"Authorization": f"Bearer {carol}"}).json()
    assert [p["id"] for p in projects] == ["p1"]


# ---- Host and Origin ----------------------------------------------------------------------------------


def _connect(live: LiveServer, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """A socket to the test server whose Host (from the URL) and Origin are the given ones."""
    host = headers.get("Host", f"127.0.0.1:{live.port}")
    return websockets.connect(f"ws://{host}/api/media/m1/ws", host="127.0.0.1", port=live.port, origin=headers.get("Origin"))


async def _handshake(live: LiveServer, headers: dict[str, str]) -> tuple[int | None, str]:
    """Connect with these headers and say hello; (close code, first message type)."""
    async with _connect(live, headers) as ws:
        try:
            await ws.send(json.dumps({"type": "hello", "token": live.tokens["alice"], "last_seq": None, "frame": 0}))
            first = json.loads(await ws.recv())
            return None, first["type"]
        except websockets.ConnectionClosed:
            return ws.close_code, ""


async def _refused_before_hello(live: LiveServer, headers: dict[str, str]) -> int | None:
    """The close code of a socket the server closes on opening."""
    async with _connect(live, headers) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code


async def test_dns_rebinding_and_foreign_or_https_origins_are_refused_with_4003(live):
    own = f"127.0.0.1:{live.port}"
    # Host and Origin both the attacker's name: DNS rebinding.
    assert await _refused_before_hello(live, {"Host": f"evil.example:{live.port}", "Origin": f"http://evil.example:{live.port}"}) == 4003
    assert await _refused_before_hello(live, {"Origin": "http://evil.example"}) == 4003
    assert await _refused_before_hello(live, {"Origin": f"https://{own}"}) == 4003  # this server speaks no TLS
    assert await _refused_before_hello(live, {"Host": "evil.example"}) == 4003  # a program, but the wrong Host
    # This server, by any of its loopback names; and programs without an Origin.
    assert await _handshake(live, {"Origin": f"http://{own}"}) == (None, "welcome")
    assert await _handshake(live, {"Host": f"localhost:{live.port}", "Origin": f"http://localhost:{live.port}"}) == (None, "welcome")
    assert await _handshake(live, {}) == (None, "welcome")


async def test_configured_public_origins_are_accepted(tmp_path):
    live = start_server(tmp_path / "data", public_origins=("https://labels.example",))
    try:
        await asyncio.to_thread(seed, live)
        assert await _handshake(live, {"Host": "labels.example", "Origin": "https://labels.example"}) == (None, "welcome")
        assert await _refused_before_hello(live, {"Host": "labels.example", "Origin": "http://labels.example"}) == 4003
        assert await _refused_before_hello(live, {"Host": "other.example", "Origin": "https://labels.example"}) == 4003
    finally:
        live.stop()


# ---- tokens out of logs -------------------------------------------------------------------------------


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_the_access_log_never_shows_a_token(live):
    from uvicorn.logging import AccessFormatter

    access = logging.getLogger("uvicorn.access")
    handler = Collect()
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        token = live.tokens["alice"]
        with live.http() as http:
            assert http.get(f"/api/media/m1/frames/0?token={token}").status_code == 200  # an old client
            http.get(f"/api/me?frame=1&token={token}&x=2")
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    assert any("/api/media/m1/frames/0?token=" + REDACTED in line for line in handler.lines), handler.lines
    assert not any(token in line for line in handler.lines)


def test_masklogs_own_log_lines_are_redacted():
    record = logging.LogRecord("masklog.ws", logging.ERROR, __file__, 1, "request %s with %s", ("/x?token=abc-DEF_1", "Authorization: Bearer abc-DEF_1"), None)
    assert RedactTokens().filter(record)
    assert "abc-DEF_1" not in record.getMessage() and record.getMessage().count(REDACTED) == 2
    assert redact("/api/x?a=1&token=s3cret#frag") == f"/api/x?a=1&token={REDACTED}#frag"


# ---- clients that stop reading ------------------------------------------------------------------------


def _frame(text: str) -> bytes:
    """A masked websocket text frame (what a client must send)."""
    payload = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _stalled_client(live: LiveServer, media: str = "m1") -> socket.socket:
    """A real socket that says hello and then never reads: tiny receive buffer, nothing read
    past the handshake's answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", live.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /api/media/{media}/ws HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)  # byte by byte: nothing after the handshake is taken
    assert answer.startswith(b"HTTP/1.1 101"), answer
    sock.sendall(_frame(json.dumps({"type": "hello", "token": live.tokens["alice"], "last_seq": None, "frame": 0})))
    return sock


def _polygon(points: int, shift: float) -> dict:
    """A simple polygon: `points` corners on a circle (a large event, so buffers fill)."""
    ring = []
    for i in range(points):
        angle = 2 * math.pi * i / points
        ring += [round(32 + 18 * math.cos(angle) + shift % 3, 3), round(24 + 18 * math.sin(angle), 3)]
    return {"type": "polygon", "parts": [{"outer": ring}]}


async def test_a_client_that_stops_reading_is_closed_after_the_send_timeout(tmp_path):
    live = start_server(tmp_path / "data", send_timeout_s=0.5, client_queue=1_000_000, commands_per_second=1e6, command_burst=1_000_000)
    try:
        await asyncio.to_thread(seed, live)
        sessions = ctx_of(live).sessions
        stalled = await asyncio.to_thread(_stalled_client, live)
        await wait_until(lambda: len(sessions) == 1)
        # A reader that keeps reading is not affected.
        reader = Client(live, "bob")
        await reader.connect()

        def publish() -> int:
            with live.http("alice") as http:
                obj = new_object(http, class_id="poly")
                for n in range(4000):
                    if len(sessions) == 1:  # only the reader left
                        return n
                    body = {"type": "label_saved", "object": obj, "frame": n % 20, "shape": _polygon(400, n), "source": "manual"}
                    http.post("/api/media/m1/commands", json={"id": str(uuid.uuid4()), "body": body}).raise_for_status()
            return -1

        published = await asyncio.to_thread(publish)
        assert published > 0, "the stalled socket was never closed"
        assert reader.closed is None
        await reader.wait_for(lambda: sum(e["body"]["type"] == "label_saved" for e in reader.events) >= published)

        def drain() -> None:
            """Read what is left until the server's end is gone (EOF or reset; a timeout here
            raises and fails the test)."""
            stalled.settimeout(60)
            try:
                while stalled.recv(65536):
                    pass
            except ConnectionResetError:
                pass

        await asyncio.to_thread(drain)
        stalled.close()
        await reader.close()
    finally:
        live.stop()
