"""DAVIS-style evaluation of a tracker: region similarity J, boundary accuracy F, and J&F.

J is the intersection over union of two masks (two empty masks agree perfectly: 1). F is the
F-measure of boundary pixels, where a boundary pixel counts as matched when the other mask has a
boundary pixel within a tolerance of `bound_th` times the image diagonal (DAVIS uses 0.008, i.e.
8 px at 854x480). Boundaries are one pixel thick, taken on the pixel grid the way the DAVIS
benchmark does (a pixel is on the boundary when it differs from its right, lower or lower-right
neighbour), so numbers are comparable with published ones.

`evaluate_vos` runs a tracker over DAVIS-format folders (`<seq>/JPEGImages`, `<seq>/Annotations`)
from the first frame's ground truth and scores every later frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import cv2
import numpy as np

from masklog.domain.events import Direction
from masklog.inference.frames.images import ImageListFrames
from masklog.inference.protocols import FrameSource, TrackedMask, Tracker

DAVIS_BOUND_TH = 0.008
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# (sequence, index of the frame just scored, frames in the sequence)
Progress = Callable[[str, int, int], None]


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    """Region similarity: |pred & truth| / |pred | truth|; 1 when both are empty."""
    p, t = _as_bool(pred), _as_bool(truth)
    _check_same_shape(p, t)
    union = np.count_nonzero(p | t)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(p & t)) / float(union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-thick boundary: pixels that differ from their right, lower or lower-right neighbour.

    Neighbours outside the image do not count, so an object touching the border has no boundary
    along it (the DAVIS convention: the image edge is not an object edge).
    """
    m = _as_bool(mask)
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]
    b[:-1, :] |= m[:-1, :] != m[1:, :]
    b[:-1, :-1] |= m[:-1, :-1] != m[1:, 1:]
    return b


def disk(radius: int) -> np.ndarray:
    """Structuring element of the pixels within Euclidean `radius` of the centre."""
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return ((xx * xx + yy * yy) <= r * r).astype(np.uint8)


def boundary_tolerance(shape: tuple[int, ...], bound_th: float = DAVIS_BOUND_TH) -> int:
    """Tolerance in pixels: a fraction of the diagonal when below 1, else an absolute count."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def f_measure(pred: np.ndarray, truth: np.ndarray, bound_th: float = DAVIS_BOUND_TH) -> float:
    """Boundary F-measure with a disk-shaped matching tolerance (DAVIS's F)."""
    p, t = _as_bool(pred), _as_bool(truth)
    _check_same_shape(p, t)
    pb, tb = boundary_map(p), boundary_map(t)
    n_pred, n_truth = np.count_nonzero(pb), np.count_nonzero(tb)
    # Degenerate cases as in the benchmark: nothing on either side is perfect; boundary on one
    # side only is all precision or all recall.
    if n_pred == 0 and n_truth == 0:
        return 1.0
    if n_pred == 0 or n_truth == 0:
        return 0.0
    se = disk(boundary_tolerance(p.shape, bound_th))
    truth_near = cv2.dilate(tb.view(np.uint8), se).astype(bool)
    pred_near = cv2.dilate(pb.view(np.uint8), se).astype(bool)
    precision = np.count_nonzero(pb & truth_near) / n_pred
    recall = np.count_nonzero(tb & pred_near) / n_truth
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


class SequenceScore(TypedDict):
    J: float
    F: float
    JF: float
    frames: int
    seconds_per_frame: float


class MeanScore(TypedDict):
    J: float
    F: float
    JF: float


class VosResult(TypedDict):
    sequences: dict[str, SequenceScore]
    mean: MeanScore


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_annotation(path: Path) -> np.ndarray:
    """A ground-truth mask: any value above zero is the object (DAVIS 2016 is single-object)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read annotation {path}")
    if img.ndim == 3:
        img = img.max(axis=2)
    return img > 0


def load_sequence(folder: Path, max_frames: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A DAVIS-format sequence in memory: its frames (RGB) and ground-truth masks, the first
    `max_frames` (None: all); every frame needs its annotation."""
    images = list_images(folder / "JPEGImages")[:max_frames]
    annotations = list_images(folder / "Annotations")
    if len(annotations) < len(images):
        raise ValueError(f"{folder}: {len(images)} frames but {len(annotations)} annotations")
    frames = []
    for path in images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read {path}")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames, [read_annotation(p) for p in annotations[: len(images)]]


def find_sequences(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "JPEGImages").is_dir() and (p / "Annotations").is_dir())


