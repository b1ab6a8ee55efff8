"""Three `masklog serve` processes on one PostgreSQL database (issue 16): whichever process a
client talks to, it sees every change, resumes anywhere without a gap or a duplicate, and every
command is applied once or refused clearly."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest

from masklog.domain.state import fold
from tests.server.cluster import Cluster, running_cluster
from tests.server.live import Client
from tests.server.postgres_server import postgres_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BOX = {"type": "bbox", "x": 4.0, "y": 4.0, "w": 10.0, "h": 8.0}


def box(x: float) -> dict[str, Any]:
    return {**BOX, "x": x}


@pytest.fixture(scope="module")
def cluster(postgres_server, tmp_path_factory) -> Cluster:  # noqa: F811
    # Models run on the third process: a track asked of the first is worked off there and
    # watched from the second.
    with running_cluster(postgres_server, tmp_path_factory.mktemp("cluster"), size=3, models_on=2) as running:
        yield running


async def _labels_at(cluster: Cluster, index: int, seq: int) -> dict[str, Any]:
    """Process `index`'s labels of m1 once it has applied the log up to `seq`."""
    with cluster[index].http("admin") as http:
        for _ in range(100):
            answer: dict[str, Any] = http.get("/api/media/m1/labels").json()
            if answer["seq"] >= seq:
                return answer
            await asyncio.sleep(0.05)
    raise AssertionError(f"process {index} did not reach position {seq}")


def client(cluster: Cluster, index: int, user: str, media: str = "m1") -> Client:
    return Client(cluster[index], user, media)  # type: ignore[arg-type]


