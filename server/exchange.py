"""Getting labels out and in (E1, E2): COCO, YOLO and the event log itself.

    GET  /api/projects/{project}/export?format=coco|yolo|events
         [&media=a,b] [&proposals=1] [&first=N&last=N] [&seq=N] [&masks=polygon] [&images=1]
    POST /api/media/{media}/import          (a COCO file: multipart `file`, or the JSON as the body)

Exports stream: the selection is taken from the projection in one step, then encoded frame by
frame while it is sent, on a worker thread. The import is all or nothing: the whole file is
checked and turned into commands first, then they are decided and appended together.

The same writers serve `masklog export` (server/cli.py), which adds progress on the terminal.
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from domain import coco, yolo
from domain.events import ID_PATTERN, Event, MediaAdded, NewEvent, SchemaError, decode_event, encode, media_stream, project_stream
from domain.state import LabelState
from server.accounts import RANK, Role, User
from server.api import ApiError, _int_param, _limited, _media, _project, _TooLarge, endpoint, json_response
from server.authorization import Forbidden, require
from server.context import Context
from server.replay import replay, state_as_of
from server.store import EventStore

FORMATS = ("coco", "yolo", "events")


@dataclass(frozen=True)
class ExportRequest:
    format: str
    media: list[MediaAdded]
    selection: coco.Selection
    seq: int | None
    images: bool


def project_streams(state: LabelState, project: str) -> set[str]:
    return {project_stream(project)} | {media_stream(m.media) for m in state.media.values() if m.project == project}


# ---- writers shared with the CLI ---------------------------------------------------------------


def coco_chunks(state: LabelState, request: ExportRequest, progress: Callable[[int, int], None] | None = None) -> Iterator[bytes]:
    project = request.media[0].project if request.media else ""
    classes = [c for c in state.classes.values() if c.project == project]
    selected = coco.select(state, request.media, request.selection)
    return coco.export_chunks(classes, selected, request.selection, seq=state.seq, progress=progress)


def yolo_chunks(
    state: LabelState,
    request: ExportRequest,
    frame_jpeg: Callable[[MediaAdded, int], bytes] | None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[bytes]:
    """A zip of the YOLO files (and the frames as JPEG when `frame_jpeg` is given), written as
    it goes: zipfile streams to a sink that cannot seek, with sizes after each member."""
    project = request.media[0].project if request.media else ""
    classes = yolo.area_classes(state, project)
    selected = coco.select(state, request.media, request.selection)
    total = sum(len(items) for _, items in selected)

    def generate() -> Iterator[bytes]:
        sink = _Sink()
        done = 0
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path, content in yolo.label_files(classes, selected):
                archive.writestr(path, content)
                yield sink.take()
                if path.startswith("labels/"):
                    done += 1
                    if progress is not None:
                        progress(done, total)
            if frame_jpeg is not None:
                for media, items in selected:
                    for frame in items:
                        archive.writestr(f"images/{media.media}/{frame:06d}.jpg", frame_jpeg(media, frame), compress_type=zipfile.ZIP_STORED)
                        yield sink.take()
        yield sink.take()

    return generate()


class _Sink:
    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


async def iter_event_lines(store: EventStore, streams: set[str] | None, seq: int | None):  # type: ignore[no-untyped-def]
    """The log (or the events of `streams`) as JSON lines, in order, up to `seq`."""
    async for batch in store.iter_batches(0):
        lines = []
        for event in batch:
            if seq is not None and event.seq > seq:
                if lines:
                    yield b"".join(lines)
                return
            if streams is None or event.stream in streams:
                lines.append(encode(event) + b"\n")
        if lines:
            yield b"".join(lines)


# ---- routes ------------------------------------------------------------------------------------------


def _export_request(request: Request, ctx: Context, user: User) -> ExportRequest:
    project = _project(ctx, user, request.path_params["project"])
    params = request.query_params
    kind = params.get("format", "coco")
    if kind not in FORMATS:
        raise ApiError(422, "invalid_request", f"format must be one of {', '.join(FORMATS)}, not {kind!r}")
    state = ctx.ledger.state
    in_project = [m for m in state.media.values() if m.project == project.project]
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
        first=_int_param(request, "first"),
        last=_int_param(request, "last"),
        polygons=masks == "polygon",
    )
    return ExportRequest(kind, media, selection, _int_param(request, "seq"), params.get("images") in ("1", "true"))


@endpoint
async def export_project(request: Request, ctx: Context, user: User) -> Response:
    """Export a project's labels as COCO (JSON) or YOLO (zip), or its events as JSON lines."""
    wanted = _export_request(request, ctx, user)
    project = request.path_params["project"]
    streams = project_streams(ctx.ledger.state, project)
    if wanted.format == "events":
        return StreamingResponse(iter_event_lines(ctx.store, streams, wanted.seq), media_type="application/x-ndjson", headers=_attachment(f"{project}-events.jsonl"))
    state = await state_as_of(ctx.store, ctx.ledger.state, streams, wanted.seq)
    # The media list as of `seq`: items added later did not exist then.
    selected_media = [m for m in wanted.media if m.media in state.media]
    wanted = ExportRequest(wanted.format, selected_media, wanted.selection, wanted.seq, wanted.images)
    if wanted.format == "coco":
        # Generators handed to StreamingResponse run on a worker thread: the selection is taken
        # here, on the loop, and only encoding happens there.
        chunks = coco_chunks(state, wanted)
        first = next(chunks)
        return StreamingResponse(_prefixed(first, chunks), media_type="application/json", headers=_attachment(f"{project}-coco.json"))
    library = ctx.library
    jpeg = library.jpeg if wanted.images else None
    return StreamingResponse(yolo_chunks(state, wanted, jpeg), media_type="application/zip", headers=_attachment(f"{project}-yolo.zip"))


