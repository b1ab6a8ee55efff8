"""The export and import routes:

    GET  /api/projects/{project}/export?format=<a name in formats.FORMATS>
         [&media=a,b] [&proposals=1] [&first=N&last=N] [&seq=N] [&masks=polygon] [&images=1]
    POST /api/media/{media}/import          (a COCO file: multipart `file`, or the JSON as the body)

Exports stream: the selection is taken from the projection in one step, then encoded frame by
frame while it is sent, on a worker thread. The import is all or nothing: the whole file is
checked and turned into commands first, then they are decided and appended together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from masklog.domain import coco
from masklog.domain.decide import Command
from masklog.domain.events import ID_PATTERN, Event, MediaAdded
from masklog.server.accounts import RANK, Role, User
from masklog.server.authorization import Forbidden, require
from masklog.server.context import Context
from masklog.server.exchange.formats import DEFAULT_FORMAT, FORMATS
from masklog.server.exchange.writer import LabelsToExport, LogWriter, project_streams
from masklog.server.replay import replay_project
from masklog.server.requests import ApiError, endpoint, int_param, json_response, read_bytes, read_form, refuse_declared_over, visible_media, visible_project


@dataclass(frozen=True)
class _ExportQuery:
    format: str
    media: list[MediaAdded]
    selection: coco.Selection
    seq: int | None
    images: bool


def _export_query(request: Request, ctx: Context, user: User) -> _ExportQuery:
    project = visible_project(ctx, user, request.path_params["project"])
    params = request.query_params
    kind = params.get("format", DEFAULT_FORMAT)
    if kind not in FORMATS:
        raise ApiError(422, "invalid_request", f"format must be one of {', '.join(FORMATS)}, not {kind!r}")
    in_project = [m for m in ctx.ledger.base.media.values() if m.project == project.project]
    wanted = params.get("media")
    if wanted:
        names = [n for n in wanted.split(",") if n]
        unknown = [n for n in names if n not in {m.media for m in in_project}]
        if unknown:
            raise ApiError(404, "unknown_id", f"unknown media {unknown[0]!r} in project {project.project!r}")
        media = [m for m in in_project if m.media in names]
    else:
        media = in_project
    masks = params.get("masks", "rle")
    if masks not in ("rle", "polygon"):
        raise ApiError(422, "invalid_request", f"masks must be rle or polygon, not {masks!r}")
    selection = coco.Selection(
        proposals=params.get("proposals") in ("1", "true"),
        first=int_param(request, "first"),
        last=int_param(request, "last"),
        polygons=masks == "polygon",
    )
    return _ExportQuery(kind, media, selection, int_param(request, "seq"), params.get("images") in ("1", "true"))


@endpoint
async def export_project(request: Request, ctx: Context, user: User) -> Response:
    """Export a project's labels or its events, in the format that `format` names."""
    wanted = _export_query(request, ctx, user)
    project = request.path_params["project"]
    writer = FORMATS[wanted.format]
    headers = {"Content-Disposition": f'attachment; filename="{project}-{writer.file_suffix}"'}
    if isinstance(writer, LogWriter):
        streams = project_streams(ctx.ledger.base, project)
        return StreamingResponse(writer.write(ctx.store, streams, wanted.seq), media_type=writer.media_type, headers=headers)
    # Media item by media item: each is loaded (or replayed from its nearest snapshot) in turn
    # and only its entries are kept for the export.
    # "Now" is the last position published (everything up to it is committed): replayed like any
    # other position, from each item's nearest snapshot, without holding the ledger's lock (a
    # project of thousands of items would stop every write meanwhile).
    ids = [m.media for m in wanted.media]
    published = ctx.ledger.published
    state = await replay_project(ctx.store, project, ids, published if wanted.seq is None or wanted.seq >= published else wanted.seq)
    # The media list as of `seq`: items added later did not exist then.
    media = [m for m in wanted.media if m.media in state.media]
    # Generators handed to StreamingResponse run on a worker thread: the writer takes its
    # selection here, on the loop, and only encoding happens there.
    chunks = writer.write(LabelsToExport(state, media, wanted.selection, ctx.library.jpeg if wanted.images else None))
    return StreamingResponse(chunks, media_type=writer.media_type, headers=headers)


