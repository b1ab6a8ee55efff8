"""REST: projects, ontology, members, media upload, frames, labels, history, audit, commands.

Every route needs a token (`Authorization: Bearer <token>`; GET routes still take `?token=` for
old clients, redacted from the logs, but the page sends the header). Errors are JSON `{"error": {"code", "message"}}` with a fitting
status; a refused request changes nothing. docs/api.md lists the routes and who may call them.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import msgspec
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from masklog.domain.audit import GroupBy, cell_history, counts
from masklog.domain.decide import Command, Scope, check_new_id
from masklog.domain.events import (
    ClassAdded,
    Color,
    Event,
    Id,
    MediaAdded,
    MediaKind,
    Name,
    ProjectCreated,
    SkeletonTemplate,
    Source,
    media_stream,
    project_stream,
)
from masklog.domain.limits import INT64_MAX
from masklog.domain.precheck import is_costly, precheck
from masklog.domain.shapes import SHAPE_FAMILIES, ShapeKind
from masklog.domain.state import LabelState
from masklog.inference.frames.errors import FrameError
from masklog.server.accounts import TOKEN_ID_LENGTH, AccountError, Role, UnknownUser, User
from masklog.server.authorization import Forbidden, authorize_command, authorize_on_media, require
from masklog.server.context import Context
from masklog.server.protocol import CommandRequest, clamp_window, snapshot, window_error, window_labels
from masklog.server.replay import state_as_of
from masklog.server.requests import (
    ApiError,
    endpoint,
    frame_param,
    int_param,
    json_response,
    read_form,
    read_json,
    refuse_declared_over,
    visible_media,
    visible_project,
)

# `GET /api/me`'s shape families, as sorted lists of kind names (stable JSON).
SHAPE_FAMILY_LISTS = {name: sorted(kind.value for kind in kinds) for name, kinds in SHAPE_FAMILIES.items()}
# Every shape kind a class may have, in the enum's order (the page's class form offers these).
SHAPE_KINDS = [kind.value for kind in ShapeKind]


async def _execute(ctx: Context, user: User, command: Command, command_id: str | None = None, panoptic: bool = False) -> tuple[Event, bool]:
    def authorize(scope: Scope) -> None:
        authorize_command(ctx, user, command, scope)
        ctx.limits.check_quota(ctx.ledger.running, user.actor, command)
        ctx.workers.check(command)

    ctx.limits.admit(user.actor, command)
    await ctx.workers.look_again(command)
    return await ctx.ledger.execute(user.actor, command, command_id or str(uuid.uuid4()), authorize=authorize, panoptic=panoptic)


# ---- who am I, projects -----------------------------------------------------------------------


async def health(request: Request) -> Response:
    """Alive, and this process's write-path counters (several processes on one log: commands
    that met another process's write and were decided again, and those given up)."""
    ledger = request.app.state.ctx.ledger
    return json_response({"ok": True, "shared_log": ledger.shared, "conflicts": ledger.conflicts, "retries": ledger.conflicts - ledger.contended, "contended": ledger.contended})


@endpoint
async def me(request: Request, ctx: Context, user: User) -> Response:
    """Who the token is, and the shape kinds and families the page needs (so it repeats none of them)."""
    return json_response({"name": user.name, "role": user.role.value, "actor": user.actor, "shape_families": SHAPE_FAMILY_LISTS, "shape_kinds": SHAPE_KINDS})


@endpoint
async def get_capabilities(request: Request, ctx: Context, user: User) -> Response:
    """Which trackers and segmenter this server runs, why the others do not, and the default."""
    return json_response(ctx.workers.capabilities(ctx.backends))


def _project_view(state: LabelState, project: ProjectCreated, role: Role) -> dict[str, Any]:
    return {
        "id": project.project,
        "name": project.name,
        "role": role.value,
        "classes": [c for c in state.classes.values() if c.project == project.project],
        "media": [m for m in state.media.values() if m.project == project.project],
    }


@endpoint
async def list_projects(request: Request, ctx: Context, user: User) -> Response:
    state = ctx.ledger.base
    visible = ctx.accounts.projects_of(user)
    views = [
        _project_view(state, project, ctx.accounts.role_in(user, pid))  # type: ignore[arg-type]
        for pid, project in sorted(state.projects.items())
        if visible is None or pid in visible
    ]
    return json_response(views)


