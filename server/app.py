"""The Starlette application: opens the log, the accounts and the media library, rebuilds the
projection, and serves REST, the sockets and the page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

import masklog.web
from masklog.inference.actor import InferenceActor
from masklog.inference.claiming import ClaimKeeper, ClaimPolicy
from masklog.inference.registry import Backends, ModelOptions, every_tracker_name, load_backends
from masklog.server import api, redact
from masklog.server.context import Context
from masklog.server.exchange.routes import routes as exchange_routes
from masklog.server.hub import Hub
from masklog.server.ledger import Ledger
from masklog.server.limits import Limits
from masklog.server.media import MediaLibrary
from masklog.server.openapi import openapi
from masklog.server.presence import PresenceBoard
from masklog.server.settings import Settings
from masklog.server.shared_ledger import SharedLedger
from masklog.server.storage import open_accounts, open_claims, open_presence, open_store
from masklog.server.store import EventStore, StoreClosed, StoreCorrupted
from masklog.server.work_routes import routes as work_routes
from masklog.server.workers import Announcer, WorkerDirectory, new_worker_id, serves, worker_info
from masklog.server.ws import media_socket

log = logging.getLogger("masklog")

# The page ships inside the package (`masklog.web`, the repository's web/ folder): found the same
# way in the source tree and in an installed copy.
WEB_DIR = Path(next(iter(masklog.web.__path__)))


def model_options(settings: Settings) -> ModelOptions:
    """What the settings give the backend's loader (the compile cache defaults to the data folder)."""
    model = settings.model
    return ModelOptions(
        checkpoint=model.sam2_checkpoint,
        config=model.sam2_config,
        device=model.device,
        compile=model.sam2_compile,
        compile_cache=model.sam2_compile_cache or settings.data / "compile-cache",
        compile_mode=model.sam2_compile_mode,
        embedding_cache_bytes=model.embedding_cache_mb * 1024**2,
    )


def load_configured_backends(settings: Settings) -> Backends:
    return load_backends(settings.model.backend, model_options(settings))


@contextlib.asynccontextmanager
async def open_context(settings: Settings, backends: Backends | None = None) -> AsyncIterator[Context]:
    settings.data.mkdir(parents=True, exist_ok=True)
    if backends is None:
        backends = await asyncio.to_thread(load_configured_backends, settings)
    # The checks that read the whole log run once the server serves (`_verify_store`), so that
    # start-up does not grow with the history.
    store = await open_store(settings, verify_on_open=False)
    try:
        accounts = await open_accounts(settings)
    except BaseException:
        await store.close()
        raise
    try:
        hub = Hub()
        # Alone on its log, a server accepts the trackers it runs; sharing it, any registered
        # one (the workers directory refuses what no live worker runs, saying why).
        trackers = every_tracker_name() if settings.follows_log else backends.names()
        ledger = (SharedLedger if settings.follows_log else Ledger)(
            store, hub, trackers=trackers, budget_bytes=settings.projection_budget_mb * 1024**2, snapshot_every=settings.snapshot_every
        )
        report = await ledger.load()
        log.info(
            "masklog: loaded the base (%s, then %d events) and %d media items with running tracks%s in %.2f s",
            f"snapshot at {report.base_seq}" if report.base_seq is not None else "no snapshot: folded from 0",
            report.tail_events,
            len(report.media),
            f" ({', '.join(report.media[:10])}{', ...' if len(report.media) > 10 else ''})" if report.media else "",
            report.seconds,
        )
        library = MediaLibrary(
            settings.media_dir, settings.frame_cache, settings.open_media,
            frame_cache_bytes=settings.frame_cache_bytes, max_image_pixels=settings.max_image_pixels,
        )
        # Several processes on the log: the model work is shared by claims, and the workers
        # registry says who can serve what (server.workers). Alone on it: no claims.
        claims = await open_claims(settings) if settings.follows_log else None
        directory = WorkerDirectory(claims)
        keeper = announcer = None
        if claims is not None and settings.run_models:
            worker_id = new_worker_id()
            keeper = ClaimKeeper(claims, ClaimPolicy(worker_id, settings.worker_lease_s, settings.worker_max_tracks))
        actor = InferenceActor(ledger, library, backends, claims=keeper, serves=serves(backends) if keeper is not None else None)
        if keeper is not None and claims is not None:
            announcer = Announcer(
                claims, worker_info(keeper.policy.holder, backends, settings.model.device, time.time()), settings.worker_lease_s, actor.load, actor.changed,
                embeddings=actor.embedding_stats,
            )  # fmt: skip
            await announcer.announce()
        if settings.run_models:
            hub.listen(actor.on_event)
            actor.start()
        presence = PresenceBoard()
        if settings.run_models:
            presence.watch(actor.viewing)  # the frames users are on are embedded ahead of clicks
        relay = await open_presence(settings, presence)
        ctx = Context(settings, store, hub, ledger, accounts, presence, library, backends, actor, Limits(settings), claims=claims, workers=directory)
        await directory.refresh()
        background = [asyncio.create_task(_check_access(ctx)), asyncio.create_task(_verify_store(store, ledger)), asyncio.create_task(directory.follow())]
        if announcer is not None:
            background.append(asyncio.create_task(announcer.run()))
        try:
            yield ctx
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if settings.run_models:
                hub.unlisten(actor.on_event)
            await actor.stop()
            if announcer is not None:
                await announcer.retire()
            if relay is not None:
                await relay.close()
            await ledger.close()
            if claims is not None:
                await claims.close()
    finally:
        await accounts.close()
        await store.close()


async def _verify_store(store: EventStore, ledger: Ledger) -> None:
    """The log's integrity check, in the background once the server serves. A damaged log is
    not written any more: the ledger refuses every command, saying why; reads go on."""
    started = time.perf_counter()
    try:
        await store.verify()
    except StoreCorrupted as error:
        log.critical("masklog: the event log failed its integrity check; refusing all changes: %s", error)
        ledger.refuse_writes(f"the event log failed its integrity check ({error}); an administrator must repair it")
    except StoreClosed:
        pass
    else:
        log.info("masklog: the event log passed its integrity check in %.1f s", time.perf_counter() - started)


async def _check_access(ctx: Context) -> None:
    """End open sockets whose access was lost outside this process, or by expiry."""
    while True:
        await asyncio.sleep(ctx.settings.access_check_s)
        try:
            await ctx.sessions.sweep(ctx.accounts)
        except Exception:  # a busy or broken accounts file must not stop the checks
            log.exception("checking open sockets against the accounts failed")


def create_app(settings: Settings, backends: Backends | None = None) -> Starlette:
    """`backends` already loaded (the CLI loads them first, to fail before serving), or None to
    load them from the settings at start-up."""
    redact.install()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_context(settings, backends) as ctx:
            app.state.ctx = ctx
            log.info("masklog: log at %d in %s; models: %s", ctx.ledger.head, settings.log_location, ctx.backends.segmenter.model)
            yield

    routes = [*api.routes, *exchange_routes, *work_routes, Route("/api/openapi.json", openapi), WebSocketRoute("/api/media/{media}/ws", media_socket)]
    if (WEB_DIR / "index.html").exists():
        routes.append(Mount("/", StaticFiles(directory=WEB_DIR, html=True)))
    return Starlette(routes=routes, lifespan=lifespan)
