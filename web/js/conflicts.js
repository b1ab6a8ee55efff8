// People's labels are keyframes (issue 14): a tracker's result on a frame where a person's label
// is (drawn, clicked with SAM, imported, or a tracked result a person edited, saved as manual) is
// a conflict. It waits in review however the track was run (also when auto-labelling), Save
// keeps the person's label, and only the explicit "Overwrite people's labels" replaces it.
// The same rules as domain/state.py (`PEOPLE_SOURCES`, `is_persons`, `LabelState.conflicts`).
//
// The functions are pure (node --test tests/web/js/ tests them) and read only the page's model.

/** The label sources that are a person's work (domain.state.PEOPLE_SOURCES). */
export const PEOPLE_SOURCES = new Set(["manual", "sam", "imported"]);

/** The colour a conflicting proposal is drawn in, on the canvas and on the timeline. */
export const CONFLICT_COLOUR = "#ff5252";

/** Whether `label` (a model label, or null) is a person's: a keyframe no result replaces. */
export function isPersons(label) {
  return label != null && PEOPLE_SOURCES.has(label.source);
}

/** Whether a track keeps people's labels (every track requested since issue 14). */
export function keepsPeople(request) {
  return request?.keep_people === true;
}

/** A track's unreviewed results on cells that hold a person's label: [{object, frame}], by frame. */
export function conflictsOf(model, track) {
  const out = [];
  for (const entry of model.proposals.get(track)?.values() ?? []) {
    if (model.objects.has(entry.object) && isPersons(model.label(entry.object, entry.frame))) out.push({ object: entry.object, frame: entry.frame });
  }
  return out.sort((a, b) => a.frame - b.frame || (a.object < b.object ? -1 : a.object > b.object ? 1 : 0));
}

/** Whether the proposal of `track` for `object` on `frame` is a conflict. */
export function isConflict(model, track, object, frame) {
  const cells = model.proposals.get(track)?.values() ?? [];
  return isPersons(model.label(object, frame)) && [...cells].some((e) => e.object === object && e.frame === frame);
}

/** "1 conflict" / "3 conflicts". */
export function conflictText(n) {
  return `${n} conflict${n === 1 ? "" : "s"}`;
}

/** The review commands: Save (keeps people's labels) or Overwrite (replaces them too), for a
 * whole track or some of its cells. */
export function acceptBody(track, { objects = null, frames = null, overwrite = false } = {}) {
  const body = { type: "tracked_accepted", track };
  if (objects) body.objects = objects;
  if (frames) body.frames = frames;
  if (overwrite) body.overwrite = true;
  return body;
}
