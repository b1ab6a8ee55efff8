"""Per-media projections (issue 15): media items' states load on demand and unload under a memory
budget, and none of it shows: what clients see, what is decided and what replay answers are
those of one full fold of the log."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest

from masklog.domain import events as ev
from masklog.domain.decide import DomainError, ErrorCode, Redo, Undo
from masklog.domain.shapes import BBox
from masklog.domain.snapshots import PROJECTION_VERSION, media_part
from masklog.domain.state import fold, state_at
from masklog.server.hub import Hub
from masklog.server.ledger import Ledger
from masklog.server.replay import replay_media
from masklog.server.sqlite_store import SQLiteEventStore
from tests.server.live import Client, LiveServer, seeded_server
from tests.server.projection_checks import assert_matches_log

ADMIN = "user:admin"
ALICE = "user:alice"
BOB = "user:bob"


def box(frame: int) -> BBox:
    return BBox(x=1 + frame % 7, y=2, w=5, h=4 + frame % 3)


async def project(ledger: Ledger, media: list[str], frames: int = 20) -> None:
    for command in [
        ev.ProjectCreated(project="p", name="P"),
        ev.ClassAdded(project="p", class_id="box", name="box", shape="bbox", color="#000000"),
        ev.ClassAdded(project="p", class_id="mask", name="mask", shape="bitmask", color="#ff0000"),
        *[ev.MediaAdded(project="p", media=m, name=m, kind="video", width=64, height=48, frames=frames) for m in media],
    ]:
        await ledger.execute(ADMIN, command, str(uuid.uuid4()))


async def do(ledger: Ledger, actor: str, command: Any) -> ev.Event:
    event, _ = await ledger.execute(actor, command, str(uuid.uuid4()))
    return event


# ---- clients see nothing of it ------------------------------------------------------------------


def on_server_loop(live: LiveServer, work: Any) -> Any:
    """Run a coroutine function on the server's own loop (its ledger lives there)."""
    loop = live.server.servers[0].get_loop()
    return asyncio.run_coroutine_threadsafe(work(), loop).result(timeout=30)


def evict_everything(live: LiveServer) -> list[str]:
    ledger: Ledger = live.server.config.app.state.ctx.ledger

    async def evict() -> list[str]:
        return [m for m in list(ledger.projections.loaded_media) if ledger.evict(m, force=True)]

    return on_server_loop(live, evict)


def without_times(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "at"} for e in events]


async def session(live: LiveServer, evict: bool) -> dict[str, Any]:
    """Two users on m1 and one on g1 label, undo, redo and track; with `evict`, every loaded
    media state is dropped (even pinned ones) after each step. Returns all they saw."""
    alice, bob, other = Client(live, "alice"), Client(live, "bob"), Client(live, "alice", "g1")
    seen: dict[str, Any] = {"replies": [], "evicted": 0}
    for client in (alice, bob, other):
        await client.connect()
    seen["snapshots"] = [alice.snapshot, bob.snapshot, other.snapshot]
    steps: list[tuple[Client, dict[str, Any]]] = [
        (alice, {"type": "object_created", "object": "pa", "media": "m1", "class_id": "box"}),
        (bob, {"type": "object_created", "object": "pb", "media": "m1", "class_id": "box"}),
        (other, {"type": "object_created", "object": "pg", "media": "g1", "class_id": "box"}),
        *[(alice, {"type": "label_saved", "object": "pa", "frame": f, "shape": {"type": "bbox", "x": f, "y": 1, "w": 5, "h": 5}, "source": "manual"}) for f in range(4)],
        (bob, {"type": "label_saved", "object": "pa", "frame": 1, "shape": {"type": "bbox", "x": 9, "y": 9, "w": 3, "h": 3}, "source": "manual"}),
        (bob, {"type": "label_saved", "object": "pb", "frame": 2, "shape": {"type": "bbox", "x": 2, "y": 2, "w": 3, "h": 3}, "source": "manual"}),
        (other, {"type": "label_saved", "object": "pg", "frame": 0, "shape": {"type": "bbox", "x": 2, "y": 2, "w": 3, "h": 3}, "source": "manual"}),
        (alice, {"type": "undo", "media": "m1"}),
        (alice, {"type": "undo", "media": "m1"}),
        (alice, {"type": "redo", "media": "m1"}),
        (bob, {"type": "undo", "media": "m1"}),
        (bob, {"type": "label_deleted", "object": "pa", "frame": 0}),
        (alice, {"type": "track_requested", "media": "m1", "objects": ["pa"], "start": 2, "direction": "forward", "range": 3}),
        (other, {"type": "undo", "media": "g1"}),
        (alice, {"type": "object_created", "object": "pg", "media": "m1", "class_id": "box"}),  # taken on g1
        (alice, {"type": "object_renamed", "object": "pa", "name": "left"}),
        (bob, {"type": "undo", "media": "m1"}),
        (alice, {"type": "redo", "media": "m1"}),
    ]
    try:
        for number, (client, body) in enumerate(steps):
            reply = await client.command(body, command_id=str(uuid.UUID(int=number + 1, version=4)))
            seen["replies"].append(reply)
            if reply["type"] == "ack":
                for watcher in (alice, bob) if client.media == "m1" else (other,):
                    await watcher.wait_for(lambda w=watcher, seq=reply["seq"]: w.last_seq is not None and w.last_seq >= seq)
            if evict:
                seen["evicted"] += len(evict_everything(live))
            with live.http("alice") as http:
                seen.setdefault("labels", []).append(http.get("/api/media/m1/labels").json())
        late = Client(live, "bob")
        await late.connect()
        seen["late_snapshot"] = late.snapshot
        await late.close()
        with live.http("bob") as http:
            seen["rest_snapshot"] = http.get("/api/media/m1/snapshot").json()
    finally:
        for client in (alice, bob, other):
            await client.close()
    seen["events"] = [without_times(c.events) for c in (alice, bob, other)]
    return seen


