"""The classical tracker: flow-warped masks fused with colour models (see `inference.classical`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from masklog.domain.events import Direction
from masklog.inference.classical.imaging import ColourBins, disc_kernel, guided_filter, keep_major_components, lab_stretched, logit, sigmoid
from masklog.inference.classical.segmenter import ClassicalSegmenter
from masklog.inference.propagation import SessionClosed, check_frame, propagation_frames
from masklog.inference.protocols import PRESENCE_THRESHOLD, FrameSource, Prompt, TrackedMask

TRACKER_MODEL = "classical/flowcolour@4"


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    # Frames are processed with this many pixels on the long side at most. 600 rather than 432
    # (issue 18): J&F 0.767 -> 0.795 on the unseen vos clips, 0.728 -> 0.758 on the training clips
    # (up on 11 of 12; picked in every leave-one-out fold between the two), at twice the time
    # (about 0.035 s a frame); 720 and 854 gain under 0.005 more at up to twice that again.
    work_side: int = 600
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
    # Where the flow is unreliable the prior falls back to a blurred one squeezed into this range,
    # so colour decides there; a low floor keeps a leak through flowless background (dirt, water)
    # from growing unless the colour says object clearly.
    unreliable_range: tuple[float, float] = (0.25, 0.75)
    # A mask this many times larger than the previous one carried by the flow is taken for a leak
    # and made again with `leak_range` in place of `unreliable_range` (0: never). Leaks grow
    # through flowless background (dirt, water) where the flow is unreliable and colour alone
    # decides; a fast object that the flow loses needs that same fallback, so the stricter range
    # is only used when the mask grows. Off, with `prior_ceiling`: together (1.3, 0.97, at the
    # former 432 px) they raised J&F on the training clips they were chosen on (0.728 -> 0.742;
    # bmx-bumps 0.35 -> 0.44; bus, tennis -0.03) but not on the unseen vos clips (0.767 both),
    # and at 600 px they lower it (0.758 -> 0.744 training, 0.795 -> 0.794 vos), see issue 18.
    leak_growth: float = 0.0
    leak_range: tuple[float, float] = (0.05, 0.75)
    guided_radius: int = 4
    guided_eps: float = 1e-3
    keep_fraction: float = 0.2  # components below this fraction of the largest are dropped
    min_area: int = 4  # working pixels
    area_memory: float = 0.3  # how fast the recent area follows each present frame
    hidden_prior: float = 0.3  # strength of the motion prior while the object is looked for, 0..1
    follow_fraction: float = 0.03  # an absent object's mask is still followed above this fraction of its recent area
    # The motion prior is kept below this, so pixels whose colour clearly says background can
    # leave the mask: at 1.0 its log-odds (+9) beat any colour, and what once leaked in stays.
    # 0.97 (log-odds +3.5) is the measured setting (off, see `leak_growth`); 0.9 lost tennis 0.1.
    prior_ceiling: float = 1.0
    # Drift check (issue 18): an object that moved clearly unlike its surroundings (the flow over
    # it at least `drift_min_px` from the surroundings' affine motion, median over its first
    # `drift_reference_frames` present frames) whose mask then moves like them (below
    # `drift_ratio` of that and below `drift_still_px`, the flow's own noise) for `drift_frames`
    # frames in a row while called present is lost: colour cannot say so (the mask sits on
    # look-alike background, a rider gone behind a bump), motion can. It is reported absent, and
    # nothing is learnt from those frames, until it is re-found (`refind`) or what the mask
    # follows moves apart again (`drift_release` of the reference, as many frames in a row).
    # Working pixels. Before the re-find (flowcolour@2) it stayed off: on eval_presence.py's
    # synthetic occlusions and exits the release was too slow (false alarms 0.041 -> 0.099,
    # precision of "absent" 0.79 -> 0.67). With it, at 3 (docs/bench/tracker_cv_issue18_drift.json):
    # false alarms 0.046, precision 0.81, recall 0.44 -> 0.55; objects inpainted away for good
    # (--vanish 25) called absent on 0.58 of those frames instead of 0.39; bmx-bumps J&F
    # 0.356 -> 0.469 (0.45, 0.43, 0.51 at work_side 432, 720, 854), the 14 other training and
    # vos clips unchanged. 0: off.
    drift_frames: int = 3
    drift_min_px: float = 8.0
    drift_ratio: float = 0.1
    drift_still_px: float = 1.5
    drift_release: float = 0.5
    drift_reference_frames: int = 10
    # Release by re-finding (issue 18): while drifted, the object is looked for anew in a window
    # round its stale mask grown by how far its own motion could have carried it since: pixels
    # that look like it under the conditioning frames' colour model and move apart from the
    # window's affine motion (by `drift_release` of the reference). The largest such region of
    # `refind_area` times its recent area, whose mean colour evidence is at least
    # `refind_evidence` of the conditioning mask's, re-seeds the mask there and ends the drift at
    # once; a stale mask never moves apart from the background it sits on. For its first
    # `drift_reference_frames` frames a find is lost again after `drift_frames` frames in a row
    # below the release level (bmx-bumps: the rider's last glimpse before the bump hides him
    # again). False: the release waits for the stale mask itself to move apart (`drift_frames`
    # frames in a row).
    refind: bool = True
    refind_area: tuple[float, float] = (0.15, 3.0)
    refind_evidence: float = 0.3
    # A stopped object is not a drift (issue 18): an object that stops (a walker who stands, a
    # car at a light) moves like its surroundings too, in a still view or a panning one, and
    # nothing would re-find it before it moves again. A frame does not count towards
    # `drift_frames` when the mask still covers where the object was when last seen moving apart
    # from them (by `drift_release` of the reference), carried by the mask's own motion since (an
    # object that slows down creeps on; the view's pan carries both):
    # IoU at least `stop_overlap`, and at least `stop_same` of those pixels within STOP_GREY grey
    # levels of what they were then. A mask left on look-alike background sits elsewhere, or
    # where the object has gone from. Synthetic stops (tests) stay present; eval_presence.py and
    # eval_tracker_cv.py figures are unchanged (docs/bench/presence_issue18_stop.json). Until
    # flowcolour@4 it held in still views only (the surroundings' motion under `drift_still_px`);
    # the carried anchor and the unchanged pixels tell a stop in a panning view as well
    # (docs/bench/presence_issue18_pan.json). 0: off.
    stop_overlap: float = 0.6
    stop_same: float = 0.8


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
    flow: np.ndarray  # current pixel -> previous frame, float32 (h, w, 2)


@dataclass(slots=True)
class _Object:
    prior: np.ndarray  # float32 mask at working resolution, previous frame
    fg_long: np.ndarray
    bg_long: np.ndarray
    fg: np.ndarray
    bg: np.ndarray
    reference_area: int
    # Mean colour log-likelihood ratio of the conditioning mask under its own models: what
    # "looks like the object" measures on this object (presence compares against it).
    reference_evidence: float = 1.0
    # How decided the tracker's own posterior is over the conditioning mask on its own frame
    # (0..1): a person's shape the colour model cannot separate well (a box round background,
    # say) is as undecided there as on the next frames, and must not read as "absent" for that.
    reference_decided: float = 1.0
    recent_area: float = 1.0  # working pixels, following the frames the object was present on
    hidden: int = 0  # consecutive frames it was looked for, not followed (see _track_frame)
    conditioning_count: int = 1
    separations: list[float] | None = None  # motion apart from the surroundings, first frames (px)
    still_run: int = 0  # consecutive frames the mask moved like its surroundings (apart from them, while drifted)
    drifted: bool = False
    drifted_for: int = 0  # frames since the drift check called the object lost
    drift_watch: bool = True  # False: its reference motion is too small for the drift check
    # Frames left in which a re-found object (TrackerConfig.refind) that moves like its
    # surroundings is lost again at the looser release level (see _drifted).
    probation: int = 0
    # Where the object was (mask, working resolution) and the frame's grey image, when last seen
    # moving apart from its surroundings: what a stopped object still covers.
    anchor: tuple[np.ndarray, np.ndarray] | None = None
    carried: tuple[float, float] = (0.0, 0.0)  # px (x, y) its mask has moved since `anchor`


@dataclass(slots=True)
class _Proposal:
    window: tuple[int, int, int, int]  # x0, y0, x1, y1 at working resolution
    posterior: np.ndarray  # float32 in the window
    mask: np.ndarray  # bool in the window
    warped: np.ndarray  # float32 in the window: the previous mask moved by the flow alone
    unreliable: np.ndarray  # bool in the window: forward-backward flow disagrees
    outside: float  # fraction of the previous mask the flow carried out of the frame
    separation: float | None = None  # px: the mask's motion apart from its surroundings' (None: not measured)
    shift: tuple[float, float] = (0.0, 0.0)  # px (x, y): the mask's own motion from the previous frame, median


@dataclass(frozen=True, slots=True)
class PresenceCues:
    """What one frame's presence score is made of (`presence`); kept for evaluation."""

    decided: float  # 0 (coin flip) .. 1 (certain): the posterior over the mask, relative to the conditioning frame's (USUAL_DECIDED)
    evidence: float  # colour log-likelihood ratio over where the flow puts the object, / the reference
    mask_evidence: float  # the same over the mask
    fill: float  # mask area / area where the flow puts the object
    growth: float  # mask area / the object's recent area
    unreliable: float  # fraction of where the flow puts the object with inconsistent flow
    outside: float  # fraction of the previous mask carried out of the frame


