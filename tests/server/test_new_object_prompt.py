"""SAM on a new object through real sockets (issue 14, point 9): a prompt may name an object that
does not exist yet (its class and media item). The inference actor answers it like any prompt,
the other user sees the prompt and the preview but no object, and only saving the answer creates
the object, with its label, in one event (one undo step). Tracking it afterwards works."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.server.live import HEIGHT, Client, LiveServer, seeded_server
from tests.server.rest import fresh


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Iterator[LiveServer]:
    with seeded_server(tmp_path_factory.mktemp("new-object"), run_models=True) as live:
        yield live


def click(object_id: str, frame: int = 0, **fields: Any) -> dict[str, Any]:
    return {"type": "prompt_added", "object": object_id, "frame": frame, "points": [{"x": 9, "y": HEIGHT // 2, "include": True}], **fields}


def object_events(client: Client, object_id: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["body"]["type"] == "object_created" and e["body"]["object"] == object_id]


async def test_a_new_object_exists_only_once_its_preview_is_saved(models) -> None:
    alice, bob = Client(models, "alice"), Client(models, "bob")
    await alice.connect()
    await bob.connect()
    object_id = fresh("new")
    prompt = await alice.command(click(object_id, class_id="mask", media="m1"))
    assert prompt["type"] == "ack", prompt
    assert prompt["undo"] == 0  # a prompt is no action of anyone's

    def answer(client: Client) -> dict[str, Any] | None:
        return next((e for e in client.events if e["body"]["type"] == "segment_proposed" and e["body"]["prompt"] == prompt["id"]), None)

    await alice.wait_for(lambda: answer(alice) is not None, timeout=30)
    await bob.wait_for(lambda: answer(bob) is not None, timeout=10)
    assert answer(alice)["body"]["object"] == object_id
    assert not object_events(bob, object_id)
    with models.http("bob") as http:
        labels = http.get("/api/media/m1/labels").json()
    assert object_id not in labels.get("objects", {}) and all(entry["object"] != object_id for entry in labels["labels"])
    late = Client(models, "bob")
    await late.connect()
    assert object_id not in late.snapshot["objects"]
    await late.close()

    saved = await alice.command({"type": "save_segment", "prompt": prompt["id"]})
    assert saved["type"] == "ack", saved
    assert saved["undo"] == 1
    await bob.wait_for(lambda: bool(object_events(bob, object_id)))
    [created] = object_events(bob, object_id)
    assert created["actor"] == "user:alice"
    label = created["body"]["label"]
    assert (label["frame"], label["source"], label["prompt"]) == (0, "sam", prompt["id"])
    assert label["shape"]["type"] == "bitmask"

    # Save + track: the object exists once the save is acknowledged.
    track = await alice.command({"type": "track_requested", "media": "m1", "objects": [object_id], "start": 0, "direction": "forward", "range": 3, "algorithm": "simple"})
    assert track["type"] == "ack", track
    await alice.wait_for(
        lambda: any(e["body"]["type"] in ("track_completed", "track_failed") and e["body"]["track"] == track["id"] for e in alice.events), timeout=60
    )
    [end] = [e for e in alice.events if e["body"]["type"] in ("track_completed", "track_failed") and e["body"].get("track") == track["id"]]
    assert end["body"]["type"] == "track_completed", end

    # One undo removes the object and its label (a track request is no undoable action).
    undone = await alice.command({"type": "undo", "media": "m1"})
    assert (undone["type"], undone["undo"]) == ("ack", 0), undone
    with models.http("bob") as http:
        labels = http.get("/api/media/m1/labels").json()
    assert all(entry["object"] != object_id for entry in labels["labels"])
    late = Client(models, "bob")
    await late.connect()
    assert object_id not in late.snapshot["objects"]
    await late.close()
    await alice.close()
    await bob.close()


async def test_new_object_prompts_are_refused_where_they_cannot_land(models) -> None:
    alice = Client(models, "alice")
    await alice.connect()
    taken = fresh("taken")
    assert (await alice.command({"type": "object_created", "object": taken, "media": "m1", "class_id": "mask"}))["type"] == "ack"
    reply = await alice.command(click(taken, class_id="mask", media="m1"))
    assert (reply["type"], reply["code"]) == ("error", "already_exists")
    reply = await alice.command(click(fresh("x"), class_id="nope", media="m1"))
    assert (reply["type"], reply["code"]) == ("error", "unknown_id") and "unknown class" in reply["message"]
    reply = await alice.command(click(fresh("x"), class_id="line", media="m1"))
    assert (reply["type"], reply["code"]) == ("error", "wrong_shape_kind")
    # A prompt for another media item does not go through this media item's socket.
    reply = await alice.command(click(fresh("x"), class_id="mask", media="g1"))
    assert (reply["type"], reply["code"]) == ("error", "forbidden") and "m1" in reply["message"]
    await alice.close()
    outsider = Client(models, "outsider", "m2")
    await outsider.connect()
    reply = await outsider.command(click(fresh("x"), class_id="mask", media="m1"))
    assert reply["type"] == "error" and reply["code"] in ("unknown_id", "forbidden")
    await outsider.close()
