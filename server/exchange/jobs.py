"""Export and import without a server: `masklog export` and `masklog import-log` (server/cli.py).

They open the log themselves, so no server needs to run: the data folder's SQLite log, or with
`database_url` the PostgreSQL one (media files still come from the data folder's media
folder); the export writes with the same writers as the route (server/exchange/formats.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from masklog.domain import coco
from masklog.domain.events import Event, MediaAdded, NewEvent, SchemaError, decode_event
from masklog.server.exchange.formats import FORMATS
from masklog.server.exchange.writer import LabelsToExport, LogWriter, Progress, project_streams
from masklog.server.replay import project_as_of, replay_project

if TYPE_CHECKING:
    from masklog.server.settings import Settings
    from masklog.server.store import EventStore


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
    *,
    database_url: str | None = None,
) -> None:
    """Write an export of the log in `data` (or in the PostgreSQL database `database_url`) in
    format `kind` (a name in FORMATS)."""
    from masklog.server.media import MediaLibrary

    writer = FORMATS.get(kind)
    if writer is None:
        raise ExchangeError(f"format must be one of {', '.join(FORMATS)}, not {kind!r}")
    settings = await _existing_log(data, database_url)
    store = await _open(settings)
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
    data: Path,
    lines: Iterator[bytes],
    progress: Callable[[int], None] | None = None,
    max_bytes: int | None = None,
    *,
    database_url: str | None = None,
) -> int:
    """Load an exported event log into the empty log of `data` (or of the PostgreSQL database
    `database_url`), keeping every event's id, actor, stream, cause and body, in order: the projection after each event is the one the exported
    log had at that event. Every line is checked before anything is written, and all of them
    are held meanwhile, so the log may be at most `max_bytes` (default `max_import_bytes`);
    returns the number of events."""
    from masklog.server.settings import Settings

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
    settings = _settings(data, database_url)
    if database_url is None:
        data.mkdir(parents=True, exist_ok=True)
    store = await _open(settings)
    try:
        head = await store.head()
        if head:
            raise ExchangeError(f"the log at {settings.log_location} already holds {head} events: import into an empty data folder or database")
        for start in range(0, len(events), 10_000):
            batch = events[start : start + 10_000]
            await store.append([NewEvent(id=e.id, stream=e.stream, actor=e.actor, body=e.body, cause=e.cause) for e in batch])
            if progress is not None:
                progress(start + len(batch))
    finally:
        await store.close()
    return len(events)


def _settings(data: Path, database_url: str | None) -> Settings:
    from masklog.server.settings import Settings

    if database_url is None:
        return Settings(data=data)
    return Settings(data=data, storage="postgresql", database_url=database_url)


async def _existing_log(data: Path, database_url: str | None) -> Settings:
    """The settings of a log that must already be there: an export never creates one."""
    from masklog.server.storage import inspect_storage
    from masklog.server.store import StoreError

    settings = _settings(data, database_url)
    try:
        found = await inspect_storage(settings)
    except StoreError as error:
        raise ExchangeError(str(error)) from error
    if found.log is None:
        raise ExchangeError(f"no event log at {settings.log_location}")
    return settings


async def _open(settings: Settings) -> EventStore:
    from masklog.server.storage import open_store
    from masklog.server.store import StoreError

    try:
        return await open_store(settings)
    except StoreError as error:
        raise ExchangeError(str(error)) from error