def _prefixed(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@endpoint
async def import_coco(request: Request, ctx: Context, user: User) -> Response:
    """Import a COCO instance file onto a media item: labels with source 'imported', all or nothing."""
    media = _media(ctx, user, request.path_params["media"])
    role = require(ctx.accounts, user, media.project, Role.ANNOTATOR)
    data = await _read_file(request, ctx)
    state = ctx.ledger.state
    planned: set[str] = set()

    def new_id(hint: str) -> str:
        base = hint if hint and ID_PATTERN.match(hint) else "imported"
        candidate, number = base, 1
        while candidate in state.object_media or candidate in planned:
            number += 1
            candidate = f"{base[:56]}-{number}"
        planned.add(candidate)
        return candidate

    try:
        plan = await asyncio.to_thread(coco.plan_import, state, media, data, new_id)
    except coco.CocoError as error:
        raise ApiError(422, "invalid_import", str(error)) from None
    if plan.classes and RANK[role] < RANK[Role.ADMIN]:
        names = ", ".join(repr(c.name) for c in plan.classes)
        raise Forbidden(f"the file has categories the project lacks ({names}): a project admin must import it, or add those classes first")

    # Who may: checked above (annotators for objects and labels, admins for new classes).
    events: list[Event] = await ctx.ledger.execute_all(user.actor, plan.commands)
    return json_response(
        {
            "classes": [c.class_id for c in plan.classes],
            "objects": len(plan.objects),
            "labels": len(plan.labels),
            "seq": events[-1].seq if events else ctx.ledger.state.seq,
        },
        201,
    )


async def _read_file(request: Request, ctx: Context) -> bytes | bytearray:
    """The COCO file, read as it arrives and never past `max_import_bytes`: a body that says
    it is larger is refused before any of it is read, one that turns out larger as soon as it
    passes the limit."""
    limit = ctx.settings.max_import_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, "too_large", f"import over {limit} bytes")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            form = await _limited(request, limit).form(max_files=1, max_fields=5)
        except _TooLarge:
            raise ApiError(413, "too_large", f"import over {limit} bytes") from None
        except Exception as error:
            raise ApiError(400, "malformed_upload", f"cannot read the upload: {error}") from None
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise ApiError(422, "invalid_request", "send the COCO file as the multipart part 'file'")
        data = await part.read()
        await form.close()
        return data
    data = bytearray()
    try:
        async for chunk in _limited(request, limit).stream():
            data += chunk
    except _TooLarge:
        raise ApiError(413, "too_large", f"import over {limit} bytes") from None
    return data


