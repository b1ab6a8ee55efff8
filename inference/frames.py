"""Frame sources: random access to the frames of a video, an image list, a DICOM series or arrays
in memory.

Decoded frames are RGB uint8 arrays (height x width x 3) and pass through a bounded LRU cache:
a whole video is never held in memory. `VideoFrames` indexes the video's packets once (cheap:
no decoding) so frame `i` is the i-th frame in presentation order; reading frame `i` continues
the running decoder when it is already on the way there, and otherwise seeks to the nearest
keyframe at or before `i` and decodes forwards. Backward access (tracking backwards) is served
from frames cached on the way, so walking a video backwards does not decode from the keyframe
once per frame.

Sources are safe to share between threads (one lock), though decoding is sequential.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DEFAULT_CACHE_FRAMES = 32


class FrameError(Exception):
    """A frame cannot be produced: unreadable, corrupt or truncated media, or an index out of range."""


class TooManyPixels(FrameError):
    """Media whose frames are larger than the caller allows (found from headers, before decoding)."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int
    height: int
    frames: int
    fps: float


class FrameCache:
    """A bounded least-recently-used map from frame index to decoded frame: at most `capacity`
    frames and, when `max_bytes` is set, at most that many bytes of them. A frame larger than
    `max_bytes` on its own is not kept (its caller still has it)."""

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("the cache must hold at least one frame")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, index: int) -> np.ndarray | None:
        frame = self._items.get(index)
        if frame is not None:
            self._items.move_to_end(index)
        return frame

    def put(self, index: int, frame: np.ndarray) -> None:
        self._drop(index)
        if self.max_bytes is not None and frame.nbytes > self.max_bytes:
            return
        self._items[index] = frame
        self.nbytes += frame.nbytes
        while len(self._items) > self.capacity or (self.max_bytes is not None and self.nbytes > self.max_bytes):
            self._drop(next(iter(self._items)))

    def _drop(self, index: int) -> None:
        frame = self._items.pop(index, None)
        if frame is not None:
            self.nbytes -= frame.nbytes

    def __contains__(self, index: int) -> bool:
        return index in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0


