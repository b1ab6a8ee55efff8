"""Frames in memory: the FrameSource protocol, bounds, read-only frames."""

from __future__ import annotations

import numpy as np
import pytest

from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.frames.errors import FrameError
from masklog.inference.protocols import FrameSource


def test_array_frames() -> None:
    frames = ArrayFrames([np.zeros((4, 6, 3), np.uint8), np.full((4, 6, 3), 7, np.uint8)])
    assert isinstance(frames, FrameSource)
    assert (frames.width, frames.height, len(frames)) == (6, 4, 2)
    assert frames.get(1)[0, 0, 0] == 7
    with pytest.raises(FrameError):
        frames.get(2)
    with pytest.raises(FrameError):
        frames.get(-1)
    with pytest.raises(FrameError):
        ArrayFrames([])


def test_frames_are_read_only() -> None:
    frames = ArrayFrames([np.zeros((4, 6, 3), np.uint8)])
    with pytest.raises(ValueError):
        frames.get(0)[0, 0, 0] = 1
