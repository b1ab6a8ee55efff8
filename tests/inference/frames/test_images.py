"""Image lists: RGB decoding, the bounded cache, unreadable files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from masklog.inference.frames.errors import FrameError
from masklog.inference.frames.images import ImageListFrames
from masklog.inference.protocols import FrameSource


def test_image_list_decodes_rgb_and_bounds_its_cache(tmp_path: Path) -> None:
    paths = []
    for i in range(6):
        image = np.zeros((10, 12, 3), np.uint8)
        image[..., 0] = 200  # red in RGB
        image[..., 2] = i
        path = tmp_path / f"{i:03d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    frames = ImageListFrames(paths, cache_frames=2)
    assert isinstance(frames, FrameSource)
    assert (frames.width, frames.height, len(frames)) == (12, 10, 6)
    for i in range(6):
        rgb = frames.get(i)
        assert rgb.shape == (10, 12, 3) and rgb.dtype == np.uint8
        assert rgb[0, 0, 0] == 200 and rgb[0, 0, 2] == i
        assert frames.cached_frames <= 2


def test_image_list_grey_image_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((5, 5), 99, np.uint8))
    assert ImageListFrames([path]).get(0).shape == (5, 5, 3)


def test_image_list_unreadable_image(tmp_path: Path) -> None:
    good = tmp_path / "a.png"
    cv2.imwrite(str(good), np.zeros((5, 5, 3), np.uint8))
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not an image")
    frames = ImageListFrames([good, bad])
    with pytest.raises(FrameError):
        frames.get(1)
    with pytest.raises(FrameError):
        ImageListFrames([tmp_path / "missing.png"])
