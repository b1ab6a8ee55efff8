"""The behaviour every `EventStore` backend must have, written once.

A backend's test module subclasses `EventStoreContract` (its name does not start with `Test`,
so pytest only collects it through subclasses) and implements `open_store` (a fresh, empty
store), `reopen_store` (close it, open the same storage again) and `open_another` (a second
store on the same storage, as another process would open it). The whole suite then runs against
that backend unchanged.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masklog.domain.events import Event, NewEvent
from masklog.server.store import EventStore, StoreClosed, UnstorableEvent
from tests.server.events_factory import batch, label_saved


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

    async def test_closed_store_refuses_work_and_closes_twice(self) -> None:
        store = await self.open_store()
        await store.close()
        await store.close()
        with pytest.raises(StoreClosed):
            await store.append(batch(1))
        with pytest.raises(StoreClosed):
            await store.read()

    # -- against a model ----------------------------------------------------------------------

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
