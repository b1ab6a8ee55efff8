"""How well the classical tracker's presence score says when the object is not there (issue 18).

    python scripts/eval_presence.py [--json] [--data DIR ...] [--sequences S ...] [--lengths 3 10]
    python scripts/eval_presence.py --before main     # also J&F of the tracker at git revision `main`

Synthetic absences are made from DAVIS-format folders (default ../shared/data/davis16-train and
../shared/data/vos; the presence weights were set on davis16-train only). Each event is a short
clip, seeded with the ground truth on its first frame: PRE frames of the object in view, the
object absent for k frames (k from --lengths), then POST frames with it back.

- occlusion: on the k frames the object's pixels (its ground-truth mask grown by DILATE px) are
  covered by background made from their surroundings: the frame is shrunk 4 times, the hole
  filled by OpenCV's inpainting (Telea) from the pixels around it, and the result enlarged back
  and feathered in over the hole. The object vanishes where it stood and reappears after k frames.
- vanish (--vanish K): VANISH_PRE frames of the object in view, then it is covered as in
  "occlusion" on every one of the K frames left and never comes back: a mask that stays on the
  background where it went (drift, the tracker's drift check) is counted as a miss there.
- exit: a virtual camera: each frame is a crop of half the frame's width (else half its height,
  a third of its width, a third of its height: the first that leaves room beside the object)
  that first holds the object, pans away from it over RAMP frames until no object pixel is left
  in view, stays there k frames and pans back. Objects too large for any are skipped (listed).

Ground truth per frame: present when at least a quarter of the object's pixels are in view,
absent when none is; frames in between (mid-pan) are not scored. A frame is called absent when
the tracker's score is below PRESENCE_THRESHOLD (its mask is None then). Reported per scenario
and k, and over all: precision and recall of "absent", and how often the object is found again
after it came back (present with IoU >= 0.5 within the POST frames). On the unmodified clips
(whole sequences, from the first frame's ground truth): the false-alarm rate (frames where the
object is visible but called absent) and J&F, the latter also for the tracker at `--before REV`
(its tracker.py loaded from git) when given. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: `scripts` and `tests`

from masklog.domain.events import Direction
from masklog.inference.classical.tracker import ClassicalTracker, TrackerConfig
from masklog.inference.evaluation import TrackerTime, f_measure, find_sequences, jaccard, load_sequence, track_first_mask
from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.protocols import PRESENCE_THRESHOLD, Tracker
from scripts.tracker_revision import classical_tracker_at

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DEFAULT_DATA = [DATA / "davis16-train", DATA / "vos"]

PRE, POST, RAMP = 8, 10, 3
VANISH_PRE = 15  # frames in view before a vanishing: the drift check learns the object's motion on its first 10
DILATE = 9  # px: the cover reaches this far beyond the ground-truth mask (JPEG halo, soft edges)
VISIBLE = 0.25  # a frame with at least this fraction of the object in view is "present"


@dataclass
class Clip:
    name: str
    scenario: str
    k: int
    frames: list[np.ndarray]
    masks: list[np.ndarray]  # ground truth as seen in the clip
    truth: list[bool | None]  # present / absent / not scored
    back: int  # first frame index of the object's return (POST part)


@dataclass
class Counts:
    tp: int = 0  # absent, called absent
    fp: int = 0  # present, called absent
    fn: int = 0  # absent, called present
    tn: int = 0
    events: int = 0
    recovered: int = 0

    def add(self, other: Counts) -> None:
        for name in ("tp", "fp", "fn", "tn", "events", "recovered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> dict[str, Any]:
        return {
            "precision_absent": _ratio(self.tp, self.tp + self.fp),
            "recall_absent": _ratio(self.tp, self.tp + self.fn),
            "absent_frames": self.tp + self.fn,
            "present_frames": self.fp + self.tn,
            "false_alarm_rate": _ratio(self.fp, self.fp + self.tn),
            "events": self.events,
            "recovered": _ratio(self.recovered, self.events),
        }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def cover(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The frame with the object's pixels replaced by background inpainted from around them."""
    h, w = mask.shape
    hole = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * DILATE + 1, 2 * DILATE + 1)))
    small = cv2.resize(frame, (max(w // 4, 8), max(h // 4, 8)), interpolation=cv2.INTER_AREA)
    small_hole = (cv2.resize(hole.astype(np.float32), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    filled = cv2.resize(cv2.inpaint(small, small_hole, 5, cv2.INPAINT_TELEA), (w, h), interpolation=cv2.INTER_CUBIC)
    alpha = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), 2.0)
    alpha = np.maximum(alpha, hole.astype(np.float32))[..., None]
    return (alpha * filled + (1.0 - alpha) * frame).round().astype(np.uint8)


def occlusion_clip(name: str, frames: list[np.ndarray], masks: list[np.ndarray], start: int, k: int, pre: int = PRE, post: int = POST) -> Clip:
    span = range(start, start + pre + k + post)
    out_frames, out_masks, truth = [], [], []
    for j, i in enumerate(span):
        hidden = pre <= j < pre + k
        out_frames.append(cover(frames[i], masks[i]) if hidden else frames[i])
        out_masks.append(np.zeros_like(masks[i]) if hidden else masks[i])
        truth.append(False if hidden or not masks[i].any() else True)
    return Clip(name, "occlusion" if post else "vanish", k, out_frames, out_masks, truth, pre + k)


def exit_clip(name: str, frames: list[np.ndarray], masks: list[np.ndarray], start: int, k: int) -> Clip | None:
    """A crop that pans off the object, stays off it k frames, pans back; None when the object
    never leaves room for a crop without it."""
    length = PRE + RAMP + k + RAMP + POST
    span = list(range(start, start + length))
    h, w = masks[0].shape
    away = span[PRE + RAMP : PRE + RAMP + k]
    # Pan sideways first, else up or down; the widest crop that leaves room.
    for axis, fraction in ((1, 2), (0, 2), (1, 3), (0, 3)):
        size = (w if axis == 1 else h) // fraction
        extent = (w if axis == 1 else h) - size
        # Object pixels along the panning axis over the frames it must be out of view.
        occupied = np.zeros(w if axis == 1 else h, bool)
        for i in away:
            occupied |= masks[i].any(axis=1 - axis)
        free = [p for p in range(extent + 1) if not occupied[p : p + size].any()]
        if not free:
            continue

        def centred(i: int, size: int = size, extent: int = extent, axis: int = axis) -> int:
            coords = np.nonzero(masks[i].any(axis=1 - axis))[0]
            centre = int(coords.mean()) if coords.size else extent // 2 + size // 2
            return int(np.clip(centre - size // 2, 0, extent))

        first, last = centred(span[0]), centred(span[-1])
        target = min(free, key=lambda p: abs(p - first))
        positions: list[int] = []
        for j in range(length):
            if j < PRE:
                positions.append(first)
            elif j < PRE + RAMP:
                positions.append(round(first + (target - first) * (j - PRE + 1) / (RAMP + 1)))
            elif j < PRE + RAMP + k:
                positions.append(target)
            elif j < PRE + RAMP + k + RAMP:
                positions.append(round(target + (last - target) * (j - PRE - RAMP - k + 1) / (RAMP + 1)))
            else:
                positions.append(last)
        out_frames, out_masks, truth = [], [], []
        for j, i in enumerate(span):
            p = positions[j]
            crop = (slice(None), slice(p, p + size)) if axis == 1 else (slice(p, p + size), slice(None))
            out_frames.append(np.ascontiguousarray(frames[i][crop]))
            seen = np.ascontiguousarray(masks[i][crop])
            out_masks.append(seen)
            total = int(np.count_nonzero(masks[i]))
            visible = int(np.count_nonzero(seen))
            truth.append(False if visible == 0 else (True if visible >= VISIBLE * total else None))
        if not truth[0]:
            continue  # the first frame must show the object: it is what the tracker is seeded with
        return Clip(name, "exit", k, out_frames, out_masks, truth, PRE + RAMP + k + RAMP)
    return None


def run_clip(tracker: Tracker, clip: Clip) -> tuple[Counts, list[tuple[float, dict[str, float] | None, bool | None]]]:
    session = tracker.open(ArrayFrames(clip.frames))
    session.add_mask(0, "1", clip.masks[0])
    counts = Counts(events=1)
    rows: list[tuple[float, dict[str, float] | None, bool | None]] = []
    try:
        for result in session.propagate(0, Direction.FORWARD, len(clip.frames)):
            tracked = result[0]
            j = tracked.frame
            if j == 0:
                continue
            absent_called = tracked.score < PRESENCE_THRESHOLD or tracked.mask is None
            truth = clip.truth[j]
            cues = getattr(session, "cues", {}).get("1")
            rows.append((tracked.score, None if cues is None else {n: float(getattr(cues, n)) for n in cues.__slots__}, truth))
            if truth is None:
                continue
            if truth is False:
                counts.tp += absent_called
                counts.fn += not absent_called
            else:
                counts.fp += absent_called
                counts.tn += not absent_called
                if j >= clip.back and not absent_called and tracked.mask is not None and jaccard(tracked.mask, clip.masks[j]) >= 0.5:
                    counts.recovered = 1
    finally:
        session.close()
    return counts, rows


def run_sequence(tracker: Tracker, frames: list[np.ndarray], masks: list[np.ndarray]) -> tuple[float, float, Counts, float]:
    """Whole sequence from the first frame's ground truth: J, F, false alarms, seconds per frame."""
    js, fs, counts, spent = [], [], Counts(), TrackerTime()
    for index, tracked in track_first_mask(tracker, ArrayFrames(frames), masks[0], len(frames), spent):
        truth = masks[index]
        pred = tracked.mask if tracked is not None and tracked.mask is not None else np.zeros_like(truth)
        js.append(jaccard(pred, truth))
        fs.append(f_measure(pred, truth))
        if truth.any():
            absent_called = tracked is None or tracked.score < PRESENCE_THRESHOLD or tracked.mask is None
            counts.fp += absent_called
            counts.tn += not absent_called
    return float(np.mean(js)), float(np.mean(fs)), counts, spent.seconds / max(len(frames) - 1, 1)


def starts(n: int, length: int, events: int) -> list[int]:
    if n < length:
        return []
    last = n - length
    return sorted({round(last * i / max(events - 1, 1)) for i in range(events)})


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    tracker = ClassicalTracker(TrackerConfig(drift_frames=args.drift_frames) if args.drift_frames is not None else None)
    before = classical_tracker_at(args.before) if args.before else None
    roots = [Path(d) for d in args.data] if args.data else [d for d in DEFAULT_DATA if d.is_dir()]
    if not roots:
        raise SystemExit(f"no data: pass --data DIR (DAVIS-format sequences); {DATA} is missing")
    scenarios: dict[str, Counts] = {}
    unmodified: dict[str, Any] = {}
    skipped: list[str] = []
    cue_rows: list[dict[str, Any]] = []
    false_alarms = Counts()
    per_vanish: dict[str, float | None] = {}
    started = time.perf_counter()
    for root in roots:
        for folder in find_sequences(root):
            if args.sequences and folder.name not in args.sequences:
                continue
            name = f"{root.name}/{folder.name}"
            frames, masks = load_sequence(folder, args.max_frames)
            j, f, counts, spf = run_sequence(tracker, frames, masks)
            false_alarms.add(counts)
            entry: dict[str, Any] = {"frames": len(frames), "J": round(j, 4), "F": round(f, 4), "JF": round((j + f) / 2, 4)}
            entry.update(false_alarm_rate=counts.summary()["false_alarm_rate"], seconds_per_frame=round(spf, 4))
            if before is not None:
                jb, fb, _, _ = run_sequence(before, frames, masks)
                entry["before"] = {"J": round(jb, 4), "F": round(fb, 4), "JF": round((jb + fb) / 2, 4)}
            unmodified[name] = entry
            for k in args.lengths:
                for scenario, length in (("occlusion", PRE + k + POST), ("exit", PRE + 2 * RAMP + k + POST)):
                    key = f"{scenario}_k{k}"
                    total = scenarios.setdefault(key, Counts())
                    for start in starts(len(frames), length, args.events):
                        made = occlusion_clip(name, frames, masks, start, k) if scenario == "occlusion" else exit_clip(name, frames, masks, start, k)
                        if made is None:
                            skipped.append(f"{key} {name}@{start}: no room for a crop without the object")
                            continue
                        counts, rows = run_clip(tracker, made)
                        total.add(counts)
                        if args.cues:
                            cue_rows.extend({"clip": f"{key} {name}@{start}", "score": s, "cues": c, "present": t} for s, c, t in rows)
            if args.vanish:
                key = f"vanish_k{args.vanish}"
                total = scenarios.setdefault(key, Counts())
                if len(frames) >= VANISH_PRE + args.vanish:
                    counts, _ = run_clip(tracker, occlusion_clip(name, frames, masks, 0, args.vanish, VANISH_PRE, 0))
                    counts.events = 0  # nothing comes back: no recovery to count
                    total.add(counts)
                    per_vanish[name] = counts.summary()["recall_absent"]
                else:
                    skipped.append(f"{key} {name}: fewer than {VANISH_PRE + args.vanish} frames")
    overall = Counts()
    for key, counts in scenarios.items():
        if not key.startswith("vanish"):  # "overall" stays comparable with runs without it
            overall.add(counts)
    jf_after = [e["JF"] for e in unmodified.values()]
    result: dict[str, Any] = {
        "threshold": PRESENCE_THRESHOLD,
        "protocol": {"pre": PRE, "post": POST, "ramp": RAMP, "lengths": args.lengths, "events_per_sequence": args.events, "dilate_px": DILATE, "visible": VISIBLE},
        "data": [str(r) for r in roots],
        "scenarios": {key: counts.summary() for key, counts in scenarios.items()},
        "overall": overall.summary(),
        "unmodified": {
            "sequences": unmodified,
            "false_alarm_rate": false_alarms.summary()["false_alarm_rate"],
            "mean_JF": round(float(np.mean(jf_after)), 4) if jf_after else None,
        },
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if before is not None:
        result["unmodified"]["before"] = {"revision": args.before, "mean_JF": round(float(np.mean([e["before"]["JF"] for e in unmodified.values()])), 4) if unmodified else None}
    if args.vanish:
        result["vanish_recall_per_sequence"] = per_vanish
    if args.cues:
        Path(args.cues).write_text("\n".join(json.dumps(row) for row in cue_rows) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="*", help="folders of DAVIS-format sequences (default: ../shared/data/davis16-train and vos)")
    parser.add_argument("--sequences", nargs="*", help="only these sequences")
    parser.add_argument("--lengths", nargs="*", type=int, default=[3, 10], help="frames the object is absent for, one scenario each")
    parser.add_argument("--vanish", type=int, default=0, help=f"also the vanish scenario: the object covered for good after {VANISH_PRE} frames, this many frames (0: not run)")
    parser.add_argument("--drift-frames", type=int, help="the tracker's drift check (TrackerConfig.drift_frames; default: as shipped)")
    parser.add_argument("--events", type=int, default=2, help="events of each scenario per sequence (spread over it)")
    parser.add_argument("--max-frames", type=int, help="only the first N frames of each sequence")
    parser.add_argument("--before", help="git revision whose classical tracker also gets J&F on the unmodified clips")
    parser.add_argument("--cues", help="write each scored frame's presence cues here, JSON lines (for tuning)")
    parser.add_argument("--json", action="store_true", help="print the JSON only (it is all this prints on stdout anyway)")
    args = parser.parse_args()
    if not args.lengths or min(args.lengths) < 1 or args.events < 1 or (args.max_frames is not None and args.max_frames < 2):
        parser.error("--lengths must be at least 1, --events at least 1, --max-frames at least 2")
    if args.vanish < 0 or (args.drift_frames is not None and args.drift_frames < 0):
        parser.error("--vanish and --drift-frames must be at least 0")
    print(json.dumps(evaluate(args)))


if __name__ == "__main__":
    main()
