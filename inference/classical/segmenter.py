"""The classical segmenter: GrabCut seeded by the prompt (see `inference.classical`).

Clicks alone take `segment_clicks` (geodesic seeds at a working size, a later click refining the
answer to the clicks before it); a box and/or a mask take `segment_image`'s window.

Measured with `masklog eval-clicks DIR --every 10 --json` (the NoC protocol,
`inference.click_eval`), 854x480, two shared cores, classical/grabcut@1 -> @2 -> @3:

    davis16-train (12 sequences, 86 objects): NoC@85 9.02 -> 7.02 -> 6.73, NoC@90 13.20 ->
        10.41 -> 10.27, IoU after 1/3/5 clicks 0.47/0.70/0.71 -> 0.61/0.73/0.80 ->
        0.64/0.76/0.82; seconds per click, wall, mean 0.73 -> 0.14 -> 0.12, median 0.53 -> 0.08
        -> 0.07
    vos (3 sequences, 12 objects): NoC@85 13.42 -> 8.50 -> 7.67, NoC@90 17.83 -> 9.92 -> 9.42,
        median seconds per click 0.09

A first click runs GrabCut in four windows, on a thread each (two cores: median 0.50 s over the
objects of vos's first frames, 0.74 s one window at a time); a later click is one GrabCut.

@2 -> @3 is the first click's ranking (`first_click_quality`, fitted on those folders). The
other settings were chosen on davis16-train (every 20th frame) and checked on vos (every 5th);
variants that did not hold up on both are noted at `SegmenterConfig`'s fields.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.graph import MCP_Geometric

from masklog.inference.classical.imaging import ColourBins, guided_filter, keep_major_components, lab_stretched
from masklog.inference.evaluation import jaccard
from masklog.inference.protocols import Candidate, ClickPoint, FrameSource, Prompt

SEGMENTER_MODEL = "classical/grabcut@3"


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    work_side: int = 256  # a box's or mask's window is segmented at most this large (speed)
    iterations: int = 2  # (1 for a first click's windows: 0.51 -> 0.37 s, the same NoC, IoU after 1 click 0.638 -> 0.630)
    click_radius: float = 0.012  # seed disc radius, a fraction of the window's diagonal
    box_margin: float = 0.1  # background margin kept around a box, a fraction of its size
    flood_tolerance: int = 24  # exclude clicks take the region of similar colour around them...
    flood_reach: float = 0.25  # ...within this fraction of the window's diagonal
    # Clicks alone (the page's usual prompt) take their own path, see `segment_clicks`:
    click_side: int = 256  # the clicks' window is segmented at most this large (320: no better, 50 % slower)
    first_windows: tuple[float, ...] = (0.3, 0.4, 0.55, 0.75)  # first click: window half-sizes tried, of the short side
    # (0.75 only pays with the fitted ranking; adding 0.2 too: held-out IoU 0.638 against 0.639, a GrabCut more)
    first_reach: float = 0.7  # first click: probable object = geodesic ball of this fraction of the window half-size
    edge_weight: float = 2.0  # geodesic cost of a step: 1 + edge_weight * normalised gradient (8: balls too small, IoU@1 0.35)
    refine_margin: float = 0.25  # later clicks: window around the previous answer and the clicks, of its size
    refine_edge_weight: float = 2.0  # edge_weight of the later clicks' geodesic balls
    refine_iterations: int = 1  # 2: the same on davis16-train, 0.3 fewer clicks on vos, 35 % slower
    edit_reach: float = 0.12  # later clicks: the new click flips the geodesic ball of this fraction of the window's diagonal...
    edit_scale: float = 4.0  # ...or (>0) of this many times its distance to the previous answer's boundary, up to twice that
    lock_beyond: float = 0.0  # >0: pixels geodesically farther than this many edit_reach keep their label (2: +1.2 clicks)
    guard_beyond: float = 1.4  # a click may change the answer farther than this many edit_reach from it...
    guard_change: float = 0.15  # ...by at most this fraction of the previous area; more and only the near change is kept
    refine_radius: float = 1.5  # full-resolution boundary: guided filter radius, in working pixels
    refine_eps: float = 2e-3
    cache_size: int = 32  # answers remembered (frame, clicks) so the next click refines the last one; bit-packed,
    # a 854x480 answer takes 51 kB, a 4K one 1 MB


class ClassicalSegmenter:
    """Interactive segmentation with GrabCut seeded by clicks, a box and/or a mask."""

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig()
        # (frame fingerprint, clicks) -> the answer shown for them. The page sends the growing
        # list of clicks each time; the answer to the clicks before the last is where the last
        # click starts from. Bounded (LRU); a lock because the actor may call from threads.
        self._answers: OrderedDict[tuple[bytes, tuple[ClickPoint, ...]], np.ndarray] = OrderedDict()  # np.packbits
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return SEGMENTER_MODEL

    def segment(self, frames: FrameSource, index: int, prompt: Prompt) -> list[Candidate]:
        image = frames.get(index)
        if prompt.box is not None or prompt.mask is not None or not prompt.points:
            return segment_image(image, prompt, self.config)
        points = tuple(prompt.points)
        key = _fingerprint(image)
        with self._lock:
            packed = self._answers.get((key, points[:-1])) if len(points) > 1 else None
        previous = None
        if packed is not None:
            previous = np.unpackbits(packed, count=image.shape[0] * image.shape[1]).reshape(image.shape[:2]).astype(bool)
        candidates = segment_clicks(image, points, previous, self.config)
        if candidates and self.config.cache_size > 0:
            with self._lock:
                self._answers[(key, points)] = np.packbits(candidates[0].mask)
                self._answers.move_to_end((key, points))
                while len(self._answers) > self.config.cache_size:
                    self._answers.popitem(last=False)
        return candidates


def _fingerprint(image: np.ndarray) -> bytes:
    """A cheap identity of a frame's pixels (a sparse sample and the shape)."""
    digest = hashlib.blake2b(np.ascontiguousarray(image[::7, ::7]).tobytes(), digest_size=16)
    digest.update(repr(image.shape).encode())
    return digest.digest()