async def test_evicting_and_reloading_media_items_while_clients_are_connected_changes_nothing_they_see(tmp_path):
    with seeded_server(tmp_path / "kept") as live:
        kept = await session(live, evict=False)
    with seeded_server(tmp_path / "evicted") as live:
        evicted = await session(live, evict=True)
    assert evicted.pop("evicted") > 10 and kept.pop("evicted") == 0
    assert [r["type"] for r in kept["replies"]].count("ack") >= 17
    assert kept["replies"][-4]["code"] == "already_exists", "an id taken on another media item"
    assert any(r.get("undo") for r in kept["replies"]) and any(r.get("redo") for r in kept["replies"])
    for key in kept:
        assert evicted[key] == kept[key], key


# ---- deciding on a media item that was evicted ------------------------------------------------------


async def test_a_command_for_an_object_on_an_evicted_media_item_loads_it_and_is_decided_right(tmp_path):
    store = await SQLiteEventStore.open(tmp_path / "log.sqlite3")
    try:
        ledger = Ledger(store, Hub())
        await ledger.load()
        await project(ledger, ["a", "b"])
        await do(ledger, ALICE, ev.ObjectCreated(object="o", media="a", class_id="box"))
        await do(ledger, ALICE, ev.LabelSaved(object="o", frame=3, shape=box(3), source="manual"))
        await do(ledger, BOB, ev.ObjectCreated(object="q", media="b", class_id="box"))
        assert ledger.evict("a") and "a" not in ledger.projections.loaded_media
        loads = ledger.projections.loads
        # A label on a frame out of range is refused as against the full state...
        with pytest.raises(DomainError, match="frame 30 is out of range"):
            await do(ledger, ALICE, ev.LabelSaved(object="o", frame=30, shape=box(0), source="manual"))
        assert ledger.projections.loads == loads + 1 and "a" in ledger.projections.loaded_media
        ledger.evict("a")
        # ...and a good one lands on the reloaded state, with the undo stack it had.
        await do(ledger, ALICE, ev.LabelSaved(object="o", frame=4, shape=box(4), source="manual"))
        ledger.evict("a")
        undone = await do(ledger, ALICE, Undo(media="a"))
        assert undone.body.changes[0].frame == 4
        ledger.evict("a")
        with pytest.raises(DomainError) as refused:
            await do(ledger, BOB, Undo(media="a"))
        assert refused.value.code == ErrorCode.NOTHING_TO_UNDO
        assert (await ledger.state_of("a")).label("o", 4) is None and (await ledger.state_of("a")).label("o", 3) is not None
        await assert_matches_log(ledger, await store.read())
    finally:
        await store.close()


