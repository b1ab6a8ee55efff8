// The page's projection of one media item: a snapshot, then every event after it, applied in
// order — the same rules as domain/state.py, for what the page shows. Listeners get a "change"
// event after each batch.
//
// Label windows (issue 15): the socket's snapshot may hold full labels only for a window of frames
// and a "head" ({source, actor, model}, no shape) for every other label cell; the page loads the
// full labels of other frames as it goes there (GET …/labels?from&to, `mergeWindow`). To merge
// exactly, the model knows as of which position each frame's labels were loaded (`frameSeq`) and
// each cell written by an event (`cellSeq`): events are absolute writes, so one applies to a cell
// only if it is after what the cell is known as of, and a window answer replaces the cells of its
// frames except those an event wrote after the answer's position.

import { isPersons, keepsPeople } from "./conflicts.js";

const cellKey = (object, frame) => `${object}\u0000${frame}`;

/** Frames are loaded in aligned blocks of this many (the hello's window and each fetch; the
 * server keeps labels in blocks of the same size). Playback fetches the next block ahead. */
export const LABEL_BLOCK = 64;
/** Replay answers are replayed on the server for each request: smaller windows answer sooner. */
export const REPLAY_BLOCK = 16;

/** The inclusive window of frames loaded around `frame`: the aligned block holding it (at most
 * MAX_LABEL_WINDOW = 512 frames on the server). */
export function labelsWindow(frame, block = LABEL_BLOCK) {
  const first = Math.floor(Math.max(0, frame) / block) * block;
  return [first, first + block - 1];
}