class SharedFrameCache:
    """One byte budget for the frames of many sources (a server's media items): least recently
    used frames go first, whichever source they belong to, so the process holds at most
    `max_bytes` of cached frames however many media items are open. Each source sees its own
    part through `view(owner, capacity)`, a `FrameCache` lookalike that also keeps at most
    `capacity` of that owner's frames. A frame larger than the whole budget is never kept.
    Safe to share between threads."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("the budget cannot be negative")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._owned: dict[str, OrderedDict[int, None]] = {}  # each owner's indices, least recent first
        self._lock = threading.Lock()

    def view(self, owner: str, capacity: int) -> SharedCacheView:
        if capacity < 1:
            raise ValueError("the cache must hold at least one frame")
        return SharedCacheView(self, owner, capacity)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, owner: str, index: int) -> np.ndarray | None:
        with self._lock:
            frame = self._items.get((owner, index))
            if frame is not None:
                self._items.move_to_end((owner, index))
                self._owned[owner].move_to_end(index)
            return frame

    def put(self, owner: str, index: int, frame: np.ndarray, capacity: int) -> None:
        with self._lock:
            self._drop(owner, index)
            if frame.nbytes > self.max_bytes:
                return
            self._items[(owner, index)] = frame
            self._owned.setdefault(owner, OrderedDict())[index] = None
            self.nbytes += frame.nbytes
            owned = self._owned[owner]
            while len(owned) > capacity:
                self._drop(owner, next(iter(owned)))
            while self.nbytes > self.max_bytes:
                self._drop(*next(iter(self._items)))

    def count(self, owner: str) -> int:
        with self._lock:
            return len(self._owned.get(owner, ()))

    def contains(self, owner: str, index: int) -> bool:
        with self._lock:
            return (owner, index) in self._items

    def drop_owner(self, owner: str) -> None:
        with self._lock:
            for index in list(self._owned.get(owner, ())):
                self._drop(owner, index)

    def _drop(self, owner: str, index: int) -> None:
        # Called with the lock held.
        frame = self._items.pop((owner, index), None)
        if frame is None:
            return
        self.nbytes -= frame.nbytes
        owned = self._owned[owner]
        del owned[index]
        if not owned:
            del self._owned[owner]


class SharedCacheView:
    """One owner's part of a `SharedFrameCache`, with `FrameCache`'s interface."""

    def __init__(self, shared: SharedFrameCache, owner: str, capacity: int) -> None:
        self.shared, self.owner, self.capacity = shared, owner, capacity

    def get(self, index: int) -> np.ndarray | None:
        return self.shared.get(self.owner, index)

    def put(self, index: int, frame: np.ndarray) -> None:
        self.shared.put(self.owner, index, frame, self.capacity)

    def __contains__(self, index: int) -> bool:
        return self.shared.contains(self.owner, index)

    def __len__(self) -> int:
        return self.shared.count(self.owner)

    def clear(self) -> None:
        self.shared.drop_owner(self.owner)


def _readonly(frame: np.ndarray) -> np.ndarray:
    # Cached frames are shared by every caller: make accidental in-place edits fail loudly. A
    # view, so that arrays handed to ArrayFrames stay writable for their owner.
    view = frame.view()
    view.flags.writeable = False
    return view


class ArrayFrames:
    """Frames already in memory (tests, single uploaded images)."""

    def __init__(self, frames: Sequence[np.ndarray]) -> None:
        if not frames:
            raise FrameError("no frames")
        self._frames = [_readonly(_as_rgb(np.asarray(f))) for f in frames]
        self._height, self._width = self._frames[0].shape[:2]

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, index: int) -> np.ndarray:
        _check_index(index, len(self._frames))
        return self._frames[index]


class ImageListFrames:
    """One image file per frame (image groups and sequences, DAVIS folders), decoded with OpenCV.

    `width`/`height` are those of the first image; an image group may mix sizes, and each frame
    is returned at its own size.
    """

    def __init__(self, paths: Sequence[str | Path], cache_frames: int = DEFAULT_CACHE_FRAMES, cache: FrameCache | SharedCacheView | None = None) -> None:
        if not paths:
            raise FrameError("no images")
        self._paths = [Path(p) for p in paths]
        self._cache = cache if cache is not None else FrameCache(cache_frames)
        self._lock = threading.Lock()
        first = self.get(0)
        self._height, self._width = first.shape[:2]

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    def __len__(self) -> int:
        return len(self._paths)

    @property
    def cached_frames(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        """Let go of the cached frames (the source stays usable)."""
        with self._lock:
            self._cache.clear()

    def get(self, index: int) -> np.ndarray:
        _check_index(index, len(self._paths))
        with self._lock:
            frame = self._cache.get(index)
            if frame is None:
                frame = _readonly(self._decode(index))
                self._cache.put(index, frame)
            return frame

    def _decode(self, index: int) -> np.ndarray:
        """Frame `index` from its file (called with the lock held)."""
        return read_image(self._paths[index])


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (grey and 16-bit images are converted; alpha is dropped)."""
    # imdecode over bytes rather than imread: non-ASCII paths work on every platform.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise FrameError(f"cannot read image {path}: {exc}") from exc
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise FrameError(f"cannot decode image {path}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True, slots=True)
class _VideoIndex:
    info: VideoInfo
    pts: list[int]  # presentation time stamps in display order; frame i has pts[i]
    keyframes: list[int]  # frame indices of keyframes, ascending


def _open_container(path: Path) -> Any:
    import av  # imported lazily: only video media need PyAV

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise FrameError(f"cannot open video {path}: {exc}") from exc


def _index_video(path: Path) -> _VideoIndex:
    """Read every packet header (no decoding) for exact frame count, order and keyframes."""
    import av

    container = _open_container(path)
    try:
        if not container.streams.video:
            raise FrameError(f"{path} has no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise FrameError(f"{path}: video stream has no frame size")
        entries: list[tuple[int, bool]] = []
        try:
            for packet in container.demux(stream):
                # The flushing packet at the end has no pts; so may broken ones.
                if packet.pts is None or packet.size == 0:
                    continue
                entries.append((packet.pts, packet.is_keyframe))
        except av.error.FFmpegError as exc:
            raise FrameError(f"corrupt video {path}: {exc}") from exc
        if not entries:
            raise FrameError(f"{path}: no video frames")
        entries.sort()
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        fps = float(rate) if rate else 0.0
        return _VideoIndex(
            info=VideoInfo(width=width, height=height, frames=len(entries), fps=fps),
            pts=[p for p, _ in entries],
            keyframes=[i for i, (_, key) in enumerate(entries) if key] or [0],
        )
    finally:
        container.close()


def probe_video(path: str | Path) -> VideoInfo:
    """Size, exact frame count and frame rate of a video file, without decoding it."""
    return _index_video(Path(path)).info


class VideoFrames:
    """Frames of a video file, decoded on demand with PyAV through a bounded LRU cache.

    `backfill` frames before a frame reached by seeking are kept as well (at most half the
    cache), so that a backward walk costs one seek per `backfill` frames, not one per frame.
    """

    def __init__(
        self, path: str | Path, cache_frames: int = DEFAULT_CACHE_FRAMES, backfill: int | None = None, cache: FrameCache | SharedCacheView | None = None
    ) -> None:
        self._path = Path(path)
        self._index = _index_video(self._path)
        self._cache = cache if cache is not None else FrameCache(cache_frames)
        cache_frames = self._cache.capacity
        self._backfill = min(backfill if backfill is not None else cache_frames // 2, cache_frames - 1)
        self._pts_to_index = {p: i for i, p in enumerate(self._index.pts)}
        self._lock = threading.Lock()
        self._container: Any = None
        self._decoder: Iterator[Any] | None = None
        self._next = 0  # index of the frame the running decoder yields next
        self.seeks = 0  # how often decoding restarted from a keyframe (observable for tests)

    @property
    def info(self) -> VideoInfo:
        return self._index.info

    @property
    def width(self) -> int:
        return self._index.info.width

    @property
    def height(self) -> int:
        return self._index.info.height

    @property
    def fps(self) -> float:
        return self._index.info.fps

    def __len__(self) -> int:
        return self._index.info.frames

    @property
    def cached_frames(self) -> int:
        return len(self._cache)

    def get(self, index: int) -> np.ndarray:
        _check_index(index, len(self))
        with self._lock:
            frame = self._cache.get(index)
            if frame is not None:
                return frame
            return self._decode_to(index)

    def close(self) -> None:
        with self._lock:
            self._drop_decoder()
            self._cache.clear()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decode_to(self, index: int) -> np.ndarray:
        keyframe = self._index.keyframes[bisect.bisect_right(self._index.keyframes, index) - 1]
        # Keep decoding forwards when the running decoder is before `index` and no keyframe lies
        # between: cheaper than a seek, and the common case of sequential reading.
        if self._decoder is None or not (keyframe <= self._next <= index):
            self._seek(keyframe)
        try:
            return self._decode_forward(index)
        except _Overshot:
            # Seeking landed past the frame (files without a seek index, e.g. a truncated AVI):
            # decode from the very start instead, slow but exact.
            self._drop_decoder()
            self._seek(0, from_start=True)
            try:
                return self._decode_forward(index)
            except _Overshot:
                self._drop_decoder()
                raise FrameError(f"{self._path}: frame {index} is missing from the stream") from None

    def _decode_forward(self, index: int) -> np.ndarray:
        import av

        keep_from = index - self._backfill if self._next < index else index
        assert self._decoder is not None
        try:
            while True:
                frame = next(self._decoder, None)
                if frame is None:
                    self._drop_decoder()
                    raise FrameError(f"{self._path}: frame {index} of {len(self)} could not be decoded (truncated?)")
                at = self._frame_index(frame)
                if at is None:
                    continue
                if at > index:
                    raise _Overshot
                self._next = at + 1
                if at < keep_from:
                    continue
                rgb = _readonly(frame.to_ndarray(format="rgb24"))
                self._cache.put(at, rgb)
                if at == index:
                    return rgb
        except av.error.FFmpegError as exc:
            self._drop_decoder()
            raise FrameError(f"{self._path}: decoding frame {index} failed: {exc}") from exc

    def _frame_index(self, frame: Any) -> int | None:
        if frame.pts is not None:
            return self._pts_to_index.get(frame.pts)
        # No timestamp (rare muxers): trust the decode order from where we are.
        return self._next

    def _seek(self, keyframe: int, from_start: bool = False) -> None:
        import av

        self.seeks += 1
        if self._container is None:
            self._container = _open_container(self._path)
            self._container.streams.video[0].thread_type = "AUTO"
        stream = self._container.streams.video[0]
        if not from_start:
            try:
                # Seeking also flushes the decoder: no frame of the old position leaks through.
                self._container.seek(self._index.pts[keyframe], stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError as exc:
                self._drop_decoder()
                raise FrameError(f"{self._path}: seeking to frame {keyframe} failed: {exc}") from exc
        self._decoder = self._container.decode(stream)
        self._next = keyframe

    def _drop_decoder(self) -> None:
        self._decoder = None
        if self._container is not None:
            self._container.close()
            self._container = None


class _Overshot(Exception):
    """The decoder produced a frame past the one wanted: the seek went too far."""


def _check_index(index: int, length: int) -> None:
    if not 0 <= index < length:
        raise FrameError(f"frame {index} out of range 0..{length - 1}")


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"a frame must be height x width x 3, got {frame.shape}")
    return np.ascontiguousarray(frame, dtype=np.uint8)


# ---- DICOM series -------------------------------------------------------------------------------

# Transfer syntaxes pydicom decodes on its own (with numpy only): uncompressed, deflated and RLE
# Lossless. Every other compressed syntax (JPEG, JPEG-LS, JPEG 2000, HTJ2K, MPEG) needs decoder
# packages masklog does not depend on; a file in one of them is refused by the syntax's name, so
# whether a series is accepted does not depend on what else happens to be installed.
DICOM_NATIVE_SYNTAXES = frozenset({
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
})  # fmt: skip
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
# A series without a window of its own is windowed to these percentiles of its values, taken from
# this many slices spread over the series (each subsampled to at most _WINDOW_SAMPLES_PER_SLICE).
DICOM_WINDOW_PERCENTILES = (0.5, 99.5)
DICOM_WINDOW_SLICES = 5
_WINDOW_SAMPLES_PER_SLICE = 1 << 18


@dataclass(frozen=True, slots=True)
class DicomSeriesInfo:
    width: int
    height: int
    frames: int
    order: tuple[int, ...]  # order[k] is the index, among the files given, of the k-th slice


@dataclass(frozen=True, slots=True)
class _SliceKey:
    """What ordering needs of one slice's header."""

    position: tuple[float, float, float] | None  # ImagePositionPatient
    orientation: tuple[float, ...] | None  # ImageOrientationPatient: row then column direction
    instance: int | None  # InstanceNumber


def probe_dicom_series(paths: Sequence[str | Path], labels: Sequence[str] | None = None, max_pixels: int | None = None) -> DicomSeriesInfo:
    """Check that the files make one greyscale series of single-frame slices of one size whose
    pixels all decode, and find the slices' order (see `DicomSeriesFrames`). Files are read one
    at a time: the series is never held in memory. `labels` name the files in errors (their
    paths by default). A slice of more than `max_pixels` pixels (by its header) is refused with
    TooManyPixels before its pixel data is decoded."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise FrameError("no DICOM files")
    names = list(labels) if labels is not None else [str(p) for p in paths]
    if len(names) != len(paths):
        raise ValueError("one label per file")
    keys: list[_SliceKey] = []
    first: tuple[tuple[int, int], str] | None = None
    for path, name in zip(paths, names):
        dataset = _read_dicom(path, name)
        size = _check_slice(dataset, name)
        if max_pixels is not None and size[0] * size[1] > max_pixels:
            raise TooManyPixels(f"{name} is {size[0]}x{size[1]} ({size[0] * size[1]} pixels); at most {max_pixels} pixels a slice are accepted")
        if first is None:
            first = (size, name)
        elif size != first[0]:
            (w, h), (fw, fh) = size, first[0]
            raise FrameError(f"{name} is {w}x{h}, {first[1]} is {fw}x{fh}: all slices of a series must have one size")
        values = _dicom_values(dataset, name)
        if values.shape != (size[1], size[0]):
            raise FrameError(f"{name}: its pixel data is {values.shape[1]}x{values.shape[0]}, its header says {size[0]}x{size[1]}")
        keys.append(_slice_key(dataset))
        del dataset, values
    assert first is not None
    (width, height), _ = first
    return DicomSeriesInfo(width, height, len(paths), tuple(_slice_order(keys)))


class DicomSeriesFrames(ImageListFrames):
    """A DICOM series, one single-frame greyscale file per slice, as RGB frames in slice order.

    Slices are ordered by ImagePositionPatient projected on the slice normal (the cross product
    of ImageOrientationPatient's row and column directions) when every slice has a position and
    an orientation is known; else by InstanceNumber when every slice has one; else as given.
    Ties keep the order given. `sort=False` takes the files as already in that order (a series
    stored sorted): no header is read up front.

    Each slice is decoded on demand, one file at a time, through a bounded cache, and windowed to
    8 bits: stored values go through RescaleSlope/RescaleIntercept, then the slice's
    WindowCenter/WindowWidth (the first of several; DICOM's linear VOI function), or, for a slice
    without one, the series' robust range (the 0.5 and 99.5 percentiles of a few slices, computed
    once). MONOCHROME1 slices are inverted, so that higher values are brighter on every slice.
    """

    def __init__(
        self, paths: Sequence[str | Path], cache_frames: int = DEFAULT_CACHE_FRAMES, sort: bool = True, cache: FrameCache | SharedCacheView | None = None
    ) -> None:
        if not paths:
            raise FrameError("no DICOM files")
        files = [Path(p) for p in paths]
        if sort:
            keys = [_slice_key(_read_dicom(p, str(p), header_only=True)) for p in files]
            files = [files[i] for i in _slice_order(keys)]
        self._range: tuple[float, float] | None = None  # the series' robust range, once needed
        self._size: tuple[int, int] | None = None
        super().__init__(files, cache_frames, cache)  # decodes the first slice: the series' size
        self._size = (self._width, self._height)

    @property
    def paths(self) -> list[Path]:
        """The files in slice order."""
        return list(self._paths)

    def _decode(self, index: int) -> np.ndarray:
        path = self._paths[index]
        dataset = _read_dicom(path, str(path))
        size = _check_slice(dataset, str(path))
        if self._size is not None and size != self._size:
            raise FrameError(f"{path} is {size[0]}x{size[1]}, the series is {self._size[0]}x{self._size[1]}")
        values = _dicom_values(dataset, str(path))
        window = _dicom_window(dataset)
        low, high = window if window is not None else self._robust_range()
        grey = _window_to_8bit(values, low, high)
        if str(dataset.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
            grey = 255 - grey
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)

    def _robust_range(self) -> tuple[float, float]:
        # Called with the lock held.
        if self._range is None:
            picks = sorted({round(i) for i in np.linspace(0, len(self._paths) - 1, min(DICOM_WINDOW_SLICES, len(self._paths)))})
            samples = []
            for index in picks:
                path = self._paths[index]
                values = _dicom_values(_read_dicom(path, str(path)), str(path)).ravel()
                samples.append(values[:: max(1, values.size // _WINDOW_SAMPLES_PER_SLICE)])
            low, high = (float(v) for v in np.percentile(np.concatenate(samples), DICOM_WINDOW_PERCENTILES))
            self._range = (low, high if high > low else low + 1.0)
        return self._range


def _read_dicom(path: Path, name: str, header_only: bool = False) -> Any:
    import pydicom  # imported lazily: only DICOM media need pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # force=False: a file without the DICOM file header (preamble and 'DICM') is not DICOM.
        return pydicom.dcmread(str(path), force=False, stop_before_pixels=header_only)
    except InvalidDicomError:
        raise FrameError(f"{name} is not a DICOM file (it lacks the DICOM file header: a 128-byte preamble and 'DICM')") from None
    except OSError as exc:
        raise FrameError(f"cannot read {name}: {exc}") from exc
    except Exception as exc:  # pydicom's parser fails in many ways on corrupt files
        raise FrameError(f"{name} is not a readable DICOM file: {exc}") from exc


def _check_slice(dataset: Any, name: str) -> tuple[int, int]:
    """The slice's (width, height), or FrameError when the file is no slice this module decodes."""
    meta = getattr(dataset, "file_meta", None)
    if (meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS) or "DirectoryRecordSequence" in dataset:
        raise FrameError(f"{name} is a DICOMDIR (an index of files, no image): upload the image files only")
    if "PixelData" not in dataset:
        other = next((k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in dataset), None)
        raise FrameError(f"{name} holds no pixel data" + (f" ({other} is not supported)" if other else ""))
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None:
        raise FrameError(f"{name} names no transfer syntax in its file header")
    if str(syntax) not in DICOM_NATIVE_SYNTAXES:
        raise FrameError(
            f"{name} is compressed as {syntax.name} ({syntax}), which needs decoders this server does not have: "
            "send the series uncompressed (e.g. Explicit VR Little Endian) or as RLE Lossless"
        )
    frames = _int(dataset.get("NumberOfFrames")) or 1
    if frames > 1:
        raise FrameError(f"{name} is a multi-frame file ({frames} frames): only series of single-frame files (one file a slice) are supported")
    samples = _int(dataset.get("SamplesPerPixel")) or 1
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise FrameError(
            f"{name} holds colour pixel data ({photometric or 'no PhotometricInterpretation'}, {samples} samples a pixel): "
            "only greyscale series (MONOCHROME1, MONOCHROME2) are supported"
        )
    width, height = _int(dataset.get("Columns")), _int(dataset.get("Rows"))
    if not width or not height:
        raise FrameError(f"{name} has no image size (Rows, Columns)")
    return width, height


def _dicom_values(dataset: Any, name: str) -> np.ndarray:
    """The slice's values after the modality rescale (RescaleSlope, RescaleIntercept)."""
    try:
        stored = dataset.pixel_array
    except Exception as exc:  # truncated or inconsistent pixel data
        raise FrameError(f"{name}: its pixel data cannot be decoded: {exc}") from exc
    if stored.ndim != 2:
        raise FrameError(f"{name}: its pixel data has shape {stored.shape}, not one greyscale slice")
    slope = _float(dataset.get("RescaleSlope"))
    intercept = _float(dataset.get("RescaleIntercept"))
    values = stored.astype(np.float32)
    if slope is not None and slope != 1.0:
        values *= slope
    if intercept:
        values += intercept
    return values


def _dicom_window(dataset: Any) -> tuple[float, float] | None:
    """The values that map to black and white under the slice's first WindowCenter/WindowWidth,
    or None when it has none (or a width below 1, which DICOM does not allow)."""
    centre, width = _float(dataset.get("WindowCenter")), _float(dataset.get("WindowWidth"))
    if centre is None or width is None or width < 1:
        return None
    # DICOM's linear function (PS3.3 C.11.2.1.2): x <= c - 0.5 - (w - 1) / 2 is black,
    # x > c - 0.5 + (w - 1) / 2 is white, linear in between.
    return centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2


def _window_to_8bit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:  # a window of width 1: a threshold
        return np.where(values > low, 255, 0).astype(np.uint8)
    scaled = (values - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _slice_key(dataset: Any) -> _SliceKey:
    position = _floats(dataset.get("ImagePositionPatient"), 3)
    orientation = _floats(dataset.get("ImageOrientationPatient"), 6)
    return _SliceKey(position, orientation, _int(dataset.get("InstanceNumber")))  # type: ignore[arg-type]


def _slice_order(keys: Sequence[_SliceKey]) -> list[int]:
    indices = list(range(len(keys)))
    orientation = next((k.orientation for k in keys if k.orientation is not None), None)
    normal = np.cross(orientation[:3], orientation[3:]) if orientation is not None else None
    if normal is not None and np.linalg.norm(normal) > 1e-6 and all(k.position is not None for k in keys):
        along = [float(np.dot(k.position, normal)) for k in keys]  # type: ignore[arg-type]
        return sorted(indices, key=along.__getitem__)
    if all(k.instance is not None for k in keys):
        return sorted(indices, key=lambda i: keys[i].instance)  # type: ignore[arg-type, return-value]
    return indices


def _first(value: Any) -> Any:
    if value is None or isinstance(value, (str, bytes)):
        return value
    try:
        return value[0] if len(value) else None  # a multi-valued element
    except TypeError:
        return value


def _float(value: Any) -> float | None:
    value = _first(value)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None and number == int(number) else None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(np.isfinite(numbers)) else None
