"""Labels by frame window (issue 15): a hello's `labels_window` and REST `from`..`to` give full
labels only for a window of frames and, in a snapshot, compact heads (object, frame, source,
actor, model) for every other cell; together they describe exactly the cells of a full answer.
Real server, real sockets (docs/protocol.md, docs/api.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from masklog.domain.events import LabelSaved, Source
from masklog.domain.limits import MAX_LABEL_WINDOW
from masklog.domain.shapes import BBox
from tests.server.live import FRAMES, Client, LiveServer, seeded_server
from tests.server.rest import MODEL_ACTOR, as_model, command, new_object, save_box


def label_m1(server: LiveServer) -> None:
    """Labels on every frame of m1 by three actors: alice's walker on all, bob's dog on three,
    a model's car on three."""
    with server.http("alice") as alice, server.http("bob") as bob:
        walker, dog = new_object(alice), new_object(bob)
        for frame in range(FRAMES):
            save_box(alice, walker, frame, x=1 + frame)
        for frame in (3, 8, 15):
            save_box(bob, dog, frame, x=2)
        car = new_object(alice)
        for frame in (7, 12, 19):
            as_model(server, LabelSaved(object=car, frame=frame, shape=BBox(2, 2, 3, 3), source=Source.TRACKED, model="classical"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module, with `label_m1`'s labels."""
    with seeded_server(tmp_path_factory.mktemp("window")) as server:
        label_m1(server)
        yield server


@pytest.fixture(scope="module")
def alice(live: LiveServer) -> Iterator[httpx.Client]:
    with live.http("alice") as client:
        yield client


def cell(entry: dict[str, Any]) -> tuple[str, int, str, str, str | None]:
    label = entry["label"]
    return entry["object"], entry["frame"], label["source"], label["actor"], label["model"]


def head_cells(heads: dict[str, Any]) -> list[tuple[str, int, str, str, str | None]]:
    flat = heads["cells"]
    assert len(flat) % 5 == 0
    return [
        (heads["objects"][o], frame, heads["sources"][s], heads["actors"][a], None if m == -1 else heads["models"][m])
        for o, frame, s, a, m in (flat[i : i + 5] for i in range(0, len(flat), 5))
    ]


def assert_window_matches(windowed: dict[str, Any], full: dict[str, Any], first: int, last: int) -> None:
    """`windowed` (a windowed snapshot) holds `full`'s labels of frames first..last, whole, and
    heads of exactly its other cells; everything else is the same."""
    assert windowed["window"] == [first, last]
    assert windowed["labels"] == [e for e in full["labels"] if first <= e["frame"] <= last]
    outside = [cell(e) for e in full["labels"] if not first <= e["frame"] <= last]
    heads = windowed["heads"]
    assert head_cells(heads) == outside, "heads in (object, frame) order, one per cell outside the window"
    # Tables hold what the cells use, in the order first seen.
    for table, column in (("objects", 0), ("sources", 2), ("actors", 3), ("models", 4)):
        assert heads[table] == list(dict.fromkeys(c[column] for c in outside if c[column] is not None))
    rest = {k: v for k, v in windowed.items() if k not in ("labels", "window", "heads")}
    assert rest == {k: v for k, v in full.items() if k != "labels"}


async def test_a_windowed_hello_gets_the_windows_labels_and_heads_for_the_rest(live: LiveServer) -> None:
    whole, windowed = Client(live, "alice"), Client(live, "alice")
    await whole.connect()
    await windowed.connect(window=(5, 9))
    try:
        full, part = whole.snapshot, windowed.snapshot
        assert full is not None and part is not None and full["seq"] == part["seq"]
        assert {e["frame"] for e in part["labels"]} == set(range(5, 10))
        assert_window_matches(part, full, 5, 9)
        models = {c[4] for c in head_cells(part["heads"])}
        assert models == {None, "classical"} and MODEL_ACTOR in part["heads"]["actors"]
        # The windowed socket is live like any other.
        with live.http("bob") as bob:
            saved = save_box(bob, full["labels"][0]["object"], 17, x=30)
        await windowed.wait_for(lambda: any(e["seq"] == saved["seq"] for e in windowed.events))
    finally:
        await whole.close()
        await windowed.close()


async def test_no_window_is_the_snapshot_as_before(live: LiveServer, alice: httpx.Client) -> None:
    client = Client(live, "alice")
    await client.connect()
    try:
        assert client.snapshot is not None
        assert "window" not in client.snapshot and "heads" not in client.snapshot
        assert {e["frame"] for e in client.snapshot["labels"]} == set(range(FRAMES))
    finally:
        await client.close()
    rest = alice.get("/api/media/m1/snapshot").json()
    assert "window" not in rest and "heads" not in rest
    assert set(alice.get("/api/media/m1/labels").json()) == {"seq", "labels"}


async def test_a_window_past_the_end_is_cut_to_the_media_items_frames(live: LiveServer, alice: httpx.Client) -> None:
    client = Client(live, "alice")
    await client.connect(window=(FRAMES - 3, FRAMES + 400))
    try:
        assert client.snapshot is not None and client.snapshot["window"] == [FRAMES - 3, FRAMES - 1]
        assert_window_matches(client.snapshot, alice.get("/api/media/m1/snapshot").json(), FRAMES - 3, FRAMES - 1)
    finally:
        await client.close()
    page = alice.get("/api/media/m1/labels", params={"from": 10, "to": 500}).json()
    assert (page["from"], page["to"]) == (10, FRAMES - 1)


def test_rest_windows_now_and_at_a_past_seq_equal_the_full_answer_cut_to_the_window(live: LiveServer, alice: httpx.Client) -> None:
    now = alice.get("/api/media/m1/labels").json()
    walker = next(e["object"] for e in now["labels"] if e["frame"] == 2)  # labelled on every frame
    past = now["seq"]
    # Change cells inside and outside the window after `past`.
    with live.http("bob") as bob:
        save_box(bob, walker, 6, x=40)
        save_box(bob, walker, 14, x=41)
        command(bob, {"type": "label_deleted", "object": walker, "frame": 2})

    for seq in (past, None):
        params: dict[str, Any] = {} if seq is None else {"seq": seq}
        full = alice.get("/api/media/m1/labels", params=params).json()
        page = alice.get("/api/media/m1/labels", params={**params, "from": 4, "to": 11}).json()
        assert page == {"seq": full["seq"], "from": 4, "to": 11, "labels": [e for e in full["labels"] if 4 <= e["frame"] <= 11]}
        full_snapshot = alice.get("/api/media/m1/snapshot", params=params).json()
        windowed = alice.get("/api/media/m1/snapshot", params={**params, "from": 4, "to": 11}).json()
        assert_window_matches(windowed, full_snapshot, 4, 11)
    then = alice.get("/api/media/m1/labels", params={"seq": past, "from": 2, "to": 2}).json()["labels"]
    assert [e["object"] for e in then].count(walker) == 1, "the deleted label was there at the past position"


BAD_WINDOWS = [(0, MAX_LABEL_WINDOW), (5, 4), (-1, 3), (3, -1), (0, 10**12)]


@pytest.mark.parametrize("window", BAD_WINDOWS)
async def test_a_bad_window_in_the_hello_is_refused_and_the_server_serves_on(live: LiveServer, alice: httpx.Client, window: tuple[int, int]) -> None:
    before = alice.get("/api/media/m1/labels").json()
    async with websockets.connect(live.ws_url("m1")) as ws:
        await ws.send(json.dumps({"type": "hello", "token": live.tokens["alice"], "last_seq": None, "labels_window": list(window)}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["code"] == "bad_window", error
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4002
    assert alice.get("/api/media/m1/labels").json() == before, "nothing changed"
    client = Client(live, "alice")
    await client.connect(window=(0, MAX_LABEL_WINDOW - 1))  # the largest window is fine
    try:
        assert client.snapshot is not None and client.snapshot["window"] == [0, FRAMES - 1] and client.snapshot["heads"]["cells"] == []
    finally:
        await client.close()


@pytest.mark.parametrize("route", ["labels", "snapshot"])
@pytest.mark.parametrize(
    "params",
    [{"from": 0, "to": MAX_LABEL_WINDOW}, {"from": 5, "to": 4}, {"from": -1, "to": 3}, {"from": 3}, {"to": 3}, {"from": 0, "to": 10**12}],
)
def test_a_bad_window_on_rest_is_400_bad_window(alice: httpx.Client, route: str, params: dict[str, int]) -> None:
    before = alice.get("/api/media/m1/labels").json()
    response = alice.get(f"/api/media/m1/{route}", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_window"
    assert alice.get("/api/media/m1/labels").json() == before


def test_frame_and_window_together_are_refused_and_frame_keeps_its_rules(alice: httpx.Client) -> None:
    response = alice.get("/api/media/m1/labels", params={"frame": 3, "from": 3, "to": 4})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_window"
    response = alice.get("/api/media/m1/labels", params={"frame": FRAMES})
    assert response.status_code == 404 and response.json()["error"]["code"] == "frame_out_of_range"
    assert alice.get("/api/media/m1/labels", params={"from": "x", "to": 3}).status_code == 422
