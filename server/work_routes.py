"""REST for the model work (issue 17): which workers are live, and where each running track of a
media item stands — waiting in the queue (its place), worked by a worker, taken over by one after
another died."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from masklog.inference.claiming import fair_order, track_key
from masklog.server.accounts import User
from masklog.server.context import Context
from masklog.server.requests import endpoint, json_response, visible_media
from masklog.server.workers import embedding_counts, served_trackers

# The name a server that runs the models itself, alone on its log, goes by.
THIS_SERVER = "this server"


@endpoint
async def list_workers(request: Request, ctx: Context, user: User) -> Response:
    """The live inference workers: what each runs and how busy it is (`shared`: whether work is
    shared through claims; else this server does it all, if it runs models)."""
    if ctx.claims is not None:
        await ctx.workers.refresh()
        workers = [_info(worker) for worker in ctx.workers.live]
    elif ctx.settings.run_models:
        tracks, clicks, _ = ctx.actor.load()
        backends = ctx.backends
        workers = [{
            "id": THIS_SERVER, "host": None, "pid": None, "backend": backends.backend, "trackers": served_trackers(backends),
            "segmenter": backends.segmenter.model, "device": ctx.settings.model.device, "tracks": tracks, "clicks": clicks,
            "resumed": [], "started_at": None, "embeddings": embedding_counts(ctx.actor.embedding_stats()),
        }]  # fmt: skip
    else:
        workers = []
    return json_response({"shared": ctx.claims is not None, "workers": workers})


@endpoint
async def media_tracks(request: Request, ctx: Context, user: User) -> Response:
    """The running tracks of a media item, in the queue's order: `position` (1-based) while no
    worker holds it, else `worker` (its id) and `resumed` (that worker took it over)."""
    media = visible_media(ctx, user, request.path_params["media"])
    running = dict(ctx.ledger.running)
    order = fair_order(running)
    if ctx.claims is not None:
        await ctx.workers.refresh()
        held = await ctx.claims.holders([track_key(t) for t in order])
        holder = {t: held[track_key(t)].holder for t in order if track_key(t) in held}
        resumed = {t for worker in ctx.workers.live for t in worker.resumed}
    else:
        holder = {t: THIS_SERVER for t in order} if ctx.settings.run_models else {}
        resumed = set()
    waiting = [t for t in order if t not in holder]
    tracks = [
        {
            "track": t,
            "requester": running[t][1],
            "position": waiting.index(t) + 1 if t not in holder else None,
            "worker": holder.get(t),
            "resumed": t in resumed,
        }
        for t in order
        if running[t][0] == media.media
    ]
    return json_response({"media": media.media, "waiting": len(waiting), "tracks": tracks})


def _info(worker: Any) -> dict[str, Any]:
    return {name: getattr(worker, name) for name in worker.__struct_fields__}


routes = [
    Route("/api/workers", list_workers),
    Route("/api/media/{media}/tracks", media_tracks),
]
