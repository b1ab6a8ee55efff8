"""Media files on disk: storing uploads safely, probing them, serving their frames.

Client file names never touch the file system: a media item's files are stored under its id
(checked against `ID_PATTERN`) with names the server makes (`video.mp4`, `000000.png`, ...,
`000000.dcm`, ... for a DICOM series, in slice order); a client's file name that tries to be a
path (a `..` part, an absolute path, a drive, control characters) is refused outright, and is
otherwise only shown in messages. What a file is comes from its content, never its name (a PNG
named `x.mp4` is an image): images by their signature (PNG, JPEG, BMP, TIFF, WebP), videos by the
container FFmpeg finds (MP4/MOV, Matroska/WebM, AVI), DICOM by its file header; the stored file's
suffix is the one its content calls for. An upload without a kind gets the kind its content
says (`detect_kind`). Frame sizes are read from headers and checked
against the pixel limit before anything is decoded, so a small file that decodes to gigabytes
(a decompression bomb) is refused cheaply. Frames are decoded through `inference.frames` sources
kept open for the most recently used media items, all sharing one cache budgeted in bytes.
"""

from __future__ import annotations

import re
import shutil
import struct
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from masklog.domain.events import ID_PATTERN, MediaAdded, MediaKind
from masklog.inference.frames.cache import SharedFrameCache
from masklog.inference.frames.dicom import DicomSeriesFrames, probe_dicom_series
from masklog.inference.frames.errors import FrameError, TooManyPixels
from masklog.inference.frames.images import ImageListFrames, read_image
from masklog.inference.frames.video import VideoFrames
from masklog.inference.protocols import FrameSource

# The stored file's suffix by what its content is (the client's name is never used for it).
IMAGE_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "WebP": ".webp"}