def _prompt_window(prompt: Prompt, height: int, width: int, cfg: SegmenterConfig) -> tuple[int, int, int, int]:
    """The region to segment for a box and/or mask, (x0, y0, x1, y1) with exclusive ends."""
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
    for p in prompt.points:  # clicks outside the box/mask still have to be inside the window
        xs.append(p.x)
        ys.append(p.y)
    x0 = int(max(0, math.floor(min(xs) - pad)))
    y0 = int(max(0, math.floor(min(ys) - pad)))
    x1 = int(min(width, math.ceil(max(xs) + pad) + 1))
    y1 = int(min(height, math.ceil(max(ys) + pad) + 1))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def segment_image(image: np.ndarray, prompt: Prompt, config: SegmenterConfig | None = None) -> list[Candidate]:
    """GrabCut on the prompt's window; candidates best first, scores in [0, 1]. Clicks alone go to
    `segment_clicks` (afresh: without the answer to the clicks before the last)."""
    cfg = config or SegmenterConfig()
    if prompt.is_empty():
        raise ValueError("an empty prompt: give clicks, a box or a mask")
    height, width = image.shape[:2]
    if prompt.mask is not None and prompt.mask.shape != (height, width):
        raise ValueError(f"prompt mask is {prompt.mask.shape}, the image {(height, width)}")
    if prompt.box is None and prompt.mask is None:
        return segment_clicks(image, tuple(prompt.points), None, cfg)
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
    radius = max(2, round(cfg.click_radius * math.hypot(cw, ch)))
    excluded = np.zeros((ch, cw), bool)
    for p in prompt.points:
        if not p.include:
            # GrabCut alone only flips the disc under an exclude click when the rest of that
            # region looks like the object; the user means the whole region: flood it.
            excluded |= _colour_region(crop, to_crop(p.x, p.y), cfg)
    includes = [to_crop(p.x, p.y) for p in prompt.points if p.include]
    start = trimap
    start[excluded] = cv2.GC_BGD
    for p in prompt.points:
        cv2.circle(start, to_crop(p.x, p.y), radius, int(cv2.GC_FGD if p.include else cv2.GC_BGD), -1)
    raw = _grabcut(crop, start, cfg.iterations)
    chosen = _components_at(raw, includes, (cw, ch)) if includes else keep_major_components(raw, 0.2)
    results = [(_separability(crop, chosen), chosen)]
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
        cv2.setRNGSeed(0)  # GrabCut starts its colour models with k-means: the same answer every time
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


