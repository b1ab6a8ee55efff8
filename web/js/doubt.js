// Doubtful tracked frames (issue 18): every tracked result carries the tracker's presence score,
// 0..1 (SAM 2's object score as a probability, the classical tracker's calibrated to the same
// scale). Under the threshold the object is absent and no result is given; between it and
// PRESENCE_DOUBT the result is given but doubtful, so review points at those frames first.
//
// The functions are pure (node --test tests/web/js/ tests them) and read only the page's model.

/** inference.protocols.PRESENCE_DOUBT (tests/web/test_js_units.py keeps the two equal). */
export const PRESENCE_DOUBT = 0.7;

/** The colour doubtful results are marked in, on the timeline and on the canvas. */
export const DOUBT_COLOUR = "#ffb74d";

/** Whether a result with this score is doubtful (a missing score is not). */
export function isDoubtful(score) {
  return typeof score === "number" && score < PRESENCE_DOUBT;
}

/** A track's unreviewed results scored under PRESENCE_DOUBT: [{object, frame, score}], by frame. */
export function doubtfulOf(model, track) {
  const out = [];
  for (const entry of model.proposals.get(track)?.values() ?? []) {
    if (model.objects.has(entry.object) && isDoubtful(entry.proposal.score)) out.push({ object: entry.object, frame: entry.frame, score: entry.proposal.score });
  }
  return out.sort((a, b) => a.frame - b.frame || (a.object < b.object ? -1 : a.object > b.object ? 1 : 0));
}

/** Where "next doubtful" goes from `frame`: the first doubtful frame after it, else the first. */
export function nextDoubtful(doubtful, frame) {
  if (!doubtful.length) return null;
  return (doubtful.find((d) => d.frame > frame) ?? doubtful[0]).frame;
}

/** "1 doubtful" / "3 doubtful" (frames, counted per object and frame). */
export function doubtText(n) {
  return `${n} doubtful`;
}