class NewProject(msgspec.Struct, forbid_unknown_fields=True):
    id: Id
    name: Name


@endpoint
async def create_project(request: Request, ctx: Context, user: User) -> Response:
    body = await read_json(request, NewProject, ctx.settings.max_request_bytes)
    event, _ = await _execute(ctx, user, ProjectCreated(project=body.id, name=body.name))
    await ctx.accounts.set_member(body.id, user.name, Role.ADMIN)
    return json_response({"id": body.id, "seq": event.seq}, 201)


@endpoint
async def get_project(request: Request, ctx: Context, user: User) -> Response:
    project = visible_project(ctx, user, request.path_params["project"])
    role = ctx.accounts.role_in(user, project.project)
    return json_response(_project_view(ctx.ledger.base, project, role))  # type: ignore[arg-type]


class NewClass(msgspec.Struct, forbid_unknown_fields=True):
    id: Id
    name: Name
    shape: ShapeKind
    color: Color
    skeleton: SkeletonTemplate | None = None


@endpoint
async def add_class(request: Request, ctx: Context, user: User) -> Response:
    project = visible_project(ctx, user, request.path_params["project"])
    body = await read_json(request, NewClass, ctx.settings.max_request_bytes)
    command = ClassAdded(project=project.project, class_id=body.id, name=body.name, shape=body.shape, color=body.color, skeleton=body.skeleton)
    event, _ = await _execute(ctx, user, command)
    return json_response({"id": body.id, "seq": event.seq}, 201)


# ---- members ------------------------------------------------------------------------------------


@endpoint
async def list_members(request: Request, ctx: Context, user: User) -> Response:
    project = visible_project(ctx, user, request.path_params["project"])
    return json_response({name: role.value for name, role in sorted(ctx.accounts.members(project.project).items())})


class Membership(msgspec.Struct, forbid_unknown_fields=True):
    role: Role


@endpoint
async def set_member(request: Request, ctx: Context, user: User) -> Response:
    project = visible_project(ctx, user, request.path_params["project"])
    require(ctx.accounts, user, project.project, Role.ADMIN)
    name = request.path_params["user"]
    if request.method == "DELETE":
        await ctx.accounts.set_member(project.project, name, None)
        ctx.sessions.member_changed(ctx.accounts, project.project, name)
        return json_response({"user": name, "role": None})
    body = await read_json(request, Membership, ctx.settings.max_request_bytes)
    await ctx.accounts.set_member(project.project, name, body.role)
    ctx.sessions.member_changed(ctx.accounts, project.project, name)
    return json_response({"user": name, "role": body.role.value})


# ---- tokens ---------------------------------------------------------------------------------------


TOKEN_ID = re.compile(rf"^[0-9a-f]{{{TOKEN_ID_LENGTH}}}$")


def _account_admin(user: User) -> None:
    if user.role != Role.ADMIN:
        raise Forbidden("only account admins manage tokens")


@endpoint
async def list_tokens(request: Request, ctx: Context, user: User) -> Response:
    _account_admin(user)
    try:
        tokens = await ctx.accounts.tokens(request.path_params["user"])
    except UnknownUser as error:
        raise ApiError(404, "unknown_id", str(error)) from None
    return json_response({"tokens": tokens})


@endpoint
async def revoke_tokens(request: Request, ctx: Context, user: User) -> Response:
    """Revoke all of a user's tokens, or the one whose id is in the path; their open sockets
    close at once (4001)."""
    _account_admin(user)
    name = request.path_params["user"]
    token = request.path_params.get("token")
    if token is not None and not TOKEN_ID.match(token):
        # Only ids here: a token itself in a path would end up in logs.
        raise ApiError(422, "invalid_request", f"give the token's id ({TOKEN_ID_LENGTH} hex digits, see GET /api/users/{name}/tokens), not the token")
    try:
        revoked = await ctx.accounts.revoke(name, token)
    except UnknownUser as error:
        raise ApiError(404, "unknown_id", str(error)) from None
    except AccountError as error:
        raise ApiError(404, "unknown_id", str(error)) from None
    ctx.sessions.tokens_revoked(name, revoked)
    return json_response({"user": name, "revoked": revoked})


