"""`masklog worker`: the model work (clicks, tracks) in a process of its own (issue 17).

A worker opens the same storage as the servers (the SQLite file on one machine, the PostgreSQL
database of a cluster), follows the log with a `SharedLedger` (it writes its results like any
other process: decided against the media item's state, with expected versions), and runs the
inference actor with claims (`inference.claiming`): it works the tracks and clicks it holds a
lease on, announces itself in the workers registry (`server.workers`), and on SIGTERM lets its
leases go so another worker takes over at once (on SIGKILL, after the lease runs out). Media
files come from the shared media root, `--data`'s `media` folder, read-only.

A worker whose segmenter has image embeddings (SAM 2) also hears the servers' presence (the
relay of its storage: `server.postgres_presence`, `server.sqlite_presence`): the frames users
open and move to are embedded ahead of their clicks by the worker that holds (or takes) the
media item's clicks (`InferenceActor.viewing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from dataclasses import dataclass

from masklog.inference.actor import InferenceActor
from masklog.inference.claiming import ClaimKeeper, ClaimPolicy
from masklog.inference.protocols import EmbeddingWarmer
from masklog.inference.registry import Backends
from masklog.server.hub import Hub
from masklog.server.media import MediaLibrary
from masklog.server.presence import PresenceBoard
from masklog.server.settings import Settings
from masklog.server.shared_ledger import SharedLedger
from masklog.server.storage import open_claims, open_presence, open_store
from masklog.server.workers import Announcer, new_worker_id, serves, worker_info

log = logging.getLogger("masklog.worker")


@dataclass(frozen=True)
class WorkerOptions:
    lease_s: float = 10.0
    max_tracks: int = 4


async def run_worker(settings: Settings, backends: Backends, options: WorkerOptions, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Work until `stop` is set."""
    store = await open_store(settings, verify_on_open=False)
    try:
        claims = await open_claims(settings)
        try:
            hub = Hub()
            ledger = SharedLedger(
                store, hub, trackers=backends.names(), budget_bytes=settings.projection_budget_mb * 1024**2, snapshot_every=settings.snapshot_every
            )
            await ledger.load()
            try:
                library = MediaLibrary(
                    settings.media_dir, settings.frame_cache, settings.open_media,
                    frame_cache_bytes=settings.frame_cache_bytes, max_image_pixels=settings.max_image_pixels,
                )  # fmt: skip
                worker_id = new_worker_id()
                keeper = ClaimKeeper(claims, ClaimPolicy(worker_id, options.lease_s, options.max_tracks))
                actor = InferenceActor(ledger, library, backends, claims=keeper, serves=serves(backends))
                announcer = Announcer(
                    claims, worker_info(worker_id, backends, settings.model.device, time.time()), options.lease_s, actor.load, actor.changed,
                    embeddings=actor.embedding_stats,
                )  # fmt: skip
                await announcer.announce()
                hub.listen(actor.on_event)
                actor.start()
                # No seats of its own: it only hears where the servers' users are.
                presence = PresenceBoard()
                presence.watch(actor.viewing)
                warms = isinstance(backends.segmenter, EmbeddingWarmer)
                relay = await open_presence(dataclasses.replace(settings, shared_log=True), presence) if warms else None
                announcing = asyncio.create_task(announcer.run(), name="worker-announce")
                log.info("worker %s: %s backend, trackers %s", worker_id, backends.backend, ", ".join(announcer.info.trackers))
                print(f"worker {worker_id} working (backend: {backends.backend}; log at {settings.log_location})", flush=True)
                if ready is not None:
                    ready.set()
                try:
                    await stop.wait()
                finally:
                    announcing.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await announcing
                    if relay is not None:
                        await relay.close()
                    hub.unlisten(actor.on_event)
                    await actor.stop()
                    await announcer.retire()
            finally:
                await ledger.close()
        finally:
            await claims.close()
    finally:
        await store.close()


def main(settings: Settings, backends: Backends, options: WorkerOptions) -> None:
    """Run a worker in this process until SIGTERM or SIGINT."""

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, backends, options, stop)

    asyncio.run(go())
