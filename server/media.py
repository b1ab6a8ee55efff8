"""Media files on disk: storing uploads safely, probing them, serving their frames.

Client file names never touch the file system: a media item's files are stored under its id
(checked against `ID_PATTERN`) with names the server makes (`video.mp4`, `000000.png`, ...);
the client's name is kept only as the display name in the log. Frames are decoded through
`inference.frames` sources (bounded caches) kept open for the most recently used media items.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from domain.events import ID_PATTERN, MediaAdded, MediaKind
from inference.frames import FrameError, ImageListFrames, VideoFrames, read_image
from inference.protocols import FrameSource

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
# OpenCV's decoders sniff the content; the suffix only names the stored file.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class MediaError(ValueError):
    """An upload that cannot become a media item; nothing was kept."""


@dataclass(frozen=True, slots=True)
class Probed:
    width: int
    height: int
    frames: int
    fps: float | None


def _suffix(name: str, allowed: set[str], what: str) -> str:
    suffix = Path(name.replace("\\", "/")).suffix.lower()
    if suffix not in allowed:
        raise MediaError(f"{what} {name!r} has an unsupported type; use one of {', '.join(sorted(allowed))}")
    return suffix


class MediaLibrary:
    def __init__(self, root: Path, frame_cache: int, open_media: int) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._frame_cache = frame_cache
        self._open_media = open_media
        self._sources: OrderedDict[str, FrameSource] = OrderedDict()
        self._lock = threading.Lock()

    # ---- storing uploads (blocking: call from a worker thread) ------------------------------

    def staging(self) -> Path:
        """A fresh folder for an upload in progress, on the same disk as the library."""
        path = self.root / ".staging" / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def ingest(self, media_id: str, kind: MediaKind, staged: list[tuple[str, Path]]) -> Probed:
        """Check the staged files (client name, path) and move them under the media id.

        Raises MediaError with the reason when the files do not make a media item of `kind`.
        """
        if not ID_PATTERN.match(media_id):
            raise MediaError(f"media id {media_id!r} is not valid")
        target = self.root / media_id
        if target.exists():
            raise MediaError(f"media {media_id!r} already has files")
        if not staged:
            raise MediaError("no file was uploaded")
        if kind == MediaKind.VIDEO:
            if len(staged) != 1:
                raise MediaError(f"a video is one file, not {len(staged)}")
            name, path = staged[0]
            stored = path.with_name("video" + _suffix(name, VIDEO_SUFFIXES, "video"))
            path.rename(stored)
            probed = _probe_video(stored)
            final = [stored]
        elif kind in (MediaKind.IMAGE, MediaKind.IMAGE_GROUP, MediaKind.IMAGE_SEQUENCE):
            if kind == MediaKind.IMAGE and len(staged) != 1:
                raise MediaError(f"a single image is one file, not {len(staged)}")
            final = []
            for index, (name, path) in enumerate(staged):
                stored = path.with_name(f"{index:06d}{_suffix(name, IMAGE_SUFFIXES, 'image')}")
                path.rename(stored)
                final.append(stored)
            probed = _probe_images(final)
        else:
            raise MediaError(f"{kind.value} uploads are not supported yet")
        target.mkdir(parents=True)
        for path in final:
            path.rename(target / path.name)
        return probed

    def remove(self, media_id: str) -> None:
        """Drop the files of a media item whose event could not be appended."""
        if ID_PATTERN.match(media_id):
            shutil.rmtree(self.root / media_id, ignore_errors=True)

    # ---- frames ---------------------------------------------------------------------------

    def frames(self, media: MediaAdded) -> FrameSource:
        with self._lock:
            source = self._sources.get(media.media)
            if source is not None:
                self._sources.move_to_end(media.media)
                return source
        folder = self.root / media.media
        if media.kind == MediaKind.VIDEO:
            [path] = [p for p in folder.iterdir() if p.stem == "video"]
            source = VideoFrames(path, cache_frames=self._frame_cache)
        else:
            source = ImageListFrames(sorted(p for p in folder.iterdir() if p.is_file()), cache_frames=self._frame_cache)
        with self._lock:
            self._sources[media.media] = source
            while len(self._sources) > self._open_media:
                self._sources.popitem(last=False)
        return source

    def jpeg(self, media: MediaAdded, index: int, quality: int = 90) -> bytes:
        frame = self.frames(media).get(index)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise FrameError("JPEG encoding failed")
        return bytes(data)


def _probe_video(path: Path) -> Probed:
    try:
        source = VideoFrames(path, cache_frames=2)
        info = source.info
        # Packet headers can look fine in a truncated file: decode the first and last frames.
        source.get(0)
        source.get(len(source) - 1)
    except FrameError as error:
        raise MediaError(f"not a readable video: {error}") from None
    return Probed(info.width, info.height, info.frames, info.fps or None)


def _probe_images(paths: list[Path]) -> Probed:
    size: tuple[int, int] | None = None
    for index, path in enumerate(paths):
        try:
            image: np.ndarray = read_image(path)
        except FrameError:
            raise MediaError(f"file {index + 1} is not a readable image") from None
        shape = (image.shape[1], image.shape[0])
        if size is None:
            size = shape
        elif shape != size:
            raise MediaError(f"image {index + 1} is {shape[0]}x{shape[1]}, the first is {size[0]}x{size[1]}: all images of a group must have one size")
    assert size is not None
    return Probed(size[0], size[1], len(paths), None)
