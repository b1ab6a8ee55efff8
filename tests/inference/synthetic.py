"""Synthetic frames for the inference tests: textured backgrounds with coloured discs."""

from __future__ import annotations

import numpy as np

from masklog.inference.frames.arrays import ArrayFrames


def textured_background(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Greenish-grey noise blocks: texture for the flow, colours unlike the discs' reds/blues."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(60, 140, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    blocks[..., 1] = np.minimum(blocks[..., 1].astype(int) + 40, 255)
    image = np.kron(blocks, np.ones((8, 8, 1), np.uint8))[:height, :width]
    noise = rng.integers(-12, 13, size=(height, width, 3))
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def disc_mask(height: int, width: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def draw_disc(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], seed: int = 1) -> np.ndarray:
    """Paint a lightly textured disc (a flat one gives optical flow nothing to hold on to)."""
    rng = np.random.default_rng(seed)
    out = image.copy()
    shade = rng.integers(-15, 16, size=(int(mask.sum()), 1))
    out[mask] = np.clip(np.array(colour)[None, :] + shade, 0, 255).astype(np.uint8)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


class CountingFrames:
    """A FrameSource that records which frames were decoded."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.inner = ArrayFrames(frames)
        self.read: list[int] = []

    @property
    def width(self) -> int:
        return self.inner.width

    @property
    def height(self) -> int:
        return self.inner.height

    def __len__(self) -> int:
        return len(self.inner)

    def get(self, index: int) -> np.ndarray:
        self.read.append(index)
        return self.inner.get(index)
