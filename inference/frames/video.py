"""Video files, decoded on demand with PyAV.

`VideoFrames` indexes the video's packets once (cheap: no decoding) so frame `i` is the i-th
frame in presentation order; reading frame `i` continues the running decoder when it is already
on the way there, and otherwise seeks to the nearest keyframe at or before `i` and decodes
forwards. Backward access (tracking backwards) is served from frames cached on the way, so
walking a video backwards does not decode from the keyframe once per frame.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from masklog.inference.frames.cache import DEFAULT_CACHE_FRAMES, FrameCache, SharedCacheView, readonly
from masklog.inference.frames.errors import FrameError, check_index


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int
    height: int
    frames: int
    fps: float


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
        check_index(index, len(self))
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
                rgb = readonly(frame.to_ndarray(format="rgb24"))
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
