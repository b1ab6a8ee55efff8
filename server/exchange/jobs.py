"""Export and import without a server: `masklog export` and `masklog import-log` (server/cli.py).

They open the data folder's log themselves, so no server needs to run; the export writes with
the same writers as the route (server/exchange/formats.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from masklog.domain import coco
from masklog.domain.events import Event, MediaAdded, NewEvent, SchemaError, decode_event
from masklog.server.exchange.formats import FORMATS
from masklog.server.exchange.writer import LabelsToExport, LogWriter, Progress, project_streams
from masklog.server.replay import project_as_of, replay_project


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
    progress: Progress | None = None,
) -> None:
    """Write an export of the log in `data` in format `kind` (a name in FORMATS)."""
    from masklog.server.media import MediaLibrary
    from masklog.server.settings import Settings
    from masklog.server.storage import open_store

    writer = FORMATS.get(kind)
    if writer is None:
        raise ExchangeError(f"format must be one of {', '.join(FORMATS)}, not {kind!r}")
    settings = Settings(data=data)
    if not settings.database.exists():
        raise ExchangeError(f"no event log at {settings.database}")
    store = await open_store(settings)
    try:
        if isinstance(writer, LogWriter) and project is None:
            async for chunk in writer.write(store, None, seq):
                out.write(chunk)
            return
        # The project-level state (small), then the project's media items one after the
        # other, each from its nearest snapshot: never a fold of the whole log.
        position = seq if seq is not None else await store.head()
        base = await project_as_of(store, project, position) if project is not None else None
        if base is None or project not in base.projects:
            raise ExchangeError(f"unknown project {project!r}" if project else f"name a project (--project) for {kind} exports")
        in_project = [m for m in base.media.values() if m.project == project]
        unknown = [m for m in media_ids if m not in {item.media for item in in_project}]
        if unknown:
            raise ExchangeError(f"unknown media {unknown[0]!r} in project {project!r}")
        media = [m for m in in_project if not media_ids or m.media in media_ids]
        if isinstance(writer, LogWriter):
            async for chunk in writer.write(store, project_streams(base, project), seq):
                out.write(chunk)
            return
        state = await replay_project(store, project, [m.media for m in media], position)

        @functools.cache  # opened only if a writer reads frames
        def library() -> MediaLibrary:
            return MediaLibrary(settings.media_dir, settings.frame_cache, settings.open_media)

        def frame_jpeg(item: MediaAdded, frame: int) -> bytes:
            return library().jpeg(item, frame)

        for chunk in writer.write(LabelsToExport(state, media, selection, frame_jpeg if images else None, progress)):
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
    from masklog.server.settings import Settings
    from masklog.server.storage import open_store

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
