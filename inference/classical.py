"""The classical backend: OpenCV only, no weights. The default without a SAM 2 checkpoint (E4) and
the 'simple' tracking algorithm (T7).

Segmenter: GrabCut seeded by the prompt. Include clicks become sure-foreground discs, exclude
clicks sure-background (with the similar-coloured region around them), a box makes everything
outside it background, a mask to refine (S7) is the initial labelling. Clicks alone leave the
object's size open: a few extents around them are tried and ranked, like SAM's multimask output.

Tracker: per object, per frame, at a reduced working resolution (about 432 px on the long side):

1. Motion prior. Dense optical flow (DIS) from the current frame back to the previous one warps
   the previous mask. Where forward and backward flow disagree (occlusions, disocclusions, flow
   that failed on fast motion) the warped mask is not trusted and falls back to a neutral,
   blurred value, so appearance decides there. Without that check, background uncovered behind
   a moving object inherits the object's flow and the mask smears along its path.
2. Appearance. Colour histograms (CIE Lab, a/b stretched so bins are used) of the object and of
   a ring of background around it. A long-term model learnt on the conditioning frame is blended
   with a short-term model updated from every tracked frame: the first keeps drift in check,
   the second follows lighting and pose changes.
3. Fusion. Log-odds of both cues are added (naive Bayes), the posterior is smoothed with a guided
   filter on the grey image (edge-aware: boundaries snap to image edges, a cheap stand-in for a
   CRF or graph cut), thresholded, and small stray components are dropped.

Objects overlapping each other keep the pixels where their posterior is higher. An object is
lost (mask None) for the rest of the pass when its mask vanishes (below a few percent of its
conditioning area, e.g. it left the frame), or when only a remnant is left whose colours do not
look like the object's on its conditioning frame; a conditioning mask on a later frame of the
pass picks it up again.

Measured with `inference.evaluation.evaluate_vos` on three DAVIS 2016 clips at 854x480: mean
J&F about 0.76 (0.93 blackswan, 0.60-0.66 car-shadow, 0.73-0.79 dog-agility, varying with the
working resolution) at 20+ frames/s for one object on two cores. Dense flow alone gives about
0.45, flow + GrabCut about 0.6 at under 8 frames/s.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from domain.events import Direction
from inference.protocols import Candidate, FrameSource, Prompt, TrackedMask

SEGMENTER_MODEL = "classical/grabcut@1"
TRACKER_MODEL = "classical/flowcolour@1"


# ----------------------------------------------------------------------------------------------
# Small image helpers (pure functions)


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


# ----------------------------------------------------------------------------------------------
# Segmenter


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
            cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
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


# ----------------------------------------------------------------------------------------------
# Tracker


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    work_side: int = 432  # frames are processed with this many pixels on the long side at most
    flow_preset: int = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST
    # Coarse enough that a few thousand object pixels fill the histogram (finer bins measured
    # worse: sparse histograms call unseen shades background).
    bins: tuple[int, int, int] = (8, 16, 16)
    long_term: float = 0.5  # weight of the conditioning frame's colour model against recent ones
    update: float = 0.35  # how fast the short-term colour model follows each new frame
    colour_weight: float = 1.0
    ring: int = 25  # background ring for the colour model and search margin, working pixels
    prior_blur: float = 2.0  # the warped mask is this uncertain (px sigma) at its boundary
    search: float = 0.5  # extra search margin, a fraction of the object's size
    occlusion_px: float = 1.5  # forward-backward flow disagreement that marks a pixel unreliable
    guided_radius: int = 4
    guided_eps: float = 1e-3
    keep_fraction: float = 0.2  # components below this fraction of the largest are dropped
    lost_fraction: float = 0.03  # area below this fraction of the conditioning area: lost
    doubt_fraction: float = 0.25  # ...and below this one when it no longer looks like the object
    min_area: int = 4  # working pixels


@dataclass(slots=True)
class _Frame:
    """One frame at working resolution, with what every object needs from it."""

    index: int
    shape: tuple[int, int]  # full-resolution height, width
    grey: np.ndarray  # uint8
    grey_f: np.ndarray  # float32 in [0, 1], the guided filter's guide
    colour: np.ndarray  # histogram bin of each pixel


@dataclass(slots=True)
class _Motion:
    """Where each pixel of the current frame came from in the previous one, and how reliable."""

    map_x: np.ndarray
    map_y: np.ndarray
    magnitude: np.ndarray
    unreliable: np.ndarray


@dataclass(slots=True)
class _Object:
    prior: np.ndarray  # float32 mask at working resolution, previous frame
    fg_long: np.ndarray
    bg_long: np.ndarray
    fg: np.ndarray
    bg: np.ndarray
    reference_area: int
    conditioning_count: int = 1


@dataclass(slots=True)
class _Proposal:
    window: tuple[int, int, int, int]  # x0, y0, x1, y1 at working resolution
    posterior: np.ndarray  # float32 in the window
    mask: np.ndarray  # bool in the window


class ClassicalTracker:
    """The 'simple' tracker (T7): flow-warped masks fused with colour models."""

    def __init__(self, config: TrackerConfig | None = None, segmenter: ClassicalSegmenter | None = None) -> None:
        self.config = config or TrackerConfig()
        self.segmenter = segmenter or ClassicalSegmenter()

    @property
    def model(self) -> str:
        return TRACKER_MODEL

    def open(self, frames: FrameSource) -> ClassicalTrackerSession:
        return ClassicalTrackerSession(frames, self.config, self.segmenter)


class ClassicalTrackerSession:
    """Tracking state over one media item. Use from one thread at a time."""

    def __init__(self, frames: FrameSource, config: TrackerConfig, segmenter: ClassicalSegmenter) -> None:
        self._frames = frames
        self._cfg = config
        self._segmenter = segmenter
        self._bins = ColourBins(config.bins)
        scale = min(1.0, config.work_side / max(frames.width, frames.height))
        self._work = (max(8, round(frames.width * scale)), max(8, round(frames.height * scale)))  # w, h
        self._flow = cv2.DISOpticalFlow_create(config.flow_preset)
        # Conditioning masks given by the user, full resolution: object -> frame -> mask.
        self._conditioning: dict[str, dict[int, np.ndarray]] = {}
        self._closed = False
        wx, wy = self._work
        self._grid_x, self._grid_y = np.meshgrid(np.arange(wx, dtype=np.float32), np.arange(wy, dtype=np.float32))

    # -- conditioning ------------------------------------------------------------------------

    def add_mask(self, frame: int, object_id: str, mask: np.ndarray) -> None:
        self._check_open()
        self._check_frame(frame)
        m = np.asarray(mask).astype(bool)
        shape = self._frames.get(frame).shape[:2]
        if m.shape != shape:
            raise ValueError(f"mask is {m.shape}, frame {frame} is {shape}")
        self._conditioning.setdefault(object_id, {})[frame] = m.copy()

    def add_prompt(self, frame: int, object_id: str, prompt: Prompt) -> np.ndarray:
        self._check_open()
        self._check_frame(frame)
        existing = self._conditioning.get(object_id, {}).get(frame)
        if prompt.mask is None and existing is not None and prompt.points:
            # New clicks refine what the object already is on this frame (S7).
            prompt = Prompt(points=prompt.points, box=prompt.box, mask=existing)
        mask = self._segmenter.segment(self._frames, frame, prompt)[0].mask
        self._conditioning.setdefault(object_id, {})[frame] = mask.copy()
        return mask

    def objects(self) -> list[str]:
        return list(self._conditioning)

    def close(self) -> None:
        self._closed = True
        self._conditioning.clear()

    # -- propagation -------------------------------------------------------------------------

    def propagate(self, start: int, direction: Direction, count: int) -> Iterator[list[TrackedMask]]:
        """Objects start from their conditioning masks (add_mask/add_prompt) on `start` or on a
        later frame of the pass; to continue from a tracked frame, add its mask first."""
        # Checked now, not at the first frame pulled: a bad request fails where it is made.
        self._check_open()
        self._check_frame(start)
        if count < 1:
            raise ValueError("count must be at least 1 (it counts the start frame)")
        step = Direction(direction).step
        end = min(len(self._frames), start + count) if step > 0 else max(-1, start - count)
        return self._run(range(start, end, step))

    def _run(self, indices: range) -> Iterator[list[TrackedMask]]:
        states: dict[str, _Object] = {}
        previous: _Frame | None = None
        for index in indices:
            if self._closed:
                return
            current = self._prepare(index)
            need_motion = previous is not None and any(o not in self._conditioning_at(index) for o in states)
            motion = self._motion(previous, current) if need_motion and previous is not None else None
            yield self._track_frame(current, motion, states)
            previous = current

    def _conditioning_at(self, index: int) -> dict[str, np.ndarray]:
        return {o: frames[index] for o, frames in self._conditioning.items() if index in frames}

    def _track_frame(self, frame: _Frame, motion: _Motion | None, states: dict[str, _Object]) -> list[TrackedMask]:
        cfg = self._cfg
        conditioning = self._conditioning_at(frame.index)
        proposals: dict[str, _Proposal] = {}
        for obj, state in list(states.items()):
            if obj in conditioning or motion is None:
                continue
            proposal = self._propose(state, frame, motion)
            if proposal is None:
                del states[obj]
            else:
                proposals[obj] = proposal

        wx, wy = self._work
        # Pixels a user gave to an object are nobody else's; between tracked objects the higher
        # posterior wins.
        taken = np.zeros((wy, wx), bool)
        for mask in conditioning.values():
            taken |= self._to_work(mask)
        _resolve_overlaps(proposals, taken, (wy, wx))

        results: list[TrackedMask] = []
        for obj in self._conditioning:
            if obj in conditioning:
                full = conditioning[obj]
                states[obj] = self._start_object(frame, self._to_work(full), states.get(obj))
                results.append(TrackedMask(obj, frame.index, full.copy(), 1.0))
                continue
            proposal = proposals.get(obj)
            state = states.get(obj)
            if proposal is None or state is None:
                results.append(TrackedMask(obj, frame.index, None, 0.0))
                continue
            x0, y0, x1, y1 = proposal.window
            area = int(np.count_nonzero(proposal.mask))
            evidence = self._appearance_evidence(state, frame, proposal) if area else -math.inf
            if area < max(cfg.min_area, cfg.lost_fraction * state.reference_area) or (
                evidence < 0 and area < cfg.doubt_fraction * state.reference_area
            ):
                # Gone, or only a remnant is left that does not even look like the object did on
                # its conditioning frame (what flow drags along at the border of the image).
                del states[obj]
                results.append(TrackedMask(obj, frame.index, None, 0.0))
                continue
            prior = np.zeros((wy, wx), np.float32)
            prior[y0:y1, x0:x1] = proposal.mask
            self._update_colours(state, frame, prior > 0.5)
            state.prior = prior
            soft = np.zeros((wy, wx), np.float32)
            post = proposal.posterior
            soft[y0:y1, x0:x1] = np.where(proposal.mask, np.maximum(post, 0.5), np.minimum(post, 0.5))
            full = cv2.resize(soft, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR) > 0.5
            # Presence: how decided the posterior is over the mask, 0 (coin flip) .. 1 (certain),
            # discounted when the pixels stopped looking like the conditioning frame's object.
            decided = float(np.clip(2.0 * post[proposal.mask].mean() - 1.0, 0.0, 1.0))
            score = decided * float(sigmoid(np.float64(evidence)))
            results.append(TrackedMask(obj, frame.index, full, score))
        return results

    def _appearance_evidence(self, state: _Object, frame: _Frame, proposal: _Proposal) -> float:
        """Mean log-likelihood ratio, object vs. background, of the mask's colours under the
        long-term (conditioning) colour model: > 0 when the mask looks like the object did."""
        x0, y0, x1, y1 = proposal.window
        bins = frame.colour[y0:y1, x0:x1][proposal.mask]
        ratio = np.log(state.fg_long[bins] + 1e-4) - np.log(state.bg_long[bins] + 1e-4)
        return float(ratio.mean())

    def _start_object(self, frame: _Frame, mask: np.ndarray, old: _Object | None) -> _Object:
        fg, bg = self._colour_models(frame, mask)
        area = max(int(np.count_nonzero(mask)), 1)
        if old is None:
            return _Object(mask.astype(np.float32), fg, bg, fg.copy(), bg.copy(), area)
        # A later conditioning frame joins the long-term memory rather than replacing it: every
        # user-given mask is equally trustworthy.
        n = old.conditioning_count
        fg_long = (old.fg_long * n + fg) / (n + 1)
        bg_long = (old.bg_long * n + bg) / (n + 1)
        return _Object(mask.astype(np.float32), fg_long, bg_long, fg.copy(), bg.copy(), area, n + 1)

    def _colour_models(self, frame: _Frame, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ring = cv2.dilate(mask.astype(np.uint8), disc_kernel(self._cfg.ring)).astype(bool) & ~mask
        return self._bins.histogram(frame.colour, mask), self._bins.histogram(frame.colour, ring)

    def _update_colours(self, state: _Object, frame: _Frame, mask: np.ndarray) -> None:
        fg, bg = self._colour_models(frame, mask)
        u = self._cfg.update
        state.fg = (1 - u) * state.fg + u * fg
        state.bg = (1 - u) * state.bg + u * bg

    def _propose(self, state: _Object, frame: _Frame, motion: _Motion) -> _Proposal | None:
        cfg = self._cfg
        window = self._search_window(state.prior, motion)
        if window is None:
            return None
        x0, y0, x1, y1 = window
        warped = cv2.remap(
            state.prior,
            motion.map_x[y0:y1, x0:x1],
            motion.map_y[y0:y1, x0:x1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        if not (warped > 0.1).any():
            return None  # the mask was carried out of the frame
        unreliable = motion.unreliable[y0:y1, x0:x1]
        if unreliable.any():
            neutral = 0.5 * cv2.GaussianBlur(warped, (0, 0), 4.0) + 0.25
            warped = np.where(unreliable, neutral, warped)
        if cfg.prior_blur > 0:
            warped = cv2.GaussianBlur(warped, (0, 0), cfg.prior_blur)

        fg = cfg.long_term * state.fg_long + (1 - cfg.long_term) * state.fg
        bg = cfg.long_term * state.bg_long + (1 - cfg.long_term) * state.bg
        bins = frame.colour[y0:y1, x0:x1]
        # A tiny floor keeps colours neither model has seen neutral instead of undefined.
        pf, pb = fg[bins] + 1e-5, bg[bins] + 1e-5
        colour = (pf / (pf + pb)).astype(np.float32)

        log_odds = logit(warped) + cfg.colour_weight * logit(colour)
        posterior = sigmoid(log_odds).astype(np.float32)
        near = cv2.dilate((warped > 0.1).astype(np.uint8), disc_kernel(cfg.ring)).astype(bool)
        posterior[~near] = 0.0
        posterior = np.clip(
            guided_filter(frame.grey_f[y0:y1, x0:x1], posterior, cfg.guided_radius, cfg.guided_eps), 0.0, 1.0
        ).astype(np.float32)
        mask = keep_major_components(posterior > 0.5, cfg.keep_fraction)
        return _Proposal(window, posterior, mask)

    def _search_window(self, prior: np.ndarray, motion: _Motion) -> tuple[int, int, int, int] | None:
        """Where the object can be now: its last box grown by the motion around it and the ring."""
        ys, xs = np.nonzero(prior > 0.5)
        if xs.size == 0:
            return None
        wx, wy = self._work
        # Fast motion is where flow fails, so look further than the flow says: a fraction of the
        # object's own size on top of the ring.
        size = max(int(xs.max() - xs.min()), int(ys.max() - ys.min())) + 1
        margin = self._cfg.ring + self._cfg.guided_radius + 4 + int(self._cfg.search * size)
        bx0, bx1 = max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, wx)
        by0, by1 = max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, wy)
        reach = int(math.ceil(float(motion.magnitude[by0:by1, bx0:bx1].max(initial=0.0))))
        x0, x1 = max(bx0 - reach, 0), min(bx1 + reach, wx)
        y0, y1 = max(by0 - reach, 0), min(by1 + reach, wy)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        return x0, y0, x1, y1

    # -- frames and flow ---------------------------------------------------------------------

    def _prepare(self, index: int) -> _Frame:
        image = self._frames.get(index)
        rgb = cv2.resize(image, self._work, interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return _Frame(
            index=index,
            shape=(image.shape[0], image.shape[1]),
            grey=grey,
            grey_f=grey.astype(np.float32) / 255.0,
            colour=self._bins.index(lab_stretched(rgb)),
        )

    def _motion(self, previous: _Frame, current: _Frame) -> _Motion:
        back = self._flow.calc(current.grey, previous.grey, None)  # current pixel -> previous frame
        forth = self._flow.calc(previous.grey, current.grey, None)
        map_x = self._grid_x + back[..., 0]
        map_y = self._grid_y + back[..., 1]
        # Going back then forth should land where we started; where it does not, the pixel was
        # occluded or the flow failed.
        forth_at = cv2.remap(forth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        error = np.hypot(back[..., 0] + forth_at[..., 0], back[..., 1] + forth_at[..., 1])
        return _Motion(
            map_x=map_x,
            map_y=map_y,
            magnitude=np.hypot(back[..., 0], back[..., 1]),
            unreliable=error > self._cfg.occlusion_px,
        )

    def _to_work(self, mask: np.ndarray) -> np.ndarray:
        small = cv2.resize(mask.astype(np.float32), self._work, interpolation=cv2.INTER_AREA)
        out = small > 0.5
        if not out.any() and mask.any():
            out = small > 0  # a thin or tiny object must not vanish by downscaling
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("tracker session is closed")

    def _check_frame(self, frame: int) -> None:
        if not 0 <= frame < len(self._frames):
            raise IndexError(f"frame {frame} out of range 0..{len(self._frames) - 1}")


def _resolve_overlaps(proposals: dict[str, _Proposal], taken: np.ndarray, shape: tuple[int, int]) -> None:
    """Make proposals disjoint, in place: `taken` pixels go to nobody, contested ones to the
    object with the highest posterior."""
    if not proposals:
        return
    best = np.zeros(shape, np.float32)
    owner = np.full(shape, -1, np.int32)
    names = list(proposals)
    for k, name in enumerate(names):
        p = proposals[name]
        x0, y0, x1, y1 = p.window
        score = np.where(p.mask, p.posterior, 0.0)
        region_best = best[y0:y1, x0:x1]
        wins = p.mask & (score > region_best)
        region_best[wins] = score[wins]
        owner[y0:y1, x0:x1][wins] = k
    for k, name in enumerate(names):
        p = proposals[name]
        x0, y0, x1, y1 = p.window
        p.mask = p.mask & (owner[y0:y1, x0:x1] == k) & ~taken[y0:y1, x0:x1]


__all__ = [
    "SEGMENTER_MODEL",
    "TRACKER_MODEL",
    "ClassicalSegmenter",
    "ClassicalTracker",
    "ClassicalTrackerSession",
    "SegmenterConfig",
    "TrackerConfig",
    "guided_filter",
    "segment_image",
]