class MediaError(ValueError):
    """An upload that cannot become a media item; nothing was kept. `code` and `status` are the
    API's error code and HTTP status."""

    def __init__(self, message: str, code: str = "invalid_media", status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


# What a MediaAdded event can hold (domain.events): checked here so a file past them is refused
# with a reason instead of failing when the event is stored.
MAX_SIDE = 65535
MAX_FRAMES = 10_000_000
MAX_FPS = 1000.0
# A track walks its frames in order: a few cached frames cover a backward walk's seeks.
TRACK_CACHE_FRAMES = 16
# Defaults of Settings.max_image_pixels and Settings.frame_cache_bytes.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_CACHE_BYTES = 512 * 1024**2
# FFmpeg demuxers of the video containers accepted (VIDEO_SUFFIXES); anything else FFmpeg can
# open (a PNG, a GIF, raw streams) is not a video upload.
VIDEO_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": "MP4/MOV", "matroska,webm": "Matroska/WebM", "avi": "AVI"}
VIDEO_SUFFIXES = {"mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "matroska,webm": ".mkv", "avi": ".avi"}


@dataclass(frozen=True, slots=True)
class Probed:
    width: int
    height: int
    frames: int
    fps: float | None
    kind: MediaKind | None = None  # the kind stored (`ingest` sets it: the one detected when none was given)


def check_file_name(name: str) -> None:
    """Refuse a client file name that points anywhere: `..` parts, absolute paths, drives and
    control characters. Relative names ("shots/001.png", as a folder upload may send) are fine:
    only the suffix is ever used."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise MediaError(f"file name {name!r} contains control characters", "invalid_file_name")
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or ".." in path.split("/"):
        raise MediaError(f"file name {name!r} is a path; send the file's own name", "invalid_file_name")


class MediaLibrary:
    """Media files under `root`. Frames of every source the library opens (for viewers and for
    tracks) share one cache of at most `frame_cache_bytes` bytes, least recently used frames
    going first; `frame_cache` caps the frames kept for one source. Uploads whose frames have
    more than `max_image_pixels` pixels are refused."""

    def __init__(
        self,
        root: Path,
        frame_cache: int,
        open_media: int,
        frame_cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._frame_cache = frame_cache
        self._open_media = open_media
        self.max_image_pixels = max_image_pixels
        self.cache = SharedFrameCache(frame_cache_bytes)
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

    def ingest(self, media_id: str, kind: MediaKind | None, staged: list[tuple[str, Path]]) -> Probed:
        """Check the staged files (client name, path) and move them under the media id. With no
        `kind`, the files' content decides it (`detect_kind`); the result's `kind` says which.

        Raises MediaError with the reason when the files do not make a media item of `kind`.
        """
        if not ID_PATTERN.match(media_id):
            raise MediaError(f"media id {media_id!r} is not valid", "invalid_id")
        target = self.root / media_id
        if target.exists():
            raise _taken(media_id)
        if not staged:
            raise MediaError("no file was uploaded")
        for name, _ in staged:
            check_file_name(name)
        if kind is None:
            kind = detect_kind(staged)
        if kind == MediaKind.VIDEO:
            if len(staged) != 1:
                raise MediaError(f"a video is one file, not {len(staged)}")
            _, path = staged[0]
            stored = path.with_name("video" + _video_suffix(path))
            path.rename(stored)
            probed = _probe_video(stored, self.max_image_pixels)
            final = [(stored, stored.name)]
        elif kind in (MediaKind.IMAGE, MediaKind.IMAGE_GROUP, MediaKind.IMAGE_SEQUENCE):
            if kind == MediaKind.IMAGE and len(staged) != 1:
                raise MediaError(f"a single image is one file, not {len(staged)}")
            final = []
            for index, (name, path) in enumerate(staged):
                found = _image_format(path)
                if found is None:
                    raise MediaError(f"file {_label(index, name)} is not a supported image (PNG, JPEG, BMP, TIFF or WebP)")
                stored = path.with_name(f"{index:06d}{IMAGE_SUFFIXES[found]}")
                path.rename(stored)
                final.append((stored, stored.name))
            probed = _probe_images([path for path, _ in final], self.max_image_pixels)
        elif kind == MediaKind.DICOM_SERIES:
            probed, order = _probe_dicom(staged, self.max_image_pixels)
            # Stored in slice order, so that opening the series needs no header but the first.
            final = [(staged[index][1], f"{position:06d}.dcm") for position, index in enumerate(order)]
        else:
            raise MediaError(f"{kind.value} uploads are not supported yet")
        probed = Probed(probed.width, probed.height, probed.frames, probed.fps, kind)
        try:
            target.mkdir(parents=True)
        except FileExistsError:  # a concurrent upload of the same id got there first
            raise _taken(media_id) from None
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
        source = self._open(media, media.media, self._frame_cache)
        with self._lock:
            self._sources[media.media] = source
            while len(self._sources) > self._open_media:
                evicted, _ = self._sources.popitem(last=False)
                self.cache.drop_owner(evicted)
        return source

    def open_frames(self, media: MediaAdded, cache_frames: int = TRACK_CACHE_FRAMES) -> FrameSource:
        """A frame source of its own (a track reads a media item front to back with it, keeping
        at most `cache_frames` of its frames, so it evicts few of the frames people are looking
        at). Its frames count against the library's byte budget; closing it drops them."""
        return self._open(media, f"{media.media}/{uuid.uuid4().hex}", cache_frames)

    def _open(self, media: MediaAdded, owner: str, cache_frames: int) -> FrameSource:
        folder = self.root / media.media
        cache = self.cache.view(owner, cache_frames)
        if media.kind == MediaKind.VIDEO:
            [path] = [p for p in folder.iterdir() if p.stem == "video"]
            return VideoFrames(path, cache=cache)
        if media.kind == MediaKind.DICOM_SERIES:
            # `ingest` stored the slices in order (000000.dcm, ...): no need to sort them again.
            slices = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".dcm")
            return DicomSeriesFrames(slices, sort=False, cache=cache)
        return ImageListFrames(sorted(p for p in folder.iterdir() if p.is_file()), cache=cache)

    def jpeg(self, media: MediaAdded, index: int, quality: int = 90) -> bytes:
        frame = self.frames(media).get(index)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise FrameError("JPEG encoding failed")
        return bytes(data)


def _taken(media_id: str) -> MediaError:
    # Worded as the upload route and the log word a media id that is taken, in any project: an
    # upload must not tell whether another project is storing that id right now.
    return MediaError(f"media {media_id!r} already exists", "already_exists", 409)


def _label(index: int, name: str) -> str:
    return f"{index + 1} ({name})" if name else str(index + 1)


def _content(path: Path) -> str | None:
    """'image', 'dicom' or 'video' by a file's content (signatures, the DICOM header, the
    container FFmpeg finds), or None."""
    if _image_format(path) is not None:
        return "image"
    with open(path, "rb") as file:
        head = file.read(132)
    if head[128:132] == b"DICM":
        return "dicom"
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return "video" if container.format.name in VIDEO_CONTAINERS and container.streams.video else None
    except av.error.FFmpegError:
        return None


def detect_kind(staged: list[tuple[str, Path]]) -> MediaKind:
    """The media kind that staged files (client name, path) make, by their content: one image
    is an image, several an image group; one video file a video; DICOM files a series."""
    found = []
    for index, (name, path) in enumerate(staged):
        what = _content(path)
        if what is None:
            accepted = ", ".join(VIDEO_CONTAINERS.values())
            raise MediaError(f"file {_label(index, name)} is not a supported image (PNG, JPEG, BMP, TIFF, WebP), video ({accepted}) or DICOM file")
        found.append(what)
    kinds = set(found)
    if len(kinds) > 1:
        raise MediaError(f"the files are of different kinds ({', '.join(sorted(kinds))}): upload each kind as a media item of its own")
    [what] = kinds
    if what == "video":
        if len(staged) != 1:
            raise MediaError(f"a video is one file, not {len(staged)}: upload the videos one at a time")
        return MediaKind.VIDEO
    if what == "dicom":
        return MediaKind.DICOM_SERIES
    return MediaKind.IMAGE if len(staged) == 1 else MediaKind.IMAGE_GROUP


def _video_suffix(path: Path) -> str:
    """The stored video's suffix, from the container its content is (not its name)."""
    image = _image_format(path)
    if image is not None:
        raise MediaError(f"the file is a {image} image, not a video: upload it as an image")
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            found = container.format.name
    except av.error.FFmpegError as error:
        raise MediaError(f"not a readable video: {error}") from None
    if found not in VIDEO_SUFFIXES:
        accepted = ", ".join(VIDEO_CONTAINERS.values())
        raise MediaError(f"not a video file: its content is {found!r}, not one of the accepted containers ({accepted})")
    return VIDEO_SUFFIXES[found]


def _probe_video(path: Path, max_pixels: int) -> Probed:
    image = _image_format(path)
    if image is not None:
        raise MediaError(f"the file is a {image} image, not a video: upload it as an image")
    width, height = _video_container(path)
    _check_size(width, height, "the video")
    _check_pixels(width, height, max_pixels, "the video's frames are")
    try:
        # Closed at once: the file is moved next, and frames are served by their own sources.
        with VideoFrames(path, cache_frames=2) as source:
            info = source.info
            _check_pixels(info.width, info.height, max_pixels, "the video's frames are")
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


def _video_container(path: Path) -> tuple[int, int]:
    """The frame size a video file's container declares, after checking (without decoding) that
    FFmpeg reads it as one of the accepted containers, whatever its name says."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            found = container.format.name
            if found not in VIDEO_CONTAINERS:
                accepted = ", ".join(VIDEO_CONTAINERS.values())
                raise MediaError(f"not a video file: its content is {found!r}, not one of the accepted containers ({accepted})")
            if not container.streams.video:
                raise MediaError("not a readable video: the file has no video stream")
            context = container.streams.video[0].codec_context
            return context.width, context.height
    except av.error.FFmpegError as error:
        raise MediaError(f"not a readable video: {error}") from None


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


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width * height > max_pixels:
        raise MediaError(f"{what} {width}x{height} ({width * height} pixels); at most {max_pixels} pixels are accepted", "too_many_pixels")


def _probe_images(paths: list[Path], max_pixels: int) -> Probed:
    size: tuple[int, int] | None = None
    for index, path in enumerate(paths):
        # The header first: decoding allocates the whole image, however small the file.
        header = image_header(path)
        if header is None:
            raise MediaError(f"file {index + 1} is not a supported image (PNG, JPEG, BMP, TIFF or WebP)")
        kind, width, height = header
        _check_size(width, height, f"image {index + 1}")
        _check_pixels(width, height, max_pixels, f"image {index + 1} is")
        try:
            image: np.ndarray = read_image(path)
        except FrameError:
            raise MediaError(f"file {index + 1} is not a readable image") from None
        shape = (image.shape[1], image.shape[0])
        if shape != (width, height):  # the decoder found another image than the header said
            raise MediaError(f"file {index + 1} is not a readable image: its {kind} header says {width}x{height}, its pixels are {shape[0]}x{shape[1]}")
        if size is None:
            size = shape
        elif shape != size:
            raise MediaError(f"image {index + 1} is {shape[0]}x{shape[1]}, the first is {size[0]}x{size[1]}: all images of a group must have one size")
    assert size is not None
    return Probed(size[0], size[1], len(paths), None)


def _probe_dicom(staged: list[tuple[str, Path]], max_pixels: int) -> tuple[Probed, tuple[int, ...]]:
    """The series' size and frame count, and the order of the staged files by slice position."""
    labels = [f"file {index + 1} ({name})" if name else f"file {index + 1}" for index, (name, _) in enumerate(staged)]
    try:
        info = probe_dicom_series([path for _, path in staged], labels, max_pixels=max_pixels)
    except TooManyPixels as error:
        raise MediaError(f"the series is too large: {error}", "too_many_pixels") from None
    except FrameError as error:
        raise MediaError(f"not a readable DICOM series: {error}") from None
    _check_size(info.width, info.height, "the series")
    if info.frames > MAX_FRAMES:
        raise MediaError(f"the series has {info.frames} slices; at most {MAX_FRAMES} are supported")
    return Probed(info.width, info.height, info.frames, None), info.order


# ---- what a file is, from its first bytes ---------------------------------------------------------

_IMAGE_SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
]