@endpoint
async def import_coco(request: Request, ctx: Context, user: User) -> Response:
    """Import a COCO instance file onto a media item: labels with source 'imported', all or nothing."""
    media = visible_media(ctx, user, request.path_params["media"])
    role = require(ctx.accounts, user, media.project, Role.ANNOTATOR)
    data = await _read_file(request, ctx)
    state = await ctx.ledger.state_of(media.media)
    # Object ids are global: ids taken on other media items (which the media item's state does
    # not hold) are found once planned, and the import planned again around them.
    taken: set[str] = set()
    for _ in range(8):
        try:
            plan = await asyncio.to_thread(coco.plan_import, state, media, data, _id_maker(state.object_media, taken))
        except coco.CocoError as error:
            raise ApiError(422, "invalid_import", str(error)) from None
        elsewhere = {o for o, m in (await ctx.ledger.claims([c.object for c in plan.objects])).items() if m != media.media}
        if not elsewhere:
            break
        taken |= elsewhere
    if plan.classes and RANK[role] < RANK[Role.ADMIN]:
        names = ", ".join(repr(c.name) for c in plan.classes)
        raise Forbidden(f"the file has categories the project lacks ({names}): a project admin must import it, or add those classes first")

    # The same file again is a no-op: the objects an earlier import of it made are in the log
    # under ids derived from the file, and are skipped with their labels.
    digest = coco.import_digest(data)
    imported = set()
    for origin in plan.origins.values():
        if await ctx.ledger.store.get(coco.origin_event_id(media.media, digest, origin)) is not None:
            imported.add(origin)
    planned_labels = len(plan.labels)
    plan = coco.without_imported(plan, imported)

    # Who may: checked above (annotators for objects and labels, admins for new classes).
    commands: list[Command] = list(plan.commands)
    events: list[Event] = await ctx.ledger.execute_all(user.actor, commands, ids=coco.import_event_ids(plan, media.media, digest))
    return json_response(
        {
            "classes": [c.class_id for c in plan.classes],
            "objects": len(plan.objects),
            "labels": len(plan.labels),
            # Annotations of the file: imported now, and skipped as an earlier import of it made them.
            "created": len(plan.labels),
            "skipped": planned_labels - len(plan.labels),
            "seq": events[-1].seq if events else ctx.ledger.head,
        },
        201 if events else 200,
    )


def _id_maker(used: Collection[str], taken: set[str]) -> Callable[[str], str]:
    """New object ids for an import: the file's own where they are free (not on this media item,
    `used`, nor elsewhere, `taken`), numbered otherwise."""
    planned: set[str] = set()

    def new_id(hint: str) -> str:
        base = hint if hint and ID_PATTERN.match(hint) else "imported"
        candidate, number = base, 1
        while candidate in used or candidate in planned or candidate in taken:
            number += 1
            candidate = f"{base[:56]}-{number}"
        planned.add(candidate)
        return candidate

    return new_id


async def _read_file(request: Request, ctx: Context) -> bytes | bytearray:
    """The COCO file, read as it arrives and never past `max_import_bytes`: a body that says
    it is larger is refused before any of it is read, one that turns out larger as soon as it
    passes the limit."""
    limit = ctx.settings.max_import_bytes
    refuse_declared_over(request, limit, "import")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await read_bytes(request, limit, "import")
    form = await read_form(request, limit, "import", max_files=1, max_fields=5)
    part = form.get("file")
    if not isinstance(part, UploadFile):
        raise ApiError(422, "invalid_request", "send the COCO file as the multipart part 'file'")
    data = await part.read()
    await form.close()
    return data


routes = [
    Route("/api/projects/{project}/export", export_project),
    Route("/api/media/{media}/import", import_coco, methods=["POST"]),
]