# ---- media ----------------------------------------------------------------------------------------


class MediaForm(msgspec.Struct, forbid_unknown_fields=True):
    id: Id
    name: Name
    kind: MediaKind | None = None  # None: the files' content decides (media.detect_kind)


@endpoint
async def upload_media(request: Request, ctx: Context, user: User) -> Response:
    """multipart/form-data: `id`, `name`, `kind` (optional: without it the files' content decides)
    and one or more `file` parts (in frame order). File names are never trusted for what a file is."""
    project = visible_project(ctx, user, request.path_params["project"])
    require(ctx.accounts, user, project.project, Role.ADMIN)
    limit = ctx.settings.max_upload_bytes
    refuse_declared_over(request, limit, "upload")
    library = ctx.library
    staging = await asyncio.to_thread(library.staging)
    try:
        form = await read_form(request, limit, "upload", max_files=100_000, max_fields=20)
        try:
            fields = msgspec.convert({k: v for k, v in form.items() if isinstance(v, str)}, MediaForm)
        except msgspec.ValidationError as error:
            raise ApiError(422, "invalid_request", str(error)) from None
        check_new_id(fields.id, "media")  # now, before the files are stored under it
        if fields.id in ctx.ledger.base.media:
            raise ApiError(409, "already_exists", f"media {fields.id!r} already exists")
        files = [part for part in form.getlist("file") if isinstance(part, UploadFile)]
        staged = []
        for index, part in enumerate(files):
            path = staging / f"{index:06d}.upload"
            await asyncio.to_thread(_save, part, path)
            staged.append((part.filename or "", path))
        await form.close()
        probed = await asyncio.to_thread(library.ingest, fields.id, fields.kind, staged)
    finally:
        await asyncio.to_thread(library.discard, staging)
    kind = probed.kind or fields.kind
    assert kind is not None  # ingest names the kind it stored
    command = MediaAdded(
        project=project.project, media=fields.id, name=fields.name, kind=kind,
        width=probed.width, height=probed.height, frames=probed.frames, fps=probed.fps,
    )
    try:
        event, _ = await ctx.ledger.execute(user.actor, command, str(uuid.uuid4()))
    except BaseException:
        await asyncio.to_thread(library.remove, fields.id)
        raise
    return json_response({"media": command, "seq": event.seq}, 201)


def _save(part: UploadFile, path: Path) -> None:
    part.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(part.file, out, 1024 * 1024)


@endpoint
async def get_media(request: Request, ctx: Context, user: User) -> Response:
    media = visible_media(ctx, user, request.path_params["media"])
    return json_response(media)


