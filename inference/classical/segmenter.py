"""The classical segmenter: GrabCut seeded by the prompt (see `inference.classical`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from masklog.inference.classical.imaging import ColourBins, keep_major_components, lab_stretched
from masklog.inference.protocols import Candidate, FrameSource, Prompt

SEGMENTER_MODEL = "classical/grabcut@1"


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    work_side: int = 256  # the prompt's window is segmented at most this large (speed)
    iterations: int = 2
    click_radius: float = 0.012  # seed disc radius, a fraction of the window's diagonal
    window: float = 0.3  # clicks only: window half-size, a fraction of the image's short side
    box_margin: float = 0.1  # background margin kept around a box, a fraction of its size
    click_extents: tuple[float, ...] = (0.3, 0.7)  # clicks only: tried object sizes, of the window
    flood_tolerance: int = 24  # exclude clicks take the region of similar colour around them...
    flood_reach: float = 0.25  # ...within this fraction of the window's diagonal


class ClassicalSegmenter:
    """Interactive segmentation with GrabCut seeded by clicks, a box and/or a mask."""

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig()

    @property
    def model(self) -> str:
        return SEGMENTER_MODEL

    def segment(self, frames: FrameSource, index: int, prompt: Prompt) -> list[Candidate]:
        return segment_image(frames.get(index), prompt, self.config)


def _prompt_window(prompt: Prompt, height: int, width: int, cfg: SegmenterConfig) -> tuple[int, int, int, int]:
    """The image region to segment, (x0, y0, x1, y1) with exclusive ends."""
    xs: list[float] = []
    ys: list[float] = []
    pad = 0.0
    if prompt.box is not None:
        bx0, by0, bx1, by1 = prompt.box
        xs += [bx0, bx1]
        ys += [by0, by1]
        pad = cfg.box_margin * max(abs(bx1 - bx0), abs(by1 - by0)) + 4
    if prompt.mask is not None and prompt.mask.any():
        my, mx = np.nonzero(prompt.mask)
        xs += [float(mx.min()), float(mx.max())]
        ys += [float(my.min()), float(my.max())]
        pad = max(pad, 0.15 * max(float(np.ptp(mx)), float(np.ptp(my))) + 8)
    if prompt.box is None and prompt.mask is None:
        # Clicks only: the object's extent is unknown, look at a generous window around them.
        for p in prompt.points:
            xs.append(p.x)
            ys.append(p.y)
        pad = cfg.window * min(height, width)
    else:
        for p in prompt.points:  # clicks outside the box/mask still have to be inside the window
            xs.append(p.x)
            ys.append(p.y)
    x0 = int(max(0, math.floor(min(xs) - pad)))
    y0 = int(max(0, math.floor(min(ys) - pad)))
    x1 = int(min(width, math.ceil(max(xs) + pad) + 1))
    y1 = int(min(height, math.ceil(max(ys) + pad) + 1))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def segment_image(image: np.ndarray, prompt: Prompt, config: SegmenterConfig | None = None) -> list[Candidate]:
    """GrabCut on the prompt's window; candidates best first, scores in [0, 1]."""
    cfg = config or SegmenterConfig()
    if prompt.is_empty():
        raise ValueError("an empty prompt: give clicks, a box or a mask")
    height, width = image.shape[:2]
    if prompt.mask is not None and prompt.mask.shape != (height, width):
        raise ValueError(f"prompt mask is {prompt.mask.shape}, the image {(height, width)}")
    x0, y0, x1, y1 = _prompt_window(prompt, height, width, cfg)
    scale = min(1.0, cfg.work_side / max(x1 - x0, y1 - y0))
    cw, ch = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    crop = cv2.resize(image[y0:y1, x0:x1], (cw, ch), interpolation=cv2.INTER_AREA)

    def to_crop(x: float, y: float) -> tuple[int, int]:
        return int(round((x - x0) * scale)), int(round((y - y0) * scale))

    trimap = np.full((ch, cw), cv2.GC_PR_BGD, np.uint8)
    if prompt.mask is not None:
        mask_crop = cv2.resize(prompt.mask[y0:y1, x0:x1].astype(np.uint8), (cw, ch), interpolation=cv2.INTER_NEAREST)
        trimap[mask_crop > 0] = cv2.GC_PR_FGD
    if prompt.box is not None:
        bx0, by0 = to_crop(min(prompt.box[0], prompt.box[2]), min(prompt.box[1], prompt.box[3]))
        bx1, by1 = to_crop(max(prompt.box[0], prompt.box[2]), max(prompt.box[1], prompt.box[3]))
        inside = np.zeros((ch, cw), bool)
        inside[max(by0, 0) : by1 + 1, max(bx0, 0) : bx1 + 1] = True
        trimap[~inside] = cv2.GC_BGD
        if prompt.mask is None:
            trimap[inside] = cv2.GC_PR_FGD
    elif prompt.mask is None:
        # Clicks only: the window's border is background (unless the window hits the image edge,
        # where the object may well continue).
        edge = max(2, round(0.02 * min(cw, ch)))
        if y0 > 0:
            trimap[:edge, :] = cv2.GC_BGD
        if y1 < height:
            trimap[-edge:, :] = cv2.GC_BGD
        if x0 > 0:
            trimap[:, :edge] = cv2.GC_BGD
        if x1 < width:
            trimap[:, -edge:] = cv2.GC_BGD
    clicks_only = prompt.box is None and prompt.mask is None
    radius = max(2, round(cfg.click_radius * math.hypot(cw, ch)))
    excluded = np.zeros((ch, cw), bool)
    for p in prompt.points:
        if not p.include:
            # GrabCut alone only flips the disc under an exclude click when the rest of that
            # region looks like the object; the user means the whole region: flood it.
            excluded |= _colour_region(crop, to_crop(p.x, p.y), cfg)
    includes = [to_crop(p.x, p.y) for p in prompt.points if p.include]

    # Clicks alone do not say how big the object is: like SAM's multimask output, try a few
    # extents (a probable-foreground disc around the clicks) and rank the results.
    extents = cfg.click_extents if clicks_only and includes else (0.0,)
    results: list[tuple[float, np.ndarray]] = []
    for extent in extents:
        start = trimap.copy()
        if extent > 0:
            r = max(radius + 1, round(extent * min(cw, ch) / 2))
            for x, y in includes:
                cv2.circle(start, (x, y), r, int(cv2.GC_PR_FGD), -1)
        start[excluded] = cv2.GC_BGD
        for p in prompt.points:
            cv2.circle(start, to_crop(p.x, p.y), radius, int(cv2.GC_FGD if p.include else cv2.GC_BGD), -1)
        raw = _grabcut(crop, start, cfg.iterations)
        chosen = _components_at(raw, includes, (cw, ch)) if includes else keep_major_components(raw, 0.2)
        results.append((_separability(crop, chosen), chosen))
        if includes and not np.array_equal(chosen, raw) and raw.any():
            # Everything GrabCut found, in case the object is in several pieces.
            results.append((0.9 * _separability(crop, raw), raw))

    results.sort(key=lambda r: -r[0])
    kept: list[np.ndarray] = []
    candidates: list[Candidate] = []
    for score, chosen in results:
        if any(np.array_equal(chosen, k) for k in kept):
            continue
        kept.append(chosen)
        candidates.append(Candidate(_paste(chosen, (x0, y0, x1, y1), (height, width)), score))
    return candidates