/** Whether a label (as in model.label) is a head: provenance only, its shape not loaded yet. */
export function isHead(label) {
  return label != null && label.shape === undefined;
}

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
    this.baseSeq = 0; // the snapshot's position: what cells no event wrote are known as of
    this.allFrames = true; // the snapshot held every label (no window)
    this.frameSeq = new Map(); // frame -> position its full labels were loaded as of
    this.cellSeq = new Map(); // cellKey -> position of the event that last wrote it (deletions too)
    this.deletedAt = new Map(); // object id -> position it was deleted at
    this.epoch = (this.epoch ?? 0) + 1; // window answers asked for before a reset are dropped
    this.fetching = new Map(); // window fetches in flight: `${seq}:${from}` -> promise
    this._writeSeq = 0; // the event being applied
  }

  loadSnapshot(snapshot) {
    this.reset();
    this.seq = snapshot.seq;
    this.media = snapshot.media;
    for (const cls of snapshot.classes) this.classes.set(cls.class_id, cls);
    for (const [id, info] of Object.entries(snapshot.objects)) this.objects.set(id, info);
    for (const entry of snapshot.labels) this.labels.set(cellKey(entry.object, entry.frame), entry);
    this.baseSeq = snapshot.seq;
    if (snapshot.window) {
      this.allFrames = false;
      const [first, last] = snapshot.window;
      for (let f = first; f <= last; f++) this.frameSeq.set(f, snapshot.seq);
      this._loadHeads(snapshot.heads);
    }
    for (const track of snapshot.tracks) this.tracks.set(track.id, { ...track, lastFrame: null });
    for (const entry of snapshot.proposals) this._proposalsOf(entry.track).set(cellKey(entry.object, entry.frame), entry);
    this.undo = snapshot.undo;
    this.redo = snapshot.redo;
    this._changed(["snapshot"]);
  }

  /** Heads: 5 ints a cell (object, frame, source, actor, model indexes; -1 no model). */
  _loadHeads(heads) {
    if (!heads) return;
    const { objects, sources, actors, models, cells } = heads;
    for (let i = 0; i + 4 < cells.length; i += 5) {
      const object = objects[cells[i]];
      const frame = cells[i + 1];
      const label = { source: sources[cells[i + 2]], actor: actors[cells[i + 3]], model: cells[i + 4] < 0 ? null : models[cells[i + 4]] };
      this.labels.set(cellKey(object, frame), { object, frame, label });
    }
  }

  apply(events) {
    const kinds = new Set();
    for (const event of events) {
      if (event.seq <= this.seq) continue;
      this.seq = event.seq;
      const handler = this[`_on_${event.body.type}`];
      this._writeSeq = event.seq;
      try {
        if (handler) handler.call(this, event, event.body);
      } finally {
        this._writeSeq = 0;
      }
      kinds.add(event.body.type);
    }
    if (kinds.size) this._changed([...kinds], events);
  }

  /** Whether the full labels of `frame` are here (else only heads, and a fetch is due). */
  isLoaded(frame) {
    return this.allFrames || this.frameSeq.has(frame);
  }

  /** The position the cell's value is known as of. */
  _knownAt(key, frame) {
    return Math.max(this.cellSeq.get(key) ?? this.baseSeq, this.frameSeq.get(frame) ?? 0);
  }

  /**
   * Merge a window answer (GET …/labels?from&to[&seq]: {seq, from, to, labels}, the full labels
   * of frames from..to as of position `seq`). Frames loaded as of `seq` or later are left as they
   * are; in the others, each cell takes the answer's value (or goes, if the answer has none) unless
   * an event wrote it after `seq`. Returns whether anything was merged.
   */
  mergeWindow(answer) {
    const { seq, from, to, labels } = answer;
    // Older than the snapshot: its cells would not replace the snapshot's heads (never happens
    // within one snapshot's life, the server's position only grows).
    if (this.allFrames || seq < this.baseSeq) return false;
    const frames = new Set();
    for (let f = from; f <= to; f++) if ((this.frameSeq.get(f) ?? -1) < seq) frames.add(f);
    if (!frames.size) return false;
    const older = (key) => (this.cellSeq.get(key) ?? this.baseSeq) <= seq;
    for (const [key, entry] of this.labels) if (frames.has(entry.frame) && older(key)) this.labels.delete(key);
    for (const entry of labels) {
      const key = cellKey(entry.object, entry.frame);
      if (!frames.has(entry.frame) || !older(key)) continue;
      if ((this.deletedAt.get(entry.object) ?? -1) > seq) continue; // deleted since
      this.labels.set(key, entry);
    }
    for (const f of frames) this.frameSeq.set(f, seq);
    this._changed(["labels_loaded"]);
    return true;
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
    const seq = this._writeSeq;
    if (seq) {
      // A window answer loaded after this event holds the cell as it is now.
      if (seq <= this._knownAt(key, frame)) return;
      this.cellSeq.set(key, seq);
    }
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
    this.deletedAt.set(body.object, event.seq);
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

/**
 * Make sure `model` gets the full labels of `frame`: fetch the window around it (`labelsWindow`)
 * unless it is loaded or already being fetched, and merge the answer. `fetchWindow(media, seq,
 * from, to)` answers as GET /api/media/{media}/labels?from&to[&seq] (`seq` null: now). Returns
 * null when nothing is to be fetched, else a promise of whether the answer was merged (an answer
 * for a model reset meanwhile is dropped).
 */
export function ensureLabels(model, frame, fetchWindow, seq = null, block = LABEL_BLOCK) {
  const media = model.media;
  if (!media || frame < 0 || frame >= media.frames || model.isLoaded(frame)) return null;
  const [from, to] = labelsWindow(frame, block);
  const key = `${seq}:${from}`;
  const fetching = model.fetching;
  let pending = fetching.get(key);
  if (pending) return pending;
  const epoch = model.epoch;
  pending = Promise.resolve()
    .then(() => fetchWindow(media.media, seq, from, Math.min(to, media.frames - 1)))
    .then((answer) => model.epoch === epoch && model.mergeWindow(answer))
    .finally(() => fetching.delete(key));
  fetching.set(key, pending);
  return pending;
}