class GatedStore:
    """The real store, with appends held until `gate` opens: events stay in flight."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self.store = store
        self.gate = asyncio.Event()
        self.gate.set()

    async def append(self, events):  # type: ignore[no-untyped-def]
        await self.gate.wait()
        return await self.store.append(events)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self.store, name)


async def test_object_ids_stay_global_across_media_items(tmp_path):
    real = await SQLiteEventStore.open(tmp_path / "log.sqlite3")
    store = GatedStore(real)
    try:
        ledger = Ledger(store, Hub())  # type: ignore[arg-type]
        await ledger.load()
        await project(ledger, ["a", "b"])
        await do(ledger, ALICE, ev.ObjectCreated(object="x", media="a", class_id="box"))

        async def refused_on(media: str, object_id: str, prompt: bool = False) -> DomainError:
            command: Any = (
                ev.PromptAdded(object=object_id, frame=0, points=[ev.Point(x=3, y=3)], media=media, class_id="mask")
                if prompt
                else ev.ObjectCreated(object=object_id, media=media, class_id="box")
            )
            with pytest.raises(DomainError) as refused:
                await do(ledger, BOB, command)
            return refused.value

        here = await refused_on("a", "x")
        assert here.code == ErrorCode.EXISTS
        # Created on a, refused on b: loaded, evicted (the store's index), and for a prompt.
        assert (await refused_on("b", "x")).message == here.message
        assert ledger.evict("a") and "a" not in ledger.projections.loaded_media
        assert (await refused_on("b", "x")).message == here.message
        assert (await refused_on("b", "x", prompt=True)).code == ErrorCode.EXISTS
        assert "a" not in ledger.projections.loaded_media, "the index answers without loading a"
        # A bad id is answered as bad, not as taken.
        assert (await refused_on("b", "not valid")).code == ErrorCode.INVALID_ID
        # Still in flight on a: its media item cannot be evicted, and the id is taken.
        store.gate.clear()
        creating = asyncio.ensure_future(do(ledger, ALICE, ev.ObjectCreated(object="y", media="a", class_id="box")))
        while ledger.head == ledger.published:
            await asyncio.sleep(0)
        assert not ledger.evict("a") and not ledger.evict("a", force=True)
        waiting = asyncio.ensure_future(refused_on("b", "y"))
        await asyncio.sleep(0.05)
        store.gate.set()
        assert (await waiting).code == ErrorCode.EXISTS
        await creating
        assert ledger.evict("a")
        assert (await refused_on("b", "y")).code == ErrorCode.EXISTS
        await assert_matches_log(ledger, await real.read())
    finally:
        await real.close()


# ---- start-up -------------------------------------------------------------------------------------


@pytest.mark.parametrize("closed", [True, False], ids=["after-a-clean-stop", "after-a-crash"])
async def test_start_up_loads_only_the_base_and_the_media_items_with_running_tracks(tmp_path, closed):
    path = tmp_path / "log.sqlite3"
    store = await SQLiteEventStore.open(path)
    media = [f"m{i}" for i in range(12)]
    try:
        ledger = Ledger(store, Hub(), snapshot_every=10, base_snapshot_every=25)
        await ledger.load()
        await project(ledger, media)
        for index, item in enumerate(media):
            await do(ledger, ALICE, ev.ObjectCreated(object=f"o{index}", media=item, class_id="box"))
            for frame in range(5):
                await do(ledger, ALICE, ev.LabelSaved(object=f"o{index}", frame=frame, shape=box(frame), source="manual"))
        running = await do(ledger, ALICE, ev.TrackRequested(media="m7", objects=["o7"], start=0, direction="forward", range=5))
        ended = await do(ledger, ALICE, ev.TrackRequested(media="m3", objects=["o3"], start=0, direction="forward", range=5))
        await do(ledger, ALICE, ev.TrackCancelled(track=ended.id))
        assert len(ledger.projections.loaded_media) == len(media)
        if closed:
            await ledger.close()
        else:
            await ledger.projections.flush()
    finally:
        await store.close()
    store = await SQLiteEventStore.open(path)
    try:
        again = Ledger(store, Hub())
        report = await again.load()
        assert report.media == ["m7"] and again.projections.loaded_media == ["m7"] and again.projections.loads == 1
        assert again.running == {running.id: ("m7", ALICE)}
        assert report.base_seq is not None and report.tail_events < 25, "the base came from its snapshot"
        assert set(again.base.media) == set(media)
        await assert_matches_log(again, await store.read())
    finally:
        await store.close()


async def test_start_up_without_any_snapshot_folds_the_base_from_the_log(tmp_path):
    path = tmp_path / "log.sqlite3"
    store = await SQLiteEventStore.open(path)
    try:
        ledger = Ledger(store, Hub())
        await project(ledger, ["a", "b"])
        await do(ledger, ALICE, ev.ObjectCreated(object="o", media="a", class_id="box"))
        await do(ledger, ALICE, ev.LabelSaved(object="o", frame=0, shape=box(0), source="manual"))
        track = await do(ledger, ALICE, ev.TrackRequested(media="a", objects=["o"], start=0, direction="forward", range=5))
        fresh = Ledger(store, Hub())
        report = await fresh.load()
        assert report.base_seq is None and report.media == ["a"] and fresh.running == {track.id: ("a", ALICE)}
        await assert_matches_log(fresh, await store.read())
    finally:
        await store.close()


# ---- replay ------------------------------------------------------------------------------------------


async def test_replay_as_of_random_positions_equals_the_media_part_of_a_full_fold(tmp_path):
    rng = random.Random(15)
    store = await SQLiteEventStore.open(tmp_path / "log.sqlite3")
    media = ["a", "b", "c"]
    try:
        ledger = Ledger(store, Hub(), snapshot_every=7)
        await ledger.load()
        await project(ledger, media[:2])
        for step in range(240):
            item = rng.choice(media if step > 60 else media[:2])
            if item == "c" and "c" not in ledger.base.media:
                await do(ledger, ADMIN, ev.MediaAdded(project="p", media="c", name="c", kind="video", width=64, height=48, frames=20))
                continue
            if step == 150:
                await do(ledger, ADMIN, ev.ClassAdded(project="p", class_id="late", name="late", shape="bbox", color="#00ff00"))
            user = rng.choice([ALICE, BOB])
            object_id = f"{item}{rng.randrange(4)}"
            kind = rng.random()
            try:
                if kind < 0.15:
                    await do(ledger, user, ev.ObjectCreated(object=object_id, media=item, class_id="late" if "late" in ledger.base.classes and kind < 0.05 else "box"))
                elif kind < 0.75:
                    await do(ledger, user, ev.LabelSaved(object=object_id, frame=rng.randrange(20), shape=box(step), source="manual"))
                elif kind < 0.85:
                    await do(ledger, user, Undo(media=item))
                elif kind < 0.92:
                    await do(ledger, user, Redo(media=item))
                else:
                    await do(ledger, user, ev.LabelDeleted(object=object_id, frame=rng.randrange(20)))
            except DomainError:
                pass
            if rng.random() < 0.1:
                ledger.evict(rng.choice(media))
        await ledger.projections.flush()
        events = await store.read()
        assert await store.load_snapshot("media:a", PROJECTION_VERSION) is not None, "snapshots were written"
        for _ in range(40):
            seq = rng.randrange(1, events[-1].seq + 1)
            full = state_at(events, seq)
            for item in media:
                if item not in full.media:
                    continue
                replayed = await replay_media(store, full.media[item], seq)
                assert media_part(replayed, item) == media_part(full, item), (item, seq)
                assert replayed.classes == full.classes
        await assert_matches_log(ledger, events)
    finally:
        await store.close()


async def test_a_tiny_budget_keeps_only_what_is_in_use(tmp_path):
    store = await SQLiteEventStore.open(tmp_path / "log.sqlite3")
    try:
        ledger = Ledger(store, Hub(), budget_bytes=1)
        await ledger.load()
        await project(ledger, ["a", "b", "c"])
        ledger.pin("a")
        for item in ("a", "b", "c"):
            await do(ledger, ALICE, ev.ObjectCreated(object=f"o{item}", media=item, class_id="box"))
            await do(ledger, ALICE, ev.LabelSaved(object=f"o{item}", frame=1, shape=box(1), source="manual"))
        await ledger.state_of("b")
        # Over the budget: only the pinned one and the one just used stay.
        assert set(ledger.projections.loaded_media) <= {"a", "b"} and "a" in ledger.projections.loaded_media
        ledger.unpin("a")
        await ledger.state_of("c")
        assert ledger.projections.loaded_media == ["c"]
        assert ledger.projections.evictions >= 3
        await ledger.projections.flush()
        assert await store.load_snapshot("media:a", PROJECTION_VERSION) is not None, "an evicted state is snapshotted"
        await assert_matches_log(ledger, await store.read())
    finally:
        await store.close()


def test_a_full_fold_is_what_the_media_parts_add_up_to():
    """The helper the tests compare with: a fold's parts, media by media."""
    events = [
        ev.Event(seq=1, id=str(uuid.uuid4()), stream="project:p", actor=ADMIN, at=0.0, body=ev.ProjectCreated(project="p", name="P")),
    ]
    assert fold(events).projects["p"].name == "P"
