"""The standard interactive-segmentation protocol (NoC): simulated clicks against ground truth.

For one image and one object's ground-truth mask, a simulated user clicks and the segmenter
answers each time with candidates; the best one (the segmenter's own first, the one the page
shows) is scored by IoU (`evaluation.jaccard`):

- **First click** (include): the pixel of the object farthest from its boundary, i.e. the
  maximum of the Euclidean distance transform of the mask.
- **Each next click**: in the largest error region, the pixel farthest from that region's
  boundary; an include click when the region was missed (false negative), an exclude click when
  it was wrongly taken (false positive). An error region is one 8-connected component of the
  missed pixels or of the false pixels, so a region is all of one kind even where a missed and
  a false area touch; "largest" is by pixel count.
- **Distances** are taken inside the region alone, with the image border counting as boundary
  (the region is padded with one pixel of background before the distance transform, as the
  published implementations do), so a click never lands on the edge of the picture when the
  region has an interior. Ties go to the first pixel in raster order (row by row, top to
  bottom, left to right), and between regions of the same size to the one whose first pixel
  comes first in raster order.
- A click is a pixel's column and row as `ClickPoint(x=column, y=row)`, the coordinates the
  segmenters index pixels with. Every prompt carries all the clicks so far and nothing else, as
  the page sends them (the previous answer is not fed back as a mask).
- Up to `max_clicks` clicks (20, as in the literature). NoC@85 / NoC@90: the number of clicks
  after which IoU first reaches 0.85 / 0.90, `max_clicks` when it never does; a run stops early
  once IoU reaches 0.90 after at least 5 clicks (later clicks change none of the figures), or
  when the answer equals the ground truth (no error region left to click in: the IoU of 1 then
  stands for every later click).

`evaluate_clicks` runs the protocol over DAVIS-format folders (`<seq>/JPEGImages`,
`<seq>/Annotations`, read as `evaluation` reads them) on every Nth frame with an annotation.
Every object of an annotation is a separate instance: an id is a palette index (DAVIS 2017), a
grey level (DAVIS 2016's masks are 0/255: one object) or a colour (RGB label images). Figures
are means over instances (as published NoC tables average over images), per sequence and over
all of them; seconds per click count the segmenter's own time only (their mean, and their median
`seconds_per_click_p50`: a slow first click and quick refinements make the two differ).

Limits: `MAX_CLICKS_LIMIT` clicks per instance, `MAX_OBJECTS` objects per annotation (more
distinct values than that is not a label image).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import cv2
import numpy as np

from masklog.inference.evaluation import _as_bool, find_sequences, jaccard, list_images
from masklog.inference.frames.images import ImageListFrames
from masklog.inference.protocols import ClickPoint, FrameSource, Prompt, Segmenter

NOC_THRESHOLDS = (0.85, 0.90)
IOU_AFTER = (1, 3, 5)  # mean IoU is reported after this many clicks
DEFAULT_MAX_CLICKS = 20
MAX_CLICKS_LIMIT = 100
DEFAULT_EVERY = 10
MAX_OBJECTS = 255

# (sequence, instances done in it, instances in it)
Progress = Callable[[str, int, int], None]


# ---- where the simulated user clicks ---------------------------------------------------------


def farthest_from_boundary(region: np.ndarray) -> tuple[int, int]:
    """(column, row) of the pixel of `region` farthest from its boundary, the image border
    counting as boundary; ties: the first in raster order. `region` must not be empty."""
    r = _as_bool(region)
    if not r.any():
        raise ValueError("an empty region has no interior point")
    padded = np.pad(r, 1).astype(np.uint8)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    row, column = np.unravel_index(int(np.argmax(distance)), distance.shape)  # argmax: first of equals
    return int(column), int(row)


def first_click(truth: np.ndarray) -> ClickPoint:
    """The first click: an include click at the object's most interior pixel."""
    x, y = farthest_from_boundary(truth)
    return ClickPoint(float(x), float(y), True)


