"""Property (issue 15): for random multi-user histories over several media items, with media
items evicted at random points, the state the ledger holds for each media item equals that
media item's part of a full fold of the log, at every position."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masklog.domain import events as ev
from masklog.domain.decide import DomainError, Redo, Undo
from masklog.domain.shapes import BBox
from masklog.domain.snapshots import media_part
from masklog.domain.state import fold
from masklog.server.hub import Hub
from masklog.server.ledger import Ledger
from masklog.server.sqlite_store import SQLiteEventStore
from tests.server.projection_checks import assert_matches_log

MEDIA = ["a", "b", "c"]
USERS = ["user:alice", "user:bob"]
TRACKER = "model:classical/flow@1"

op = st.tuples(
    st.sampled_from(["create", "save", "save", "save", "delete_label", "delete_object", "undo", "redo", "track", "accept", "evict", "evict"]),
    st.sampled_from(USERS),
    st.sampled_from(MEDIA),
    st.integers(0, 5),  # object (ids are global: "o3" may be tried on every media item)
    st.integers(0, 9),  # frame
)


async def run(ledger: Ledger, operation: tuple[str, str, str, int, int]) -> None:
    name, user, media, obj, frame = operation
    oid = f"o{obj}"

    async def do(actor: str, command: Any) -> ev.Event:
        event, _ = await ledger.execute(actor, command, str(uuid.uuid4()))
        return event

    try:
        if name == "create":
            await do(user, ev.ObjectCreated(object=oid, media=media, class_id="box"))
        elif name == "save":
            await do(user, ev.LabelSaved(object=oid, frame=frame, shape=BBox(x=frame, y=1, w=4, h=3 + obj), source="manual"))
        elif name == "delete_label":
            await do(user, ev.LabelDeleted(object=oid, frame=frame))
        elif name == "delete_object":
            await do(user, ev.ObjectDeleted(object=oid))
        elif name == "undo":
            await do(user, Undo(media=media))
        elif name == "redo":
            await do(user, Redo(media=media))
        elif name == "track":
            request = await do(user, ev.TrackRequested(media=media, objects=[oid], start=frame, direction="forward", range=3))
            for produced in range(frame + 1, min(frame + 3, 10)):
                body = ev.TrackFrameProduced(track=request.id, object=oid, frame=produced, shape=BBox(x=1, y=1, w=2, h=2), score=0.5, model="classical/flow@1")
                await ledger.execute_batch(TRACKER, [(body, str(uuid.uuid4()))])
            if frame % 2:
                await ledger.execute_batch(TRACKER, [(ev.TrackCompleted(track=request.id, frames=2), str(uuid.uuid4()))])
        elif name == "accept":
            state = await ledger.state_of(media)
            if state.proposals:
                await do(user, ev.TrackedAccepted(track=next(iter(state.proposals))))
        elif name == "evict":
            ledger.evict(media, force=frame % 2 == 0)
    except DomainError:
        pass


class SomeSnapshots:
    """The real store, keeping only some snapshots (`keep`: all, none as a store without
    snapshots, or those at even positions, as if the process died before writing the others),
    so loads fold tails of every length."""

    def __init__(self, store: SQLiteEventStore, keep: str) -> None:
        self.store, self.keep = store, keep

    async def save_snapshot(self, snapshot):  # type: ignore[no-untyped-def]
        if self.keep == "all" or (self.keep == "some" and snapshot.seq % 2 == 0):
            await self.store.save_snapshot(snapshot)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self.store, name)


async def check(ops: list[tuple[str, str, str, int, int]], snapshot_every: int, budget: int, keep: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        real = await SQLiteEventStore.open(Path(folder) / "log.sqlite3", synchronous="NORMAL")
        store: Any = SomeSnapshots(real, keep)
        try:
            ledger = Ledger(store, Hub(), snapshot_every=snapshot_every, budget_bytes=budget)
            await ledger.load()
            for command in [
                ev.ProjectCreated(project="p", name="P"),
                ev.ClassAdded(project="p", class_id="box", name="box", shape="bbox", color="#000000"),
                *[ev.MediaAdded(project="p", media=m, name=m, kind="video", width=64, height=48, frames=10) for m in MEDIA],
            ]:
                await ledger.execute("user:admin", command, str(uuid.uuid4()))
            for operation in ops:
                await run(ledger, operation)
                # At this position: every loaded media state is its part of the full fold.
                full = fold(await store.read())
                for media, state in ledger.projections.loaded_states():
                    assert media_part(state, media) == media_part(full, media), (operation, media)
            await ledger.projections.flush()
            await assert_matches_log(ledger, await store.read())
            # And a fresh ledger on the same log (snapshots + tails) holds the same.
            again = Ledger(store, Hub())
            await again.load()
            await assert_matches_log(again, await store.read())
        finally:
            await real.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=40), st.sampled_from([1, 3, 2000]), st.sampled_from([1, 1024**3]), st.sampled_from(["all", "some", "none"]))
def test_each_media_state_is_its_part_of_the_full_fold_at_every_position(ops, snapshot_every, budget, keep):
    asyncio.run(check(ops, snapshot_every, budget, keep))