@endpoint
async def get_frame(request: Request, ctx: Context, user: User) -> Response:
    media = visible_media(ctx, user, request.path_params["media"])
    index = frame_param(request, "index", media)
    etag = '"' + hashlib.sha1(f"{media.media}/{index}".encode()).hexdigest()[:16] + '"'
    headers = {"Cache-Control": "private, max-age=86400, immutable", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    try:
        data = await asyncio.to_thread(ctx.library.jpeg, media, index)
    except FrameError as error:
        raise ApiError(500, "frame_unreadable", str(error)) from None
    return Response(data, media_type="image/jpeg", headers=headers)


# ---- labels, history, audit -------------------------------------------------------------------------

# The most positions one GET /api/media/{media}/positions answers (the replay's steps).
POSITIONS_PAGE = 10_000


async def _state_for(ctx: Context, media: MediaAdded, seq: int | None, window: tuple[int, int] | None = None) -> LabelState:
    """The media item's live state (loaded if it is not), or its state as of `seq`, replayed
    from its nearest snapshot (nothing but its stream and its project's affects its labels).
    With a `window`, only the labels of its frames need their shapes: read no shape outside it."""
    return await state_as_of(ctx.store, ctx.ledger, media, seq, window=window)


def _window_param(request: Request, media: MediaAdded) -> tuple[int, int] | None:
    """`from` and `to` (inclusive frames, both or neither), checked and cut to the media item's
    frames; None when neither is given."""
    first = int_param(request, "from", minimum=-INT64_MAX)
    last = int_param(request, "to", minimum=-INT64_MAX)
    if first is None and last is None:
        return None
    if first is None or last is None:
        raise ApiError(400, "bad_window", "a labels window needs both from and to (inclusive frames)")
    problem = window_error(first, last)
    if problem is not None:
        raise ApiError(400, "bad_window", problem)
    return clamp_window((first, last), media.frames)


@endpoint
async def get_labels(request: Request, ctx: Context, user: User) -> Response:
    """The labels of the media item, of one frame (`frame`) or a window (`from`..`to`), now or as of `seq`."""
    media = visible_media(ctx, user, request.path_params["media"])
    frame = int_param(request, "frame")
    seq = int_param(request, "seq")
    window = _window_param(request, media)
    if frame is not None and window is not None:
        raise ApiError(400, "bad_window", "give either frame or from and to, not both")
    if frame is not None and frame >= media.frames:
        raise ApiError(404, "frame_out_of_range", f"frame {frame} is out of range: media {media.media!r} has frames 0..{media.frames - 1}")
    state = await _state_for(ctx, media, seq, window if frame is None else (frame, frame))
    objects = state.objects_of(media.media) if media.media in state.media else {}
    head = ctx.ledger.head
    answer_seq = seq if seq is not None and seq < head else head
    if window is not None:
        first, last = window
        return json_response({"seq": answer_seq, "from": first, "to": last, "labels": window_labels(state, objects, window)})
    entries = window_labels(state, objects, (frame, frame) if frame is not None else (0, media.frames - 1))
    return json_response({"seq": answer_seq, "labels": entries})


@endpoint
async def get_snapshot(request: Request, ctx: Context, user: User) -> Response:
    """What the socket's snapshot holds, now or as of `seq`; with `from`..`to`, full labels of those frames only."""
    media = visible_media(ctx, user, request.path_params["media"])
    seq = int_param(request, "seq")
    window = _window_param(request, media)
    head = ctx.ledger.head
    state = await _state_for(ctx, media, seq, window)
    if media.media not in state.media:
        raise ApiError(404, "unknown_id", f"media {media.media!r} was not added yet at seq {seq}")
    return json_response(snapshot(state, media.media, user.actor, head if seq is None or seq >= head else state.seq, window))


@endpoint
async def get_history(request: Request, ctx: Context, user: User) -> Response:
    media = visible_media(ctx, user, request.path_params["media"])
    after = int_param(request, "after", 0)
    limit = min(int_param(request, "limit", 100, minimum=1) or 100, 1000)
    events = await ctx.store.read(after or 0, stream=media_stream(media.media), limit=limit)
    following = events[-1].seq if len(events) == limit else None
    return json_response({"events": events, "next_after": following})


@endpoint
async def get_positions(request: Request, ctx: Context, user: User) -> Response:
    """The positions of the media item's own events (its stream), oldest first: the replay's
    steps. Paged like the history, but seqs only, so up to POSITIONS_PAGE a request."""
    media = visible_media(ctx, user, request.path_params["media"])
    after = int_param(request, "after", 0)
    limit = min(int_param(request, "limit", POSITIONS_PAGE, minimum=1) or POSITIONS_PAGE, POSITIONS_PAGE)
    events = await ctx.store.read(after or 0, stream=media_stream(media.media), limit=limit)
    following = events[-1].seq if len(events) == limit else None
    return json_response({"seqs": [event.seq for event in events], "next_after": following, "head": ctx.ledger.head})


@endpoint
async def get_audit(request: Request, ctx: Context, user: User) -> Response:
    media = visible_media(ctx, user, request.path_params["media"])
    try:
        by = GroupBy(request.query_params.get("by", "object"))
    except ValueError:
        raise ApiError(422, "invalid_request", f"by must be one of {', '.join(g.value for g in GroupBy)}") from None
    query = request.query_params
    # Filters (all must hold): annotator (a user name, or an actor such as `model:…`), source,
    # model (empty: labels made without a model) and class.
    annotator = query.get("annotator")
    if annotator and ":" not in annotator:
        annotator = f"user:{annotator}"
    sources = None
    if query.get("source"):
        try:
            sources = [Source(query["source"])]
        except ValueError:
            raise ApiError(422, "invalid_request", f"source must be one of {', '.join(s.value for s in Source)}") from None
    model = query.get("model")
    table = counts(
        await ctx.ledger.state_of(media.media), media.media, by, annotator=annotator or None, sources=sources,
        models=None if model is None else [model or None], classes=[query["class"]] if query.get("class") else None,
    )
    return json_response({"by": by.value, "counts": {str(k): v for k, v in table.items()}})


@endpoint
async def get_event(request: Request, ctx: Context, user: User) -> Response:
    """One event of this media item's stream by its id (the page shows a label's prompt from it)."""
    media = visible_media(ctx, user, request.path_params["media"])
    event = await ctx.store.get(request.path_params["id"])
    if event is None or event.stream != media_stream(media.media):
        raise ApiError(404, "unknown_id", f"unknown event {request.path_params['id']!r}")
    return json_response({"event": event})


@endpoint
async def get_cell_history(request: Request, ctx: Context, user: User) -> Response:
    media = visible_media(ctx, user, request.path_params["media"])
    object_id = request.path_params["object"]
    if (await ctx.ledger.state_of(media.media)).object_media.get(object_id) != media.media:
        raise ApiError(404, "unknown_id", f"unknown object {object_id!r}")
    frame = frame_param(request, "frame", media)
    events: list[Event] = []
    for stream in (project_stream(media.project), media_stream(media.media)):
        async for batch in ctx.store.iter_batches(0, stream=stream):
            events.extend(batch)
    events.sort(key=lambda e: e.seq)
    return json_response({"history": cell_history(events, object_id, frame)})


# ---- commands ------------------------------------------------------------------------------------------


@endpoint
async def post_command(request: Request, ctx: Context, user: User) -> Response:
    media = visible_media(ctx, user, request.path_params["media"])
    body = await read_json(request, CommandRequest, ctx.settings.max_request_bytes)

    def authorize(scope: Scope) -> None:
        authorize_on_media(ctx, user, body.body, scope, media.media)
        ctx.limits.check_quota(ctx.ledger.running, user.actor, body.body)
        ctx.workers.check(body.body)

    ctx.limits.admit(user.actor, body.body)
    command_id = str(body.id)
    if is_costly(body.body):  # off the loop: a long RLE takes a while to check (the answer is kept)
        await asyncio.to_thread(precheck, body.body)
    else:
        precheck(body.body)
    await ctx.workers.look_again(body.body)
    event, duplicate = await ctx.ledger.execute(user.actor, body.body, command_id, authorize=authorize, panoptic=body.panoptic)
    return json_response({"id": command_id, "seq": event.seq, "duplicate": duplicate}, 200 if duplicate else 201)


routes = [
    Route("/api/health", health),
    Route("/api/me", me),
    Route("/api/capabilities", get_capabilities),
    Route("/api/projects", list_projects, methods=["GET"]),
    Route("/api/projects", create_project, methods=["POST"]),
    Route("/api/projects/{project}", get_project),
    Route("/api/projects/{project}/classes", add_class, methods=["POST"]),
    Route("/api/projects/{project}/members", list_members),
    Route("/api/projects/{project}/members/{user}", set_member, methods=["PUT", "DELETE"]),
    Route("/api/projects/{project}/media", upload_media, methods=["POST"]),
    Route("/api/users/{user}/tokens", list_tokens, methods=["GET"]),
    Route("/api/users/{user}/tokens", revoke_tokens, methods=["DELETE"]),
    Route("/api/users/{user}/tokens/{token}", revoke_tokens, methods=["DELETE"]),
    Route("/api/media/{media}", get_media),
    Route("/api/media/{media}/frames/{index}", get_frame),
    Route("/api/media/{media}/labels", get_labels),
    Route("/api/media/{media}/snapshot", get_snapshot),
    Route("/api/media/{media}/history", get_history),
    Route("/api/media/{media}/positions", get_positions),
    Route("/api/media/{media}/audit", get_audit),
    Route("/api/media/{media}/cells/{object}/{frame}", get_cell_history),
    Route("/api/media/{media}/events/{id}", get_event),
    Route("/api/media/{media}/commands", post_command, methods=["POST"]),
]