async def ok(c: Client, body: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
    reply = await c.command(body, command_id)
    assert reply["type"] == "ack", reply
    return reply


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def seen(c: Client, kind: str, **fields: Any) -> bool:
    return any(e["body"]["type"] == kind and all(e["body"].get(k) == v for k, v in fields.items()) for e in c.events)


async def test_people_on_different_processes_see_each_other(cluster: Cluster) -> None:
    alice, bob = client(cluster, 0, "alice"), client(cluster, 1, "bob")
    await alice.connect(frame=2)
    await bob.connect(frame=5)
    try:
        # Presence crosses processes: each sees the other, and where they are.
        await alice.wait_for(lambda: any({h["user"] for h in p["users"]} == {"alice", "bob"} for p in alice.presence))
        await bob.presence_update(7, (0.25, 0.5))
        await alice.wait_for(lambda: any({(h["user"], h["frame"]) for h in p["users"]} == {("alice", 2), ("bob", 7)} for p in alice.presence))
        # A save on one process reaches the other, and a deletion comes back.
        car = fresh("car")
        await ok(alice, {"type": "object_created", "object": car, "media": "m1", "class_id": "box"})
        saved = await ok(alice, {"type": "label_saved", "object": car, "frame": 2, "shape": BOX, "source": "manual"})
        await bob.wait_for(lambda: any(e["seq"] == saved["seq"] for e in bob.events))
        deleted = await ok(bob, {"type": "label_deleted", "object": car, "frame": 2})
        await alice.wait_for(lambda: any(e["seq"] == deleted["seq"] for e in alice.events))
        # A track asked of process 0 is worked off by process 2 (the one with models); bob on
        # process 1 watches its frames arrive.
        await ok(alice, {"type": "label_saved", "object": car, "frame": 0, "shape": BOX, "source": "manual"})
        track = str(uuid.uuid4())
        await ok(alice, {"type": "track_requested", "media": "m1", "objects": [car], "start": 0, "direction": "forward", "range": 5, "algorithm": "classical"}, track)
        await bob.wait_for(lambda: seen(bob, "track_completed", track=track), timeout=60)
        frames = [e["body"]["frame"] for e in bob.events if e["body"]["type"] == "track_frame_produced" and e["body"]["track"] == track]
        assert frames == [1, 2, 3, 4]
        # Leaving shows on the other process too.
        await bob.close()
        await alice.wait_for(lambda: alice.presence and {h["user"] for h in alice.presence[-1]["users"]} == {"alice"})
    finally:
        await alice.close()
        await bob.close()


async def test_undo_is_per_user_across_processes(cluster: Cluster) -> None:
    here, there = client(cluster, 0, "alice"), client(cluster, 2, "alice")
    bob = client(cluster, 1, "bob")
    for c in (here, there, bob):
        await c.connect()
    try:
        obj = fresh("undo")
        await ok(here, {"type": "object_created", "object": obj, "media": "m1", "class_id": "box"})
        await ok(here, {"type": "label_saved", "object": obj, "frame": 3, "shape": box(1), "source": "manual"})
        await ok(bob, {"type": "label_saved", "object": obj, "frame": 4, "shape": box(2), "source": "manual"})
        # alice's undo, sent to another process, takes back her save, not bob's.
        undo = await ok(there, {"type": "undo", "media": "m1"})
        await here.wait_for(lambda: any(e["seq"] == undo["seq"] for e in here.events))
        with cluster[1].http("bob") as http:
            labels = http.get("/api/media/m1/labels").json()
        frames = sorted(entry["frame"] for entry in labels["labels"] if entry["object"] == obj)
        assert frames == [4]
    finally:
        for c in (here, there, bob):
            await c.close()


async def test_reconnecting_to_another_process_resumes_without_gaps_or_duplicates(cluster: Cluster) -> None:
    writer = client(cluster, 0, "bob")
    await writer.connect()
    obj = fresh("stream")
    await ok(writer, {"type": "object_created", "object": obj, "media": "m1", "class_id": "box"})
    stop = asyncio.Event()

    async def write() -> None:
        frame = 0
        while not stop.is_set():
            await ok(writer, {"type": "label_saved", "object": obj, "frame": frame % 20, "shape": box(frame % 30), "source": "manual"})
            frame += 1
            await asyncio.sleep(0.025)  # under the per-user rate limit

    writing = asyncio.create_task(write())
    rng = random.Random(16)
    received: list[dict[str, Any]] = []
    reader = client(cluster, 0, "alice")
    await reader.connect()
    start = reader.last_seq
    at = 0
    try:
        for _ in range(100):
            await asyncio.sleep(rng.uniform(0.0, 0.03))
            received.extend(reader.events)
            last = reader.last_seq
            await reader.close()
            at = (at + rng.choice([1, 2])) % 3  # always a different process
            reader = client(cluster, at, "alice")
            await reader.connect(last_seq=last)
        stop.set()
        await writing
        final = max(e.seq for e in cluster.log("media:m1"))
        await reader.wait_for(lambda: reader.last_seq is not None and reader.last_seq >= final, timeout=20)
        received.extend(reader.events)
    finally:
        stop.set()
        await reader.close()
        await writer.close()
    logged = [e.seq for e in cluster.log() if e.seq > start and e.stream in ("media:m1", "project:p1")]
    got = [e["seq"] for e in received]
    assert len(got) == len(set(got)), "duplicates"
    assert got == logged, "gaps or disorder"


async def test_one_command_id_sent_to_two_processes_is_applied_once(cluster: Cluster) -> None:
    alice0, alice1 = client(cluster, 0, "alice"), client(cluster, 1, "alice")
    await alice0.connect()
    await alice1.connect()
    try:
        obj = fresh("once")
        await ok(alice0, {"type": "object_created", "object": obj, "media": "m1", "class_id": "box"})
        for frame in range(20):
            command_id = str(uuid.uuid4())
            body = {"type": "label_saved", "object": obj, "frame": frame, "shape": box(frame), "source": "manual"}
            first, second = await asyncio.gather(alice0.command(body, command_id), alice1.command(body, command_id))
            assert first["type"] == second["type"] == "ack", (first, second)
            assert first["seq"] == second["seq"]
        ids = [e.id for e in cluster.log("media:m1")]
        assert len(ids) == len(set(ids))
        assert sum(1 for e in cluster.log("media:m1") if getattr(e.body, "object", None) == obj) == 21
    finally:
        await alice0.close()
        await alice1.close()


async def test_two_processes_writing_one_media_item_at_full_speed(cluster: Cluster) -> None:
    alice, bob = client(cluster, 0, "alice"), client(cluster, 1, "bob")
    await alice.connect()
    await bob.connect()
    try:
        obj = fresh("race")
        await ok(alice, {"type": "object_created", "object": obj, "media": "m1", "class_id": "box"})
        await bob.wait_for(lambda: seen(bob, "object_created", object=obj))
        sent: dict[str, Client] = {}
        for n in range(150):
            for who in (alice, bob):
                command_id = str(uuid.uuid4())
                sent[command_id] = who
                # Pipelined, both on the same cells: each process decides against a state the
                # other keeps changing.
                body = {"type": "label_saved", "object": obj, "frame": n % 5, "shape": box(n % 40), "source": "manual"}
                await who.send_raw(__import__("json").dumps({"type": "command", "id": command_id, "body": body}))
        for who in (alice, bob):
            await who.wait_for(lambda who=who: all(i in who.replies for i, w in sent.items() if w is who), timeout=120)
        replies = {i: w.replies[i] for i, w in sent.items()}
        refused = [r for r in replies.values() if r["type"] != "ack"]
        assert all(r["code"] == "conflict" for r in refused), refused[:3]
        acked = {i for i, r in replies.items() if r["type"] == "ack"}
        log = cluster.log()
        logged = [e.id for e in log if e.id in sent]
        assert sorted(logged) == sorted(acked)  # every ack in the log once, nothing refused in it
        raced = 0
        for index in range(3):
            with cluster[index].http() as http:
                raced += http.get("/api/health").json()["conflicts"]
        assert raced > 0, "the two processes did decide against each other's changes"
        # Every process's state equals a fold of the log.
        state = fold(log)
        expected = {frame: label.written_by for frame, label in state.labels[obj].items()}
        assert len(expected) == 5
        head = log[-1].seq
        for index in range(3):
            answer = await _labels_at(cluster, index, head)
            assert {e["frame"]: e["label"]["written_by"] for e in answer["labels"] if e["object"] == obj} == expected
    finally:
        await alice.close()
        await bob.close()



async def test_kill_9_of_one_process_during_a_burst(postgres_server, tmp_path) -> None:  # noqa: F811
    """20 trials: a server process is killed (SIGKILL) while its client's burst commits. Every
    acknowledged command is in the log, the other processes keep serving, and the killed
    process's client resumes on another one with no gap and no duplicate."""
    import json

    rng = random.Random(1616)
    with running_cluster(postgres_server, tmp_path, size=3, models_on=2) as cluster:
        bob = client(cluster, 1, "bob")
        await bob.connect()
        obj = fresh("burst")
        counts: list[int] = []
        await ok(bob, {"type": "object_created", "object": obj, "media": "m1", "class_id": "box"})
        try:
            for trial in range(20):
                victim = cluster[0]
                alice = client(cluster, 0, "alice")
                await alice.connect()
                start = alice.last_seq
                ids = [str(uuid.uuid4()) for _ in range(40)]
                for n, command_id in enumerate(ids):
                    body = {"type": "label_saved", "object": obj, "frame": n % 20, "shape": box(trial + n % 7), "source": "manual"}
                    await alice.send_raw(json.dumps({"type": "command", "id": command_id, "body": body}))
                await asyncio.sleep(rng.uniform(0.01, 0.15))
                victim.kill()
                await alice.wait_for(lambda alice=alice: alice.closed is not None, timeout=10)
                acked = {i for i in ids if alice.replies.get(i, {}).get("type") == "ack"}
                counts.append(len(acked))
                # The others keep serving.
                await ok(bob, {"type": "label_saved", "object": obj, "frame": 19, "shape": box(trial), "source": "manual"})
                logged = {e.id for e in cluster.log("media:m1")}
                assert acked <= logged, f"trial {trial}: acknowledged but lost: {acked - logged}"
                # The killed process's client resumes elsewhere from what it saw.
                resumed = client(cluster, 1 + trial % 2, "alice")
                await resumed.connect(last_seq=alice.last_seq)
                final = max(e.seq for e in cluster.log("media:m1"))
                await resumed.wait_for(lambda resumed=resumed, final=final: resumed.last_seq is not None and resumed.last_seq >= final, timeout=20)
                got = [e["seq"] for e in alice.events + resumed.events]
                expected = [e.seq for e in cluster.log() if e.seq > (start or 0) and e.stream in ("media:m1", "project:p1") and e.seq <= resumed.last_seq]
                assert got == expected, f"trial {trial}: gaps or duplicates"
                await resumed.close()
                cluster.start(0)
            # The kills did land mid-burst: some commands were acknowledged, not all of them.
            assert sum(counts) > 0 and sum(0 < n < 40 for n in counts) >= 5, counts
        finally:
            await bob.close()