@dataclass
class TrackerTime:
    """Seconds spent inside the tracker only, not in reading or scoring."""

    seconds: float = 0.0


def track_first_mask(tracker: Tracker, frames: FrameSource, first: np.ndarray, total: int, time_spent: TrackerTime) -> Iterator[tuple[int, TrackedMask | None]]:
    """Track `first` (frame 0's mask, object "1") forward over `total` frames: each later frame
    and the object's result there (None: no result for it), timing the tracker into `time_spent`."""
    session = tracker.open(frames)
    try:
        session.add_mask(0, "1", first)
        results = iter(session.propagate(0, Direction.FORWARD, total))
        while True:
            started = time.perf_counter()
            result = next(results, None)
            time_spent.seconds += time.perf_counter() - started
            if result is None:
                return
            if result and result[0].frame != 0:
                yield result[0].frame, next((r for r in result if r.object == "1"), None)
    finally:
        session.close()


def evaluate_sequence(
    seq_dir: Path,
    tracker: Tracker,
    *,
    max_frames: int | None = None,
    progress: Progress | None = None,
) -> SequenceScore:
    """Track the first frame's ground truth to the end (or `max_frames`) and score the rest."""
    images = list_images(seq_dir / "JPEGImages")
    annotations = list_images(seq_dir / "Annotations")
    if not images or len(annotations) < len(images):
        raise ValueError(f"{seq_dir}: {len(images)} frames but {len(annotations)} annotations")
    if max_frames is not None:
        images = images[:max_frames]
    total = len(images)
    js: list[float] = []
    fs: list[float] = []
    tracking = TrackerTime()
    for index, tracked in track_first_mask(tracker, ImageListFrames(images), read_annotation(annotations[0]), total, tracking):
        truth = read_annotation(annotations[index])
        pred = tracked.mask if tracked is not None and tracked.mask is not None else np.zeros_like(truth)
        js.append(jaccard(pred, truth))
        fs.append(f_measure(pred, truth))
        if progress is not None:
            progress(seq_dir.name, index, total)
    j = float(np.mean(js)) if js else 1.0
    f = float(np.mean(fs)) if fs else 1.0
    return SequenceScore(J=j, F=f, JF=(j + f) / 2, frames=total, seconds_per_frame=tracking.seconds / max(total - 1, 1))


def evaluate_vos(
    root: str | Path,
    tracker: Tracker,
    progress: Progress | None = None,
    *,
    sequences: list[str] | None = None,
    max_frames: int | None = None,
) -> VosResult:
    """Evaluate `tracker` on every DAVIS-format sequence under `root` (sorted by name).

    Returns per-sequence J, F, J&F, frame count and seconds per tracked frame, and the mean over
    sequences (the DAVIS convention: each sequence weighs the same however long it is).
    """
    root = Path(root)
    dirs = find_sequences(root)
    if sequences is not None:
        wanted = set(sequences)
        dirs = [d for d in dirs if d.name in wanted]
    if not dirs:
        raise ValueError(f"no DAVIS-format sequences (JPEGImages + Annotations) under {root}")
    scores = {d.name: evaluate_sequence(d, tracker, max_frames=max_frames, progress=progress) for d in dirs}
    mean = MeanScore(
        J=float(np.mean([s["J"] for s in scores.values()])),
        F=float(np.mean([s["F"] for s in scores.values()])),
        JF=float(np.mean([s["JF"] for s in scores.values()])),
    )
    return VosResult(sequences=scores, mean=mean)


def _as_bool(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {m.shape}")
    return m if m.dtype == np.bool_ else m > 0


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
