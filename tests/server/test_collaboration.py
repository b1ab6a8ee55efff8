"""Two annotators on one video, through a real server and real sockets (C1, C2, C5)."""

import asyncio
import random
import socket
import uuid

import pytest

from tests.server.live import Client, seeded_server


def box(x=1, y=1, w=5, h=5):
    return {"type": "bbox", "x": x, "y": y, "w": w, "h": h}


async def make_object(client: Client, object_id: str, class_id: str = "box") -> None:
    reply = await client.command({"type": "object_created", "object": object_id, "media": "m1", "class_id": class_id})
    assert reply["type"] == "ack", reply


async def save(client: Client, object_id: str, frame: int, shape=None) -> dict:
    return await client.command({"type": "label_saved", "object": object_id, "frame": frame, "shape": shape or box(), "source": "manual"})


def labels_of(client: Client) -> dict:
    """The client's view of the labels: its snapshot plus the events it saw, folded simply."""
    labels = {(e["object"], e["frame"]): e["label"]["written_by"] for e in client.snapshot["labels"]}
    for event in client.events:
        body = event["body"]
        if body["type"] == "label_saved":
            labels[(body["object"], body["frame"])] = event["id"]
        elif body["type"] == "label_deleted":
            labels.pop((body["object"], body["frame"]), None)
        elif body["type"] in ("undone", "redone"):
            for change in body["changes"]:
                if change["type"] == "label":
                    key = (change["object"], change["frame"])
                    if change["after"] is None:
                        labels.pop(key, None)
                    else:
                        labels[key] = change["after"]["written_by"]
    return labels


async def test_two_annotators_see_each_other_live(live):
    alice, bob = Client(live, "alice"), Client(live, "bob")
    assert (await alice.connect())["type"] == "welcome"
    await bob.connect(frame=3)
    await alice.wait_for(lambda: alice.presence and {u["user"] for u in alice.presence[-1]["users"]} == {"alice", "bob"})
    assert {(u["user"], u["frame"]) for u in alice.presence[-1]["users"]} == {("alice", 0), ("bob", 3)}

    await make_object(alice, "car")
    ack = await save(alice, "car", 2)
    await bob.wait_for(lambda: any(e["seq"] == ack["seq"] for e in bob.events))
    saved = next(e for e in bob.events if e["seq"] == ack["seq"])
    assert saved["actor"] == "user:alice" and saved["body"]["frame"] == 2

    delete = await bob.command({"type": "label_deleted", "object": "car", "frame": 2})
    for client in (alice, bob):
        await client.wait_for(lambda c=client: any(e["seq"] == delete["seq"] for e in c.events))
    assert labels_of(alice) == labels_of(bob) == {}

    await bob.presence_update(7, (10.5, 20.0))
    await alice.wait_for(lambda: any(u["frame"] == 7 and u["cursor"] == [10.5, 20.0] for u in alice.presence[-1]["users"]))
    await bob.close()
    await alice.wait_for(lambda: [u["user"] for u in alice.presence[-1]["users"]] == ["alice"])
    await alice.close()


async def test_undo_by_one_never_touches_the_others_labels(live):
    alice, bob = Client(live, "alice"), Client(live, "bob")
    await alice.connect()
    await bob.connect()
    await make_object(alice, "a")
    await make_object(bob, "b")
    await save(alice, "a", 0)
    mine = await save(bob, "b", 0)
    shared = await save(alice, "a", 1)
    overwritten = await save(bob, "a", 1, box(x=9))  # Bob overwrites Alice's frame 1
    undo = await alice.command({"type": "undo", "media": "m1"})
    assert undo["type"] == "ack" and undo["redo"] == 1
    undo = await alice.command({"type": "undo", "media": "m1"})
    await bob.wait_for(lambda: bob.last_seq >= undo["seq"])
    state = labels_of(bob)
    assert ("a", 0) not in state  # Alice's own label went
    assert state[("b", 0)] == mine_id(bob, mine) and state[("a", 1)] == mine_id(bob, overwritten)
    del shared
    # Bob's undo is his own: it reverts his overwrite, back to Alice's value.
    await bob.command({"type": "undo", "media": "m1"})
    nothing = await alice.command({"type": "redo", "media": "m1"})
    assert nothing["type"] == "ack"
    await alice.close()
    await bob.close()