# ---- clicks alone ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Work:
    """A window of the image, (x0, y0, x1, y1) with exclusive ends, resized to a working size."""

    window: tuple[int, int, int, int]
    scale: float
    image: np.ndarray  # RGB, working size
    cost: np.ndarray  # geodesic step cost, float64, working size

    @staticmethod
    def make(image: np.ndarray, window: tuple[int, int, int, int], side: int, edge_weight: float) -> _Work:
        x0, y0, x1, y1 = window
        scale = min(1.0, side / max(x1 - x0, y1 - y0))
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        crop = cv2.resize(image[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
        lab = cv2.cvtColor(cv2.GaussianBlur(crop, (3, 3), 0), cv2.COLOR_RGB2LAB).astype(np.float32)
        gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
        grad = np.sqrt((gx * gx + gy * gy).sum(axis=2))
        # Normalised by the window's own edge strength, so one setting suits dull and vivid pictures.
        norm = float(np.percentile(grad, 90)) + 1e-3
        cost = 1.0 + edge_weight * np.minimum(grad / norm, 3.0)
        return _Work(window, scale, crop, cost.astype(np.float64))

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    def at(self, p: ClickPoint) -> tuple[int, int]:
        """(column, row) of a click in the working image, clamped into it."""
        h, w = self.shape
        x = int(round((p.x - self.window[0]) * self.scale))
        y = int(round((p.y - self.window[1]) * self.scale))
        return min(max(x, 0), w - 1), min(max(y, 0), h - 1)

    def resize_mask(self, mask: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.window
        h, w = self.shape
        small = cv2.resize(mask[y0:y1, x0:x1].astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        return small > 0.5

    def geodesic(self, points: Sequence[ClickPoint]) -> np.ndarray:
        """Geodesic distance (in working pixels weighted by edges) from the nearest of `points`."""
        seeds = [(y, x) for x, y in (self.at(p) for p in points)]
        costs, _ = MCP_Geometric(self.cost).find_costs(seeds)
        return np.asarray(costs)


def segment_clicks(
    image: np.ndarray,
    points: Sequence[ClickPoint],
    previous: np.ndarray | None = None,
    config: SegmenterConfig | None = None,
) -> list[Candidate]:
    """Clicks alone; `previous` is the answer to the same clicks but the last (None: start afresh).

    Afresh: a few windows around the clicks, GrabCut in each from a probable object that is the
    geodesic ball around the include clicks (it stops at edges, a disc would not), the answers
    ranked by how well they stand out from their surroundings. With a previous answer: the last
    click flips the geodesic ball around it (what the user pointed at is one region bounded by
    edges), every click is a hard seed, and GrabCut settles the boundary. Either way the answer
    is computed at a working size and its boundary refined at full resolution with a guided filter.
    """
    cfg = config or SegmenterConfig()
    if not points:
        raise ValueError("no clicks")
    height, width = image.shape[:2]
    if previous is not None and previous.shape != (height, width):
        raise ValueError(f"previous mask is {previous.shape}, the image {(height, width)}")
    if previous is not None and previous.any():
        return _refine_clicks(image, points, previous, cfg)
    return _first_clicks(image, points, cfg)


def _click_window(points: Sequence[ClickPoint], pad: float, height: int, width: int, extra: tuple[float, float, float, float] | None = None) -> tuple[int, int, int, int]:
    # Clicks off the picture count as on its edge (the window must not leave the image).
    xs = [min(max(p.x, 0.0), width - 1.0) for p in points]
    ys = [min(max(p.y, 0.0), height - 1.0) for p in points]
    if extra is not None:
        xs += [extra[0], extra[2]]
        ys += [extra[1], extra[3]]
    x0 = int(max(0, math.floor(min(xs) - pad)))
    y0 = int(max(0, math.floor(min(ys) - pad)))
    x1 = int(min(width, math.ceil(max(xs) + pad) + 1))
    y1 = int(min(height, math.ceil(max(ys) + pad) + 1))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _border_background(start: np.ndarray, work: _Work, height: int, width: int, label: int) -> None:
    """The window's border is background, except where the window reaches the image's edge (the
    object may well continue there)."""
    h, w = work.shape
    x0, y0, x1, y1 = work.window
    edge = max(2, round(0.02 * min(h, w)))
    if y0 > 0:
        start[:edge, :] = label
    if y1 < height:
        start[-edge:, :] = label
    if x0 > 0:
        start[:, :edge] = label
    if x1 < width:
        start[:, -edge:] = label


def _seed(start: np.ndarray, work: _Work, points: Sequence[ClickPoint], cfg: SegmenterConfig) -> None:
    h, w = work.shape
    radius = max(1, round(cfg.click_radius * math.hypot(w, h)))
    for p in points:
        cv2.circle(start, work.at(p), radius, int(cv2.GC_FGD if p.include else cv2.GC_BGD), -1)


def _first_clicks(image: np.ndarray, points: Sequence[ClickPoint], cfg: SegmenterConfig) -> list[Candidate]:
    answers = first_click_answers(image, points, cfg)
    scored = [(first_click_quality(features), full) for features, full in answers]
    scored.sort(key=lambda r: -r[0])
    candidates: list[Candidate] = []
    for score, mask in scored:
        if any(np.array_equal(mask, c.mask) for c in candidates):
            continue
        candidates.append(Candidate(mask, score))
    return candidates


def first_click_answers(image: np.ndarray, points: Sequence[ClickPoint], cfg: SegmenterConfig) -> list[tuple[tuple[float, float, float] | None, np.ndarray]]:
    """Starting afresh: one answer per window of `cfg.first_windows`, each with the features its
    rank is estimated from (`first_click_quality`; None for an empty or full answer)."""
    height, width = image.shape[:2]
    includes = [p for p in points if p.include]
    excludes = [p for p in points if not p.include]
    short = min(height, width)

    def answer(half: float) -> tuple[np.ndarray, np.ndarray]:
        """(working mask, full-resolution mask) in the window of this half-size."""
        work = _Work.make(image, _click_window(points, half * short, height, width), cfg.click_side, cfg.edge_weight)
        h, w = work.shape
        start = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        _border_background(start, work, height, width, cv2.GC_BGD)
        if includes:
            reach = cfg.first_reach * half * short * work.scale
            near = work.geodesic(includes) < reach
            if excludes:
                near &= work.geodesic(excludes) > reach
            start[near & (start != cv2.GC_BGD)] = cv2.GC_PR_FGD
        elif excludes:
            # Only exclude clicks: whatever does not look like the region around them.
            start[:] = cv2.GC_PR_FGD
            start[work.geodesic(excludes) < cfg.edit_reach * math.hypot(h, w)] = cv2.GC_PR_BGD
        _seed(start, work, points, cfg)
        raw = _grabcut(work.image, start, cfg.iterations)
        chosen = _components_at(raw, [work.at(p) for p in includes], (w, h)) if includes else keep_major_components(raw, 0.2)
        return chosen, _full_resolution(image, chosen, work, cfg)

    # The windows are independent and GrabCut lets go of the GIL: they run side by side.
    answers = list(_window_pool().map(answer, cfg.first_windows))
    return [(_rank_features(chosen, full, [other for i, (_, other) in enumerate(answers) if i != k]), full) for k, (chosen, full) in enumerate(answers)]


# The first click's answers (one per window) ranked by a linear estimate of their IoU, fitted by
# least squares (ridge, lambda 30 on standardised features) to the IoU of every window's answer
# to the protocol's first click on every 5th annotated frame of davis16-train and vos (192
# objects, 4 windows each); reproduce with `scripts/fit_click_ranking.py`. Over those objects the
# chosen answer's mean IoU is 0.637, and 0.631 when each sequence is ranked by a fit without it;
# ranking the @2 windows (0.3, 0.4, 0.55) by `_objectness` gave 0.594, and always taking the
# best window would give 0.708. The estimate is also the candidate's score, in IoU's units.
RANK_BORDER = -0.801  # x the share of the window's border the answer covers (it leaks out of the window)
RANK_AGREEMENT = 0.525  # x its best IoU with another window's answer (windows that agree are right more often)
RANK_LOG_AREA = 0.049  # x ln(its share of the image): a fuller answer, not a fragment
RANK_BIAS = 0.332


def first_click_quality(features: tuple[float, float, float] | None) -> float:
    """An estimate of a first-click answer's IoU in [0, 1] from `_rank_features`."""
    if features is None:
        return 0.0
    border, agreement, log_area = features
    return float(np.clip(RANK_BIAS + RANK_BORDER * border + RANK_AGREEMENT * agreement + RANK_LOG_AREA * log_area, 0.0, 1.0))


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _window_pool() -> ThreadPoolExecutor:
    """Threads for a first click's windows, one per core (at most four), made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="masklog-click")
        return _pool


def _forget_pool() -> None:
    # A forked child has none of its parent's threads: it makes its own pool when it needs one.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _rank_features(work_mask: np.ndarray, mask: np.ndarray, others: Sequence[np.ndarray]) -> tuple[float, float, float] | None:
    """(share of the working window's border covered, best IoU with another window's answer,
    ln of the share of the image), or None for an empty or full answer."""
    if not work_mask.any() or work_mask.all():
        return None
    ring = np.zeros(work_mask.shape, bool)
    ring[:2, :] = ring[-2:, :] = True
    ring[:, :2] = ring[:, -2:] = True
    border = float((work_mask & ring).sum()) / float(ring.sum())
    agreement = max((jaccard(mask, other) for other in others), default=0.0)
    return border, agreement, math.log(max(float(mask.mean()), 1e-5))


def _refine_clicks(image: np.ndarray, points: Sequence[ClickPoint], previous: np.ndarray, cfg: SegmenterConfig) -> list[Candidate]:
    height, width = image.shape[:2]
    ys, xs = np.nonzero(previous)
    box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    extent = max(box[2] - box[0], box[3] - box[1], *(abs(p.x - box[0]) for p in points), *(abs(p.y - box[1]) for p in points))
    pad = cfg.refine_margin * extent + 8
    work = _Work.make(image, _click_window(points, pad, height, width, box), cfg.click_side, cfg.refine_edge_weight)
    h, w = work.shape
    before = work.resize_mask(previous)
    start = np.where(before, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    last = points[-1]
    distance = work.geodesic([last])
    reach = cfg.edit_reach * math.hypot(h, w)
    if cfg.edit_scale > 0:
        # The click sits in the middle of what was missed (or wrongly taken), which usually
        # borders the previous answer: its distance to that boundary says how big the region is.
        x, y = work.at(last)
        inside = before if before[y, x] else ~before
        depth = float(cv2.distanceTransform(np.pad(inside, 1).astype(np.uint8), cv2.DIST_L2, 3)[y + 1, x + 1])
        reach = min(2 * reach, max(3.0, cfg.edit_scale * depth))
    near = distance < reach
    start[near] = cv2.GC_PR_FGD if last.include else cv2.GC_PR_BGD
    if cfg.lock_beyond > 0:
        far = distance > cfg.lock_beyond * reach
        start[far & before] = cv2.GC_FGD
        start[far & ~before] = cv2.GC_BGD
    _border_background(start, work, height, width, cv2.GC_BGD)
    _seed(start, work, points, cfg)
    raw = _grabcut(work.image, start, cfg.refine_iterations)
    if cfg.guard_beyond > 0:
        # GrabCut relearns both colour models from the whole window: a click on a region coloured
        # like the other side can flip most of the answer. One click fixes one region; a large
        # change far from it is such a collapse (or explosion), so only the change near it stays.
        near_zone = distance < cfg.guard_beyond * reach
        far_change = int(((raw != before) & ~near_zone).sum())
        if far_change > cfg.guard_change * max(int(before.sum()), 1):
            raw = np.where(near_zone, raw, before)
    includes = [work.at(p) for p in points if p.include]
    chosen = keep_major_components(raw, 0.05) if raw.any() else raw
    if includes:
        chosen = chosen | _components_at(raw, includes, (w, h))
    return [Candidate(_full_resolution(image, chosen, work, cfg), _objectness(work, chosen))]


def _objectness(work: _Work, mask: np.ndarray) -> float:
    """How much `mask` looks like an object: its colours differ from a ring around it, and its
    boundary follows image edges. In [0, 1]."""
    if not mask.any() or mask.all():
        return 0.0
    area = float(mask.sum())
    ring_width = max(2, round(0.5 * math.sqrt(area / math.pi)))
    grown = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_width + 1,) * 2)) > 0
    ring = grown & ~mask
    if not ring.any():
        ring = ~mask
    bins = ColourBins((4, 8, 8))
    index = bins.index(lab_stretched(work.image))
    fg, bg = bins.histogram(index, mask), bins.histogram(index, ring)
    separability = float(np.clip(1.0 - np.sum(np.sqrt(fg * bg)), 0.0, 1.0))
    m = mask.astype(np.uint8)
    boundary = (cv2.dilate(m, np.ones((3, 3), np.uint8)) - cv2.erode(m, np.ones((3, 3), np.uint8))) > 0
    edges = float(np.clip((work.cost[boundary].mean() - 1.0) / max(work.cost.max() - 1.0, 1e-6), 0.0, 1.0)) if boundary.any() else 0.0
    return 0.5 * separability + 0.5 * edges


def _full_resolution(image: np.ndarray, work_mask: np.ndarray, work: _Work, cfg: SegmenterConfig) -> np.ndarray:
    """The working answer at the image's size; where it was shrunk, its boundary is moved onto
    the full-resolution edges with a guided filter (interiors stay as they are)."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = work.window
    soft = cv2.resize(work_mask.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    if work.scale < 1.0 and work_mask.any() and cfg.refine_radius > 0:
        grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        soft = guided_filter(grey, soft, max(1, round(cfg.refine_radius / work.scale)), cfg.refine_eps)
    out = np.zeros((height, width), bool)
    out[y0:y1, x0:x1] = soft > 0.5
    return out
