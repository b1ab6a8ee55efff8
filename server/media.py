"""Media files on disk: storing uploads safely, probing them, serving their frames.

Client file names never touch the file system: a media item's files are stored under its id
(checked against `ID_PATTERN`) with names the server makes (`video.mp4`, `000000.png`, ...,
`000000.dcm`, ... for a DICOM series, in slice order); a client's file name only tells the type
(its suffix), and one that tries to be a path (a `..` part, an absolute path, a drive, control
characters) is refused outright. Frames are decoded through `inference.frames` sources (bounded
caches) kept open for the most recently used media items.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from domain.events import ID_PATTERN, MediaAdded, MediaKind
from inference.frames import DicomSeriesFrames, FrameError, ImageListFrames, VideoFrames, probe_dicom_series, read_image
from inference.protocols import FrameSource

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
# OpenCV's decoders sniff the content; the suffix only names the stored file.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# DICOM files are checked by their header (pydicom, which wants the 'DICM' file header); scanners
# often write them without a suffix, or named by their instance UID ("1.2.840.....123").
DICOM_SUFFIXES = {"", ".dcm", ".dicom"}


class MediaError(ValueError):
    """An upload that cannot become a media item; nothing was kept. `code` is the API error code."""

    def __init__(self, message: str, code: str = "invalid_media") -> None:
        super().__init__(message)
        self.code = code


# What a MediaAdded event can hold (domain.events): checked here so a file past them is refused
# with a reason instead of failing when the event is stored.
MAX_SIDE = 65535
MAX_FRAMES = 10_000_000
MAX_FPS = 1000.0
# A track walks its frames in order: a few cached frames cover a backward walk's seeks.
TRACK_CACHE_FRAMES = 16


@dataclass(frozen=True, slots=True)
class Probed:
    width: int
    height: int
    frames: int
    fps: float | None


def check_file_name(name: str) -> None:
    """Refuse a client file name that points anywhere: `..` parts, absolute paths, drives and
    control characters. Relative names ("shots/001.png", as a folder upload may send) are fine:
    only the suffix is ever used."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise MediaError(f"file name {name!r} contains control characters", "invalid_file_name")
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or ".." in path.split("/"):
        raise MediaError(f"file name {name!r} is a path; send the file's own name", "invalid_file_name")


def _check_dicom_name(name: str) -> None:
    suffix = Path(name.replace("\\", "/")).suffix.lower()
    if suffix not in DICOM_SUFFIXES and not re.fullmatch(r"\.[0-9]+", suffix):
        raise MediaError(f"DICOM file {name!r} has an unsupported type; use .dcm, .dicom, no suffix, or a UID as the name")


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
            raise MediaError(f"media id {media_id!r} is not valid", "invalid_id")
        target = self.root / media_id
        if target.exists():
            raise MediaError(f"media {media_id!r} already has files")
        if not staged:
            raise MediaError("no file was uploaded")
        for name, _ in staged:
            check_file_name(name)
        if kind == MediaKind.VIDEO:
            if len(staged) != 1:
                raise MediaError(f"a video is one file, not {len(staged)}")
            name, path = staged[0]
            stored = path.with_name("video" + _suffix(name, VIDEO_SUFFIXES, "video"))
            path.rename(stored)
            probed = _probe_video(stored)
            final = [(stored, stored.name)]
        elif kind in (MediaKind.IMAGE, MediaKind.IMAGE_GROUP, MediaKind.IMAGE_SEQUENCE):
            if kind == MediaKind.IMAGE and len(staged) != 1:
                raise MediaError(f"a single image is one file, not {len(staged)}")
            final = []
            for index, (name, path) in enumerate(staged):
                stored = path.with_name(f"{index:06d}{_suffix(name, IMAGE_SUFFIXES, 'image')}")
                path.rename(stored)
                final.append((stored, stored.name))
            probed = _probe_images([path for path, _ in final])
        elif kind == MediaKind.DICOM_SERIES:
            for name, _ in staged:
                _check_dicom_name(name)
            probed, order = _probe_dicom(staged)
            # Stored in slice order, so that opening the series needs no header but the first.
            final = [(staged[index][1], f"{position:06d}.dcm") for position, index in enumerate(order)]
        else:
            raise MediaError(f"{kind.value} uploads are not supported yet")
        try:
            target.mkdir(parents=True)
        except FileExistsError:  # a concurrent upload of the same id got there first
            raise MediaError(f"media {media_id!r} already has files") from None
        for path, stored_name in final:
            path.rename(target / stored_name)
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
        source = self.open_frames(media, self._frame_cache)
        with self._lock:
            self._sources[media.media] = source
            while len(self._sources) > self._open_media:
                self._sources.popitem(last=False)
        return source

    def open_frames(self, media: MediaAdded, cache_frames: int = TRACK_CACHE_FRAMES) -> FrameSource:
        """A frame source of its own (a track reads a media item front to back with it, without
        evicting the frames people are looking at from the shared one)."""
        folder = self.root / media.media
        if media.kind == MediaKind.VIDEO:
            [path] = [p for p in folder.iterdir() if p.stem == "video"]
            return VideoFrames(path, cache_frames=cache_frames)
        if media.kind == MediaKind.DICOM_SERIES:
            # `ingest` stored the slices in order (000000.dcm, ...): no need to sort them again.
            slices = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".dcm")
            return DicomSeriesFrames(slices, cache_frames=cache_frames, sort=False)
        return ImageListFrames(sorted(p for p in folder.iterdir() if p.is_file()), cache_frames=cache_frames)

    def jpeg(self, media: MediaAdded, index: int, quality: int = 90) -> bytes:
        frame = self.frames(media).get(index)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise FrameError("JPEG encoding failed")
        return bytes(data)


