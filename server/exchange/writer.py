"""What an export format is: the one way the route and `masklog export` ask for a file.

There are two kinds of writer:

- A `ProjectionWriter` writes labels, from the projection as of a position (COCO, YOLO). Its
  `write` is called on the event loop and takes from the state everything it needs before it
  returns (the live state keeps changing); the iterator it returns only encodes, and runs on a
  worker thread (the route streams it) or in the CLI, so the file never sits whole in memory.
- A `LogWriter` copies events out of the log itself (the `events` format): it needs no
  projection, only the store, the streams to copy (None: all of the log) and the last position.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from masklog.domain.coco import Selection
from masklog.domain.events import MediaAdded, media_stream, project_stream
from masklog.domain.state import LabelState
from masklog.server.store import EventStore

FrameJpeg = Callable[[MediaAdded, int], bytes]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LabelsToExport:
    """What a projection writer is given: the state as of the export's position, the media items
    to export (all in one project), which labels (`selection`), and a way to read frames as
    JPEG when the caller asked for the images (None otherwise)."""

    state: LabelState
    media: list[MediaAdded]
    selection: Selection
    frame_jpeg: FrameJpeg | None = None
    progress: Progress | None = None


@dataclass(frozen=True)
class ProjectionWriter:
    summary: str  # one line for `masklog export --help`, the OpenAPI description and the docs
    media_type: str
    file_suffix: str  # a download is named "<project>-<file_suffix>"
    write: Callable[[LabelsToExport], Iterator[bytes]]


@dataclass(frozen=True)
class LogWriter:
    summary: str
    media_type: str
    file_suffix: str
    write: Callable[[EventStore, set[str] | None, int | None], AsyncIterator[bytes]]


Writer = ProjectionWriter | LogWriter


def project_streams(state: LabelState, project: str) -> set[str]:
    """The streams that hold everything about `project`: its own and its media items'."""
    return {project_stream(project)} | {media_stream(m.media) for m in state.media.values() if m.project == project}