def mine_id(client: Client, ack: dict) -> str:
    return next(e["id"] for e in client.events if e["seq"] == ack["seq"])


async def test_a_retried_command_is_applied_once(live):
    alice = Client(live, "alice")
    await alice.connect()
    await make_object(alice, "a")
    command_id = str(uuid.uuid4())
    first = await alice.command({"type": "label_saved", "object": "a", "frame": 4, "shape": box(), "source": "manual"}, command_id)
    again = await alice.command({"type": "label_saved", "object": "a", "frame": 4, "shape": box(), "source": "manual"}, command_id)
    assert first["type"] == again["type"] == "ack"
    assert again["seq"] == first["seq"] and again["duplicate"] and not first["duplicate"]
    # Through REST too, and after a reconnect.
    with live.http("alice") as http:
        response = http.post("/api/media/m1/commands", json={"id": command_id, "body": {"type": "label_saved", "object": "a", "frame": 4, "shape": box(), "source": "manual"}})
        assert response.status_code == 200 and response.json()["seq"] == first["seq"]
        history = http.get("/api/media/m1/history").json()["events"]
    assert sum(1 for e in history if e["id"] == command_id) == 1
    # Someone else cannot claim the same id.
    bob = Client(live, "bob")
    await bob.connect()
    stolen = await bob.command({"type": "label_deleted", "object": "a", "frame": 4}, command_id)
    assert stolen["type"] == "error" and stolen["code"] == "already_exists"
    await alice.close()
    await bob.close()


@pytest.mark.parametrize("seed", [1234, 7, 2026])
async def test_resume_after_random_disconnects_has_no_gap_and_no_duplicate(live, seed):
    rng = random.Random(seed)
    writer, reader = Client(live, "alice"), Client(live, "bob")
    await writer.connect()
    await make_object(writer, "a")
    await reader.connect()
    first = reader.snapshot["seq"]
    received: list[dict] = []
    acked: list[int] = []

    async def write(count: int) -> None:
        for index in range(count):
            acked.append((await save(writer, "a", index % 20, box(x=1 + index % 40)))["seq"])
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    for _ in range(12):
        task = asyncio.create_task(write(rng.randint(3, 15)))
        await asyncio.sleep(rng.random() * 0.05)
        await reader.close()  # at a random point of the writing
        received.extend(reader.events)
        last = reader.last_seq
        reader = Client(live, "bob")
        if rng.random() < 0.5:
            await task  # sometimes reconnect after the burst, sometimes during it
        await reader.connect(last_seq=last)
        await task
        head = max(acked)
        await reader.wait_for(lambda: reader.last_seq is not None and reader.last_seq >= head)  # noqa: B023
    await reader.close()
    received.extend(reader.events)
    seqs = [e["seq"] for e in received]
    assert seqs == sorted(set(seqs)), "no duplicate, in order"
    with live.http("bob") as http:
        logged = []
        after = first
        while True:
            page = http.get("/api/media/m1/history", params={"after": after, "limit": 1000}).json()
            logged.extend(e["seq"] for e in page["events"])
            if page["next_after"] is None:
                break
            after = page["next_after"]
    assert seqs == logged, "every event of the stream after the first snapshot, none missing"
    await writer.close()
    await reader.close()


