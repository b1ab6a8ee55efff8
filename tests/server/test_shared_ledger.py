"""The ledger of a log other processes write too (server/shared_ledger.py), on real SQLite files:
another store on the same file plays the other process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from masklog.domain import events as ev
from masklog.domain.decide import DomainError, Undo
from masklog.domain.shapes import BBox
from masklog.server.hub import Hub
from masklog.server.shared_ledger import MAX_ATTEMPTS, Contended, SharedLedger
from masklog.server.sqlite_store import SQLiteEventStore
from masklog.server.store import EventStore
from tests.server.projection_checks import assert_matches_log

ADMIN = "user:admin"


def save(frame: int, x: float = 1, object: str = "o") -> ev.LabelSaved:
    return ev.LabelSaved(object=object, frame=frame, shape=BBox(x=x, y=1, w=5, h=5), source="manual")


def foreign(body: ev.Body, stream: str = "media:m") -> ev.NewEvent:
    return ev.NewEvent(id=str(uuid.uuid4()), stream=stream, actor="user:bob", body=body)


class Overtaken:
    """The ledger's real store, but before each of its first `times` appends another writer
    (`other`, a second store on the same file) appends a label to the same media item: the
    race a second server process makes."""

    def __init__(self, store: SQLiteEventStore, other: SQLiteEventStore, times: int) -> None:
        self.store, self.other, self.times = store, other, times

    async def append(self, events: Sequence[ev.NewEvent], *, expect: Any = None, expect_ignoring: str | None = None) -> list[ev.Event]:
        if self.times > 0:
            self.times -= 1
            await self.other.append([foreign(save(29, x=self.times))])
        return await self.store.append(events, expect=expect, expect_ignoring=expect_ignoring)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def _world(store: EventStore) -> None:
    await store.append([
        foreign(ev.ProjectCreated(project="p", name="P"), "project:p"),
        foreign(ev.ClassAdded(project="p", class_id="box", name="box", shape="bbox", color="#000000"), "project:p"),
        foreign(ev.MediaAdded(project="p", media="m", name="m", kind="video", width=64, height=48, frames=30), "project:p"),
        foreign(ev.ObjectCreated(object="o", media="m", class_id="box")),
    ])


@pytest.fixture
async def stores(tmp_path):
    store = await SQLiteEventStore.open(tmp_path / "log.sqlite3", follow_interval_s=0.01)
    other = await SQLiteEventStore.open(tmp_path / "log.sqlite3", follow_interval_s=0.01)
    await _world(other)
    yield store, other
    await other.close()
    await store.close()


async def _matches(ledger: SharedLedger, store: EventStore) -> None:
    """The ledger, caught up with the log, holds exactly a fold of it."""
    log = await store.read()
    await ledger.catch_up(log[-1].seq)
    assert ledger.published == log[-1].seq
    await assert_matches_log(ledger, log)


async def _ledger(store: Any) -> SharedLedger:
    ledger = SharedLedger(store, Hub())
    await ledger.load()
    return ledger


async def test_it_follows_and_publishes_what_another_process_writes(stores):
    store, other = stores
    ledger = await _ledger(store)
    try:
        subscriber = ledger.hub.subscribe(["media:m"], limit=100)
        [written] = await other.append([foreign(save(3))])
        assert [e.id for e in await asyncio.wait_for(subscriber.next_batch(), 5)] == [written.id]
        assert ledger.published == written.seq
        assert (await ledger.state_of("m")).labels["o"][3].written_by == written.id
    finally:
        await ledger.close()


async def test_a_command_overtaken_by_another_process_is_decided_again(stores):
    store, other = stores
    ledger = await _ledger(Overtaken(store, other, times=2))
    try:
        event, duplicate = await ledger.execute(ADMIN, save(4, x=7), str(uuid.uuid4()))
        assert not duplicate
        assert ledger.conflicts == 2 and ledger.contended == 0
        log = await store.read()
        assert log[-1].id == event.id and [e.body.frame for e in log[-3:]] == [29, 29, 4]  # type: ignore[union-attr]
        await _matches(ledger, store)
    finally:
        await ledger.close()


async def test_a_command_always_overtaken_is_refused_and_stores_nothing(stores):
    store, other = stores
    ledger = await _ledger(Overtaken(store, other, times=MAX_ATTEMPTS))
    try:
        command_id = str(uuid.uuid4())
        with pytest.raises(Contended):
            await ledger.execute(ADMIN, save(4), command_id)
        assert await store.get(command_id) is None
        assert ledger.contended == 1
        # It is not stuck: the next attempt goes through.
        event, _ = await ledger.execute(ADMIN, save(4), command_id)
        assert (await store.get(command_id)) == event
    finally:
        await ledger.close()


async def test_a_batch_overtaken_is_decided_again(stores):
    store, other = stores
    ledger = await _ledger(Overtaken(store, other, times=1))
    try:
        commands = [(save(frame), str(uuid.uuid4())) for frame in (5, 6, 7)]
        results = await ledger.execute_batch(ADMIN, commands)
        assert [r.body.frame for r in results] == [5, 6, 7]  # type: ignore[union-attr]
        assert ledger.conflicts == 1
        all_or_nothing = await ledger.execute_all(ADMIN, [save(8), save(9)])
        assert [e.body.frame for e in all_or_nothing] == [8, 9]  # type: ignore[union-attr]
        await _matches(ledger, store)
    finally:
        await ledger.close()


async def test_a_persons_edit_is_not_decided_again_for_a_models_result(stores):
    store, other = stores
    model_result = ev.NewEvent(id=str(uuid.uuid4()), stream="media:m", actor="model:tracker", body=save(28))

    class ModelFirst(Overtaken):
        async def append(self, events: Sequence[ev.NewEvent], *, expect: Any = None, expect_ignoring: str | None = None) -> list[ev.Event]:
            if self.times > 0:
                self.times -= 1
                await self.other.append([model_result])
            return await self.store.append(events, expect=expect, expect_ignoring=expect_ignoring)

    ledger = await _ledger(ModelFirst(store, other, times=1))
    try:
        await ledger.execute(ADMIN, save(4), str(uuid.uuid4()))
        assert ledger.conflicts == 0
        # An undo reads cells a model may have written: it is decided again.
        ledger_store = ledger.store
        assert isinstance(ledger_store, ModelFirst)
        ledger_store.times = 1
        model_result = ev.NewEvent(id=str(uuid.uuid4()), stream="media:m", actor="model:tracker", body=save(27))
        await ledger.execute(ADMIN, Undo(media="m"), str(uuid.uuid4()))
        assert ledger.conflicts == 1
        await _matches(ledger, store)
    finally:
        await ledger.close()


async def test_pipelined_commands_of_one_client_are_decided_in_the_order_sent(stores):
    store, _ = stores
    ledger = await _ledger(store)
    try:
        commands = []
        for n in range(30):
            commands.append(ev.ObjectCreated(object=f"n{n}", media="m", class_id="box"))
            commands.append(save(n % 30, object=f"n{n}"))
        results = await asyncio.gather(*(ledger.execute(ADMIN, c, str(uuid.uuid4())) for c in commands))
        assert [event.seq for event, _ in results] == sorted(event.seq for event, _ in results)
        await _matches(ledger, store)
    finally:
        await ledger.close()


async def test_one_command_id_through_two_ledgers_is_stored_once(stores):
    store, other = stores
    first, second = await _ledger(store), await _ledger(other)
    try:
        for frame in range(10):
            command_id = str(uuid.uuid4())
            (a, _), (b, _) = await asyncio.gather(first.execute(ADMIN, save(frame), command_id), second.execute(ADMIN, save(frame), command_id))
            assert a == b
        ids = [e.id for e in await store.read()]
        assert len(ids) == len(set(ids))
    finally:
        await first.close()
        await second.close()


async def test_two_ledgers_racing_on_one_media_item_agree_with_the_log(stores):
    store, other = stores
    first, second = await _ledger(store), await _ledger(other)
    try:
        outcomes = await asyncio.gather(
            *(ledger.execute(ADMIN, save(n % 5, x=n), str(uuid.uuid4())) for n in range(60) for ledger in (first, second)),
            return_exceptions=True,
        )
        assert all(not isinstance(o, Exception) or isinstance(o, Contended) for o in outcomes), [o for o in outcomes if isinstance(o, Exception)][:3]
        assert first.conflicts + second.conflicts > 0, "the two did race"
        head = await store.head()
        await first.catch_up(head)
        await second.catch_up(head)
        await _matches(first, store)
        await _matches(second, store)
    finally:
        await first.close()
        await second.close()


async def test_a_cancel_is_tried_as_long_as_a_models_result(stores):
    # A running track appends a frame between each decision of a cancel and its append (the
    # cancel does not commute with them): a person's other commands are refused after
    # MAX_ATTEMPTS, a cancel goes through, and so the track stops.
    store, other = stores
    [request] = await other.append([foreign(ev.TrackRequested(media="m", objects=["o"], start=0, direction="forward", range=30))])
    ledger = await _ledger(Overtaken(store, other, times=MAX_ATTEMPTS + 3))
    try:
        event, _ = await ledger.execute(ADMIN, ev.TrackCancelled(track=request.id), str(uuid.uuid4()))
        assert isinstance(event.body, ev.TrackCancelled) and ledger.contended == 0
        assert ledger.conflicts == MAX_ATTEMPTS + 3
        assert (await ledger.state_of("m")).tracks[request.id].status == "cancelled"
        await _matches(ledger, store)
    finally:
        await ledger.close()


async def test_a_command_refused_on_a_state_behind_the_log_is_decided_again(tmp_path):
    # Another process created an object; before this process's follower has heard of it (its
    # poll is slow here), the object's creator sends a label for it to this process.
    store = await SQLiteEventStore.open(tmp_path / "log.sqlite3", follow_interval_s=3600)
    other = await SQLiteEventStore.open(tmp_path / "log.sqlite3", follow_interval_s=3600)
    await _world(other)
    ledger = await _ledger(store)
    try:
        [created] = await other.append([foreign(ev.ObjectCreated(object="fresh", media="m", class_id="box"))])
        assert ledger.published < created.seq, "the follower must not have seen it yet for this test"
        event, _ = await ledger.execute(ADMIN, save(2, object="fresh"), str(uuid.uuid4()))
        assert event.seq > created.seq and (await ledger.state_of("m")).labels["fresh"][2].written_by == event.id
        # A command that is wrong on the newest state is still refused, and stores nothing.
        with pytest.raises(DomainError):
            await ledger.execute(ADMIN, save(2, object="nobody"), str(uuid.uuid4()))
        await _matches(ledger, store)
    finally:
        await ledger.close()
        await other.close()
        await store.close()