# The fit's own bias was -4.2 (balanced classes: as many absent frames as present ones). Real
# footage is mostly present frames, where every false alarm costs a whole frame's J, so the
# bias is raised until J&F on the unmodified training clips stays where it was (-3.6: 1.6%
# false alarms and J&F 0.006 lower; -3.2: 0.6% and 0.001).
PRESENCE_BIAS = -3.2


def presence(c: PresenceCues) -> float:
    """Probability-like score, 0..1, that the tracked mask is the object (present at or above
    PRESENCE_THRESHOLD). It falls when the mask's pixels stop looking like the object (covered by
    background), when the posterior over the mask is undecided, when the mask shrinks away from
    where the flow puts the object or leaves the frame (exits), and when it grows far beyond its
    recent size (a leak onto look-alike background).

    A logistic model. The colour, fill, shrink and decidedness weights were fitted (sign-constrained,
    classes balanced) on the cues of every frame of scripts/eval_presence.py's synthetic occlusions
    and exits of the DAVIS 2016 training clips (--cues; 1,516 frames); the leak and exit guards
    are set by hand, as those clips hold hardly any leaks or shapes carried out of the frame."""
    growth = max(c.growth, 1e-3)
    z = (
        PRESENCE_BIAS
        + 0.1 * _clip(c.evidence, -2.0, 1.5)
        + 2.1 * _clip(c.mask_evidence, -2.0, 1.5)
        + 0.8 * min(c.fill, 1.0)
        + 2.85 * c.decided
        - 0.5 * max(-math.log(growth) - math.log(2.0), 0.0)
        - 3.0 * max(math.log(growth) - math.log(2.0), 0.0)
        - 4.0 * max(c.outside - 0.5, 0.0)
    )
    return float(1.0 / (1.0 + math.exp(-z)))


