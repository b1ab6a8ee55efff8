"""Image lists: one image file per frame (image groups and sequences, DAVIS folders)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from masklog.inference.frames.cache import DEFAULT_CACHE_FRAMES, FrameCache, SharedCacheView, readonly
from masklog.inference.frames.errors import FrameError, check_index


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
        check_index(index, len(self._paths))
        with self._lock:
            frame = self._cache.get(index)
            if frame is None:
                frame = readonly(self._decode(index))
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
    img: np.ndarray | None = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise FrameError(f"cannot decode image {path}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        # OpenCV's stubs require `dst`; None (allocate the output) is what OpenCV documents.
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)  # type: ignore[call-overload]
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
