// The page's projection of one media item: a snapshot, then every event after it, applied in
// order — the same rules as domain/state.py, for what the page shows. Listeners get a "change"
// event after each batch.

import { isPersons, keepsPeople } from "./conflicts.js";

const cellKey = (object, frame) => `${object}\u0000${frame}`;

export class MediaModel extends EventTarget {
  constructor() {
    super();
    this.reset();
  }

  reset() {
    this.seq = 0;
    this.media = null;
    this.classes = new Map(); // class id -> ClassAdded
    this.objects = new Map(); // object id -> {media, class_id, created_by, name?}
    this.labels = new Map(); // cellKey -> {object, frame, label}
    this.proposals = new Map(); // track id -> Map(cellKey -> {object, frame, proposal})
    this.tracks = new Map(); // track id -> {id, actor, request, status, produced, reason, lastFrame}
    this.segments = new Map(); // prompt id -> {event, body}
    this.prompts = new Map(); // prompt id -> event
    this.undo = 0;
    this.redo = 0;
  }

  loadSnapshot(snapshot) {
    this.reset();
    this.seq = snapshot.seq;
    this.media = snapshot.media;
    for (const cls of snapshot.classes) this.classes.set(cls.class_id, cls);
    for (const [id, info] of Object.entries(snapshot.objects)) this.objects.set(id, info);
    for (const entry of snapshot.labels) this.labels.set(cellKey(entry.object, entry.frame), entry);
    for (const track of snapshot.tracks) this.tracks.set(track.id, { ...track, lastFrame: null });
    for (const entry of snapshot.proposals) this._proposalsOf(entry.track).set(cellKey(entry.object, entry.frame), entry);
    this.undo = snapshot.undo;
    this.redo = snapshot.redo;
    this._changed(["snapshot"]);
  }

  apply(events) {
    const kinds = new Set();
    for (const event of events) {
      if (event.seq <= this.seq) continue;
      this.seq = event.seq;
      const handler = this[`_on_${event.body.type}`];
      if (handler) handler.call(this, event, event.body);
      kinds.add(event.body.type);
    }
    if (kinds.size) this._changed([...kinds], events);
  }

  _changed(kinds, events = []) {
    this.dispatchEvent(new CustomEvent("change", { detail: { kinds, events } }));
  }

  // ---- queries ------------------------------------------------------------------------------

  label(object, frame) {
    return this.labels.get(cellKey(object, frame))?.label ?? null;
  }

  labelsAt(frame) {
    const out = [];
    for (const entry of this.labels.values()) if (entry.frame === frame && this.objects.has(entry.object)) out.push(entry);
    return out;
  }

  proposalsAt(frame) {
    const out = [];
    for (const [track, cells] of this.proposals) {
      for (const entry of cells.values()) if (entry.frame === frame && this.objects.has(entry.object)) out.push({ ...entry, track });
    }
    return out;
  }

  /** Frames on which an object has a label (for the timeline). */
  labelFrames(object) {
    const frames = [];
    for (const entry of this.labels.values()) if (entry.object === object) frames.push(entry.frame);
    return frames.sort((a, b) => a - b);
  }

  pendingCount(track) {
    return this.proposals.get(track)?.size ?? 0;
  }

  classOf(object) {
    const info = this.objects.get(object);
    return info ? this.classes.get(info.class_id) : null;
  }

  /** Counts of current labels by source (the audit strip). */
  sourceCounts() {
    const counts = { manual: 0, sam: 0, tracked: 0, imported: 0 };
    for (const entry of this.labels.values()) if (this.objects.has(entry.object)) counts[entry.label.source] += 1;
    return counts;
  }

  // ---- events -------------------------------------------------------------------------------

  _proposalsOf(track) {
    let cells = this.proposals.get(track);
    if (!cells) {
      cells = new Map();
      this.proposals.set(track, cells);
    }
    return cells;
  }

  _setLabel(object, frame, label) {
    const key = cellKey(object, frame);
    if (label === null) this.labels.delete(key);
    else this.labels.set(key, { object, frame, label });
  }

  _on_class_added(event, body) {
    if (this.media && body.project === this.media.project) this.classes.set(body.class_id, body);
  }

  _on_object_created(event, body) {
    const info = { media: body.media, class_id: body.class_id, created_by: event.actor };
    if (body.name) info.name = body.name.trim();
    this.objects.set(body.object, info);
    const first = body.label;
    if (first) {
      // An object created with its first label (one event, one undo step).
      this._setLabel(body.object, first.frame, {
        written_by: event.id, shape: first.shape, source: first.source, actor: event.actor, model: first.model ?? null,
        prompt: first.prompt ?? null, track: null, score: first.score ?? null, edited: null,
      });
    }
  }

