"""Replay of one media item over REST (issue 14 point 8): the positions of its own events, and
its snapshot as of any position, replayed from its and its project's streams only."""

from __future__ import annotations

import httpx
import pytest

from tests.server.rest import command, new_object, save_box


@pytest.fixture
def alice(live) -> httpx.Client:
    with live.http("alice") as client:
        yield client


def test_positions_list_only_this_media_items_events_in_pages(alice):
    kept = new_object(alice)
    save_box(alice, kept, 0)
    other = new_object(alice, media="g1")  # another media item of the project: not a step of m1
    save_box(alice, other, 0, media="g1")
    save_box(alice, kept, 1)
    everything = alice.get("/api/media/m1/positions").json()
    history = [e["seq"] for e in alice.get("/api/media/m1/history", params={"limit": 1000}).json()["events"]]
    assert everything["seqs"] == history and len(history) == 3
    assert everything["next_after"] is None and everything["head"] >= history[-1]
    g1 = alice.get("/api/media/g1/positions").json()["seqs"]
    assert not set(g1) & set(history) and len(g1) == 2

    pages, after = [], 0
    while after is not None:
        page = alice.get("/api/media/m1/positions", params={"after": after, "limit": 2}).json()
        pages.append(page["seqs"])
        after = page["next_after"]
    assert pages == [history[0:2], history[2:3]]
    assert alice.get("/api/media/m1/positions", params={"limit": 0}).status_code == 422


def test_snapshot_as_of_a_position_holds_what_was_there_then(alice, live):
    gone = new_object(alice)
    first = save_box(alice, gone, 0)["seq"]
    with live.http("admin") as admin:
        admin.post("/api/projects/p1/classes", json={"id": "late", "name": "late", "shape": "bbox", "color": "#123456"}).raise_for_status()
    command(alice, {"type": "object_deleted", "object": gone})

    then = alice.get("/api/media/m1/snapshot", params={"seq": first}).json()
    assert then["seq"] == first
    assert gone in then["objects"] and [(e["object"], e["frame"]) for e in then["labels"]] == [(gone, 0)]
    assert "late" not in {c["class_id"] for c in then["classes"]}, "a class added later is not there yet"

    now = alice.get("/api/media/m1/snapshot").json()
    assert gone not in now["objects"] and "late" in {c["class_id"] for c in now["classes"]}
    assert alice.get("/api/media/m1/snapshot", params={"seq": 10**9}).json()["seq"] == now["seq"]

    early = alice.get("/api/media/m1/snapshot", params={"seq": 1})
    assert early.status_code == 404 and "not added yet" in early.json()["error"]["message"]
