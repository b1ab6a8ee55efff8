// Interpolation between keyframes (issue 14): the second method of automated labelling, next to
// tracking. A keyframe is a person's label (drawn, SAM, imported); the server fills the frames
// between two keyframes of an object (boxes, points and lines move linearly, polygons and masks
// morph) as a track whose results are reviewed like any track's and never replace a person's
// label. It is a track request with algorithm "interpolation" (docs/protocol.md).
//
// The functions at the top are pure (node --test tests/web/js/ tests them); `Interpolation` gets
// from the page only what it uses.

/** The method's name in a track request; every server offers it (it needs no model). */
export const INTERPOLATION = "interpolation";

/** Label sources that make a keyframe: people's labels, not a tracker's results. */
export const KEYFRAME_SOURCES = new Set(["manual", "sam", "imported"]);

/** Whether `label` (as in model.label) is a keyframe. */
export function isKeyframe(label) {
  return Boolean(label) && KEYFRAME_SOURCES.has(label.source);
}

/** The frames on which `object` has a keyframe, ascending. `label(object, frame)` as model.label. */
export function keyframes(frames, object, label) {
  return frames.filter((f) => isKeyframe(label(object, f))).sort((a, b) => a - b);
}

/** The first keyframe after `frame` (in `keyframeFrames`, ascending), or null. */
export function nextKeyframe(keyframeFrames, frame) {
  return keyframeFrames.find((f) => f > frame) ?? null;
}

/**
 * The track request (start, range) that interpolates `object` from `frame` to its next keyframe,
 * or null with the reason: it needs a label on `frame` and a keyframe after it.
 */
export function toNextKeyframe(labelledFrames, keyframeFrames, frame) {
  if (!labelledFrames.includes(frame)) return { request: null, reason: "no label on this frame to interpolate from" };
  const next = nextKeyframe(keyframeFrames, frame);
  if (next === null) return { request: null, reason: "no keyframe (a label drawn by hand) after this frame" };
  if (next === frame + 1) return { request: null, reason: "the next keyframe is on the next frame: nothing lies between" };
  return { request: { start: frame, range: next - frame + 1 }, reason: null };
}

/** The request that interpolates over all of `object`'s keyframes: from its first label to its last keyframe. */
export function acrossKeyframes(labelledFrames, keyframeFrames) {
  if (!labelledFrames.length || !keyframeFrames.length) return null;
  const first = Math.min(...labelledFrames);
  const last = Math.max(...keyframeFrames);
  if (last - first < 2) return null;
  return { start: first, range: last - first + 1 };
}

export class Interpolation {
  /** page: {model, state, canEdit(), track(objects, direction, options): Promise} */
  constructor(page) {
    this.page = page;
  }

  _frames(id) {
    const { model } = this.page;
    const labelled = model.labelFrames(id);
    return { labelled, keys: keyframes(labelled, id, (o, f) => model.label(o, f)) };
  }

  /** Interpolate `id` from this frame to its next keyframe; results wait for review. */
  toNext(id) {
    const { labelled, keys } = this._frames(id);
    const { request } = toNextKeyframe(labelled, keys, this.page.state.frame);
    if (!request) return Promise.resolve(null);
    return this.page.track([id], "forward", { ...request, interval: 0, algorithm: INTERPOLATION, autosave: false }).catch(() => null);
  }

  /** Interpolate `id` between all its keyframes; results wait for review. */
  across(id) {
    const { labelled, keys } = this._frames(id);
    const request = acrossKeyframes(labelled, keys);
    if (!request) return Promise.resolve(null);
    return this.page.track([id], "forward", { ...request, interval: 0, algorithm: INTERPOLATION, autosave: false }).catch(() => null);
  }

  /** The object menu's interpolation entries for object `id`. */
  menuItems(id) {
    const canEdit = this.page.canEdit();
    const { labelled, keys } = this._frames(id);
    const next = toNextKeyframe(labelled, keys, this.page.state.frame);
    const across = acrossKeyframes(labelled, keys);
    return [
      {
        label: next.request ? "Interpolate to next keyframe" : `Interpolate to next keyframe (${next.reason})`,
        testid: "ctx-interpolate-next",
        disabled: !canEdit || !next.request,
        action: () => this.toNext(id),
      },
      {
        label: "Interpolate between all keyframes",
        key: across ? `${keys.length} keys` : "",
        testid: "ctx-interpolate-all",
        disabled: !canEdit || !across,
        action: () => this.across(id),
      },
    ];
  }
}
