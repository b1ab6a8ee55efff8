"""The behaviour every `EventStore` backend must have, written once.

A backend's test module subclasses `EventStoreContract` (its name does not start with `Test`,
so pytest only collects it through subclasses) and implements `open_store` (a fresh, empty
store), `reopen_store` (close it, open the same storage again) and `open_another` (a second
store on the same storage, as another process would open it). The whole suite then runs against
that backend unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masklog.domain.events import Event, NewEvent
from masklog.server.store import EventStore, Snapshot, StoreClosed, StreamChanged, UnstorableEvent
from tests.server.events_factory import batch, label_saved, object_created, project_event, prompt_added


def frames(events: list[Event]) -> list[int]:
    return [event.body.frame for event in events]  # type: ignore[union-attr]


def seqs(events: list[Event]) -> list[int]:
    return [event.seq for event in events]


class EventStoreContract:
    # -- what a backend provides --------------------------------------------------------------

    async def open_store(self) -> EventStore:
        """A new, empty store; the suite closes it."""
        raise NotImplementedError

    async def reopen_store(self, store: EventStore) -> EventStore:
        """Close `store` and open the same storage again."""
        raise NotImplementedError

    async def open_another(self, store: EventStore) -> EventStore:
        """A second store on the same storage as `store`, with connections of its own, as
        another process opens it; the suite closes it."""
        raise NotImplementedError

    async def corrupt_snapshot(self, store: EventStore, stream: str, seq: int, version: int, data: bytes) -> None:
        """Overwrite the stored data of a snapshot behind the store's back (its checksum stays):
        what a damaged or half-written row looks like."""
        raise NotImplementedError

    async def corrupt_part(self, store: EventStore, key: bytes, data: bytes | None) -> None:
        """Overwrite a stored snapshot part behind the store's back (None: delete it)."""
        raise NotImplementedError

    async def part_count(self, store: EventStore) -> int:
        """How many snapshot parts the storage holds (to see them shared and released)."""
        raise NotImplementedError

    async def forget_object_index(self, store: EventStore) -> EventStore:
        """Close `store` and turn its storage into what a build before the object index left
        (events only), then open it again: the index must be rebuilt from the events."""
        raise NotImplementedError

    @pytest.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        store = await self.open_store()
        try:
            yield store
        finally:
            await store.close()

    # -- appending ----------------------------------------------------------------------------

    async def test_empty_store(self, store: EventStore) -> None:
        assert await store.head() == 0
        assert await store.read() == []
        assert await store.get(str(uuid4())) is None
        assert [b async for b in store.iter_batches()] == []

    async def test_append_assigns_positions_and_time_and_keeps_the_envelope(self, store: EventStore) -> None:
        cause = str(uuid4())
        first = label_saved(frame=7)
        second = msgspec.structs.replace(label_saved(stream="m2", frame=8, actor="model:sam2/tiny@1"), cause=cause)
        before = time.time()
        events = await store.append([first, second])
        after = time.time()

        assert seqs(events) == [1, 2]
        assert [e.id for e in events] == [first.id, second.id]
        assert [e.stream for e in events] == ["m1", "m2"]
        assert [e.actor for e in events] == ["user:ann", "model:sam2/tiny@1"]
        assert [e.cause for e in events] == [None, cause]
        assert [e.body for e in events] == [first.body, second.body]
        assert all(before - 1 <= e.at <= after + 1 for e in events)
        assert await store.head() == 2
        assert await store.read() == events

    async def test_positions_continue_across_appends(self, store: EventStore) -> None:
        assert seqs(await store.append(batch(3))) == [1, 2, 3]
        assert seqs(await store.append(batch(1))) == [4]
        assert seqs(await store.append(batch(2))) == [5, 6]
        assert seqs(await store.read()) == [1, 2, 3, 4, 5, 6]

    async def test_empty_batch_stores_nothing(self, store: EventStore) -> None:
        assert await store.append([]) == []
        assert await store.head() == 0

    async def test_same_id_twice_is_stored_once_and_returns_the_original(self, store: EventStore) -> None:
        original = label_saved(frame=1)
        [stored] = await store.append([original])
        await store.append(batch(2))
        # A retry, even one whose body differs, gets the first event back: the id decides.
        retry = label_saved(frame=99, id=original.id)
        assert await store.append([retry]) == [stored]
        mixed = await store.append([label_saved(frame=5), retry, label_saved(frame=6)])
        assert seqs(mixed) == [4, 1, 5]
        assert mixed[1] == stored
        assert await store.head() == 5
        assert frames(await store.read()) == [1, 0, 1, 5, 6]

    async def test_same_id_twice_in_one_batch_is_stored_once(self, store: EventStore) -> None:
        twice = label_saved(frame=1)
        events = await store.append([twice, label_saved(frame=2), label_saved(frame=3, id=twice.id)])
        assert seqs(events) == [1, 2, 1]
        assert events[2] == events[0]
        assert frames(events) == [1, 2, 1]
        assert frames(await store.read()) == [1, 2]

    async def test_same_id_after_reopen_returns_the_original(self) -> None:
        store = await self.open_store()
        try:
            original = label_saved(frame=1)
            [_, stored] = await store.append([label_saved(frame=0), original])
            store = await self.reopen_store(store)
            assert await store.head() == 2
            assert await store.append([label_saved(frame=9, id=original.id)]) == [stored]
            assert seqs(await store.append(batch(1))) == [3]
        finally:
            await store.close()

    async def test_retried_batch_gets_its_original_positions(self, store: EventStore) -> None:
        command = batch(3)
        first = await store.append(command)
        await store.append(batch(2))
        assert await store.append(command) == first
        assert await store.head() == 5

    async def test_a_large_batch_and_its_retry(self, store: EventStore) -> None:
        command = batch(2_345)  # more ids than one lookup query takes in the SQLite store
        first = await store.append(command)
        assert seqs(first) == list(range(1, 2_346))
        retry = await store.append(command[::-1] + batch(1))
        assert retry[:-1] == first[::-1]
        assert seqs(retry[-1:]) == [2_346]
        assert await store.head() == 2_346

    # -- atomicity ----------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param(lambda: label_saved(stream=""), id="empty-stream"),
            pytest.param(lambda: label_saved(frame=-1), id="out-of-bounds"),
            pytest.param(lambda: label_saved(actor="x"), id="short-actor"),
            pytest.param(
                lambda: msgspec.structs.replace(
                    label_saved(), body=msgspec.structs.replace(label_saved().body, score=object())
                ),
                id="unencodable",
            ),
            pytest.param(lambda: "not an event", id="not-an-event"),
        ],
    )
    async def test_a_batch_with_an_unstorable_event_stores_nothing(self, store: EventStore, bad: object) -> None:
        await store.append(batch(2))
        good_before, good_after = label_saved(frame=10), label_saved(frame=11)
        with pytest.raises(UnstorableEvent) as raised:
            await store.append([good_before, bad(), good_after])  # type: ignore[operator]
        assert raised.value.index == 1
        assert await store.head() == 2
        assert await store.get(good_before.id) is None
        assert await store.get(good_after.id) is None
        # No gap: the failed batch used no positions.
        assert seqs(await store.append([good_before])) == [3]
        assert seqs(await store.read()) == [1, 2, 3]

    async def test_a_failing_batch_fails_only_its_own_caller(self, store: EventStore) -> None:
        good = [batch(random.randint(1, 5), first_frame=100 * i) for i in range(12)]
        bad = [[label_saved(frame=1), label_saved(stream="")] for _ in range(4)]
        calls = [store.append(b) for b in good[:4] + bad[:2] + good[4:8] + bad[2:] + good[8:]]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)

        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failed) == 4 and all(isinstance(o, UnstorableEvent) for o in failed)
        logged = await store.read()
        assert seqs(logged) == list(range(1, sum(map(len, good)) + 1))
        assert {e.id for e in logged} == {e.id for b in good for e in b}

    # -- concurrency --------------------------------------------------------------------------

    async def test_concurrent_appenders_neither_interleave_nor_lose_events(self, store: EventStore) -> None:
        rng = random.Random(7)
        results: dict[int, list[list[Event]]] = {}

        async def appender(task: int) -> None:
            results[task] = []
            for _ in range(12):
                events = await store.append(batch(rng.randint(1, 15), stream=f"s{task % 3}"))
                results[task].append(events)
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        await asyncio.gather(*(appender(task) for task in range(16)))

        batches = [events for task in results.values() for events in task]
        total = sum(map(len, batches))
        logged = await store.read()
        assert seqs(logged) == list(range(1, total + 1))
        by_seq = {e.seq: e for e in logged}
        for events in batches:
            # One batch, one run of consecutive positions, nothing of another batch inside.
            assert seqs(events) == list(range(events[0].seq, events[0].seq + len(events)))
            assert [by_seq[e.seq] for e in events] == events
        assert await store.head() == total

    async def test_a_tailing_reader_sees_every_position_once_in_order(self, store: EventStore) -> None:
        stop = label_saved(stream="control")
        seen: list[Event] = []
        reader = asyncio.create_task(_tail(store, stop, seen, page=7))
        await asyncio.sleep(0)

        async def writer(task: int) -> list[Event]:
            written: list[Event] = []
            for round in range(10):
                written += await store.append(batch(1 + (task + round) % 6, stream=f"s{task}"))
                await asyncio.sleep(0)
            return written

        written = [e for part in await asyncio.gather(*(writer(t) for t in range(6))) for e in part]
        [last] = await store.append([stop])
        await asyncio.wait_for(reader, timeout=10)

        assert seqs(seen) == list(range(1, last.seq + 1))
        assert sorted(seen[:-1], key=lambda e: e.seq) == sorted(written, key=lambda e: e.seq)

    async def test_appends_queued_before_close_are_finished(self) -> None:
        store = await self.open_store()
        try:
            pending = [asyncio.create_task(store.append(batch(3, first_frame=i))) for i in range(10)]
            await asyncio.sleep(0)
            await store.close()
            results = await asyncio.gather(*pending, return_exceptions=True)
            ok = [r for r in results if not isinstance(r, BaseException)]
            # Each either committed or was refused cleanly; none is left hanging.
            assert all(isinstance(r, StoreClosed) for r in results if isinstance(r, BaseException))
            store = await self.reopen_store(store)
            assert seqs(await store.read()) == list(range(1, 3 * len(ok) + 1))
        finally:
            await store.close()

    # -- reading ------------------------------------------------------------------------------

    async def test_read_after_a_position(self, store: EventStore) -> None:
        await store.append(batch(5))
        assert seqs(await store.read(3)) == [4, 5]
        assert await store.read(5) == []
        assert await store.read(99) == []

    async def test_read_one_stream(self, store: EventStore) -> None:
        await store.append([label_saved(stream="a"), label_saved(stream="b"), label_saved(stream="a")])
        await store.append([label_saved(stream="b"), label_saved(stream="a")])
        assert seqs(await store.read(stream="a")) == [1, 3, 5]
        assert seqs(await store.read(stream="b")) == [2, 4]
        assert seqs(await store.read(3, stream="a")) == [5]
        assert await store.read(stream="nobody") == []

    async def test_read_with_limit(self, store: EventStore) -> None:
        await store.append([label_saved(stream="a" if i % 2 else "b") for i in range(10)])
        assert seqs(await store.read(limit=3)) == [1, 2, 3]
        assert seqs(await store.read(4, limit=2)) == [5, 6]
        assert seqs(await store.read(stream="a", limit=2)) == [2, 4]
        assert seqs(await store.read(8, limit=100)) == [9, 10]
        assert await store.read(limit=0) == []

    async def test_get_by_id(self, store: EventStore) -> None:
        events = await store.append(batch(3))
        for event in events:
            assert await store.get(event.id) == event
        assert await store.get(str(uuid4())) is None

    @pytest.mark.parametrize("batch_size", [1, 4, 5, 100])
    async def test_iter_batches(self, store: EventStore, batch_size: int) -> None:
        events = await store.append([label_saved(stream="a" if i % 3 else "b") for i in range(20)])
        chunks = [chunk async for chunk in store.iter_batches(batch_size=batch_size)]
        assert all(0 < len(chunk) <= batch_size for chunk in chunks)
        assert [e for chunk in chunks for e in chunk] == events
        assert [e async for chunk in store.iter_batches(13, batch_size=batch_size) for e in chunk] == events[13:]
        only_b = [e async for chunk in store.iter_batches(stream="b", batch_size=batch_size) for e in chunk]
        assert only_b == [e for e in events if e.stream == "b"]
        for upto in (0, 1, 7, 13, 20, 99):
            upto_all = [e async for chunk in store.iter_batches(3, batch_size=batch_size, upto=upto) for e in chunk]
            assert upto_all == events[3:upto]
            upto_b = [e async for chunk in store.iter_batches(stream="b", batch_size=batch_size, upto=upto) for e in chunk]
            assert upto_b == [e for e in events[:upto] if e.stream == "b"]

    async def test_iter_batches_can_be_left_early(self, store: EventStore) -> None:
        await store.append(batch(30))
        async for chunk in store.iter_batches(batch_size=4):
            assert seqs(chunk) == [1, 2, 3, 4]
            break
        assert seqs(await store.read(limit=1)) == [1]  # the store still works

    # -- subscriptions ------------------------------------------------------------------------

    async def test_subscribe_announces_heads_after_subscribing(self, store: EventStore) -> None:
        await store.append(batch(2))
        async with store.subscribe() as heads:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(heads), 0.05)  # nothing committed since
            await store.append(batch(3))
            assert await asyncio.wait_for(anext(heads), 2) == 5

    async def test_subscribe_coalesces_for_a_slow_subscriber(self, store: EventStore) -> None:
        async with store.subscribe() as slow, store.subscribe() as other:
            for _ in range(20):
                await store.append(batch(1))  # the writer never waits for the subscribers
            assert await asyncio.wait_for(anext(slow), 2) == 20  # the latest, not 1, 2, 3, ...
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(slow), 0.05)
            await store.append(batch(2))
            assert await asyncio.wait_for(anext(slow), 2) == 22
            assert await asyncio.wait_for(anext(other), 2) == 22

    async def test_duplicate_only_append_announces_nothing(self, store: EventStore) -> None:
        events = batch(2)
        await store.append(events)
        async with store.subscribe() as heads:
            await store.append(events)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(heads), 0.05)

    async def test_subscriptions_end_when_the_store_closes(self) -> None:
        store = await self.open_store()
        heads = store.subscribe()
        collected = asyncio.create_task(_collect(heads))
        await store.append(batch(1))
        await asyncio.sleep(0.01)
        await store.close()
        assert (await asyncio.wait_for(collected, 2))[-1:] == [1]
        with pytest.raises(StopAsyncIteration):
            await anext(store.subscribe())

    # -- other writers of the same storage ------------------------------------------------------

    async def test_subscribe_announces_commits_of_another_writer(self, store: EventStore) -> None:
        other = await self.open_another(store)
        try:
            async with store.subscribe() as heads:
                await other.append(batch(3))
                assert await asyncio.wait_for(anext(heads), 5) == 3
                assert seqs(await store.read()) == [1, 2, 3]
                assert await store.head() == 3
        finally:
            await other.close()

    async def test_a_follower_tails_what_another_writer_appends(self, store: EventStore) -> None:
        other = await self.open_another(store)
        stop = label_saved(stream="control")
        seen: list[Event] = []
        follower = asyncio.create_task(_tail(store, stop, seen, page=5))
        await asyncio.sleep(0)
        try:
            written = [e for n in range(8) for e in await other.append(batch(1 + n % 3, first_frame=10 * n))]
            [last] = await other.append([stop])
            await asyncio.wait_for(follower, timeout=10)
        finally:
            follower.cancel()
            await other.close()
        assert seqs(seen) == list(range(1, last.seq + 1))
        assert seen[:-1] == written

    async def test_two_writers_share_one_gap_free_order(self, store: EventStore) -> None:
        other = await self.open_another(store)
        try:
            commands = [batch(1 + n % 4, first_frame=10 * n) for n in range(40)]
            batches = await asyncio.gather(*(writer.append(c) for c, writer in zip(commands, [store, other] * 20)))
            total = sum(map(len, batches))
            logged = await store.read()
            assert seqs(logged) == list(range(1, total + 1))
            assert await other.read() == logged
            for events in batches:
                assert seqs(events) == list(range(events[0].seq, events[0].seq + len(events)))
            # A retry through the other writer gets the original positions back.
            assert await other.append(commands[0]) == batches[0]
            assert await store.head() == await other.head() == total
        finally:
            await other.close()

    # -- expected versions -----------------------------------------------------------------------

    async def test_an_expectation_met_appends(self, store: EventStore) -> None:
        await store.append(batch(2, stream="m1"))
        await store.append(batch(1, stream="m2"))  # another stream moving is no conflict
        events = await store.append(batch(2, stream="m1"), expect={"m1": 2, "m9": 0})
        assert seqs(events) == [4, 5]

    async def test_an_expectation_missed_stores_nothing_and_names_the_stream(self, store: EventStore) -> None:
        await store.append(batch(2, stream="m1"))
        await store.append(batch(1, stream="m1"))
        with pytest.raises(StreamChanged) as refused:
            await store.append(batch(2, stream="m1"), expect={"m1": 2, "m2": 0})
        assert refused.value.streams == ["m1"]
        assert await store.head() == 3
        assert seqs(await store.read()) == [1, 2, 3]

    async def test_a_retry_is_answered_whatever_it_expected(self, store: EventStore) -> None:
        command = batch(2, stream="m1")
        first = await store.append(command, expect={"m1": 0})
        await store.append(batch(1, stream="m1"))
        assert await store.append(command, expect={"m1": 0}) == first

    async def test_expectations_in_one_group_see_the_batches_before_them(self, store: EventStore) -> None:
        await store.append(batch(1, stream="m1"))
        # Queued together, they commit in one group: only the first of those expecting m1 as of
        # position 1 gets in; one on another stream is not held back.
        results = await asyncio.gather(
            store.append(batch(1, stream="m1"), expect={"m1": 1}),
            store.append(batch(1, stream="m1"), expect={"m1": 1}),
            store.append(batch(1, stream="m2"), expect={"m2": 1}),
            return_exceptions=True,
        )
        assert isinstance(results[1], StreamChanged)
        assert [seqs(r) for r in (results[0], results[2])] == [[2], [3]]  # type: ignore[arg-type]
        assert seqs(await store.read()) == [1, 2, 3]

    async def test_two_writers_deciding_on_one_stream_never_both_win(self, store: EventStore) -> None:
        other = await self.open_another(store)
        try:
            for round_ in range(20):
                head = await store.head()
                results = await asyncio.gather(
                    store.append(batch(1, stream="m1", first_frame=round_), expect={"m1": head}),
                    other.append(batch(1, stream="m1", first_frame=round_), expect={"m1": head}),
                    return_exceptions=True,
                )
                assert sum(isinstance(r, StreamChanged) for r in results) == 1, results
            assert seqs(await store.read()) == list(range(1, 21))
        finally:
            await other.close()

    async def test_an_expectation_may_ignore_events_of_some_actors(self, store: EventStore) -> None:
        await store.append(batch(1, stream="m1"))
        model = [label_saved(stream="m1", frame=9, actor="model:tracker")]
        await store.append(model)
        # A model's result after position 1 does not count; a person's does.
        assert seqs(await store.append(batch(1, stream="m1", first_frame=3), expect={"m1": 1}, expect_ignoring="model:")) == [3]
        with pytest.raises(StreamChanged):
            await store.append(batch(1, stream="m1", first_frame=4), expect={"m1": 1}, expect_ignoring="model:")
        # The same within one group.
        results = await asyncio.gather(
            store.append([label_saved(stream="m2", frame=1, actor="model:tracker")], expect={"m2": 3}),
            store.append(batch(1, stream="m2"), expect={"m2": 3}, expect_ignoring="model:"),
            store.append(batch(1, stream="m2", first_frame=5), expect={"m2": 3}, expect_ignoring="model:"),
            return_exceptions=True,
        )
        assert not isinstance(results[0], Exception) and not isinstance(results[1], Exception)
        assert isinstance(results[2], StreamChanged)

    @pytest.mark.parametrize("ignoring", ["", "mo%", "a_b", "x" * 201])
    async def test_a_malformed_ignoring_prefix_is_refused(self, store: EventStore, ignoring: str) -> None:
        with pytest.raises(ValueError):
            await store.append(batch(1), expect={"m1": 0}, expect_ignoring=ignoring)
        assert await store.head() == 0

    @pytest.mark.parametrize("expect", [{"": 1}, {"m1": -1}, {"m1": "3"}, {"m1": True}, {"m1": 1 << 63}, {3: 1}])
    async def test_a_malformed_expectation_is_refused(self, store: EventStore, expect: object) -> None:
        with pytest.raises(ValueError):
            await store.append(batch(1), expect=expect)  # type: ignore[arg-type]
        assert await store.head() == 0

    async def test_closed_store_refuses_work_and_closes_twice(self) -> None:
        store = await self.open_store()
        await store.close()
        await store.close()
        with pytest.raises(StoreClosed):
            await store.append(batch(1))
        with pytest.raises(StoreClosed):
            await store.read()

    # -- streams by prefix ----------------------------------------------------------------------

    async def test_read_streams_by_prefix_in_position_order(self, store: EventStore) -> None:
        await store.append([project_event("p1", "a"), label_saved(stream="media:m1", frame=1), project_event("p2", "b")])
        await store.append([label_saved(stream="projects", frame=2), project_event("p1", "c"), label_saved(stream="project", frame=3)])
        await store.append([label_saved(stream="project;x", frame=4), project_event("p10", "d")])
        found = await store.read_streams("project:")
        assert [(e.seq, e.stream) for e in found] == [(1, "project:p1"), (3, "project:p2"), (5, "project:p1"), (8, "project:p10")]
        assert seqs(await store.read_streams("project:", after=1, upto=5)) == [3, 5]
        assert seqs(await store.read_streams("project:", upto=0)) == []
        assert seqs(await store.read_streams("project:p1")) == [1, 5, 8]
        assert seqs(await store.read_streams("media:")) == [2]
        assert seqs(await store.read_streams("")) == list(range(1, 9))
        assert await store.read_streams("nothing:") == []

    # -- snapshots ------------------------------------------------------------------------------

    async def test_snapshot_save_and_load(self, store: EventStore) -> None:
        assert await store.load_snapshot("media:m1", 1) is None
        snapshot = Snapshot(stream="media:m1", seq=7, version=1, data=b"\x00state\xff" * 100)
        await store.save_snapshot(snapshot)
        assert await store.load_snapshot("media:m1", 1) == snapshot
        assert await store.load_snapshot("media:m1", 1, at_or_before=7) == snapshot
        assert await store.load_snapshot("media:m1", 1, at_or_before=6) is None
        assert await store.load_snapshot("media:m2", 1) is None
        assert await store.load_snapshot("media:m", 1) is None
        # Large data (hashed off the event loop) and empty data round-trip too.
        big = Snapshot(stream="base", seq=3, version=1, data=bytes(range(256)) * 8000)
        empty = Snapshot(stream="media:empty", seq=0, version=1, data=b"")
        await store.save_snapshot(big)
        await store.save_snapshot(empty)
        assert await store.load_snapshot("base", 1) == big
        assert await store.load_snapshot("media:empty", 1) == empty

    async def test_load_gives_the_newest_at_or_before_a_position(self, store: EventStore) -> None:
        for seq in (30, 10, 20):  # saved out of order
            await store.save_snapshot(Snapshot(stream="media:m1", seq=seq, version=1, data=f"at {seq}".encode()))
        assert (await store.load_snapshot("media:m1", 1)).seq == 30  # type: ignore[union-attr]
        for bound, expected in [(9, None), (10, 10), (19, 10), (20, 20), (29, 20), (30, 30), (10**12, 30)]:
            found = await store.load_snapshot("media:m1", 1, at_or_before=bound)
            assert (found and found.seq) == expected
            assert found is None or found.data == f"at {expected}".encode()

    async def test_other_versions_are_ignored(self, store: EventStore) -> None:
        # An older layout saved after a newer one (an old process still serving) is kept.
        await store.save_snapshot(Snapshot(stream="media:m1", seq=20, version=2, data=b"v2"))
        await store.save_snapshot(Snapshot(stream="media:m1", seq=10, version=1, data=b"v1"))
        assert (await store.load_snapshot("media:m1", 1)).data == b"v1"  # type: ignore[union-attr]
        assert (await store.load_snapshot("media:m1", 2)).data == b"v2"  # type: ignore[union-attr]
        assert await store.load_snapshot("media:m1", 2, at_or_before=15) is None
        assert await store.load_snapshot("media:m1", 3) is None

    async def test_a_newer_version_drops_the_older_ones_of_its_stream_and_their_parts(self, store: EventStore) -> None:
        shared, old = b"shared part" * 10, b"old layout only" * 10
        for seq in (10, 20):
            await store.save_snapshot(Snapshot(stream="media:m1", seq=seq, version=1, data=b"v1 %d" % seq, parts=(shared, old)))
        await store.save_snapshot(Snapshot(stream="media:m2", seq=15, version=1, data=b"m2 v1", parts=(old,)))
        assert await self.part_count(store) == 2
        await store.save_snapshot(Snapshot(stream="media:m1", seq=30, version=2, data=b"v2", parts=(shared,)))
        assert await store.load_snapshot("media:m1", 1) is None
        assert await store.load_snapshot("media:m1", 1, at_or_before=20) is None
        assert (await store.load_snapshot("media:m1", 2)).data == b"v2"  # type: ignore[union-attr]
        # Other streams keep theirs, and the parts they still use.
        assert (await store.load_snapshot("media:m2", 1)).data == b"m2 v1"  # type: ignore[union-attr]
        assert await self.part_count(store) == 2
        assert await store.load_parts([hashlib.sha256(shared).digest(), hashlib.sha256(old).digest()]) == [shared, old]
        await store.save_snapshot(Snapshot(stream="media:m2", seq=40, version=2, data=b"m2 v2"))
        assert await self.part_count(store) == 1  # the old layout's part went with its last user

    async def test_saving_the_same_snapshot_again_is_harmless(self, store: EventStore) -> None:
        snapshot = Snapshot(stream="media:m1", seq=5, version=1, data=b"same")
        await store.save_snapshot(snapshot)
        await store.save_snapshot(snapshot)
        await asyncio.gather(*(store.save_snapshot(snapshot) for _ in range(5)))
        assert await store.load_snapshot("media:m1", 1) == snapshot
        assert await store.load_snapshot("media:m1", 1, at_or_before=4) is None

    async def test_snapshots_survive_reopen(self) -> None:
        store = await self.open_store()
        try:
            snapshot = Snapshot(stream="media:m1", seq=5, version=1, data=b"kept")
            await store.save_snapshot(snapshot)
            store = await self.reopen_store(store)
            assert await store.load_snapshot("media:m1", 1) == snapshot
        finally:
            await store.close()

    @pytest.mark.parametrize("damage", ["flipped", "truncated", "emptied", "extended"])
    async def test_a_damaged_snapshot_is_skipped_for_the_next_older_valid_one(
        self, store: EventStore, damage: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        data = {seq: bytes([seq]) * 1000 for seq in (10, 20, 30)}
        for seq, value in data.items():
            await store.save_snapshot(Snapshot(stream="media:m1", seq=seq, version=1, data=value))
        good = data[30]
        bad = {
            "flipped": good[:500] + bytes([good[500] ^ 1]) + good[501:],
            "truncated": good[:700],
            "emptied": b"",
            "extended": good + b"\x00",
        }[damage]
        await self.corrupt_snapshot(store, "media:m1", 30, 1, bad)
        caplog.set_level("WARNING")
        found = await store.load_snapshot("media:m1", 1)
        assert found is not None and (found.seq, found.data) == (20, data[20])
        assert any("media:m1" in r.getMessage() and "checksum" in r.getMessage() for r in caplog.records)
        assert (await store.load_snapshot("media:m1", 1, at_or_before=25)).seq == 20  # type: ignore[union-attr]
        await self.corrupt_snapshot(store, "media:m1", 20, 1, data[10])  # another snapshot's valid bytes
        await self.corrupt_snapshot(store, "media:m1", 10, 1, data[10][:1])
        assert await store.load_snapshot("media:m1", 1) is None  # none valid: never trusted
        # Saving it again repairs it.
        await store.save_snapshot(Snapshot(stream="media:m1", seq=30, version=1, data=good))
        assert (await store.load_snapshot("media:m1", 1)).data == good  # type: ignore[union-attr]

    async def test_retention_keeps_a_snapshot_not_far_before_every_position(self, store: EventStore) -> None:
        rng = random.Random(15)
        position, saved, interval = 0, [], 40
        for _ in range(400):
            position += rng.randint(interval // 2, interval * 3 // 2)
            saved.append(position)
            await store.save_snapshot(Snapshot(stream="media:m1", seq=position, version=1, data=str(position).encode()))
        await store.save_snapshot(Snapshot(stream="media:other", seq=1, version=1, data=b"x"))
        kept = []
        bound: int | None = None
        while (found := await store.load_snapshot("media:m1", 1, at_or_before=bound)) is not None:
            assert found.data == str(found.seq).encode()
            kept.append(found.seq)
            bound = found.seq - 1
        kept.reverse()
        newest = saved[-1]
        assert kept[-3:] == saved[-3:]  # the newest few
        assert kept[0] == saved[0]  # and the oldest
        assert len(kept) <= 100, f"{len(kept)} of {len(saved)} snapshots kept"
        for target in range(saved[0], newest + 1):
            found = await store.load_snapshot("media:m1", 1, at_or_before=target) if target % 97 == 0 else None
            nearest = max(seq for seq in kept if seq <= target)
            if found is not None:
                assert found.seq == nearest
            assert target - nearest <= (newest - target) / 2 + 2 * interval, (target, nearest, newest)
        assert await store.load_snapshot("media:other", 1) is not None  # other streams untouched

    # -- snapshot parts --------------------------------------------------------------------------

    async def test_parts_are_stored_once_by_key_and_loaded_by_key(self, store: EventStore) -> None:
        shared, first, second = b"shared" * 1000, b"first", b"second" * 50_000  # one large: hashed off the loop
        key = {part: hashlib.sha256(part).digest() for part in (shared, first, second)}
        await store.save_snapshot(Snapshot(stream="media:m1", seq=10, version=1, data=b"m10", parts=(shared, first)))
        await store.save_snapshot(Snapshot(stream="media:m2", seq=11, version=1, data=b"m11", parts=(shared, second, second)))
        assert await self.part_count(store) == 3
        loaded = await store.load_snapshot("media:m1", 1)
        assert loaded == Snapshot(stream="media:m1", seq=10, version=1, data=b"m10")  # the data only
        assert await store.load_parts([key[second], key[shared], key[first], key[shared]]) == [second, shared, first, shared]
        assert await store.load_parts([]) == []
        assert await store.load_parts([hashlib.sha256(b"never stored").digest()]) is None
        await store.save_snapshot(Snapshot(stream="media:m1", seq=10, version=1, data=b"m10", parts=(shared, first)))  # again
        assert await self.part_count(store) == 3

    async def test_a_part_goes_with_the_last_snapshot_that_refers_to_it(self, store: EventStore) -> None:
        keep = b"in every snapshot"
        for seq in range(1, 200):
            await store.save_snapshot(Snapshot(stream="media:m1", seq=seq, version=1, data=b"%d" % seq, parts=(keep, b"only %d" % seq)))
        kept: list[int] = []
        bound: int | None = None
        while (found := await store.load_snapshot("media:m1", 1, at_or_before=bound)) is not None:
            kept.append(found.seq)
            bound = found.seq - 1
        assert 3 <= len(kept) < 199  # retention dropped some
        assert await self.part_count(store) == 1 + len(kept)
        for seq in kept:
            parts = await store.load_parts([hashlib.sha256(keep).digest(), hashlib.sha256(b"only %d" % seq).digest()])
            assert parts == [keep, b"only %d" % seq]
        dropped = [seq for seq in range(1, 200) if seq not in kept]
        for seq in dropped[:: max(1, len(dropped) // 10)]:
            assert await store.load_parts([hashlib.sha256(b"only %d" % seq).digest()]) is None

    @pytest.mark.parametrize("damage", ["flipped", "missing", "another part's bytes"])
    async def test_a_damaged_or_missing_part_is_never_handed_out(
        self, store: EventStore, damage: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        good, other = b"labels of frames 0-63" * 100, b"other"
        await store.save_snapshot(Snapshot(stream="media:m1", seq=5, version=1, data=b"m", parts=(good, other)))
        key = hashlib.sha256(good).digest()
        bad = {"flipped": good[:-1] + b"X", "missing": None, "another part's bytes": other}[damage]
        await self.corrupt_part(store, key, bad)
        caplog.set_level("WARNING")
        assert await store.load_parts([hashlib.sha256(other).digest(), key]) is None
        assert any("part" in r.getMessage() for r in caplog.records)
        assert await store.load_parts([hashlib.sha256(other).digest()]) == [other]
        # Saving a snapshot with the same part again does not repair it (it is stored once, by
        # key): a reader falls back to the events, which is always right.

    async def test_bad_snapshot_arguments(self, store: EventStore) -> None:
        for bad in [
            Snapshot(stream="", seq=1, version=1, data=b""),
            Snapshot(stream="s", seq=-1, version=1, data=b""),
            Snapshot(stream="s", seq=1, version=1, data="text"),  # type: ignore[arg-type]
            Snapshot(stream="s", seq=True, version=1, data=b""),
            Snapshot(stream="s", seq=1, version=1, data=b"", parts=["a list"]),  # type: ignore[arg-type]
            Snapshot(stream="s", seq=1, version=1, data=b"", parts=("text",)),  # type: ignore[arg-type]
            ("s", 1, 1, b""),
        ]:
            with pytest.raises(ValueError):
                await store.save_snapshot(bad)  # type: ignore[arg-type]
        assert await store.load_snapshot("s", 1) is None
        for keys in [b"one key", "text", [b"ok", "text"]]:
            with pytest.raises(ValueError):
                await store.load_parts(keys)  # type: ignore[arg-type]

    async def test_closed_store_refuses_snapshots(self) -> None:
        store = await self.open_store()
        await store.close()
        with pytest.raises(StoreClosed):
            await store.save_snapshot(Snapshot(stream="s", seq=1, version=1, data=b""))
        with pytest.raises(StoreClosed):
            await store.load_snapshot("s", 1)
        with pytest.raises(StoreClosed):
            await store.load_parts([b"k"])
        with pytest.raises(StoreClosed):
            await store.object_media("o1")

    # -- the object index -----------------------------------------------------------------------

    async def test_object_index_claims(self, store: EventStore) -> None:
        assert await store.object_media("o1") is None
        await store.append([object_created("o1", "m1"), label_saved(stream="media:m1", object="o1")])
        assert await store.object_media("o1") == "m1"
        assert await store.object_media("o2") is None
        # A prompt for a new object reserves its id; a prompt on an existing object claims nothing.
        await store.append([prompt_added("o2", "m2"), prompt_added("o3", "m2", new=False)])
        assert await store.object_media("o2") == "m2"
        assert await store.object_media("o3") is None
        # Creating the reserved object keeps it where it is; a later prompt naming another media
        # item does not move a claim; an object_created does (as the fold's object_media).
        await store.append([object_created("o2", "m2")])
        await store.append([prompt_added("o1", "m9"), prompt_added("o2", "m9")])
        assert (await store.object_media("o1"), await store.object_media("o2")) == ("m1", "m2")
        await store.append([prompt_added("o4", "m4"), object_created("o4", "m5")])
        assert await store.object_media("o4") == "m5"

    async def test_object_index_follows_idempotent_and_failed_appends(self, store: EventStore) -> None:
        first = object_created("o1", "m1")
        await store.append([first])
        # The same event id again (a retried command) stores nothing, so claims nothing.
        retried = msgspec.structs.replace(first, body=msgspec.structs.replace(first.body, media="m2"))
        await store.append([retried])
        assert await store.object_media("o1") == "m1"
        # A batch that fails stores no claim.
        with pytest.raises(UnstorableEvent):
            await store.append([object_created("o5", "m1"), label_saved(frame=-1)])
        assert await store.object_media("o5") is None

    async def test_object_index_survives_reopen_and_another_writer(self) -> None:
        store = await self.open_store()
        try:
            await store.append([object_created("o1", "m1"), prompt_added("o2", "m2")])
            store = await self.reopen_store(store)
            assert (await store.object_media("o1"), await store.object_media("o2")) == ("m1", "m2")
            other = await self.open_another(store)
            try:
                await other.append([object_created("o3", "m3")])
                assert await store.object_media("o3") == "m3"
            finally:
                await other.close()
        finally:
            await store.close()

    async def test_object_index_is_rebuilt_for_an_older_storage(self) -> None:
        store = await self.open_store()
        try:
            await store.append([object_created("o1", "m1"), prompt_added("o2", "m2"), prompt_added("o3", "m3", new=False)])
            await store.append([prompt_added("o4", "m4"), object_created("o4", "m5"), object_created("o6", "m6")])
            await store.append([prompt_added("o6", "m7"), label_saved(stream="media:m1", object="o1")])
            store = await self.forget_object_index(store)
            expected = {"o1": "m1", "o2": "m2", "o3": None, "o4": "m5", "o6": "m6", "o7": None}
            assert {oid: await store.object_media(oid) for oid in expected} == expected
            await store.append([object_created("o7", "m1")])
            assert await store.object_media("o7") == "m1"
        finally:
            await store.close()

    # -- copying positioned events in (copy_in, for `masklog copy-log`) --------------------------

    async def _source_log(self) -> list[Event]:
        """A log of a few streams, with claims and reservations of object ids, read back."""
        source = await self.open_store()
        try:
            await source.append([project_event("p", "c1"), object_created("o1", "m1"), prompt_added("o2", "m2")])
            await source.append(batch(3, stream="media:m1"))
            await source.append([object_created("o2", "m3"), msgspec.structs.replace(label_saved(stream="media:m3"), cause=str(uuid4()))])
            return await source.read()
        finally:
            await source.close()

    async def test_copy_in_keeps_every_event_as_it_was(self, store: EventStore) -> None:
        log = await self._source_log()
        await store.copy_in(log[:4])
        await store.copy_in(log[4:])
        copied = await store.read()
        assert copied == log
        assert [msgspec.json.encode(e) for e in copied] == [msgspec.json.encode(e) for e in log]
        assert await store.head() == len(log)
        assert await store.get(log[2].id) == log[2]
        # The object index is written as by appends: the later claim wins over the reservation.
        assert await store.object_media("o1") == "m1"
        assert await store.object_media("o2") == "m3"
        # Appends continue after the copy, their time never before the copied events'.
        [after] = await store.append(batch(1))
        assert after.seq == len(log) + 1 and after.at >= log[-1].at

    async def test_copy_in_after_appends_continues_the_head(self, store: EventStore) -> None:
        await store.append(batch(2))
        tail = [msgspec.structs.replace(e, seq=e.seq + 2) for e in await self._source_log()]
        await store.copy_in(tail)
        assert seqs(await store.read()) == list(range(1, len(tail) + 3))
        assert (await store.read(2))[0] == tail[0]

    async def test_copy_in_refuses_positions_that_do_not_continue_the_head(self, store: EventStore) -> None:
        log = await self._source_log()
        for bad in (log[1:3], log[:2] + log[3:5], [log[0], log[0 + 1], msgspec.structs.replace(log[2], seq=2)]):
            with pytest.raises(UnstorableEvent, match="does not continue"):
                await store.copy_in(bad)
            assert await store.head() == 0  # nothing of the batch was stored
        await store.copy_in(log[:2])
        with pytest.raises(UnstorableEvent, match="does not continue") as raised:
            await store.copy_in(log[3:])
        assert raised.value.index == 0
        await store.append(batch(1))  # another writer took position 3
        with pytest.raises(UnstorableEvent, match="does not continue"):
            await store.copy_in(log[2:])
        assert seqs(await store.read()) == [1, 2, 3]
        assert await store.get(log[2].id) is None

    async def test_copy_in_is_idempotent_by_id(self, store: EventStore) -> None:
        log = await self._source_log()
        await store.copy_in(log[:3])
        await store.copy_in(log[:3])  # a retried batch: already stored, nothing stored twice
        await store.copy_in(log[1:5])  # stored ones skipped, the rest continue the head
        await store.copy_in([log[5], log[5]])  # twice in one batch
        assert await store.read() == log[:6]
        changed = msgspec.structs.replace(log[4], actor="user:eve")
        with pytest.raises(UnstorableEvent, match="already stored as another event") as raised:
            await store.copy_in([log[6], changed])
        assert raised.value.index == 1 and await store.head() == 6
        # An appended retry of a copied event's id gets the copied event back.
        again = NewEvent(id=log[0].id, stream=log[0].stream, actor=log[0].actor, body=log[0].body)
        assert await store.append([again]) == [log[0]]

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param(lambda e: msgspec.structs.replace(e, id=e.id.upper()), id="non-canonical-id"),
            pytest.param(lambda e: msgspec.structs.replace(e, stream=""), id="empty-stream"),
            pytest.param(lambda e: msgspec.structs.replace(e, at=float("nan")), id="nan-time"),
            pytest.param(lambda e: NewEvent(id=e.id, stream=e.stream, actor=e.actor, body=e.body), id="not-positioned"),
        ],
    )
    async def test_copy_in_refuses_an_event_that_does_not_read_back(self, store: EventStore, bad: object) -> None:
        log = await self._source_log()
        with pytest.raises(UnstorableEvent) as raised:
            await store.copy_in([log[0], bad(log[1]), log[2]])  # type: ignore[operator]
        assert raised.value.index == 1
        assert await store.head() == 0
        await store.copy_in([])
        assert await store.head() == 0

    async def test_copy_in_is_announced_to_this_and_other_stores(self, store: EventStore) -> None:
        log = await self._source_log()
        other = await self.open_another(store)
        try:
            async with store.subscribe() as mine, other.subscribe() as theirs:
                await store.copy_in(log)
                assert await asyncio.wait_for(anext(mine), 5) == len(log)
                assert await asyncio.wait_for(anext(theirs), 5) == len(log)
            assert await other.read() == log
            # The other store's appends continue after the copy.
            assert seqs(await other.append(batch(1))) == [len(log) + 1]
        finally:
            await other.close()

    # -- against a model ----------------------------------------------------------------------

    # differing_executors: every backend's subclass runs this same method, by design.
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors])
    @given(
        steps=st.lists(
            st.one_of(
                st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["a", "b", "c"])), max_size=6),
                st.just("reopen"),
            ),
            max_size=12,
        )
    )
    async def test_agrees_with_a_list_and_a_dict(self, steps: list[list[tuple[int, str]] | str]) -> None:
        ids = [str(UUID(int=n + 1)) for n in range(10)]  # few ids: duplicates are frequent
        log: list[tuple[int, UUID, str, int]] = []  # (seq, id, stream, frame) as first stored
        first: dict[UUID, tuple[int, UUID, str, int]] = {}
        store = await self.open_store()
        try:
            for number, step in enumerate(steps):
                if isinstance(step, str):  # "reopen"
                    store = await self.reopen_store(store)
                    continue
                events = [label_saved(id=ids[n], stream=stream, frame=number) for n, stream in step]
                expected = []
                for event in events:
                    if event.id not in first:
                        first[event.id] = (len(log) + 1, event.id, event.stream, number)
                        log.append(first[event.id])
                    expected.append(first[event.id])
                got = await store.append(events)
                assert [(e.seq, e.id, e.stream, e.body.frame) for e in got] == expected  # type: ignore[union-attr]

            assert await store.head() == len(log)
            assert [(e.seq, e.id, e.stream, e.body.frame) for e in await store.read()] == log  # type: ignore[union-attr]
            for stream in "abc":
                assert seqs(await store.read(stream=stream)) == [row[0] for row in log if row[2] == stream]
            for id in ids:
                found = await store.get(id)
                assert (found and found.seq) == (first[id][0] if id in first else None)
        finally:
            await store.close()


async def _collect(heads: AsyncIterator[int]) -> list[int]:
    return [head async for head in heads]


async def _tail(store: EventStore, stop: NewEvent, seen: list[Event], page: int) -> None:
    """Follow the log as a reader in another process would: read pages of `page` events into
    `seen`, and wait for the next announced head, until `stop` is read. It subscribes before the
    first read, so a commit in between is still announced."""
    async with store.subscribe() as heads:
        last = 0
        while True:
            while events := await store.read(last, limit=page):
                seen.extend(events)
                last = events[-1].seq
            if seen and seen[-1].id == stop.id:
                return
            await anext(heads)
