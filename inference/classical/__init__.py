"""The classical backend: OpenCV only, no weights. The default without a SAM 2 checkpoint (E4); its
tracker is registered as 'classical', which the alias 'simple' always names (T7).

- `inference.classical.segmenter`: `ClassicalSegmenter`;
- `inference.classical.tracker`: `ClassicalTracker`;
- `inference.classical.imaging`: the small image helpers both use.

Segmenter: GrabCut seeded by the prompt. Include clicks become sure-foreground discs, exclude
clicks sure-background; with a box everything outside it is background (and the similar-coloured
region around an exclude click too), a mask to refine (S7) is the initial labelling. Clicks alone
(the page's usual prompt) work at a fixed working size (256 px on the long side) and in
geodesic distance (steps weighted by image edges), so what a click takes stops at edges:

- afresh (the first click): windows of three sizes around it, in each the geodesic ball around
  the include clicks is the probable object; the answers are ranked by objectness (colours unlike
  a ring around the mask, boundary on image edges), like SAM's multimask output;
- a later click starts from the answer to the clicks before it (remembered per frame and clicks,
  bounded): the geodesic ball around the new click, sized by its distance to that answer's
  boundary (the simulated and the real user click in the middle of what is wrong), is flipped,
  every click is a hard seed, one GrabCut iteration settles the boundary; a change far from the
  click larger than 15 % of the answer (colour models relearnt from a region coloured like the
  other side) is dropped;
- the working answer is brought to full resolution with a guided filter on the grey image.

`masklog eval-clicks` on `davis16-train` (every 10th frame): see the segmenter's module doc.

Tracker: per object, per frame, at a reduced working resolution (600 px on the long side at most):

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
   CRF or graph cut), thresholded, and small stray components are dropped. Two guards against
   leaks are there but off until they show a gain on unseen clips (issue 18): a cap on the
   prior (`TrackerConfig.prior_ceiling`), so that pixels whose colour clearly says background
   can leave the mask, and a remake of a mask that grows well past the previous one carried by
   the flow (`leak_growth`) with a prior that lets colour add pixels only where it is clear.

Objects overlapping each other keep the pixels where their posterior is higher. A box prompt
conditions on what the segmenter finds in the box, unless the tracker could not even hold that on
its own frame (a speck of a box round plain background): then on the box itself.

Presence (issue 18): every tracked frame gets a score, 0..1 (`tracker.presence`, a logistic
model of cues: the colour log-likelihood ratio over the mask and over where the flow puts the
object, relative to the conditioning mask's; how decided the posterior is, relative to how
decided it is over the conditioning mask on its own frame when that is unusually low (a person's
box round plain background must not read as "absent" on the next frames); the mask's area
against the object's recent area and against where the flow puts it; how much of the previous
mask the flow carried out of the frame). Under `protocols.PRESENCE_THRESHOLD` the object is
absent on that frame (mask None: what the annotation interval counts) and nothing is learnt
from it. While enough of what still looks like the object is left it is followed as before
(fast motion, a partial cover); otherwise it is looked for where the flow carries its last
shape, with a weak prior so that colour decides, and found again when it comes back near there.
A conditioning mask on a later frame of the pass picks it up too. `scripts/eval_presence.py`
measures it on synthetic occlusions and exits.

A drift check (`TrackerConfig.drift_frames`, issue 18): a mask that slid onto look-alike
background is told by motion, not colour (it moves like its surroundings where the object had
moved apart from them), and the object is absent until it is re-found: something in reach of
its own motion that looks like it under the conditioning frames' colour model and moves apart
from its surroundings re-seeds the mask (`TrackerConfig.refind`). It lifts bmx-bumps and objects
that vanish for good, with no more false alarms on the synthetic occlusions and exits; figures
at the setting; `scripts/eval_presence.py --vanish 25` with it on and off is
docs/bench/presence_issue18_drift.json, `scripts/eval_tracker_cv.py --before main` with it on
(flowcolour@3) docs/bench/tracker_cv_issue18_drift.json: training mean J&F 0.758 -> 0.767
(bmx-bumps 0.356 -> 0.469, the other clips unchanged), vos 0.795 both.
flowcolour@4: a stopped object is not a drift in a panning view either (`TrackerConfig.stop_overlap`;
@3 checked for a stop in still views only), and a re-found object gives way to the other
objects' masks and to users' pixels on that frame, as every tracked object does (`_give_way`).

Measured with `scripts/eval_tracker_cv.py --before presence2` (issue 18; its output is
docs/bench/tracker_cv_issue18.json), first frame's mask given, 854x480: mean
J&F 0.795 on the three clips of ../shared/data/vos (0.94 blackswan, 0.69 car-shadow, 0.76
dog-agility) and 0.758 on the 12 DAVIS 2016 training clips (0.755 leave-one-out over all the
candidate settings there), at about 0.035 s a
frame for one object on two cores. The working resolution is the one setting that carried over
to unseen clips: 432 px gave 0.767 and 0.728, 720 and 854 px within 0.005 of 600 at up to twice
its time. Dense flow alone gives about 0.45, flow + GrabCut about 0.6 at under 8 frames/s.
"""