def _clip(x: float, low: float, high: float) -> float:
    return min(max(x, low), high)


# How decided the posterior over a conditioning mask on its own frame is, at least, for the
# objects presence() was fitted on (0.69-0.95 on the training clips). A conditioning frame less
# decided than that (a person's shape the colour model barely separates) scales `decided` up by
# as much: the object is measured against itself there, as its colour evidence always is.
USUAL_DECIDED = 0.7
# A box prompt's segmentation whose own proposal keeps less of it than this is not one colour can
# hold: the box is the object (ClassicalTrackerSession.add_prompt). Box prompts round the objects
# of the DAVIS training clips and vos keep 0.93-1.0 of theirs; specks segmented from boxes round
# plain background (the page test's clip) 0.0-0.77.
HOLD_FRACTION = 0.85
# Grey levels (0-255, after a light blur) within which a stopped object's pixels count as
# unchanged (TrackerConfig.stop_overlap): above sensor noise and compression, far below the
# change where an object left.
STOP_GREY = 10


def _decided(proposal: _Proposal) -> float:
    """How far the posterior over the proposed mask is from a coin flip: 0 .. 1 (certain)."""
    inside = proposal.posterior[proposal.mask]
    return float(np.clip(2.0 * inside.mean() - 1.0, 0.0, 1.0)) if inside.size else 0.0


