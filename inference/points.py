"""The point tracker: keypoint, skeleton and polyline labels followed through a video (T6).

OpenCV only, no weights. Masks have their own trackers (`inference.classical`,
`inference.sam2`); a label made of a few points needs no segmentation, only where each point
went, which sparse optical flow answers in well under a millisecond per frame.

Per step from one frame to the next, for all objects at once:

1. Pyramidal Lucas-Kanade on greyscale frames, all points of all objects in one call, starting
   from a constant-velocity guess (each point's displacement over the previous step): fast
   motion then only has to be corrected, not found from scratch by the pyramid. (Prebuilt
   pyramids cannot be handed to OpenCV 5's Python binding, so each call builds its own.)
2. Forward-backward check: the found position is tracked back to the previous frame; a point
   that does not come back to within `forward_backward_px` of where it started is rejected (LK
   converges somewhere on occlusions, on texture that changed and on flat areas; going back
   exposes it). LK itself rejects points whose window is textureless (its minimum-eigenvalue
   test), which is what makes an object on a blank frame lost.
3. Rotation correction (shapes of two or more points): LK assumes its window only shifts. When
   the shape also turns or zooms, LK reports the shift of where the window's texture lies rather
   than of its centre, a small error per frame that adds up to pixels over a clip (3-5 px after
   5 degrees, measured). Its first-order value follows from the window's gradients and the
   linear part of the shape's similarity transform (below) and is subtracted (`_window_bias`).
   A single keypoint has no shape to tell its rotation from and is not corrected.
4. Rejected points are estimated (not visible, but they keep being tracked) from the motion of
   the found ones: a similarity transform fitted with RANSAC (two or more found points; one gives
   a translation), plus the residual motion of the nearest found points, so that a hidden wrist
   moves with its elbow rather than only with the torso.

Not handled: a point next to an occluder's edge can latch onto that edge and be dragged along
while passing both checks (the edge is consistent in both directions); rejecting points that
move unlike the rest of their shape would catch it, but would also reject a fast-moving limb of
a skeleton, so nothing does.

An object is lost (points None) for the rest of the pass when fewer than `min_found_fraction` of
its points were found (a single keypoint: when it was not found), or when all of its points left
the frame. Points outside the frame are reported clamped to it and not visible, while tracking
goes on from their unclamped position; a conditioning on a later frame of the pass picks a lost
object up again.

Measured by `scripts/eval_points.py` (known motion at 854x480): see the figures in its output.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from masklog.domain.events import Direction
from masklog.inference.propagation import FrameOutOfRange, SessionClosed, check_frame, propagation_frames
from masklog.inference.protocols import FrameSource

POINT_TRACKER_MODEL = "classical/lkpoints@1"


@dataclass(frozen=True, slots=True)
class TrackedPoints:
    """One object on one frame: its points, or None when the tracker considers it lost.

    `points` are float64 (N, 2) x, y in full-resolution pixel coordinates, inside the frame;
    `visible` says which were found on this frame (the others were estimated or clamped into the
    frame); `score` is the fraction of points found, 0..1.
    """

    object: str
    frame: int
    points: np.ndarray | None
    visible: np.ndarray | None
    score: float


@dataclass(frozen=True, slots=True)
class PointTrackerConfig:
    window: int = 21  # LK window side in working pixels: odd; larger copes with blur, smaller with articulation
    levels: int = 3  # pyramid levels above the base: with the window, reach about 80 px per frame
    # Frames longer than this are downscaled first: faster, and the pyramid reaches further in
    # full-resolution pixels; on 1080p clips it measured as accurate as full resolution.
    work_side: int = 1280
    forward_backward_px: float = 1.0  # a point must come back to within this (working px)
    min_found_fraction: float = 0.25  # fewer found points than this fraction: the object is lost
    ransac_px: float = 2.0  # inlier distance of the similarity fit (working px)
    lk_iterations: int = 30
    lk_epsilon: float = 0.01
    min_eigen: float = 1e-4  # LK's texture test: windows flatter than this are not tracked
    correct_rotation: bool = True  # remove LK's window bias under rotation/scale (multi-point shapes)


class PointTracker:
    """Tracks the points of keypoint, skeleton and polyline labels (T6)."""

    def __init__(self, config: PointTrackerConfig | None = None) -> None:
        self.config = config or PointTrackerConfig()

    @property
    def model(self) -> str:
        return POINT_TRACKER_MODEL

    def open(self, frames: FrameSource) -> PointTrackerSession:
        return PointTrackerSession(frames, self.config)


@dataclass(frozen=True, slots=True)
class _Conditioning:
    points: np.ndarray  # float64 (N, 2), full resolution, exactly as given
    estimate_missing: bool


@dataclass(slots=True)
class _Track:
    points: np.ndarray  # float32 (N, 2), working resolution, unclamped: may lie outside the frame
    velocity: np.ndarray  # float32 (N, 2): displacement over the last step, the next step's guess
    estimate_missing: bool


@dataclass(frozen=True, slots=True)
class _Frame:
    index: int
    size: tuple[int, int]  # this frame's full-resolution width, height
    grey: np.ndarray  # uint8 at working resolution


@dataclass(frozen=True, slots=True)
class _Step:
    """What one LK step did to one object: its new positions and which points were found."""

    points: np.ndarray  # float32 (N, 2), working resolution
    found: np.ndarray  # bool (N,)


class PointTrackerSession:
    """Point tracking over one media item. Use from one thread at a time."""

    def __init__(self, frames: FrameSource, config: PointTrackerConfig) -> None:
        if config.window < 3 or config.window % 2 == 0:
            raise ValueError("the LK window must be odd and at least 3")
        self._frames = frames
        self._cfg = config
        scale = min(1.0, config.work_side / max(frames.width, frames.height))
        self._work = (max(8, round(frames.width * scale)), max(8, round(frames.height * scale)))  # w, h
        # Conditioning points given by the user, full resolution: object -> frame -> points.
        self._conditioning: dict[str, dict[int, _Conditioning]] = {}
        self._closed = False

    # -- conditioning ------------------------------------------------------------------------

    def add_points(self, frame: int, object_id: str, points: np.ndarray, *, estimate_missing: bool = True) -> None:
        """Condition `object_id` on `frame` with (N, 2) x, y points inside the frame.

        With `estimate_missing` (skeletons, polylines) points that cannot be found on a frame
        are estimated from the motion of the others; without it nothing is invented: the object
        is lost as soon as any of its points is not found.
        """
        self._check_open()
        self._check_frame(frame)
        height, width = self._frames.get(frame).shape[:2]
        given = _parse_points(points, width, height)
        self._conditioning.setdefault(object_id, {})[frame] = _Conditioning(given, bool(estimate_missing))

    def objects(self) -> list[str]:
        return list(self._conditioning)

    def close(self) -> None:
        self._closed = True
        self._conditioning.clear()

    # -- propagation -------------------------------------------------------------------------

    def propagate(self, start: int, direction: Direction, count: int) -> Iterator[list[TrackedPoints]]:
        """Yield, frame by frame, the points of every added object for `count` frames counting
        `start`, clipped at the media's ends. Objects start from their conditioning points on
        `start` or on a later frame of the pass; until then (and once lost) they are reported
        with points None. Work happens only as frames are pulled."""
        self._check_open()
        return self._run(propagation_frames(start, direction, count, len(self._frames)))

    def _run(self, indices: range) -> Iterator[list[TrackedPoints]]:
        tracks: dict[str, _Track] = {}
        previous: _Frame | None = None
        for index in indices:
            if self._closed:
                return
            conditioning = self._conditioning_at(index)
            if not tracks and not conditioning:
                # Nothing to follow yet: no need to even decode the frame.
                previous = None
                yield [TrackedPoints(obj, index, None, None, 0.0) for obj in self._conditioning]
                continue
            current = self._prepare(index)
            moving = {obj: t for obj, t in tracks.items() if obj not in conditioning}
            steps = self._step(previous, current, moving) if moving and previous is not None else {}
            yield self._report(current, conditioning, steps, tracks)
            previous = current

    def _conditioning_at(self, index: int) -> dict[str, _Conditioning]:
        return {obj: frames[index] for obj, frames in self._conditioning.items() if index in frames}

    def _report(
        self,
        frame: _Frame,
        conditioning: dict[str, _Conditioning],
        steps: dict[str, _Step | None],
        tracks: dict[str, _Track],
    ) -> list[TrackedPoints]:
        """This frame's results, every object in the order they were added; updates `tracks`."""
        results: list[TrackedPoints] = []
        for obj in self._conditioning:
            given = conditioning.get(obj)
            if given is not None:
                points = self._to_work(given.points, frame.size)
                old = tracks.get(obj)
                # A new conditioning in the middle of a pass does not stop the motion: keep the
                # velocity guess when the shape still has as many points.
                same_shape = old is not None and len(old.velocity) == len(points)
                velocity = old.velocity if old is not None and same_shape else np.zeros_like(points)
                tracks[obj] = _Track(points, velocity, given.estimate_missing)
                visible = np.ones(len(given.points), bool)
                results.append(TrackedPoints(obj, frame.index, given.points.copy(), visible, 1.0))
                continue
            step = steps.get(obj)
            track = tracks.get(obj)
            if step is None or track is None:
                tracks.pop(obj, None)  # lost stays lost for the rest of the pass
                results.append(TrackedPoints(obj, frame.index, None, None, 0.0))
                continue
            track.velocity = step.points - track.points
            track.points = step.points
            full, inside = self._to_full(step.points, frame.size)
            results.append(TrackedPoints(obj, frame.index, full, step.found & inside, float(step.found.mean())))
        return results

    # -- one step of tracking ----------------------------------------------------------------

    def _step(self, previous: _Frame, current: _Frame, tracks: dict[str, _Track]) -> dict[str, _Step | None]:
        """Move every object's points from `previous` to `current`; None for those lost."""
        wx, wy = self._work
        starts: list[np.ndarray] = []
        guesses: list[np.ndarray] = []
        rows: dict[str, np.ndarray] = {}  # object -> its points' rows in the LK batch (-1: not tracked)
        offset = 0
        for obj, track in tracks.items():
            # Points already outside the frame have no image to track: they are only estimated.
            inside = _inside(track.points, wx, wy)
            row = np.full(len(track.points), -1)
            row[inside] = np.arange(offset, offset + int(inside.sum()))
            offset += int(inside.sum())
            rows[obj] = row
            starts.append(track.points[inside])
            guess = track.points[inside] + track.velocity[inside]
            guesses.append(np.clip(guess, 0.0, [wx - 1.0, wy - 1.0]).astype(np.float32))
        if offset:
            moved, ok = self._lucas_kanade(previous, current, np.concatenate(starts), np.concatenate(guesses))
        else:
            moved, ok = np.zeros((0, 2), np.float32), np.zeros(0, bool)

        out: dict[str, _Step | None] = {}
        for obj, track in tracks.items():
            row = rows[obj]
            tracked = row >= 0
            found = np.zeros(len(row), bool)
            found[tracked] = ok[row[tracked]]
            new = track.points.copy()
            new[found] = moved[row[found]]
            out[obj] = self._complete(track, new, found, previous.grey)
        return out

    def _lucas_kanade(
        self, previous: _Frame, current: _Frame, start: np.ndarray, guess: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """LK forwards from `start` (seeded at `guess`), then back: positions and which passed."""
        cfg = self._cfg
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, cfg.lk_iterations, cfg.lk_epsilon)

        def lk(a: _Frame, b: _Frame, p: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            found, status, _ = cv2.calcOpticalFlowPyrLK(
                a.grey,
                b.grey,
                p.reshape(-1, 1, 2),
                seed.reshape(-1, 1, 2).copy(),
                winSize=(cfg.window, cfg.window),
                maxLevel=cfg.levels,
                criteria=criteria,
                flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
                minEigThreshold=cfg.min_eigen,
            )
            return found.reshape(-1, 2), status.reshape(-1).astype(bool)

        forth, ok_forth = lk(previous, current, start, guess)
        # The way back is seeded with the reversed velocity guess, not with `start` itself:
        # seeding it with the answer would let a wrong forward match pass the check.
        wx, wy = self._work
        back_seed = np.clip(forth - (guess - start), 0.0, [wx - 1.0, wy - 1.0]).astype(np.float32)
        back, ok_back = lk(current, previous, forth, back_seed)
        error = np.hypot(*(back - start).T)
        ok = ok_forth & ok_back & (error <= cfg.forward_backward_px) & _inside(forth, wx, wy)
        return forth, ok

    def _complete(self, track: _Track, new: np.ndarray, found: np.ndarray, previous: np.ndarray) -> _Step | None:
        """Correct the found points, fill in the others, or decide the object is lost."""
        n = len(found)
        needed = max(1, math.ceil(self._cfg.min_found_fraction * n - 1e-9))
        if int(found.sum()) < needed:
            return None
        if not found.all() and not track.estimate_missing:
            return None
        if n > 1:  # a single point has no shape motion to correct with or to estimate from
            source, target = track.points[found], new[found]
            model = self._fit_motion(source, target)
            linear = model[:, :2] - np.eye(2)
            if self._cfg.correct_rotation and np.abs(linear).max() > 1e-6:
                target = target - _window_bias(previous, source, linear, self._cfg.window)
                new[found] = target
            if not found.all():
                new[~found] = self._estimate(model, source, target, track.points[~found])
        wx, wy = self._work
        if not _inside(new, wx, wy).any():
            return None  # the whole shape left the frame
        return _Step(new.astype(np.float32), found)

    def _estimate(self, model: np.ndarray, source: np.ndarray, target: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Where `query` points went, from found points that moved from `source` to `target`
        under `model`, fitted to them."""
        predicted = _apply(model, query)
        # What the global model does not explain (articulation, parallax) is taken from the
        # nearest found points: inverse-square distance weights, softened by the LK window so
        # that a single close neighbour does not dominate.
        residual = target - _apply(model, source)
        d2 = ((query[:, None, :] - source[None, :, :]) ** 2).sum(axis=2)
        weights = 1.0 / (d2 + float(self._cfg.window) ** 2)
        correction = (weights @ residual) / weights.sum(axis=1, keepdims=True)
        return (predicted + correction).astype(np.float32)

    def _fit_motion(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """A 2x3 similarity from source to target (RANSAC), or a translation when the points
        cannot determine a rotation and scale reliably."""
        span = float(np.ptp(source, axis=0).max()) if len(source) > 1 else 0.0
        if len(source) >= 2 and span >= self._cfg.window:
            model, _ = cv2.estimateAffinePartial2D(
                source.astype(np.float32),
                target.astype(np.float32),
                method=cv2.RANSAC,
                ransacReprojThreshold=self._cfg.ransac_px,
            )
            if model is not None and 0.5 <= math.sqrt(abs(np.linalg.det(model[:, :2]))) <= 2.0:
                return model.astype(np.float64)
        shift = np.median(target - source, axis=0)
        return np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])

    # -- frames and coordinates --------------------------------------------------------------

    def _prepare(self, index: int) -> _Frame:
        image = self._frames.get(index)
        height, width = image.shape[:2]
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if (width, height) != self._work:
            # Also brings frames of another size (image groups) to the common working size.
            grey = _resize(grey, self._work)
        return _Frame(index, (width, height), grey)

    def _to_work(self, points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        # Pixel centres map to pixel centres: (x + 0.5) scales, not x.
        scale = np.array(self._work, np.float64) / np.array(size, np.float64)
        return ((points + 0.5) * scale - 0.5).astype(np.float32)

    def _to_full(self, points: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Full-resolution points clamped into the frame, and which were inside it."""
        scale = np.array(size, np.float64) / np.array(self._work, np.float64)
        full = (points.astype(np.float64) + 0.5) * scale - 0.5
        width, height = size
        inside = _inside(full, width, height)
        return np.clip(full, 0.0, [width - 1.0, height - 1.0]), inside

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed("point tracker session is closed")

    def _check_frame(self, frame: int) -> None:
        check_frame(frame, len(self._frames))


def _resize(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`grey` at `size` (width, height), anti-aliased when shrinking.

    OpenCV's area averaging is fast for whole-number factors only (about 9 ms for 1080p to 720p,
    more than the tracking itself); otherwise a Gaussian blur matched to the factor followed by
    bilinear sampling does the same job in about a quarter of the time.
    """
    factor = max(grey.shape[1] / size[0], grey.shape[0] / size[1])
    if factor <= 1.0 or abs(factor - round(factor)) < 1e-3:
        return cv2.resize(grey, size, interpolation=cv2.INTER_AREA if factor > 1.0 else cv2.INTER_LINEAR)
    sigma = 0.5 * math.sqrt(factor * factor - 1.0)
    return cv2.resize(cv2.GaussianBlur(grey, (0, 0), sigma), size, interpolation=cv2.INTER_LINEAR)


def _parse_points(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 2) finite points inside the frame as the log accepts them (0 <= x <= width, ...)."""
    try:
        given = np.array(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"points must be numbers of shape (N, 2): {exc}") from exc
    if given.ndim != 2 or given.shape[1] != 2 or len(given) == 0:
        raise ValueError(f"points must have shape (N, 2) with N >= 1, got {given.shape}")
    if not np.isfinite(given).all():
        raise ValueError("points hold a NaN or infinite coordinate")
    x, y = given[:, 0], given[:, 1]
    if ((x < 0) | (x > width) | (y < 0) | (y > height)).any():
        raise ValueError(f"points must lie inside the frame: 0 <= x <= {width}, 0 <= y <= {height}")
    return given


def _window_bias(grey: np.ndarray, points: np.ndarray, linear: np.ndarray, window: int) -> np.ndarray:
    """The first-order error of LK at each point when the motion is not a pure translation.

    LK finds the single shift that best explains its whole window. Under a motion field
    u(x) = d + L (x - p) around the point p (L = the transform's linear part minus identity) it
    returns d + G^-1 sum(g g^T L (x - p)), g being the gradient and G = sum(g g^T) over the window:
    the shift of where the window's texture is, not of its centre. A rotation of a fraction of a
    degree per frame makes that a small error per frame but pixels over a clip; subtracting it
    keeps the points where they belong. `grey` is the frame the points are on.
    """
    half = window // 2
    height, width = grey.shape
    centre = np.rint(points).astype(np.int64)
    steps = np.arange(-half - 1, half + 2)  # one pixel more each side for central differences
    xs = np.clip(centre[:, 0, None] + steps, 0, width - 1)
    ys = np.clip(centre[:, 1, None] + steps, 0, height - 1)
    patch = grey[ys[:, :, None], xs[:, None, :]].astype(np.float32)  # (N, rows, cols)
    gx = 0.5 * (patch[:, 1:-1, 2:] - patch[:, 1:-1, :-2])
    gy = 0.5 * (patch[:, 2:, 1:-1] - patch[:, :-2, 1:-1])
    inner = steps[1:-1].astype(np.float64)
    rx = (centre[:, 0, None, None] + inner[None, None, :]) - points[:, 0, None, None]  # x - p, per column
    ry = (centre[:, 1, None, None] + inner[None, :, None]) - points[:, 1, None, None]  # per row
    ux = linear[0, 0] * rx + linear[0, 1] * ry
    uy = linear[1, 0] * rx + linear[1, 1] * ry
    along = gx * ux + gy * uy  # g^T L (x - p)
    mx, my = (gx * along).sum(axis=(1, 2)), (gy * along).sum(axis=(1, 2))
    gxx, gxy, gyy = (gx * gx).sum(axis=(1, 2)), (gx * gy).sum(axis=(1, 2)), (gy * gy).sum(axis=(1, 2))
    det = gxx * gyy - gxy * gxy
    safe = det > 1e-6 * np.maximum(gxx + gyy, 1e-12) ** 2
    det = np.where(safe, det, 1.0)
    bias = np.stack([(gyy * mx - gxy * my) / det, (gxx * my - gxy * mx) / det], axis=1)
    bias[~safe] = 0.0
    # Nothing in the window moves further from the centre's motion than this: an ill-conditioned
    # window (an edge) must not turn a small correction into a jump.
    limit = 3.0 * float(np.linalg.norm(linear, 2)) * half * math.sqrt(2.0)
    length = np.hypot(bias[:, 0], bias[:, 1])
    bias *= np.minimum(1.0, limit / np.maximum(length, 1e-12))[:, None]
    return bias


def _inside(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Points within the frame's pixel area (pixel centres are whole numbers)."""
    x, y = points[:, 0], points[:, 1]
    result: np.ndarray = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    return result


def _apply(model: np.ndarray, points: np.ndarray) -> np.ndarray:
    result: np.ndarray = points.astype(np.float64) @ model[:, :2].T + model[:, 2]
    return result


__all__ = [
    "POINT_TRACKER_MODEL",
    "FrameOutOfRange",
    "PointTracker",
    "PointTrackerConfig",
    "PointTrackerSession",
    "SessionClosed",
    "TrackedPoints",
]
