"""Sockets that close while their commands commit (issue: one closed socket stopped the fan-out
for everyone). A command's commit and fan-out never depend on its sender still being there:
every committed event reaches every follower, in order, and a retry gets the original seq."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import pytest
import websockets

from tests.server.live import Client, LiveServer


def created(object_id: str) -> dict:
    return {"type": "object_created", "object": object_id, "media": "m1", "class_id": "box"}


async def burst_then_vanish(live: LiveServer, rng: random.Random, count: int = 30) -> list[str]:
    """Send `count` commands without reading a reply, then go away 0-30 ms later: a clean close
    or a dropped connection. Returns the command ids sent."""
    ws = await websockets.connect(live.ws_url("m1"), max_size=None)
    await ws.send(json.dumps({"type": "hello", "token": live.tokens["alice"]}))
    await ws.recv()  # welcome (the snapshot and acks are never read)
    ids = []
    for _ in range(count):
        command_id = str(uuid.uuid4())
        ids.append(command_id)
        await ws.send(json.dumps({"type": "command", "id": command_id, "body": created(f"o-{command_id[:8]}")}))
    await asyncio.sleep(rng.random() * 0.03)
    if rng.random() < 0.5:
        ws.transport.abort()
    else:
        await ws.close()
    return ids


def logged(live: LiveServer, after: int = 0) -> list[dict]:
    events = []
    with live.http("viewer") as http:
        while True:
            page = http.get("/api/media/m1/history", params={"after": after, "limit": 1000}).json()
            events += page["events"]
            if page["next_after"] is None:
                return events
            after = page["next_after"]


@pytest.mark.parametrize("seed", [1, 2])
async def test_sockets_closing_mid_commit_never_stop_the_fan_out(live, seed):
    rng = random.Random(seed)
    viewer = Client(live, "viewer")
    await viewer.connect()
    start = viewer.snapshot["seq"]
    for _ in range(12):
        await burst_then_vanish(live, rng)
    # Whatever committed before the senders vanished is published; later commands still flow.
    alice = Client(live, "alice")
    await alice.connect()
    reply = await alice.command(created("after-the-bursts"))
    assert reply["type"] == "ack", reply
    await viewer.wait_for(lambda: viewer.last_seq is not None and viewer.last_seq >= reply["seq"])
    history = [e for e in logged(live, start)]
    seqs = [e["seq"] for e in viewer.events]
    assert seqs == [e["seq"] for e in history], "the viewer got every committed event of the media, in order, once"
    assert [e["id"] for e in viewer.events] == [e["id"] for e in history]
    # A new socket catches up to the head from an old position.
    late = Client(live, "bob")
    welcome = await late.connect(last_seq=start)
    await late.wait_for(lambda: late.last_seq is not None and late.last_seq >= welcome["head"])
    assert [e["seq"] for e in late.events] == seqs
    for client in (viewer, alice, late):
        await client.close()


async def test_a_retry_after_the_socket_closed_gets_the_original_seq(live):
    rng = random.Random(3)
    for _ in range(5):
        ids = await burst_then_vanish(live, rng, count=20)
        # Retry everything at once, while some of it may still be committing.
        alice = Client(live, "alice")
        await alice.connect()
        replies = await asyncio.gather(*(alice.command(created(f"o-{i[:8]}"), i) for i in ids))
        assert all(r["type"] == "ack" for r in replies), [r for r in replies if r["type"] != "ack"]
        history = {e["id"]: e["seq"] for e in logged(live)}
        for command_id, reply in zip(ids, replies, strict=True):
            assert reply["seq"] == history[command_id], "a retry is answered with the seq of the one event"
        await alice.close()
    history = logged(live)
    assert len({e["id"] for e in history}) == len(history)


async def test_a_client_id_of_the_servers_derived_kind_is_refused(live):
    from masklog.domain.events import derived_event_id

    alice = Client(live, "alice")
    await alice.connect()
    head = alice.snapshot["seq"]
    squat = derived_event_id("segment", str(uuid.uuid4()))
    reply = await alice.command(created("squatter"), squat)
    assert reply["type"] == "error" and reply["code"] == "invalid_id", reply
    with live.http("alice") as http:
        response = http.post("/api/media/m1/commands", json={"id": squat, "body": created("squatter")})
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_id", response.text
    assert logged(live, head) == [], "nothing appended"
    await alice.close()