def _image_format(path: Path) -> str | None:
    """The image format a file's signature names (PNG, JPEG, BMP, TIFF, WebP), or None."""
    with open(path, "rb") as file:
        head = file.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in _IMAGE_SIGNATURES if head.startswith(signature)), None)


def image_header(path: Path) -> tuple[str, int, int] | None:
    """(format, width, height) from an image file's header, reading a few bytes and decoding
    nothing; None when the file is none of the formats accepted or its header is broken."""
    kind = _image_format(path)
    if kind is None:
        return None
    try:
        with open(path, "rb") as file:
            size = _HEADER_READERS[kind](file)
    except (struct.error, ValueError, OSError):
        return None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return kind, size[0], size[1]


def _read(file: BinaryIO, count: int) -> bytes:
    data = file.read(count)
    if len(data) != count:
        raise ValueError("the header is cut short")
    return data


def _png_size(file: BinaryIO) -> tuple[int, int] | None:
    head = _read(file, 24)
    if head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# Start-of-frame markers (baseline, progressive, lossless, arithmetic...): not DHT, JPG or DAC.
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(file: BinaryIO) -> tuple[int, int] | None:
    _read(file, 2)  # start of image
    while True:
        if _read(file, 1) != b"\xff":
            return None
        marker = _read(file, 1)[0]
        while marker == 0xFF:  # fill bytes
            marker = _read(file, 1)[0]
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        (length,) = struct.unpack(">H", _read(file, 2))
        if length < 2:
            return None
        if marker in _JPEG_FRAMES:
            _, height, width = struct.unpack(">BHH", _read(file, 5))
            return width, height
        file.seek(length - 2, 1)


