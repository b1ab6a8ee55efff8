"""The ledger: decide, append, apply, publish — with commits that overlap, and a log that fails."""

import asyncio
import uuid

import pytest

from domain import events as ev
from domain.decide import DomainError
from domain.shapes import BBox
from domain.state import fold
from server.hub import Hub, Overflowed
from server.ledger import Ledger, LedgerError
from server.sqlite_store import SQLiteEventStore

ADMIN = "user:admin"


class FlakyStore:
    """The real SQLite store, except that appends fail while `failing` is set (a full disk)."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self.store = store
        self.failing = False

    async def append(self, events):
        if self.failing:
            raise OSError("disk full")
        return await self.store.append(events)

    def __getattr__(self, name):
        return getattr(self.store, name)


async def setup(store) -> Ledger:
    ledger = Ledger(store, Hub())
    await ledger.load()
    for command in [
        ev.ProjectCreated(project="p", name="P"),
        ev.ClassAdded(project="p", class_id="box", name="box", shape="bbox", color="#000000"),
        ev.MediaAdded(project="p", media="m", name="m", kind="video", width=64, height=48, frames=30),
        ev.ObjectCreated(object="o", media="m", class_id="box"),
    ]:
        await ledger.execute(ADMIN, command, str(uuid.uuid4()))
    return ledger


def save(frame: int) -> ev.LabelSaved:
    return ev.LabelSaved(object="o", frame=frame, shape=BBox(x=1, y=1, w=5, h=5), source="manual")


async def test_concurrent_commands_are_published_in_position_order_and_match_the_log(tmp_path):
    store = await SQLiteEventStore.open(tmp_path / "log.sqlite3")
    ledger = await setup(store)
    subscriber = ledger.hub.subscribe(["media:m"], limit=1000)
    results = await asyncio.gather(*[ledger.execute(ADMIN, save(i % 30), str(uuid.uuid4())) for i in range(200)])
    seqs = [event.seq for event, _ in results]
    assert sorted(seqs) == list(range(min(seqs), min(seqs) + 200))
    published = await subscriber.next_batch()
    assert [e.seq for e in published] == sorted(seqs)
    assert ledger.published == ledger.state.seq == max(seqs)
    assert fold(await store.read()) == ledger.state
    await store.close()


async def test_a_retried_command_is_answered_from_the_log_even_while_in_flight(tmp_path):
    store = await SQLiteEventStore.open(tmp_path / "log.sqlite3")
    ledger = await setup(store)
    command_id = str(uuid.uuid4())
    (first, dup1), (second, dup2) = await asyncio.gather(
        ledger.execute(ADMIN, save(1), command_id), ledger.execute(ADMIN, save(1), command_id)
    )
    assert first == second and (dup1, dup2) == (False, True)
    again, dup3 = await ledger.execute(ADMIN, save(1), command_id)
    assert again == first and dup3
    with pytest.raises(DomainError, match="already used"):
        await ledger.execute("user:mallory", save(1), command_id)
    assert len(await store.read(first.seq)) == 0
    await store.close()


async def test_a_failed_append_rebuilds_the_state_from_the_log_and_resyncs_sockets(tmp_path):
    real = await SQLiteEventStore.open(tmp_path / "log.sqlite3")
    store = FlakyStore(real)
    ledger = await setup(store)
    before = await real.head()
    subscriber = ledger.hub.subscribe(["media:m"], limit=1000)
    store.failing = True
    with pytest.raises(LedgerError, match="disk full"):
        await ledger.execute(ADMIN, save(3), str(uuid.uuid4()))
    # Nothing of it stays in the state, and every socket is told to resume from the log.
    assert ledger.state.seq == before and ledger.state.label("o", 3) is None
    with pytest.raises(Overflowed):
        await subscriber.next_batch()
    store.failing = False
    event, _ = await ledger.execute(ADMIN, save(4), str(uuid.uuid4()))
    assert event.seq == before + 1 and ledger.published == event.seq
    assert fold(await real.read()) == ledger.state
    await real.close()
