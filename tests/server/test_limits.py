"""Per-user limits (issue 12) against a real server: concurrent tracks, points per prompt,
commands per second, and clicks answered in turn between users.

A refused command gets a clear error (`limit_exceeded` / `rate_limited`; REST 429 or 422) and
appends nothing; other users keep being served.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from masklog.domain.events import TrackCompleted
from masklog.server import cli
from masklog.server.limits import TokenBucket
from masklog.server.settings import Settings
from tests.server.live import Client, LiveServer, seeded_server
from tests.server.rest import as_model, command, fresh, head, new_object, post_command, request_track, save_box

MAX_TRACKS = 2
MAX_POINTS = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    with seeded_server(tmp_path_factory.mktemp("limits"), max_running_tracks=MAX_TRACKS, max_prompt_points=MAX_POINTS) as live:
        yield live


@pytest.fixture(scope="module")
def http(server) -> Iterator[dict[str, httpx.Client]]:
    clients = {user: server.http(user) for user in ("admin", "alice", "bob")}
    yield clients
    for client in clients.values():
        client.close()


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert error["code"] and error["message"]
    return error


def track_body(object_id: str, start: int = 0) -> dict[str, Any]:
    return {"type": "track_requested", "media": "m1", "objects": [object_id], "start": start, "direction": "forward", "range": 5}


def labelled(http: httpx.Client) -> str:
    object_id = new_object(http)
    save_box(http, object_id, 0)
    return object_id


def command_message(command_id: str, body: dict[str, Any]) -> str:
    return json.dumps({"type": "command", "id": command_id, "body": body})


def cancel_all(http: httpx.Client, tracks: list[str]) -> None:
    for track in tracks:
        command(http, {"type": "track_cancelled", "track": track})


def test_the_defaults() -> None:
    defaults = Settings(data=Path("."))
    assert defaults.max_running_tracks == 8 and defaults.max_prompt_points == 64
    assert defaults.commands_per_second == 50 and defaults.command_burst == 200


def test_one_track_over_the_limit_is_refused_until_one_ends(server, http) -> None:
    alice, bob = http["alice"], http["bob"]
    tracks = [request_track(alice, new_object(alice)) for _ in range(MAX_TRACKS)]
    extra = labelled(alice)
    before = head(alice)
    response = post_command(alice, track_body(extra))
    assert response.status_code == 429, response.text
    error = error_of(response)
    assert error["code"] == "limit_exceeded" and f"{MAX_TRACKS}" in error["message"]
    assert head(alice) == before, "a refused track appends nothing"
    # A retry of a track she already has is answered as before, not refused.
    again = post_command(alice, track_body("ignored"), command_id=tracks[0])
    assert again.status_code == 200 and again.json()["duplicate"] is True
    # The limit is per user: bob still starts his.
    bobs = request_track(bob, new_object(bob))
    # Cancelling one frees its place.
    command(alice, {"type": "track_cancelled", "track": tracks[0]})
    third = command(alice, track_body(extra))["id"]
    assert post_command(alice, track_body(labelled(alice))).status_code == 429
    # So does the model ending one.
    as_model(server, TrackCompleted(track=tracks[1], frames=0))
    fourth = command(alice, track_body(labelled(alice)))["id"]
    cancel_all(alice, [third, fourth])
    cancel_all(bob, [bobs])


async def test_a_track_over_the_limit_is_refused_on_the_socket_even_when_sent_at_once(server, http) -> None:
    alice_http = http["alice"]
    running = request_track(alice_http, new_object(alice_http))
    objects = [labelled(alice_http), labelled(alice_http)]
    client = Client(server, "alice")
    await client.connect()
    before = head(alice_http)
    # Both sent before either is answered: only one fits beside the running one.
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    for command_id, object_id in zip(ids, objects, strict=True):
        await client.send_raw(command_message(command_id, track_body(object_id)))
    await client.wait_for(lambda: all(command_id in client.replies for command_id in ids))
    replies = [client.replies[command_id] for command_id in ids]
    assert sorted(reply["type"] for reply in replies) == ["ack", "error"], replies
    refused = next(reply for reply in replies if reply["type"] == "error")
    assert refused["code"] == "limit_exceeded" and refused["message"]
    assert head(alice_http) == before + 1
    accepted = next(reply["id"] for reply in replies if reply["type"] == "ack")
    await client.close()
    cancel_all(alice_http, [running, accepted])


def prompt(object_id: str, points: int) -> dict[str, Any]:
    return {"type": "prompt_added", "object": object_id, "frame": 0, "points": [{"x": 1 + i, "y": 2, "include": True} for i in range(points)]}


async def test_a_prompt_with_too_many_points_is_refused_and_appends_nothing(server, http) -> None:
    alice = http["alice"]
    object_id = new_object(alice, class_id="mask")
    before = head(alice)
    response = post_command(alice, prompt(object_id, MAX_POINTS + 1))
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "limit_exceeded" and f"at most {MAX_POINTS} points" in error["message"]
    client = Client(server, "alice")
    await client.connect()
    reply = await client.command(prompt(object_id, 90_000 // 100))
    assert reply["type"] == "error" and reply["code"] == "limit_exceeded" and reply["message"]
    assert head(alice) == before, "nothing appended"
    # The socket goes on, and a prompt within the limit is taken.
    assert (await client.command(prompt(object_id, MAX_POINTS)))["type"] == "ack"
    await client.close()


# ---- commands per second ---------------------------------------------------------------------------

BURST = 20


@pytest.fixture
def slow(tmp_path) -> Iterator[LiveServer]:
    """A server allowing bursts of BURST commands and then one every ten seconds, far slower than
    any test sends: whatever passes beyond the burst, only the burst is certain."""
    with seeded_server(tmp_path, commands_per_second=0.1, command_burst=BURST) as live:
        yield live


async def test_a_burst_over_the_rate_is_refused_while_another_user_is_served(slow) -> None:
    with slow.http("alice") as alice, slow.http("bob") as bob:
        before = head(alice)
        client = Client(slow, "alice")
        await client.connect()
        ids = [str(uuid.uuid4()) for _ in range(BURST + 10)]
        for command_id in ids:
            await client.send_raw(command_message(command_id, {"type": "object_created", "object": fresh("o"), "media": "m1", "class_id": "box"}))
        await client.wait_for(lambda: all(command_id in client.replies for command_id in ids))
        replies = [client.replies[command_id] for command_id in ids]
        accepted = [reply for reply in replies if reply["type"] == "ack"]
        refused = [reply for reply in replies if reply["type"] == "error"]
        assert len(accepted) >= BURST and len(refused) >= 5, replies
        assert {reply["code"] for reply in refused} == {"rate_limited"}
        assert all("second" in reply["message"] for reply in refused)
        assert head(alice) == before + len(accepted), "refused commands append nothing"
        # REST shares alice's bucket, and says when to come back.
        response = post_command(alice, {"type": "object_created", "object": fresh("o"), "media": "m1", "class_id": "box"})
        assert response.status_code == 429 and error_of(response)["code"] == "rate_limited"
        assert int(response.headers["retry-after"]) >= 1
        # Bob is not held back by alice's burst, on REST or on a socket.
        new_object(bob)
        other = Client(slow, "bob")
        await other.connect()
        assert (await other.command({"type": "object_created", "object": fresh("o"), "media": "m1", "class_id": "box"}))["type"] == "ack"
        await other.close()
        await client.close()


# ---- clicks in turn, end to end --------------------------------------------------------------------


@pytest.fixture
def models(tmp_path) -> Iterator[LiveServer]:
    with seeded_server(tmp_path, run_models=True) as live:
        yield live


async def test_one_click_is_not_queued_behind_fifty_of_another_user(models) -> None:
    """Alice queues 50 click prompts (GrabCut on m1 takes tens of ms each), then bob clicks once:
    his answer comes among the first of hers still waiting, not after all of them."""
    alice, bob = Client(models, "alice"), Client(models, "bob")
    await alice.connect()
    await bob.connect()
    objects = [fresh("a") for _ in range(3)]
    for object_id in objects:
        assert (await alice.command({"type": "object_created", "object": object_id, "media": "m1", "class_id": "mask"}))["type"] == "ack"
    cells = [(object_id, frame) for object_id in objects for frame in range(20)][:50]
    ids = [str(uuid.uuid4()) for _ in cells]
    for command_id, (object_id, frame) in zip(ids, cells, strict=True):
        body = {"type": "prompt_added", "object": object_id, "frame": frame, "points": [{"x": 30, "y": 24, "include": True}]}
        await alice.send_raw(command_message(command_id, body))
    await alice.wait_for(lambda: all(alice.replies.get(command_id, {}).get("type") == "ack" for command_id in ids), timeout=30)
    mine = fresh("b")
    assert (await bob.command({"type": "object_created", "object": mine, "media": "m1", "class_id": "mask"}))["type"] == "ack"
    bobs = await bob.command({"type": "prompt_added", "object": mine, "frame": 0, "points": [{"x": 30, "y": 24, "include": True}]})
    assert bobs["type"] == "ack"
    expected = {*ids, bobs["id"]}

    def answered() -> list[str]:
        return [e["body"]["prompt"] for e in bob.events if e["body"]["type"] == "segment_proposed"]

    await bob.wait_for(lambda: set(answered()) >= expected, timeout=60)
    order = answered()
    before_bob = order.index(bobs["id"])
    # In log order, FIFO would put bob's answer after all 50 of alice's.
    assert before_bob < len(ids) // 2, f"bob's click was answered after {before_bob} of alice's"
    await alice.close()
    await bob.close()


# ---- pieces on their own ------------------------------------------------------------------------------


def test_the_token_bucket_allows_a_burst_then_the_rate_per_user() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take("alice") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("alice") == pytest.approx(0.5)  # the next token comes in half a second
    assert bucket.take("bob") == 0.0  # a bucket per user
    now[0] = 0.5
    assert bucket.take("alice") == 0.0 and bucket.take("alice") > 0
    now[0] = 100.0  # idle time refills up to the burst, no further
    assert [bucket.take("alice") for _ in range(4)][-1] > 0


def test_the_limits_are_flags_and_environment_variables(monkeypatch) -> None:
    def settings(*argv: str) -> Settings:
        parser = argparse.ArgumentParser()
        cli._add_server_flags(parser)
        return cli._settings(parser.parse_args(list(argv)))

    assert settings().max_running_tracks == Settings.max_running_tracks
    given = settings("--max-running-tracks", "3", "--max-prompt-points", "10", "--commands-per-second", "2.5", "--command-burst", "7")
    assert (given.max_running_tracks, given.max_prompt_points, given.commands_per_second, given.command_burst) == (3, 10, 2.5, 7)
    monkeypatch.setenv("MASKLOG_MAX_PROMPT_POINTS", "12")
    monkeypatch.setenv("MASKLOG_COMMANDS_PER_SECOND", "5")
    from_env = settings()
    assert (from_env.max_prompt_points, from_env.commands_per_second) == (12, 5.0)
    with pytest.raises(SystemExit):
        settings("--command-burst", "0")