def _probe_video(path: Path) -> Probed:
    try:
        # Closed at once: the file is moved next, and frames are served by their own sources.
        with VideoFrames(path, cache_frames=2) as source:
            info = source.info
            # Packet headers can look fine in a truncated file: decode the first and last frames.
            source.get(0)
            source.get(len(source) - 1)
        missing = _missing_frames(path, info.frames)
    except FrameError as error:
        raise MediaError(f"not a readable video: {error}") from None
    if missing:
        raise MediaError(f"the video is cut short: {missing}")
    _check_size(info.width, info.height, "the video")
    if info.frames > MAX_FRAMES:
        raise MediaError(f"the video has {info.frames} frames; at most {MAX_FRAMES} are supported")
    # A rate no player would use is a broken header, not a reason to refuse the frames.
    fps = info.fps if info.fps and 0 < info.fps <= MAX_FPS else None
    return Probed(info.width, info.height, info.frames, fps)


def _missing_frames(path: Path, indexed: int) -> str | None:
    """Why the file holds fewer frames than its header lists, or None. An MP4 written for
    streaming has its frame table first, so one cut short still opens, and its remaining frames
    decode: only the table tells that frames are missing."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            listed = stream.frames or 0  # 0: the format does not say
            if listed <= indexed:
                return None
            # The index skips empty packets (frames a recorder dropped); the table counts them.
            held = sum(1 for packet in container.demux(stream) if packet.pts is not None)
    except av.error.FFmpegError as error:
        raise FrameError(str(error)) from None
    return f"its header lists {listed} frames, the file holds {held}" if held < listed else None


def _check_size(width: int, height: int, what: str) -> None:
    if width > MAX_SIDE or height > MAX_SIDE:
        raise MediaError(f"{what} is {width}x{height}; at most {MAX_SIDE} pixels a side are supported")


def _probe_images(paths: list[Path]) -> Probed:
    size: tuple[int, int] | None = None
    for index, path in enumerate(paths):
        try:
            image: np.ndarray = read_image(path)
        except FrameError:
            raise MediaError(f"file {index + 1} is not a readable image") from None
        shape = (image.shape[1], image.shape[0])
        _check_size(*shape, f"image {index + 1}")
        if size is None:
            size = shape
        elif shape != size:
            raise MediaError(f"image {index + 1} is {shape[0]}x{shape[1]}, the first is {size[0]}x{size[1]}: all images of a group must have one size")
    assert size is not None
    return Probed(size[0], size[1], len(paths), None)


def _probe_dicom(staged: list[tuple[str, Path]]) -> tuple[Probed, tuple[int, ...]]:
    """The series' size and frame count, and the order of the staged files by slice position."""
    labels = [f"file {index + 1} ({name})" if name else f"file {index + 1}" for index, (name, _) in enumerate(staged)]
    try:
        info = probe_dicom_series([path for _, path in staged], labels)
    except FrameError as error:
        raise MediaError(f"not a readable DICOM series: {error}") from None
    _check_size(info.width, info.height, "the series")
    if info.frames > MAX_FRAMES:
        raise MediaError(f"the series has {info.frames} slices; at most {MAX_FRAMES} are supported")
    return Probed(info.width, info.height, info.frames, None), info.order