routes = [
    Route("/api/projects/{project}/export", export_project),
    Route("/api/media/{media}/import", import_coco, methods=["POST"]),
]


# ---- offline: `masklog export` and `masklog import-log` -------------------------------------------


class ExchangeError(Exception):
    """A CLI export or import that cannot be done; the message says why."""


async def export_offline(
    data: Path,
    project: str | None,
    media_ids: list[str],
    kind: str,
    out: BinaryIO,
    selection: coco.Selection,
    seq: int | None,
    images: bool,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write an export of the log in `data` (no server needs to run)."""
    from server.media import MediaLibrary
    from server.settings import Settings
    from server.storage import open_store

    settings = Settings(data=data)
    if not settings.database.exists():
        raise ExchangeError(f"no event log at {settings.database}")
    store = await open_store(settings)
    try:
        if kind == "events" and project is None:
            async for chunk in iter_event_lines(store, None, seq):
                out.write(chunk)
            return
        if seq is None:
            from server.ledger import rebuild

            state = await rebuild(store)
        else:
            state = await replay(store, None, seq)
        if project is None or project not in state.projects:
            raise ExchangeError(f"unknown project {project!r}" if project else "name a project (--project) for coco and yolo exports")
        in_project = [m for m in state.media.values() if m.project == project]
        unknown = [m for m in media_ids if m not in {item.media for item in in_project}]
        if unknown:
            raise ExchangeError(f"unknown media {unknown[0]!r} in project {project!r}")
        media = [m for m in in_project if not media_ids or m.media in media_ids]
        request = ExportRequest(kind, media, selection, seq, images)
        if kind == "events":
            async for chunk in iter_event_lines(store, project_streams(state, project), seq):
                out.write(chunk)
        elif kind == "coco":
            for chunk in coco_chunks(state, request, progress):
                out.write(chunk)
        else:
            library = MediaLibrary(settings.media_dir, settings.frame_cache, settings.open_media)
            for chunk in yolo_chunks(state, request, library.jpeg if images else None, progress):
                out.write(chunk)
    finally:
        await store.close()


async def import_log(
    data: Path, lines: Iterator[bytes], progress: Callable[[int], None] | None = None, max_bytes: int | None = None
) -> int:
    """Load an exported event log into the empty log of `data`, keeping every event's id, actor,
    stream, cause and body, in order: the projection after each event is the one the exported
    log had at that event. Every line is checked before anything is written, and all of them
    are held meanwhile, so the log may be at most `max_bytes` (default `max_import_bytes`);
    returns the number of events."""
    from server.settings import Settings
    from server.storage import open_store

    limit = Settings.max_import_bytes if max_bytes is None else max_bytes
    events: list[Event] = []
    read = 0
    for number, line in enumerate(lines, start=1):
        read += len(line)
        if read > limit:
            raise ExchangeError(f"the log is over {limit} bytes (line {number}); raise the limit with --max-bytes")
        if not line.strip():
            continue
        try:
            event = decode_event(line)
        except SchemaError as error:
            raise ExchangeError(f"line {number} is not a masklog event: {error}") from None
        if events and event.seq <= events[-1].seq:
            raise ExchangeError(f"line {number}: events must be in log order (seq {event.seq} after {events[-1].seq})")
        events.append(event)
    settings = Settings(data=data)
    data.mkdir(parents=True, exist_ok=True)
    store = await open_store(settings)
    try:
        head = await store.head()
        if head:
            raise ExchangeError(f"the log at {settings.database} already holds {head} events: import into an empty data folder")
        for start in range(0, len(events), 10_000):
            batch = events[start : start + 10_000]
            await store.append([NewEvent(id=e.id, stream=e.stream, actor=e.actor, body=e.body, cause=e.cause) for e in batch])
            if progress is not None:
                progress(start + len(batch))
    finally:
        await store.close()
    return len(events)