  _on_object_deleted(event, body) {
    this.objects.delete(body.object);
    for (const [key, entry] of this.labels) if (entry.object === body.object) this.labels.delete(key);
  }

  _on_object_reclassed(event, body) {
    const info = this.objects.get(body.object);
    if (info) this.objects.set(body.object, { ...info, class_id: body.class_id });
  }

  _on_object_renamed(event, body) {
    const info = this.objects.get(body.object);
    if (!info) return;
    const name = String(body.name ?? "").trim();
    const { name: _old, ...rest } = info;
    this.objects.set(body.object, name ? { ...rest, name } : rest);
  }

  _on_prompt_added(event) {
    this.prompts.set(event.id, event);
  }

  _on_segment_proposed(event, body) {
    this.segments.set(body.prompt, { event, body });
  }

  _on_label_saved(event, body) {
    if (!this.objects.has(body.object)) return;
    this._setLabel(body.object, body.frame, {
      written_by: event.id,
      shape: body.shape,
      source: body.source,
      actor: event.actor,
      model: body.model ?? null,
      prompt: body.prompt ?? null,
      track: null,
      score: body.score ?? null,
      edited: body.edited ?? null,
    });
  }

  _on_label_deleted(event, body) {
    this._setLabel(body.object, body.frame, null);
  }

  _on_track_requested(event, body) {
    this.tracks.set(event.id, { id: event.id, actor: event.actor, request: body, status: "running", produced: 0, reason: null, lastFrame: null });
    if (body.replaces) {
      const step = body.direction === "forward" ? 1 : -1;
      const cells = this.proposals.get(body.replaces);
      if (cells) {
        for (const [key, entry] of cells) {
          if (body.objects.includes(entry.object) && (entry.frame - body.start) * step >= 0) cells.delete(key);
        }
      }
    }
  }

  _on_track_frame_produced(event, body) {
    const track = this.tracks.get(body.track);
    if (!track) return;
    track.produced += 1;
    track.lastFrame = body.frame;
    if (body.shape === null || !this.objects.has(body.object)) return;
    // A person's label is kept: an autosaving track's result there waits in review (issue 14).
    if (track.request.autosave && !(keepsPeople(track.request) && isPersons(this.label(body.object, body.frame)))) {
      this._setLabel(body.object, body.frame, {
        written_by: event.id, shape: body.shape, source: "tracked", actor: event.actor, model: body.model, prompt: null, track: body.track, score: body.score,
      });
    } else {
      this._proposalsOf(body.track).set(cellKey(body.object, body.frame), {
        object: body.object, frame: body.frame, proposal: { written_by: event.id, shape: body.shape, score: body.score, model: body.model },
      });
    }
  }

  _end(body, status, reason = null) {
    const track = this.tracks.get(body.track);
    if (track) {
      track.status = status;
      track.reason = reason;
    }
  }

  _on_track_completed(event, body) {
    this._end(body, "completed");
  }

  _on_track_cancelled(event, body) {
    this._end(body, "cancelled");
  }

  _on_track_failed(event, body) {
    this._end(body, "failed", body.reason);
  }

  _selected(body) {
    const cells = this.proposals.get(body.track);
    if (!cells) return [];
    return [...cells.entries()].filter(
      ([, e]) => (body.objects == null || body.objects.includes(e.object)) && (body.frames == null || body.frames.includes(e.frame)),
    );
  }

  _on_tracked_accepted(event, body) {
    const cells = this.proposals.get(body.track);
    const keep = keepsPeople(this.tracks.get(body.track)?.request) && body.overwrite !== true;
    for (const [key, entry] of this._selected(body)) {
      cells.delete(key);
      if (!this.objects.has(entry.object)) continue;
      if (keep && isPersons(this.label(entry.object, entry.frame))) continue; // the person's label stays
      const p = entry.proposal;
      this._setLabel(entry.object, entry.frame, {
        written_by: event.id, shape: p.shape, source: "tracked", actor: event.actor, model: p.model, prompt: null, track: body.track, score: p.score,
      });
    }
  }

  _on_tracked_discarded(event, body) {
    const cells = this.proposals.get(body.track);
    for (const [key] of this._selected(body)) cells.delete(key);
  }

  _revert(event, body) {
    for (const change of body.changes) {
      if (change.type === "label") this._setLabel(change.object, change.frame, change.after);
      else if (change.type === "object") {
        if (change.after === null) this.objects.delete(change.object);
        else this.objects.set(change.object, change.after);
      } else {
        const cells = this._proposalsOf(change.track);
        const key = cellKey(change.object, change.frame);
        if (change.after === null) cells.delete(key);
        else cells.set(key, { object: change.object, frame: change.frame, proposal: change.after });
      }
    }
  }

  _on_undone(event, body) {
    this._revert(event, body);
  }

  _on_redone(event, body) {
    this._revert(event, body);
  }
}