def _bmp_size(file: BinaryIO) -> tuple[int, int] | None:
    head = _read(file, 26)
    (header_size,) = struct.unpack("<I", head[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", head[18:22])
    else:
        width, height = struct.unpack("<ii", head[18:26])
    return width, abs(height)  # a negative height is a top-down bitmap


def _tiff_size(file: BinaryIO) -> tuple[int, int] | None:
    order = "<" if _read(file, 2) == b"II" else ">"
    _read(file, 2)
    (offset,) = struct.unpack(order + "I", _read(file, 4))
    file.seek(offset)
    (count,) = struct.unpack(order + "H", _read(file, 2))
    found: dict[int, int] = {}
    for _ in range(count):
        tag, kind, _, value = struct.unpack(order + "HHI4s", _read(file, 12))
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[: 2 if kind == 3 else 4])[0]
    if 256 not in found or 257 not in found:
        return None
    return found[256], found[257]


def _webp_size(file: BinaryIO) -> tuple[int, int] | None:
    head = _read(file, 30)
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14-bit sizes minus one, packed after the signature byte
        if head[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: the canvas, 24-bit sizes minus one
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


_HEADER_READERS = {"PNG": _png_size, "JPEG": _jpeg_size, "BMP": _bmp_size, "TIFF": _tiff_size, "WebP": _webp_size}
