"""Frames already in memory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from masklog.inference.frames.cache import readonly
from masklog.inference.frames.errors import FrameError, check_index


class ArrayFrames:
    """Frames already in memory (tests, single uploaded images)."""

    def __init__(self, frames: Sequence[np.ndarray]) -> None:
        if not frames:
            raise FrameError("no frames")
        self._frames = [readonly(as_rgb(np.asarray(f))) for f in frames]
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
        check_index(index, len(self._frames))
        return self._frames[index]


def as_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"a frame must be height x width x 3, got {frame.shape}")
    return np.ascontiguousarray(frame, dtype=np.uint8)
