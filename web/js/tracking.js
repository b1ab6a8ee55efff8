// Tracking from the page (T1–T9): requesting tracks of the selection, tracking an object again
// from a frame (a re-track replaces the rest of an ended track), and the object menu's entries
// for tracking and for reviewing tracked results in part.
//
// The functions at the top are pure (node --test tests/web/js/ tests them); `Tracking` gets
// from the page only what it uses.

import { acceptBody, isConflict } from "./conflicts.js";
import { keyLabel } from "./keymap.js";

/** +1 for a forward track, -1 for a backward one (as `Direction.step` on the server). */
export function directionStep(direction) {
  return direction === "backward" ? -1 : 1;
}

/** The newest ended track of `object` whose range covers `frame`, with the frame's offset in it. */
export function retrackable(tracks, object, frame) {
  for (const track of [...tracks].reverse()) {
    const r = track.request;
    if (track.status === "running" || !r.objects.includes(object)) continue;
    const offset = (frame - r.start) * directionStep(r.direction);
    if (offset >= 0 && offset < r.range) return { track, offset };
  }
  return null;
}

/** The frames of `object`'s unreviewed results (`proposals`: entries {object, frame}) from `frame` on, in the track's direction. */
export function framesFrom(proposals, object, frame, step) {
  return [...proposals].filter((e) => e.object === object && (e.frame - frame) * step >= 0).map((e) => e.frame);
}

export class Tracking {
  /**
   * page: {model, state, settings, send(body), canEdit(), toast(message, options),
   * savePreview(): Promise<boolean> (saves a SAM preview if there is one to save; false if that failed)}
   */
  constructor(page) {
    this.page = page;
  }

  /** Ask for a track (T1); the ack's promise, rejected (after a toast) if it is refused. */
  request(objects, direction, { start = this.page.state.frame, range = this.page.settings.range, interval = 0, algorithm = this.page.settings.algorithm, autosave = false, replaces = null } = {}) {
    const body = { type: "track_requested", media: this.page.model.media.media, objects, start, direction, range, interval, algorithm, autosave };
    if (replaces) body.replaces = replaces;
    return this.page.send(body);
  }

  /** Shift+T / Shift+Alt+T: the selection from this frame (T1, T4); a SAM preview is saved first (T3). */
  async trackSelection(direction) {
    const { model, state } = this.page;
    if (!this.page.canEdit()) return;
    if (!(await this.page.savePreview())) return;
    const objects = [...state.selected].filter((id) => model.objects.has(id));
    if (!objects.length) {
      this.page.toast("Select the objects to track (click them; Shift-click adds more).", { kind: "info" });
      return;
    }
    await this.request(objects, direction).catch(() => {});
  }

  /** The ended track of an object whose range covers this frame (for a re-track, T9). */
  retrackable(object) {
    return retrackable(this.page.model.tracks.values(), object, this.page.state.frame);
  }

  /** Track `object` again from this frame, replacing the rest of its last track there (T9). */
  retrack(object) {
    const found = this.retrackable(object);
    if (!found) return;
    const { track, offset } = found;
    const r = track.request;
    this.request([object], r.direction, {
      start: this.page.state.frame,
      range: Math.max(1, r.range - offset),
      interval: r.interval ?? 0,
      algorithm: r.algorithm ?? this.page.settings.algorithm,
      autosave: Boolean(r.autosave),
      replaces: track.id,
    });
  }

  /** +1 for a forward track, -1 for a backward one. */
  directionOf(track) {
    return directionStep(this.page.model.tracks.get(track)?.request.direction);
  }

  /** The object menu's tracking and review entries for object `id`, `selected` the selected objects. */
  menuItems(id, selected) {
    const { model, state } = this.page;
    const n = selected.length;
    const canEdit = this.page.canEdit();
    const [forward, backward] = [keyLabel("trackForward"), keyLabel("trackBackward")];
    // Which tracker runs (issue 14): the one the settings chose among those the server runs.
    const { settings } = this.page;
    const using = settings.capabilities?.trackers.find((t) => t.name === settings.algorithm)?.label;
    const by = using ? ` (${using})` : "";
    const items = [
      { label: `Track forwards${by}`, key: n === 1 ? forward : "", testid: "ctx-track-forward", disabled: !canEdit, action: () => this.request([id], "forward") },
      { label: `Track backwards${by}`, key: n === 1 ? backward : "", testid: "ctx-track-backward", disabled: !canEdit, action: () => this.request([id], "backward") },
      { label: `Track forwards (all selected)${by}`, key: n > 1 ? `${n} · ${forward}` : "", testid: "ctx-track-forward-all", disabled: !canEdit, action: () => this.request(selected, "forward") },
      { label: `Track backwards (all selected)${by}`, key: n > 1 ? `${n} · ${backward}` : "", testid: "ctx-track-backward-all", disabled: !canEdit, action: () => this.request(selected, "backward") },
    ];
    if (this.retrackable(id)) {
      items.push({ label: "Track again from this frame", testid: "ctx-retrack", disabled: !canEdit, action: () => this.retrack(id) });
    }
    // Review in part (T9): this object's tracked result on this frame, or from here on.
    const here = model.proposalsAt(state.frame).find((p) => p.object === id);
    if (here) {
      const later = () => framesFrom(model.proposals.get(here.track)?.values() ?? [], id, state.frame, this.directionOf(here.track));
      const send = (body) => this.page.send(body);
      items.push("-");
      items.push({ label: "Save tracked result on this frame", testid: "ctx-accept-frame", disabled: !canEdit,
        action: () => send({ type: "tracked_accepted", track: here.track, objects: [id], frames: [state.frame] }) });
      items.push({ label: "Save tracked results from this frame on", testid: "ctx-accept-rest", disabled: !canEdit,
        action: () => send({ type: "tracked_accepted", track: here.track, objects: [id], frames: later() }) });
      items.push({ label: "Discard tracked results from this frame on", testid: "ctx-discard-rest", disabled: !canEdit,
        action: () => send({ type: "tracked_discarded", track: here.track, objects: [id], frames: later() }) });
      // A conflict (issue 14): Save keeps the person's label; replacing it is asked for by name.
      if (isConflict(model, here.track, id, state.frame)) {
        items.push({ label: "Overwrite the person's label with the tracked result", testid: "ctx-overwrite-frame", disabled: !canEdit,
          action: () => send(acceptBody(here.track, { objects: [id], frames: [state.frame], overwrite: true })) });
      }
    }
    return items;
  }
}
