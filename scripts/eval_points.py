"""Accuracy and speed of the point tracker (inference/points.py) on a clip with known motion.

    python scripts/eval_points.py [--frames 60] [--width 854] [--height 480] [--speed 1]
        [--noise 0] [--photo PATH|astronaut] [--window 21] [--levels 3] [--fb-px 1.0] [--json]

A real photo (the first frame of the first DAVIS clip under ../shared/data/vos when that folder
exists, scikit-image's astronaut otherwise) is warped on every frame by a known, smoothly varying
similarity transform (translation up to about 4 px/frame at --speed 1, rotation up to 5 degrees,
scale 0.92..1.08), so the true position of every point on every frame is known. Three label sets
are tracked, each in its own session, forwards from the first frame and backwards from the last:
(a) a 17-point skeleton, (b) a 6-point polyline, (c) 20 single keypoints spread over the image.

Reported per set and overall, over every tracked frame but the conditioning one:
- point error in px (mean, median, p95, max) of the points whose true position is in the frame,
  and the fraction of those reported visible;
- points whose true position left the frame (faster --speed), and how many of those were
  reported not visible, as they should be;
- objects lost, and how many of those while some of their true points were still in the frame;
- frames/s of the tracking loop (making the clip is not timed).
Prints a short table and JSON; --json prints only the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from masklog.domain.events import Direction
from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.frames.images import read_image
from masklog.inference.points import PointTracker, PointTrackerConfig

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = PointTrackerConfig()
VOS = ROOT.parent / "shared" / "data" / "vos"

# A standing person's 17 keypoints (COCO order) in a unit box: x 0..1 left to right, y 0..1 down.
SKELETON = [
    (0.50, 0.08), (0.54, 0.05), (0.46, 0.05), (0.58, 0.07), (0.42, 0.07),  # nose, eyes, ears
    (0.66, 0.22), (0.34, 0.22), (0.74, 0.40), (0.26, 0.40), (0.78, 0.55), (0.22, 0.55),  # arms
    (0.60, 0.55), (0.40, 0.55), (0.62, 0.77), (0.38, 0.77), (0.63, 0.97), (0.37, 0.97),  # legs
]  # fmt: skip


def source_photo(width: int, height: int, photo: str | None = None) -> tuple[np.ndarray, str]:
    """The photo to warp, resized and centre-cropped to width x height, and where it came from."""
    if photo == "astronaut":
        from skimage import data

        return _fit(np.asarray(data.astronaut()), width, height), "skimage.data.astronaut"
    if photo is not None:
        return _fit(read_image(photo), width, height), photo
    if VOS.is_dir():
        for clip in sorted(p for p in VOS.iterdir() if p.is_dir()):
            first = clip / "JPEGImages" / "00000.jpg"
            if first.is_file():
                return _fit(read_image(first), width, height), str(first.relative_to(ROOT.parent))
    from skimage import data

    return _fit(np.asarray(data.astronaut()), width, height), "skimage.data.astronaut"


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    scale = max(width / image.shape[1], height / image.shape[0])
    size = (math.ceil(image.shape[1] * scale), math.ceil(image.shape[0] * scale))
    big = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    y0, x0 = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return np.ascontiguousarray(big[y0 : y0 + height, x0 : x0 + width])


def motion(t: int, frames: int, width: int, height: int, speed: float = 1.0) -> np.ndarray:
    """The 2x3 transform taking a point of frame 0 to frame t: smooth, starts at identity.
    `speed` scales the translation."""
    phase = 2.0 * math.pi * t / frames
    angle = 5.0 * math.sin(0.5 * phase)  # degrees
    scale = 1.0 + 0.08 * math.sin(phase)
    tx, ty = 40.0 * speed * math.sin(phase), 20.0 * speed * (1.0 - math.cos(phase))
    model = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, scale)
    model[:, 2] += (tx, ty)
    return model


def make_clip(
    photo: np.ndarray, frames: int, speed: float = 1.0, noise: float = 0.0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The warped frames (with Gaussian sensor noise of `noise` grey levels) and their transforms."""
    height, width = photo.shape[:2]
    models = [motion(t, frames, width, height, speed) for t in range(frames)]
    rng = np.random.default_rng(0)
    clip = []
    for m in models:
        frame = cv2.warpAffine(photo, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        if noise > 0:
            frame = np.clip(frame + rng.normal(0.0, noise, frame.shape), 0, 255).astype(np.uint8)
        clip.append(frame)
    return clip, models


def label_sets(width: int, height: int) -> dict[str, list[np.ndarray]]:
    """Objects (each an (N, 2) array on frame 0) per label set, kept away from the edges so the
    true points stay inside the frame for the whole clip."""
    box_w, box_h = 0.3 * width, 0.6 * height
    skeleton = np.array(SKELETON) * (box_w, box_h) + (0.35 * width, 0.2 * height)
    t = np.linspace(0.0, 1.0, 6)
    zigzag = np.where(np.arange(6) % 2 == 0, -1.0, 1.0)
    polyline = np.stack([0.25 * width + 0.5 * width * t, 0.5 * height + 0.15 * height * zigzag], 1)
    xs, ys = np.linspace(0.2 * width, 0.8 * width, 5), np.linspace(0.28 * height, 0.72 * height, 4)
    keypoints = [np.array([[x, y]]) for y in ys for x in xs]
    return {"skeleton17": [skeleton], "polyline6": [polyline], "keypoints": keypoints}


@dataclass
class Tally:
    errors: list[float]  # of points whose true position is inside the frame
    visible: int = 0  # of those, how many were reported visible
    reported: int = 0
    outside: int = 0  # points whose true position left the frame (reported clamped)...
    outside_hidden: int = 0  # ...of which reported not visible, as they should be
    lost: int = 0  # objects lost during a pass
    lost_in_view: int = 0  # of those, lost while some of their true points were still in the frame
    frames: int = 0
    seconds: float = 0.0

    def add(self, other: Tally) -> None:
        for name in ("visible", "reported", "outside", "outside_hidden", "lost", "lost_in_view", "frames", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors

    def summary(self) -> dict[str, Any]:
        e = np.array(self.errors) if self.errors else np.array([math.nan])
        return {
            "error_mean_px": round(float(e.mean()), 3),
            "error_median_px": round(float(np.median(e)), 3),
            "error_p95_px": round(float(np.percentile(e, 95)), 3),
            "error_max_px": round(float(e.max()), 3),
            "points_measured": len(self.errors),
            "visible_fraction": round(self.visible / self.reported, 4) if self.reported else None,
            "points_outside": self.outside,
            "outside_reported_hidden": self.outside_hidden,
            "lost": self.lost,
            "lost_in_view": self.lost_in_view,
            "frames_per_s": round(self.frames / self.seconds, 1) if self.seconds else None,
        }


def run_set(
    tracker: PointTracker,
    clip: list[np.ndarray],
    truth: Callable[[np.ndarray, int], np.ndarray],
    objects: list[np.ndarray],
    direction: Direction,
    tally: Tally,
) -> None:
    frames = ArrayFrames(clip)
    start = 0 if direction is Direction.FORWARD else len(clip) - 1
    session = tracker.open(frames)
    for k, points in enumerate(objects):
        session.add_points(start, f"o{k}", truth(points, start))
    height, width = clip[0].shape[:2]
    lost: set[str] = set()
    pulled = session.propagate(start, direction, len(clip))
    while True:
        began = time.perf_counter()  # only the tracker is timed, not the scoring below
        results = next(pulled, None)
        tally.seconds += time.perf_counter() - began
        if results is None:
            break
        for k, result in enumerate(results):
            if result.frame == start or result.object in lost:
                continue
            expected = truth(objects[k], result.frame)
            x, y = expected[:, 0], expected[:, 1]
            inside = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)  # the pixel area
            if result.points is None or result.visible is None:
                lost.add(result.object)
                tally.lost_in_view += int(inside.any())
                continue
            tally.errors += np.hypot(*(result.points - expected)[inside].T).tolist()
            tally.visible += int(result.visible[inside].sum())
            tally.reported += int(inside.sum())
            tally.outside += int((~inside).sum())
            tally.outside_hidden += int((~result.visible[~inside]).sum())
    tally.frames += len(clip)
    tally.lost += len(lost)
    session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--window", type=int, default=DEFAULTS.window)
    parser.add_argument("--levels", type=int, default=DEFAULTS.levels)
    parser.add_argument("--fb-px", type=float, default=DEFAULTS.forward_backward_px)
    parser.add_argument("--speed", type=float, default=1.0, help="scales the translation (1: up to ~4 px/frame)")
    parser.add_argument("--noise", type=float, default=0.0, help="sensor noise, grey levels (standard deviation)")
    parser.add_argument("--photo", help="an image file, or 'astronaut' (default: the first DAVIS clip, if any)")
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()

    photo, origin = source_photo(args.width, args.height, args.photo)
    clip, models = make_clip(photo, args.frames, args.speed, args.noise)

    def truth(points: np.ndarray, t: int) -> np.ndarray:
        """Where points given on frame 0 are on frame t."""
        result: np.ndarray = points @ models[t][:, :2].T + models[t][:, 2]
        return result

    config = PointTrackerConfig(window=args.window, levels=args.levels, forward_backward_px=args.fb_px)
    tracker = PointTracker(config)
    sets = label_sets(args.width, args.height)
    # Warm up OpenCV (first calls allocate) on a few frames, outside the timings.
    run_set(tracker, clip[:5], truth, sets["keypoints"], Direction.FORWARD, Tally([]))

    report: dict[str, Any] = {
        "source": origin,
        "frames": args.frames,
        "size": [args.width, args.height],
        "speed": args.speed,
        "noise": args.noise,
        "model": tracker.model,
        "config": {"window": config.window, "levels": config.levels, "forward_backward_px": config.forward_backward_px},
        "sets": {},
    }
    overall = Tally([])
    for name, objects in sets.items():
        tally = Tally([])
        for direction in (Direction.FORWARD, Direction.BACKWARD):
            run_set(tracker, clip, truth, objects, direction, tally)
        report["sets"][name] = {"objects": len(objects), "points": sum(len(o) for o in objects), **tally.summary()}
        overall.add(tally)
    report["overall"] = overall.summary()

    if not args.json:
        size = f"{args.width}x{args.height}"
        print(f"point tracker on {args.frames} frames of {size} from {origin}, forwards and backwards")
        for name, row in report["sets"].items():
            print(
                f"  {name:11s} mean {row['error_mean_px']:.2f} px, median {row['error_median_px']:.2f}, "
                f"p95 {row['error_p95_px']:.2f}, max {row['error_max_px']:.2f}; visible "
                f"{row['visible_fraction']:.1%}, out of frame {row['points_outside']} (hidden "
                f"{row['outside_reported_hidden']}), lost {row['lost']} (in view {row['lost_in_view']}), "
                f"{row['frames_per_s']} frames/s"
            )
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