def _grabcut(image: np.ndarray, trimap: np.ndarray, iterations: int) -> np.ndarray:
    labels = trimap.copy()
    has_fg = bool(np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).any())
    has_bg = bool(np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).any())
    if has_fg and has_bg:
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        try:
            # OpenCV's stubs require `rect`; None is what OpenCV takes with GC_INIT_WITH_MASK.
            cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
        except cv2.error:
            labels = trimap  # degenerate colour statistics (e.g. a flat image): keep the seeds
    return np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _colour_region(image: np.ndarray, seed: tuple[int, int], cfg: SegmenterConfig) -> np.ndarray:
    """Pixels connected to `seed` whose colour stays within a tolerance of the seed's, no further
    away than a fraction of the window (a flat background must not swallow everything)."""
    h, w = image.shape[:2]
    x, y = min(max(seed[0], 0), w - 1), min(max(seed[1], 0), h - 1)
    smooth = cv2.GaussianBlur(image, (5, 5), 0)
    fill = np.zeros((h + 2, w + 2), np.uint8)
    tol = (cfg.flood_tolerance,) * 3
    flags = 8 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    cv2.floodFill(smooth, fill, (x, y), (0, 0, 0), tol, tol, flags)
    region = fill[1:-1, 1:-1] > 0
    reach = np.zeros((h, w), np.uint8)
    cv2.circle(reach, (x, y), max(3, round(cfg.flood_reach * math.hypot(w, h))), 1, -1)
    return region & (reach > 0)


def _components_at(mask: np.ndarray, points: list[tuple[int, int]], size: tuple[int, int]) -> np.ndarray:
    """The connected components of `mask` that contain one of `points` (or lie next to it)."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    wanted: set[int] = set()
    for x, y in points:
        x = min(max(x, 0), size[0] - 1)
        y = min(max(y, 0), size[1] - 1)
        patch = labels[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3]
        wanted.update(int(v) for v in np.unique(patch) if v > 0)
    if not wanted:
        return mask
    return np.isin(labels, list(wanted))


def _separability(image: np.ndarray, mask: np.ndarray) -> float:
    """How distinct the object's colours are from the rest of the window: 1 - Bhattacharyya
    coefficient of the two colour histograms. A cheap confidence, in [0, 1]."""
    if not mask.any() or mask.all():
        return 0.0
    bins = ColourBins((4, 8, 8))
    index = bins.index(lab_stretched(image))
    fg, bg = bins.histogram(index, mask), bins.histogram(index, ~mask)
    return float(np.clip(1.0 - np.sum(np.sqrt(fg * bg)), 0.0, 1.0))


def _paste(crop_mask: np.ndarray, window: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    x0, y0, x1, y1 = window
    out = np.zeros(shape, bool)
    resized = cv2.resize(crop_mask.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    out[y0:y1, x0:x1] = resized > 0.5
    return out