class ClassicalTracker:
    """The 'simple' tracker (T7): flow-warped masks fused with colour models."""

    def __init__(self, config: TrackerConfig | None = None, segmenter: ClassicalSegmenter | None = None) -> None:
        self.config = config or TrackerConfig()
        self.segmenter = segmenter or ClassicalSegmenter()

    @property
    def model(self) -> str:
        return TRACKER_MODEL

    def open(self, frames: FrameSource, media: str | None = None) -> ClassicalTrackerSession:
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
        self._flow = cv2.DISOpticalFlow.create(config.flow_preset)
        # Conditioning masks given by the user, full resolution: object -> frame -> mask.
        self._conditioning: dict[str, dict[int, np.ndarray]] = {}
        # What the latest frame's presence score of each object was made of (None: no mask to
        # score); for evaluation and tuning.
        self.cues: dict[str, PresenceCues | None] = {}
        self._closed = False
        wx, wy = self._work
        self._grid_x, self._grid_y = np.meshgrid(np.arange(wx, dtype=np.float32), np.arange(wy, dtype=np.float32))
        # No motion at all: a conditioning frame's own proposal (see _start_object).
        self._still = _Motion(self._grid_x, self._grid_y, np.zeros((wy, wx), np.float32), np.zeros((wy, wx), bool), np.zeros((wy, wx, 2), np.float32))

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
        if prompt.box is not None and not prompt.points and prompt.mask is None and not self._holds(frame, mask):
            # What was segmented inside the box is something colour cannot hold even on its own
            # frame (a speck of a box round plain background): it would shrink away over the
            # next frames and read as "absent". The person's box is the object then.
            x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
            mask = np.zeros_like(mask)
            mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
        self._conditioning.setdefault(object_id, {})[frame] = mask.copy()
        return mask

    def _holds(self, index: int, mask: np.ndarray) -> bool:
        """Whether the tracker's own proposal for `mask` on its own frame (no motion) keeps at
        least HOLD_FRACTION of it."""
        frame = self._prepare(index)
        work = self._to_work(mask)
        area = int(np.count_nonzero(work))
        if not area:
            return False
        own = self._propose(self._start_object(frame, work, None), frame, self._still)
        if own is None:
            return False
        x0, y0, x1, y1 = own.window
        return int(np.count_nonzero(own.mask & work[y0:y1, x0:x1])) >= HOLD_FRACTION * area

    def objects(self) -> list[str]:
        return list(self._conditioning)

    def close(self) -> None:
        self._closed = True
        self._conditioning.clear()

    # -- propagation -------------------------------------------------------------------------

    def propagate(self, start: int, direction: Direction, count: int) -> Iterator[list[TrackedMask]]:
        """Objects start from their conditioning masks (add_mask/add_prompt) on `start` or on a
        later frame of the pass; to continue from a tracked frame, add its mask first."""
        self._check_open()
        return self._run(propagation_frames(start, direction, count, len(self._frames)))

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
        for obj, tracked in list(states.items()):
            if obj in conditioning or motion is None:
                continue
            proposal = self._propose(tracked, frame, motion)
            if proposal is not None:
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
            if state is None:
                results.append(TrackedMask(obj, frame.index, None, 0.0))
                continue
            if proposal is None:
                # Nothing where the object could be (carried out of the frame, say): absent,
                # and looked for again around where it was last seen.
                state.hidden += 1
                self.cues[obj] = None
                results.append(TrackedMask(obj, frame.index, None, 0.0))
                continue
            cues = self._cues(state, frame, proposal)
            self.cues[obj] = cues
            x0, y0, x1, y1 = proposal.window
            area = int(np.count_nonzero(proposal.mask))
            score = presence(cues) if area >= cfg.min_area else 0.0
            if self._drifted(state, frame, proposal, score):
                state.drifted_for += 1
                found = self._refind(state, frame, motion) if cfg.refind and motion is not None else None
                if found is None:
                    score = min(score, 0.5 * PRESENCE_THRESHOLD)
                else:
                    # Found again away from the stale mask: tracked from there on, scored as
                    # any frame is.
                    state.drifted, state.still_run, state.drifted_for = False, 0, 0
                    state.probation = cfg.drift_reference_frames
                    _give_way(found, [p for o, p in proposals.items() if o != obj], taken)
                    self._anchor(state, frame, found)
                    proposal = found
                    cues = self._cues(state, frame, proposal)
                    self.cues[obj] = cues
                    x0, y0, x1, y1 = proposal.window
                    area = int(np.count_nonzero(proposal.mask))
                    score = presence(cues) if area >= cfg.min_area else 0.0
            else:
                state.drifted_for = 0
            if score < PRESENCE_THRESHOLD:
                # Absent or doubtful: no mask, and nothing learnt from this frame's colours.
                prior = np.zeros((wy, wx), np.float32)
                if area >= max(cfg.min_area, cfg.follow_fraction * state.recent_area) and cues.mask_evidence > 0:
                    # Enough is left that looks like the object (fast motion, a partial
                    # cover): follow it, as when it is present.
                    prior[y0:y1, x0:x1] = proposal.mask
                    state.hidden = 0
                    state.recent_area += cfg.area_memory * (area - state.recent_area)
                else:
                    # Gone from where it was: look for it where the flow carries its last shape
                    # (it may come out from behind what covers it), colour deciding.
                    prior[y0:y1, x0:x1] = proposal.warped
                    state.hidden += 1
                if prior.max() > 0.5:
                    state.prior = prior
                results.append(TrackedMask(obj, frame.index, None, score))
                continue
            state.hidden = 0
            prior = np.zeros((wy, wx), np.float32)
            prior[y0:y1, x0:x1] = proposal.mask
            self._update_colours(state, frame, prior > 0.5)
            state.recent_area += cfg.area_memory * (area - state.recent_area)
            state.prior = prior
            soft = np.zeros((wy, wx), np.float32)
            post = proposal.posterior
            soft[y0:y1, x0:x1] = np.where(proposal.mask, np.maximum(post, 0.5), np.minimum(post, 0.5))
            full = cv2.resize(soft, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR) > 0.5
            results.append(TrackedMask(obj, frame.index, full, score))
        return results

    def _drifted(self, state: _Object, frame: _Frame, proposal: _Proposal, score: float) -> bool:
        """Update the drift check (TrackerConfig.drift_frames) with this frame; whether the object is lost."""
        cfg = self._cfg
        separation = proposal.separation
        if cfg.drift_frames <= 0 or separation is None:
            return state.drifted
        if state.separations is None:
            state.separations = []
        state.carried = (state.carried[0] + proposal.shift[0], state.carried[1] + proposal.shift[1])
        if len(state.separations) < cfg.drift_reference_frames:
            if score >= PRESENCE_THRESHOLD and not state.drifted:
                state.separations.append(separation)
                if separation >= cfg.drift_min_px:
                    self._anchor(state, frame, proposal)
            return state.drifted
        reference = float(np.median(state.separations))
        if reference < cfg.drift_min_px:
            state.drift_watch = False  # it never moved apart enough to tell: not measured again
            return False
        if not state.drifted and score >= PRESENCE_THRESHOLD and separation >= cfg.drift_release * reference:
            self._anchor(state, frame, proposal)
        if state.drifted:
            # Found again only after as many frames in a row apart from the surroundings: one
            # frame of flow failing on background (a spike) must not hand the mask back.
            state.still_run = state.still_run + 1 if separation >= cfg.drift_release * reference else 0
            state.drifted = state.still_run < cfg.drift_frames
            if not state.drifted:
                state.still_run = 0
            return state.drifted
        if state.probation > 0:
            # A find must prove itself: for its first `drift_reference_frames` frames, moving like
            # its surroundings (below the release level, far looser than `drift_ratio`) for
            # `drift_frames` in a row means it was background that moved for a moment, or the
            # object's last glimpse before the mask slid off it again.
            state.probation -= 1
            still = separation < cfg.drift_release * reference and not self._stopped(state, frame, proposal)
            state.still_run = state.still_run + 1 if still else 0
            state.drifted = state.still_run >= cfg.drift_frames
            if state.drifted:
                state.still_run, state.probation = 0, 0
            return state.drifted
        if score < PRESENCE_THRESHOLD:
            # Already called absent (covered, out of view): what its mask follows meanwhile is
            # not the object, and must not keep it absent once it is back.
            state.still_run = 0
            return False
        still = separation < min(cfg.drift_ratio * reference, cfg.drift_still_px) and not self._stopped(state, frame, proposal)
        state.still_run = state.still_run + 1 if still else 0
        state.drifted = state.still_run >= cfg.drift_frames
        if state.drifted:
            state.still_run = 0
        return state.drifted

    def _anchor(self, state: _Object, frame: _Frame, proposal: _Proposal) -> None:
        """Remember where and how the object looked on a frame it clearly moved (see `_stopped`)."""
        state.anchor, state.carried = (self._placed(proposal), frame.grey), (0.0, 0.0)

    def _stopped(self, state: _Object, frame: _Frame, proposal: _Proposal) -> bool:
        """Whether the mask, moving like its surroundings, is on the object that stopped dead where
        it was last seen moving apart (TrackerConfig.stop_overlap), not on background."""
        cfg = self._cfg
        if cfg.stop_overlap <= 0 or state.anchor is None:
            return False
        was, grey = state.anchor
        # Compared where the mask's own motion since has carried the anchor (an object that
        # slows to a stop creeps on after it was last clearly apart).
        dx, dy = round(state.carried[0]), round(state.carried[1])
        ys, xs = np.nonzero(was)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        wy, wx = was.shape
        if y0 + dy < 0 or x0 + dx < 0 or y1 + dy > wy or x1 + dx > wx:
            return False
        inside = was[y0:y1, x0:x1]
        now = self._placed(proposal)
        overlap = int(np.count_nonzero(inside & now[y0 + dy : y1 + dy, x0 + dx : x1 + dx]))
        union = int(np.count_nonzero(inside)) + int(np.count_nonzero(now)) - overlap
        if union == 0 or overlap < cfg.stop_overlap * union:
            return False
        # A light blur: the flow's sub-pixel wobble and sensor noise are not a change.
        then = cv2.GaussianBlur(grey[y0:y1, x0:x1], (0, 0), 1.0).astype(np.int16)
        current = cv2.GaussianBlur(frame.grey[y0 + dy : y1 + dy, x0 + dx : x1 + dx], (0, 0), 1.0).astype(np.int16)
        same = np.abs(current - then)[inside] <= STOP_GREY
        return float(same.mean()) >= cfg.stop_same

    def _placed(self, proposal: _Proposal) -> np.ndarray:
        """The proposal's mask on the whole working frame."""
        wx, wy = self._work
        x0, y0, x1, y1 = proposal.window
        full = np.zeros((wy, wx), bool)
        full[y0:y1, x0:x1] = proposal.mask
        return full

    def _refind(self, state: _Object, frame: _Frame, motion: _Motion) -> _Proposal | None:
        """While drifted: the object looked for anew (TrackerConfig.refind), as a proposal on this
        frame, or None when nothing there both looks and moves like it."""
        cfg = self._cfg
        ys, xs = np.nonzero(state.prior > 0.5)
        if xs.size == 0 or not state.separations:
            return None
        reference = float(np.median(state.separations))
        wx, wy = self._work
        size = max(int(xs.max() - xs.min()), int(ys.max() - ys.min())) + 1
        # Its own motion may have carried it this far from where the mask stayed behind.
        margin = cfg.ring + int(cfg.search * size) + int(math.ceil(reference * state.drifted_for))
        x0, x1 = max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, wx)
        y0, y1 = max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, wy)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        flow = motion.flow[y0:y1, x0:x1]
        reliable = ~motion.unreliable[y0:y1, x0:x1]
        gx, gy = self._grid_x[y0:y1, x0:x1], self._grid_y[y0:y1, x0:x1]
        residual = _affine_residual(flow, reliable, gx, gy)
        if residual is None:
            return None
        # Refit on what moves like most of the window: the object itself must not pull the fit.
        background = reliable & (residual <= max(float(np.median(residual[reliable])) * 4.0, cfg.drift_still_px**2))
        refit = _affine_residual(flow, background, gx, gy)
        if refit is not None:
            residual = refit
        moving = residual >= (cfg.drift_release * reference) ** 2
        bins = frame.colour[y0:y1, x0:x1]
        ratio = (np.log(state.fg_long[bins] + 1e-4) - np.log(state.bg_long[bins] + 1e-4)).astype(np.float32)
        looks = cv2.blur(ratio, (5, 5)) > 0
        candidate = cv2.morphologyEx((moving & looks).astype(np.uint8), cv2.MORPH_OPEN, disc_kernel(1))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=8)
        low, high = cfg.refind_area[0] * state.recent_area, cfg.refind_area[1] * state.recent_area
        best, best_area = 0, 0
        for k in range(1, n):
            a = int(stats[k, cv2.CC_STAT_AREA])
            if low <= a <= high and a > best_area:
                best, best_area = k, a
        if not best:
            return None
        region = labels == best
        if float(ratio[region].mean()) < cfg.refind_evidence * max(state.reference_evidence, 0.5):
            return None
        seed = np.zeros((wy, wx), np.float32)
        seed[y0:y1, x0:x1] = region
        # The region at full strength: under the weak prior of a returning object, colour alone
        # would spread the mask back onto the look-alike it had drifted to, when that is near.
        looking = _Object(seed, state.fg_long, state.bg_long, state.fg, state.bg, state.reference_area, state.reference_evidence, state.reference_decided, state.recent_area, 0)
        return self._propose(looking, frame, self._still)

    def _cues(self, state: _Object, frame: _Frame, proposal: _Proposal) -> PresenceCues:
        x0, y0, x1, y1 = proposal.window
        mask = proposal.mask
        area = int(np.count_nonzero(mask))
        region = proposal.warped > 0.5
        if not region.any():
            region = proposal.warped > 0.1
        region_area = max(int(np.count_nonzero(region)), 1)
        bins = frame.colour[y0:y1, x0:x1][region]
        ratio = np.log(state.fg_long[bins] + 1e-4) - np.log(state.bg_long[bins] + 1e-4)
        evidence = float(ratio.mean()) if bins.size else -1.0
        inside = frame.colour[y0:y1, x0:x1][mask]
        mask_evidence = float((np.log(state.fg_long[inside] + 1e-4) - np.log(state.bg_long[inside] + 1e-4)).mean()) if area else -1.0
        return PresenceCues(
            decided=min(_decided(proposal) * USUAL_DECIDED / min(max(state.reference_decided, 0.1), USUAL_DECIDED), 1.0),
            evidence=evidence / max(state.reference_evidence, 0.5),
            mask_evidence=mask_evidence / max(state.reference_evidence, 0.5),
            fill=area / region_area,
            growth=area / max(state.recent_area, 1.0),
            unreliable=float(proposal.unreliable[region].mean()) if region.any() else 1.0,
            outside=proposal.outside,
        )

    def _start_object(self, frame: _Frame, mask: np.ndarray, old: _Object | None) -> _Object:
        fg, bg = self._colour_models(frame, mask)
        area = max(int(np.count_nonzero(mask)), 1)
        n = 0 if old is None else old.conditioning_count
        if old is None:
            fg_long, bg_long = fg, bg.copy()
            fg = fg.copy()
        else:
            # A later conditioning frame joins the long-term memory rather than replacing it:
            # every user-given mask is equally trustworthy.
            fg_long = (old.fg_long * n + fg) / (n + 1)
            bg_long = (old.bg_long * n + bg) / (n + 1)
        bins = frame.colour[mask]
        ratio = np.log(fg_long[bins] + 1e-4) - np.log(bg_long[bins] + 1e-4)
        reference = float(ratio.mean()) if bins.size else 1.0
        state = _Object(mask.astype(np.float32), fg_long, bg_long, fg, bg.copy(), area, reference, 1.0, float(area), 0, n + 1)
        # The mask proposed on its own frame, carried by no motion: what "decided" measures on
        # this object, by the very code that tracks it.
        own = self._propose(state, frame, self._still)
        state.reference_decided = _decided(own) if own is not None else 0.0
        return state

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
        moved = warped
        mass = float(state.prior.sum())
        outside = float(np.clip(1.0 - float(warped.sum()) / mass, 0.0, 1.0)) if mass > 0 else 0.0
        unreliable = motion.unreliable[y0:y1, x0:x1]
        posterior, mask = self._fuse(state, frame, window, warped, unreliable, cfg.unreliable_range)
        if cfg.leak_growth > 0:
            carried = max(int(np.count_nonzero(moved > 0.5)), cfg.min_area)
            if np.count_nonzero(mask) > cfg.leak_growth * carried:
                posterior, mask = self._fuse(state, frame, window, warped, unreliable, cfg.leak_range)
        separation, shift = None, (0.0, 0.0)
        if cfg.drift_frames > 0 and state.drift_watch and motion is not self._still:
            separation = _motion_separation(motion.flow[y0:y1, x0:x1], warped, unreliable, self._grid_x[y0:y1, x0:x1], self._grid_y[y0:y1, x0:x1])
            if separation is not None and mask.any():
                back = motion.flow[y0:y1, x0:x1][mask]  # current pixel -> previous frame
                shift = (-float(np.median(back[:, 0])), -float(np.median(back[:, 1])))
        return _Proposal(window, posterior, mask, moved, unreliable, outside, separation, shift)

    def _fuse(
        self, state: _Object, frame: _Frame, window: tuple[int, int, int, int], warped: np.ndarray, unreliable: np.ndarray, unreliable_range: tuple[float, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior and mask in the window from the flow-carried previous mask and colour."""
        cfg = self._cfg
        x0, y0, x1, y1 = window
        if unreliable.any():
            low, high = unreliable_range
            neutral = (high - low) * cv2.GaussianBlur(warped, (0, 0), 4.0) + low
            warped = np.where(unreliable, neutral, warped)
        if cfg.prior_blur > 0:
            warped = cv2.GaussianBlur(warped, (0, 0), cfg.prior_blur)
        if state.hidden:
            # The object was absent: its last shape only says where to look, colour decides
            # whether it is back (a full-strength prior would make a mask of whatever covers it).
            warped = 0.5 + cfg.hidden_prior * (warped - 0.5)

        if cfg.prior_ceiling < 1:
            warped = cfg.prior_ceiling * warped
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
        posterior = np.clip(guided_filter(frame.grey_f[y0:y1, x0:x1], posterior, cfg.guided_radius, cfg.guided_eps), 0.0, 1.0).astype(np.float32)
        mask = keep_major_components(posterior > 0.5, cfg.keep_fraction)
        return posterior, mask

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

    def _dense_flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Per pixel of `source`, its displacement to `target`."""
        # OpenCV's stubs require `flow`; None (allocate the output) is what OpenCV takes.
        return self._flow.calc(source, target, None)  # type: ignore[call-overload]

    def _motion(self, previous: _Frame, current: _Frame) -> _Motion:
        back = self._dense_flow(current.grey, previous.grey)  # current pixel -> previous frame
        forth = self._dense_flow(previous.grey, current.grey)
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
            flow=back,
        )

    def _to_work(self, mask: np.ndarray) -> np.ndarray:
        small = cv2.resize(mask.astype(np.float32), self._work, interpolation=cv2.INTER_AREA)
        out = small > 0.5
        if not out.any() and mask.any():
            out = small > 0  # a thin or tiny object must not vanish by downscaling
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed("tracker session is closed")

    def _check_frame(self, frame: int) -> None:
        check_frame(frame, len(self._frames))


def _motion_separation(flow: np.ndarray, warped: np.ndarray, unreliable: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> float | None:
    """How far (px, median) the flow where the object is carried lies from its surroundings'
    affine motion (camera pan and zoom); None where either has too few reliable pixels. `xs`,
    `ys`: the pixels' coordinates."""
    inner = (warped > 0.9) & ~unreliable
    around = (warped < 0.02) & ~unreliable
    if not inner.any():
        return None
    coef = _affine_fit(flow, around, xs, ys)
    if coef is None:
        return None
    # Only where the object is: the whole window's residual is not needed on every frame.
    fx, fy, px, py = flow[..., 0][inner], flow[..., 1][inner], xs[inner], ys[inner]
    ax, ay = coef[0, 0] * px + coef[1, 0] * py + coef[2, 0], coef[0, 1] * px + coef[1, 1] * py + coef[2, 1]
    residual = (fx - ax) ** 2 + (fy - ay) ** 2
    return float(np.sqrt(np.median(residual)))


def _affine_fit(flow: np.ndarray, where: np.ndarray, xs: np.ndarray, ys: np.ndarray, limit: int = 1500) -> np.ndarray | None:
    """An affine motion (3 x 2: flow = [x, y, 1] @ it) fitted over `where` (at most `limit` of
    its pixels; None: too few to fit)."""
    iy, ix = np.nonzero(where)
    if iy.size < 12:
        return None
    step = max(iy.size // limit, 1)
    iy, ix = iy[::step], ix[::step]
    design = np.stack([xs[iy, ix], ys[iy, ix], np.ones(iy.size, np.float32)], axis=1)
    coef, *_ = np.linalg.lstsq(design, flow[iy, ix], rcond=None)
    return np.asarray(coef, np.float32)


def _affine_residual(flow: np.ndarray, where: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray | None:
    """Squared distance of every pixel's flow from an affine motion fitted over `where` (None:
    too few pixels to fit)."""
    coef = _affine_fit(flow, where, xs, ys)
    if coef is None:
        return None
    pred_x = coef[0, 0] * xs + coef[1, 0] * ys + coef[2, 0]
    pred_y = coef[0, 1] * xs + coef[1, 1] * ys + coef[2, 1]
    return (flow[..., 0] - pred_x) ** 2 + (flow[..., 1] - pred_y) ** 2


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


def _give_way(proposal: _Proposal, others: list[_Proposal], taken: np.ndarray) -> None:
    """A re-found object's proposal, made after the others were made disjoint, gives way in place
    to pixels a user gave to an object (`taken`) and to the other objects' proposals: it was
    drifted a frame ago, they were not."""
    x0, y0, x1, y1 = proposal.window
    held = taken[y0:y1, x0:x1].copy()
    for other in others:
        ox0, oy0, ox1, oy1 = other.window
        ix0, iy0, ix1, iy1 = max(x0, ox0), max(y0, oy0), min(x1, ox1), min(y1, oy1)
        if ix0 < ix1 and iy0 < iy1:
            held[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] |= other.mask[iy0 - oy0 : iy1 - oy0, ix0 - ox0 : ix1 - ox0]
    proposal.mask = proposal.mask & ~held
