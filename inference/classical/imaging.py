"""Small image helpers of the classical backend (pure functions of arrays)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of `src` steered by a grey `guide` (He et al.'s guided filter).

    Both float32 in [0, 1]. Locally `src` is modelled as an affine function of the guide, so the
    output follows the guide's edges while flat regions are averaged.
    """
    ksize = (2 * radius + 1, 2 * radius + 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = mean(guide), mean(src)
    cov_ip = mean(guide * src) - mean_i * mean_p
    var_i = mean(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return mean(a) * guide + mean(b)


def logit(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    p = np.clip(p, eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def disc_kernel(radius: int) -> np.ndarray:
    r = max(int(radius), 0)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def lab_stretched(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab as uint8 with a and b stretched twofold around grey.

    OpenCV's 8-bit a/b of natural colours stay within about 64..192, which would waste half of
    the histogram bins.
    """
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    ab = lab[..., 1:].astype(np.int16)
    lab[..., 1:] = np.clip((ab - 128) * 2 + 128, 0, 255).astype(np.uint8)
    return lab


@dataclass(frozen=True, slots=True)
class ColourBins:
    """Quantisation of a 3-channel uint8 image into histogram bins."""

    bins: tuple[int, int, int] = (8, 32, 32)

    @property
    def count(self) -> int:
        return self.bins[0] * self.bins[1] * self.bins[2]

    def index(self, image: np.ndarray) -> np.ndarray:
        b0, b1, b2 = self.bins
        q0 = (image[..., 0].astype(np.int32) * b0) >> 8
        q1 = (image[..., 1].astype(np.int32) * b1) >> 8
        q2 = (image[..., 2].astype(np.int32) * b2) >> 8
        return (q0 * b1 + q1) * b2 + q2

    def histogram(self, index: np.ndarray, where: np.ndarray) -> np.ndarray:
        h = np.bincount(index[where], minlength=self.count).astype(np.float64)
        total = h.sum()
        return h / total if total > 0 else h


def keep_major_components(mask: np.ndarray, fraction: float) -> np.ndarray:
    """Drop connected components smaller than `fraction` of the largest one (stray specks)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.concatenate([[False], areas >= fraction * areas.max()])
    return keep[labels]