def largest_error_region(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """The largest connected region of missed or of false pixels, and whether it was missed
    (an include click fixes it) rather than false (an exclude click); None when pred == truth."""
    p, t = _as_bool(pred), _as_bool(truth)
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    regions: list[tuple[int, np.ndarray, int, bool]] = []  # (area, labels, label, missed)
    for errors, missed in ((t & ~p, True), (p & ~t, False)):
        if not errors.any():
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats(errors.view(np.uint8), connectivity=8)
        regions += [(int(stats[k, cv2.CC_STAT_AREA]), labels, k, missed) for k in range(1, n)]
    if not regions:
        return None
    largest = max(area for area, _, _, _ in regions)
    # Equal sizes (rare): the region whose first pixel comes first in raster order.
    tied = [(labels == k, missed) for area, labels, k, missed in regions if area == largest]
    return min(tied, key=lambda r: int(np.argmax(r[0].ravel())))


def next_click(pred: np.ndarray, truth: np.ndarray) -> ClickPoint | None:
    """The next click given the current answer `pred`: in the largest error region, at its most
    interior pixel; include when the region was missed, exclude when false. None when there is
    no error left."""
    found = largest_error_region(pred, truth)
    if found is None:
        return None
    region, missed = found
    x, y = farthest_from_boundary(region)
    return ClickPoint(float(x), float(y), missed)


# ---- one instance ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClickTrace:
    """One simulated session: the clicks, the IoU of the answer after each, and the seconds the
    segmenter took for each."""

    clicks: tuple[ClickPoint, ...]
    ious: tuple[float, ...]
    seconds: tuple[float, ...]
    max_clicks: int

    def clicks_to(self, threshold: float) -> int:
        """NoC: clicks until IoU first reaches `threshold`; `max_clicks` when it never does."""
        for k, iou in enumerate(self.ious, start=1):
            if iou >= threshold:
                return k
        return self.max_clicks

    def reached(self, threshold: float) -> bool:
        return any(iou >= threshold for iou in self.ious)

    def iou_after(self, clicks: int) -> float | None:
        """IoU after `clicks` clicks; None past `max_clicks`. A run that stopped early (see the
        module's doc) keeps its last IoU."""
        if not 1 <= clicks <= self.max_clicks or not self.ious:
            return None
        return self.ious[min(clicks, len(self.ious)) - 1]


def simulate_clicks(
    segmenter: Segmenter,
    frames: FrameSource,
    index: int,
    truth: np.ndarray,
    *,
    max_clicks: int = DEFAULT_MAX_CLICKS,
) -> ClickTrace:
    """Run the protocol on frame `index` of `frames` for the object `truth` (a non-empty mask)."""
    t = _as_bool(truth)
    if not 1 <= max_clicks <= MAX_CLICKS_LIMIT:
        raise ValueError(f"max_clicks must be between 1 and {MAX_CLICKS_LIMIT}, not {max_clicks}")
    if not t.any():
        raise ValueError("the ground-truth mask is empty: nothing to click on")
    frame_shape = frames.get(index).shape[:2]
    if t.shape != frame_shape:
        raise ValueError(f"the ground-truth mask is {t.shape}, the frame {frame_shape}")
    stop_iou, stop_after = max(NOC_THRESHOLDS), max(IOU_AFTER)
    clicks: list[ClickPoint] = []
    ious: list[float] = []
    seconds: list[float] = []
    click: ClickPoint | None = first_click(t)
    while click is not None and len(clicks) < max_clicks:
        clicks.append(click)
        started = time.perf_counter()
        candidates = segmenter.segment(frames, index, Prompt(points=tuple(clicks)))
        seconds.append(time.perf_counter() - started)
        pred = _as_bool(candidates[0].mask) if candidates else np.zeros_like(t)
        if pred.shape != t.shape:
            raise ValueError(f"the segmenter answered a {pred.shape} mask for a {t.shape} frame")
        ious.append(jaccard(pred, t))
        if ious[-1] >= stop_iou and len(clicks) >= stop_after:
            break
        click = next_click(pred, t)
    return ClickTrace(tuple(clicks), tuple(ious), tuple(seconds), max_clicks)


# ---- DAVIS-format folders ----------------------------------------------------------------------


def read_objects(path: Path) -> dict[int, np.ndarray]:
    """The objects of an annotation image by id, each a bool mask; id 0 is background.

    Palette images give their indices (DAVIS 2017), grey images their levels (DAVIS 2016: 255),
    colour images one id per colour (0xRRGGBB). Read with PIL: OpenCV turns a palette into
    colours, which would lose the indices.
    """
    from PIL import Image  # here: the CLI imports this module's defaults to build its parser

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGB", "RGBA"):
                rgb = np.asarray(image.convert("RGB")).astype(np.uint32)
                ids = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            elif image.mode in ("P", "L", "I", "I;16", "1"):
                ids = np.asarray(image).astype(np.int64)
            else:  # LA, PA, CMYK...: their first channel
                ids = np.asarray(image.convert("L")).astype(np.int64)
    except OSError as error:
        raise ValueError(f"cannot read annotation {path}: {error}") from None
    values = np.unique(ids)
    values = values[values != 0]
    if len(values) > MAX_OBJECTS:
        raise ValueError(f"{path}: {len(values)} distinct values, more than {MAX_OBJECTS} objects: not a label image")
    return {int(v): ids == v for v in values}


def annotated_frames(seq_dir: Path, every: int) -> list[tuple[int, Path]]:
    """(frame index, annotation) of every `every`-th frame (0, every, 2 * every...) that has an
    annotation of the same name (`00010.jpg` -> `00010.png`)."""
    images = list_images(seq_dir / "JPEGImages")
    annotations = {p.stem: p for p in list_images(seq_dir / "Annotations")}
    return [(i, annotations[p.stem]) for i, p in enumerate(images) if i % every == 0 and p.stem in annotations]


class ClickScore(TypedDict):
    instances: int  # objects on frames, each a session of clicks
    frames: int
    clicks: int  # clicks made in all
    NoC85: float
    NoC90: float
    NoF85: int  # instances that never reached 0.85 in max_clicks clicks
    NoF90: int
    IoU1: float | None  # mean IoU after 1, 3 and 5 clicks (None past max_clicks)
    IoU3: float | None
    IoU5: float | None
    seconds_per_click: float  # mean
    seconds_per_click_p50: float  # median


class ClickResult(TypedDict):
    segmenter: str
    every: int
    max_clicks: int
    sequences: dict[str, ClickScore]
    overall: ClickScore


def summarise(traces: Sequence[ClickTrace], frames: int) -> ClickScore:
    """Means over the instances of `traces` (an empty list scores nothing: zeros and None)."""
    n = len(traces)
    low, high = NOC_THRESHOLDS

    def mean_iou(k: int) -> float | None:
        values = [v for v in (t.iou_after(k) for t in traces) if v is not None]
        return float(np.mean(values)) if values else None

    clicks = sum(len(t.clicks) for t in traces)
    every_second = [s for t in traces for s in t.seconds]
    seconds = sum(every_second)
    return ClickScore(
        instances=n,
        frames=frames,
        clicks=clicks,
        NoC85=float(np.mean([t.clicks_to(low) for t in traces])) if n else 0.0,
        NoC90=float(np.mean([t.clicks_to(high) for t in traces])) if n else 0.0,
        NoF85=sum(not t.reached(low) for t in traces),
        NoF90=sum(not t.reached(high) for t in traces),
        IoU1=mean_iou(IOU_AFTER[0]),
        IoU3=mean_iou(IOU_AFTER[1]),
        IoU5=mean_iou(IOU_AFTER[2]),
        seconds_per_click=seconds / clicks if clicks else 0.0,
        seconds_per_click_p50=float(np.median(every_second)) if every_second else 0.0,
    )


def evaluate_sequence_clicks(
    seq_dir: Path,
    segmenter: Segmenter,
    *,
    every: int = DEFAULT_EVERY,
    max_clicks: int = DEFAULT_MAX_CLICKS,
    progress: Progress | None = None,
) -> tuple[list[ClickTrace], int]:
    """The traces of every object on every `every`-th annotated frame, and how many frames."""
    chosen = annotated_frames(seq_dir, every)
    if not chosen:
        raise ValueError(f"{seq_dir}: no annotated frame among frames 0, {every}, {2 * every}...")
    frames = ImageListFrames(list_images(seq_dir / "JPEGImages"))
    objects = [(index, read_objects(path)) for index, path in chosen]
    total = sum(len(masks) for _, masks in objects)
    traces: list[ClickTrace] = []
    try:
        for index, masks in objects:
            for mask in masks.values():
                traces.append(simulate_clicks(segmenter, frames, index, mask, max_clicks=max_clicks))
                if progress is not None:
                    progress(seq_dir.name, len(traces), total)
    finally:
        frames.close()
    return traces, len(chosen)


def evaluate_clicks(
    root: str | Path,
    segmenter: Segmenter,
    progress: Progress | None = None,
    *,
    sequences: Sequence[str] | None = None,
    every: int = DEFAULT_EVERY,
    max_clicks: int = DEFAULT_MAX_CLICKS,
) -> ClickResult:
    """Run the protocol over the DAVIS-format sequences under `root` (sorted by name), or the
    ones named in `sequences`; per-sequence figures and the figures over all instances."""
    if every < 1:
        raise ValueError(f"every must be at least 1, not {every}")
    if not 1 <= max_clicks <= MAX_CLICKS_LIMIT:
        raise ValueError(f"max_clicks must be between 1 and {MAX_CLICKS_LIMIT}, not {max_clicks}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    dirs = find_sequences(root)
    if sequences is not None:
        missing = sorted(set(sequences) - {d.name for d in dirs})
        if missing:
            raise ValueError(f"no DAVIS-format sequence named {', '.join(missing)} under {root}")
        dirs = [d for d in dirs if d.name in set(sequences)]
    if not dirs:
        raise ValueError(f"no DAVIS-format sequences (JPEGImages + Annotations) under {root}")
    scores: dict[str, ClickScore] = {}
    every_trace: list[ClickTrace] = []
    frame_count = 0
    for d in dirs:
        traces, frames = evaluate_sequence_clicks(d, segmenter, every=every, max_clicks=max_clicks, progress=progress)
        scores[d.name] = summarise(traces, frames)
        every_trace += traces
        frame_count += frames
    return ClickResult(segmenter=segmenter.model, every=every, max_clicks=max_clicks, sequences=scores, overall=summarise(every_trace, frame_count))