async def test_a_client_that_stops_reading_is_dropped_and_never_slows_the_others(tmp_path):
    import json

    # Alice floods on purpose (500 commands as fast as she can): no per-user rate limit here.
    with seeded_server(tmp_path, client_queue=100, command_burst=10_000) as live:
        alice, watcher = Client(live, "alice"), Client(live, "bob")
        await alice.connect()
        await watcher.connect()
        await make_object(alice, "a", "poly")
        # A raw socket that says hello and then never reads again: a bare TCP socket with a tiny
        # receive buffer, so only the kernel's buffers soak up what the server sends.
        stalled = socket.create_connection(("127.0.0.1", live.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        stalled.sendall(
            f"GET /api/media/m1/ws HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n".encode()
            + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += stalled.recv(1024)
        assert response.startswith(b"HTTP/1.1 101")
        hello = json.dumps({"type": "hello", "token": live.tokens["bob"], "last_seq": None}).encode()
        mask = b"\x01\x02\x03\x04"
        length = bytes([0x80 | len(hello)]) if len(hello) < 126 else bytes([0x80 | 126]) + len(hello).to_bytes(2, "big")
        stalled.sendall(bytes([0x81]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(hello)))
        # Big polygons (~25 kB each) fill the stalled socket's network buffers, then its queue.
        ring = [float(v) for i in range(1500) for v in (1 + i % 60, 1 + (i * 7) % 45)]
        shape = {"type": "polygon", "parts": [{"outer": ring}]}
        acks = []
        for _ in range(25):
            acks += await asyncio.gather(*[
                alice.command({"type": "label_saved", "object": "a", "frame": index % 20, "shape": shape, "source": "manual"})
                for index in range(20)
            ])
        assert all(ack["type"] == "ack" for ack in acks)
        last = max(ack["seq"] for ack in acks)
        await watcher.wait_for(lambda: watcher.last_seq >= last, timeout=30)
        # The stalled client was cut off: reading what reached it ends in a close frame 4008
        # (resume from your last position), and the connection ends.
        stalled.settimeout(10)
        data = b""
        while chunk := stalled.recv(1 << 20):
            data += chunk
        stalled.close()
        assert b"\x88" in data[-200:] and (4008).to_bytes(2, "big") in data[-200:], "no close frame 4008 at the end"
        # Resuming from the start gets everything.
        again = Client(live, "bob")
        await again.connect(last_seq=0)
        await again.wait_for(lambda: again.last_seq >= last, timeout=30)
        seqs = [e["seq"] for e in again.events]
        assert seqs == sorted(set(seqs))
        for client in (alice, watcher, again):
            await client.close()


async def test_pipelined_commands_are_decided_in_the_order_sent(live):
    """A client may send without waiting for acks: each command is decided after the ones sent
    before it on the same socket (an object, then its labels)."""
    import numpy as np

    from masklog.domain.geometry import rle_encode

    noise = np.random.default_rng(5).random((48, 64)) < 0.5
    rle = rle_encode(noise)
    alice = Client(live, "alice")
    await alice.connect()
    ids = []
    for index in range(40):
        object_id = f"piped-{index}"
        bodies = [
            {"type": "object_created", "object": object_id, "media": "m1", "class_id": "mask"},
            {"type": "label_saved", "object": object_id, "frame": 0, "shape": {"type": "bitmask", "rle": {"size": list(rle.size), "counts": rle.counts}}, "source": "manual"},
            {"type": "label_saved", "object": object_id, "frame": 1, "shape": {"type": "bitmask", "rle": {"size": list(rle.size), "counts": rle.counts}}, "source": "manual"},
        ]
        for body in bodies:
            command_id = str(uuid.uuid4())
            ids.append(command_id)
            await alice.send_raw(__import__("json").dumps({"type": "command", "id": command_id, "body": body}))
    await alice.wait_for(lambda: all(i in alice.replies for i in ids), timeout=60)
    replies = [alice.replies[i] for i in ids]
    assert all(r["type"] == "ack" for r in replies), [r for r in replies if r["type"] != "ack"][:3]
    assert [r["seq"] for r in replies] == sorted(r["seq"] for r in replies), "decided in the order sent"
    await alice.close()
