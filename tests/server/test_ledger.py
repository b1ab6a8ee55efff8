"""The ledger: decide, append, apply, publish — with commits that overlap, and a log that fails."""

import asyncio
import uuid

import pytest

from masklog.domain import events as ev
from masklog.domain.decide import DomainError
from masklog.domain.shapes import BBox
from masklog.server.hub import Hub, Overflowed
from masklog.server.ledger import Ledger, LedgerError
from masklog.server.sqlite_store import SQLiteEventStore
from masklog.server.store import AppendFailed
from tests.server.projection_checks import assert_matches_log, ledger_parts

ADMIN = "user:admin"


class FlakyStore:
    """The real SQLite store, except that appends fail while `failing` is set (a full disk), the
    way every store reports it: `AppendFailed`, the backend's own error as its cause."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self.store = store
        self.failing = False

    async def append(self, events):
        if self.failing:
            raise AppendFailed("append failed, nothing of the batch was stored") from OSError("disk full")
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
    assert ledger.published == ledger.head == max(seqs)
    await assert_matches_log(ledger, await store.read())
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
    with pytest.raises(LedgerError, match="nothing of the batch was stored"):
        await ledger.execute(ADMIN, save(3), str(uuid.uuid4()))
    # Nothing of it stays in the state, and every socket is told to resume from the log.
    assert ledger.head == before and (await ledger.state_of("m")).label("o", 3) is None
    with pytest.raises(Overflowed):
        await subscriber.next_batch()
    store.failing = False
    event, _ = await ledger.execute(ADMIN, save(4), str(uuid.uuid4()))
    assert event.seq == before + 1 and ledger.published == event.seq
    await assert_matches_log(ledger, await real.read())
    await real.close()


async def test_execute_all_applies_everything_or_nothing(tmp_path):
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite3")
    try:
        ledger = await setup(store)
        head = await store.head()
        before = await ledger_parts(ledger)
        batch = [ev.ObjectCreated(object="n", media="m", class_id="box"), ev.LabelSaved(object="n", frame=1, shape=BBox(x=1, y=1, w=5, h=5), source="manual"), save(99)]
        with pytest.raises(DomainError, match="item 3 of 3: frame 99 is out of range"):
            await ledger.execute_all(ADMIN, batch)
        assert await store.head() == head and await ledger_parts(ledger) == before, "nothing of it applied"
        events = await ledger.execute_all(ADMIN, batch[:2])
        assert [e.seq for e in events] == [head + 1, head + 2] and ledger.published == head + 2
        assert (await ledger.state_of("m")).label("n", 1) is not None
        await assert_matches_log(ledger, await store.read())
    finally:
        await store.close()


async def test_execute_all_authorizes_each_command_where_it_lands_and_a_refusal_applies_nothing(tmp_path):
    """Each command is authorized against the state that includes the ones before it (media
    "n" exists for the object made on it); one refusal, of any kind, and nothing is applied."""

    class Refused(Exception):
        pass

    store = await SQLiteEventStore.open(tmp_path / "events.sqlite3")
    try:
        ledger = await setup(store)
        head = await store.head()
        before = await ledger_parts(ledger)
        batch = [
            ev.MediaAdded(project="p", media="n", name="n", kind="image", width=64, height=48, frames=1),
            ev.ObjectCreated(object="on-n", media="n", class_id="box"),
            save(1),
        ]
        streams: list[str] = []

        def authorize(scope):  # type: ignore[no-untyped-def]
            streams.append(scope.stream)
            if len(streams) == 3:
                raise Refused("not this one")

        with pytest.raises(Refused):
            await ledger.execute_all(ADMIN, batch, authorize=authorize)
        assert streams == ["project:p", "media:n", "media:m"]
        assert await store.head() == head and await ledger_parts(ledger) == before, "nothing of it applied"
        events = await ledger.execute_all(ADMIN, batch[:2], authorize=lambda scope: None)
        assert [(e.seq, e.stream) for e in events] == [(head + 1, "project:p"), (head + 2, "media:n")]
        await assert_matches_log(ledger, await store.read())
    finally:
        await store.close()


async def test_execute_batch_answers_each_command(tmp_path):
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite3")
    try:
        ledger = await setup(store)
        ids = [str(uuid.uuid4()) for _ in range(3)]
        first = await ledger.execute_batch(ADMIN, [(save(1), ids[0]), (save(99), ids[1]), (save(2), ids[2])])
        assert isinstance(first[1], DomainError) and first[1].code == "frame_out_of_range"
        assert first[2].seq == first[0].seq + 1, "the accepted ones share one append"
        again = await ledger.execute_batch(ADMIN, [(save(1), ids[0]), (save(3), str(uuid.uuid4()))])
        assert again[0] == first[0], "a command already in the log is answered with the stored event"
        assert again[1].seq == first[2].seq + 1
        await assert_matches_log(ledger, await store.read())
    finally:
        await store.close()
