"""No cold first click (issue 19), through a real server running SAM 2 itself (the real
architecture, random weights, a reduced image size, on the CPU) and real websocket clients: the
frame a user opens or moves to is embedded in the background, so a click there computes no
embedding; a click arriving while frames are warmed waits for at most one embedding; a track
is worked without warming in between. The counts are read where an operator reads them
(`GET /api/workers`: the segmenter's `embeddings`) and, for the order of model runs, off the
segmenter's record of its runs, at the moment the log publishes each event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from masklog.domain.events import Event, PromptAdded, SegmentProposed, TrackCompleted, TrackRequested
from masklog.inference.sam2.image import Sam2Segmenter
from scripts.live_server import seed, start_site
from tests.inference.random_sam2 import one_thread, random_sam2, sam2_backends
from tests.server.live import Client, LiveServer, seeded_server, upload
from tests.server.postgres_server import postgres_server  # noqa: F401 (fixture)
from tests.server.test_tracking import labelled_object, ok, request, wait_end
from tests.server.tracking_clips import THREE

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

MEDIA = ("warm-a", "warm-b", "warm-c")


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("warm")
    images = THREE.write_images(root / "three")  # 24 frames
    with one_thread(), seeded_server(root, run_models=True, backends=sam2_backends(random_sam2(device="cpu"))) as server:
        with server.http("admin") as admin:
            for media in MEDIA:  # the same pictures, three media items: three cold starts
                upload(admin, "p1", media, "image_sequence", images).raise_for_status()
        yield server


def segmenter(live: LiveServer) -> Sam2Segmenter:
    seg = live.server.config.app.state.ctx.backends.segmenter
    assert isinstance(seg, Sam2Segmenter)
    return seg


def embeddings(live: LiveServer) -> dict[str, int]:
    with live.http("alice") as http:
        reply = http.get("/api/workers")
    reply.raise_for_status()
    [worker] = reply.json()["workers"]
    return worker["embeddings"]


async def until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


class Published:
    """The segmenter's run count when the log published each event (a hub listener runs in the
    loop as each event is committed: what the model had done by then)."""

    def __init__(self, live: LiveServer) -> None:
        self.hub = live.server.config.app.state.ctx.hub
        self.seg = segmenter(live)
        self.at: list[tuple[Event, int, int]] = []  # (event, runs so far, frames still wanted)

    def __enter__(self) -> Published:
        self.hub.listen(self._heard)
        return self

    def __exit__(self, *_: object) -> None:
        self.hub.unlisten(self._heard)

    def _heard(self, event: Event) -> None:
        self.at.append((event, self.seg.embeddings_computed, self.seg.embedding_stats().wanted))

    def of(self, kind: type) -> tuple[int, int]:
        [(runs, wanted)] = [(runs, wanted) for event, runs, wanted in self.at if isinstance(event.body, kind)]
        return runs, wanted


async def test_the_frame_a_user_opens_or_moves_to_is_clicked_without_an_embedding(live: LiveServer) -> None:
    client = Client(live, "alice", MEDIA[0])
    await client.connect(frame=5)
    # Opened on frame 5: it and the frames around it are embedded without a click.
    await until(lambda: embeddings(live)["wanted"] == 0 and segmenter(live).cached(_frames(live, MEDIA[0]), 5))
    before = embeddings(live)
    assert before["warmed"] >= 7 and before["bytes"] <= before["budget_bytes"]  # 5, 6, 4, 7, 3, 8, 2
    object_id = await labelled_object(client, "mask", 0, THREE.bitmask(0, 0))
    (x, y) = THREE.discs[0].centre(5)
    await ok(client, {"type": "prompt_added", "object": object_id, "frame": 5, "points": [{"x": x, "y": y}]})
    await client.wait_for(lambda: any(e["body"]["type"] == "segment_proposed" for e in client.events), 60)
    assert embeddings(live)["computed"] == before["computed"]  # the click ran the decoder only

    # The user steps to frame 0 (a presence message): it is warmed too.
    await client.ws.send(json.dumps({"type": "presence", "frame": 0}))
    await until(lambda: segmenter(live).cached(_frames(live, MEDIA[0]), 0) and embeddings(live)["wanted"] == 0)
    before = embeddings(live)
    await ok(client, {"type": "prompt_added", "object": object_id, "frame": 0, "points": [{"x": x, "y": y}]})
    await client.wait_for(lambda: sum(e["body"]["type"] == "segment_proposed" for e in client.events) == 2, 60)
    assert embeddings(live)["computed"] == before["computed"]
    await client.close()


async def test_a_click_during_warm_up_waits_for_at_most_one_embedding(live: LiveServer) -> None:
    seg = segmenter(live)
    client = Client(live, "alice", MEDIA[1])
    object_id = await _object_on(client, MEDIA[1])
    warmed = seg.embeddings_warmed
    with Published(live) as published:
        await client.ws.send(json.dumps({"type": "presence", "frame": 10}))  # 10, 11, 9, 12, 8, 13, 7
        await until(lambda: seg.embeddings_warmed > warmed)
        (x, y) = THREE.discs[0].centre(20)
        await ok(client, {"type": "prompt_added", "object": object_id, "frame": 20, "points": [{"x": x, "y": y}]})
        await client.wait_for(lambda: any(e["body"]["type"] == "segment_proposed" for e in client.events), 60)
        asked, wanted = published.of(PromptAdded)
    assert wanted > 0  # frames were still being warmed when the click came
    [click] = [run for run, cause, frame in seg.runs if cause == "click" and frame == 20 and run > asked]
    warm_between = [run for run, cause, _ in seg.runs if cause == "warm" and asked < run < click]
    assert len(warm_between) <= 1  # at most the embedding in progress
    # Warming went on afterwards: around frame 10, and around the clicked frame 20.
    await until(lambda: seg.embedding_stats().wanted == 0)
    assert all(seg.cached(_frames(live, MEDIA[1]), i) for i in [*range(7, 14), *range(17, 24)])
    await client.close()


async def test_a_track_is_not_interleaved_with_warming(live: LiveServer) -> None:
    seg = segmenter(live)
    client = Client(live, "alice", MEDIA[2])
    object_id = await _object_on(client, MEDIA[2])
    warmed = seg.embeddings_warmed
    with Published(live) as published:
        await client.ws.send(json.dumps({"type": "presence", "frame": 12}))
        await until(lambda: seg.embeddings_warmed > warmed)
        track = await request(client, [object_id], start=0, range=16, algorithm="advanced")  # past the commit window
        end = await wait_end(client, track, timeout=120)
        assert end["body"]["type"] == "track_completed"
        requested, wanted = published.of(TrackRequested)
        completed, _ = published.of(TrackCompleted)
    assert wanted > 0  # frames were still being warmed when the track was asked for
    warm_during = [run for run, cause, _ in seg.runs if cause == "warm" and requested < run <= completed]
    assert warm_during in ([], [requested + 1])  # at most the one in progress, first
    await until(lambda: seg.embedding_stats().wanted == 0)  # and warming went on after it
    assert seg.embeddings_warmed > warmed + len(warm_during)
    await client.close()


async def test_segment_answers_are_still_logged_once(live: LiveServer) -> None:
    """Warming writes nothing to the log: the clicks above got one answer each."""
    log = await live.server.config.app.state.ctx.store.read(0, limit=10_000)
    prompts = [e for e in log if isinstance(e.body, PromptAdded)]
    answers = [e for e in log if isinstance(e.body, SegmentProposed)]
    assert len(answers) == len(prompts) >= 3


async def _object_on(client: Client, media: str) -> str:
    await client.connect(frame=0)
    # Its first frame is warmed as the socket opens; wait for that to settle before going on.
    await until(lambda: client.live.server.config.app.state.ctx.backends.segmenter.embedding_stats().wanted == 0)
    return await labelled_object(client, "mask", 0, THREE.bitmask(0, 0))


def _frames(live: LiveServer, media: str) -> Any:
    ctx = live.server.config.app.state.ctx
    return ctx.library.frames(ctx.ledger.base.media[media])


# ---- a worker process's route: the storage's presence relay -------------------------------------


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
async def test_a_worker_warms_the_frame_a_user_opens_on_a_server(storage: str, request: pytest.FixtureRequest, tmp_path) -> None:
    """A server in its own process (`serve --workers` on SQLite, `serve --no-models` on
    PostgreSQL), and a `masklog worker` (its `run_worker`, here in the test's process so that it
    can run SAM 2 with random weights) on the same log: the server's presence reaches the worker
    through the storage (a polled table of work.sqlite3; PostgreSQL's notifications), the worker
    takes the media item's clicks and warms the frame; the click there is answered by it with no
    new embedding."""
    from masklog.server.settings import Settings
    from masklog.server.worker import WorkerOptions, run_worker

    dsn = await request.getfixturevalue("postgres_server").create_database() if storage == "postgresql" else None
    site = start_site(tmp_path, database=dsn, servers=1)
    stop, ready = asyncio.Event(), asyncio.Event()
    worker: asyncio.Task[None] | None = None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as tests.inference.random_sam2.one_thread, around an await
    try:
        seed(_Seedable(site.servers[0], tmp_path))  # type: ignore[arg-type]
        with site.http() as http:
            upload(http, "p1", "w", "image_sequence", THREE.write_images(tmp_path / "three")).raise_for_status()
        backends = sam2_backends(random_sam2(device="cpu"))
        seg = backends.segmenter
        assert isinstance(seg, Sam2Segmenter)
        settings = Settings(data=site.data, storage=storage, database_url=dsn, run_models=False)  # as `masklog worker` makes them
        worker = asyncio.create_task(run_worker(settings, backends, WorkerOptions(lease_s=2.0), stop, ready))
        await asyncio.wait_for(ready.wait(), 60)

        def announced() -> dict[str, Any]:
            [info] = site.live_workers()
            return info["embeddings"]

        await until(lambda: bool(announced()))
        client = Client(site.servers[0], "alice", "w")  # type: ignore[arg-type]
        await client.connect(frame=5)
        await until(lambda: announced()["warmed"] >= 7 and announced()["wanted"] == 0)  # 5, 6, 4, 7, 3, 8, 2
        computed = seg.embeddings_computed
        object_id = await labelled_object(client, "mask", 0, THREE.bitmask(0, 0))
        (x, y) = THREE.discs[0].centre(5)
        await ok(client, {"type": "prompt_added", "object": object_id, "frame": 5, "points": [{"x": x, "y": y}]})
        await client.wait_for(lambda: any(e["body"]["type"] == "segment_proposed" for e in client.events), 60)
        assert seg.embeddings_computed == computed  # answered by the worker, the decoder only

        # A move (a presence message to the server) reaches the worker the same way.
        warmed = seg.embeddings_warmed
        await client.ws.send(json.dumps({"type": "presence", "frame": 18}))
        await until(lambda: announced()["warmed"] >= warmed + 7 and announced()["wanted"] == 0)
        computed = seg.embeddings_computed
        await ok(client, {"type": "prompt_added", "object": object_id, "frame": 18, "points": [{"x": x, "y": y}]})
        await client.wait_for(lambda: sum(e["body"]["type"] == "segment_proposed" for e in client.events) == 2, 60)
        assert seg.embeddings_computed == computed
        await client.close()
    finally:
        stop.set()
        if worker is not None:
            await asyncio.wait_for(worker, 30)
        site.stop()
        torch.set_num_threads(threads)


class _Seedable:
    def __init__(self, process: Any, files: Any) -> None:
        self.files = files
        self.http = process.http
