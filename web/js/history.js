// The history panel: this media item's recent events, newest first, kept up to date from the
// socket (a track's streamed frames fold into one row). Clicking a row goes to its frame;
// double-clicking replays the labels as of that event.

import { SOURCE_COLOURS, SOURCE_NAMES } from "./colours.js";
import { shortActor } from "./panels.js";

const KEEP = 400;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function time(at) {
  const d = new Date(at * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** What an event did, for one row: {what, where, source, frame, object}. */
export function describe(event, count = 1, firstFrame = null) {
  const b = event.body;
  const short = (id) => (id ? String(id).slice(0, 8) : "");
  switch (b.type) {
    case "object_created":
      if (b.label) {
        return { what: `created object (${b.class_id})${b.name ? ` “${b.name}”` : ""} with its label`, where: `${b.object} @${b.label.frame}`, source: b.label.source, frame: b.label.frame, object: b.object };
      }
      return { what: `created object (${b.class_id})${b.name ? ` “${b.name}”` : ""}`, where: b.object, object: b.object };
    case "object_deleted":
      return { what: "deleted object", where: b.object, object: b.object };
    case "object_reclassed":
      return { what: `reclassed to ${b.class_id}`, where: b.object, object: b.object };
    case "object_renamed":
      return { what: b.name.trim() ? `renamed “${b.name.trim()}”` : "name cleared", where: b.object, object: b.object };
    case "prompt_added": {
      const n = b.points?.length ?? 0;
      const bits = [n ? `${n} click${n === 1 ? "" : "s"}` : null, b.box ? "box" : null, b.mask ? "mask" : null].filter(Boolean);
      return { what: `SAM prompt (${bits.join(", ")})`, where: `${b.object} @${b.frame}`, frame: b.frame, object: b.object };
    }
    case "segment_proposed":
      return { what: `SAM preview (${Number(b.score).toFixed(2)})`, where: `${b.object} @${b.frame}`, frame: b.frame, object: b.object };
    case "label_saved":
      return { what: b.edited ? "edited label" : "saved label", where: `${b.object} @${b.frame}`, source: b.source, frame: b.frame, object: b.object };
    case "label_deleted":
      return { what: "deleted label", where: `${b.object} @${b.frame}`, frame: b.frame, object: b.object };
    case "track_requested": {
      const arrow = b.direction === "backward" ? "\u2190" : "\u2192";
      const interpolate = b.algorithm === "interpolation" ? (b.autosave ? "auto-interpolate" : "interpolate") : null;
      return {
        what: `${interpolate ?? (b.autosave ? "auto-label" : b.replaces ? "re-track" : "track")} ${arrow} ${b.range ?? 30} fr`,
        where: `${b.objects.length === 1 ? b.objects[0] : `${b.objects.length} objects`} @${b.start}`,
        frame: b.start,
        object: b.objects[0],
      };
    }
    case "track_frame_produced": {
      const frames = firstFrame !== null && firstFrame !== b.frame ? `${Math.min(firstFrame, b.frame)}–${Math.max(firstFrame, b.frame)}` : `${b.frame}`;
      return { what: `tracked ${count} result${count === 1 ? "" : "s"}`, where: `@${frames}`, source: "tracked", frame: b.frame, object: b.object };
    }
    case "track_completed":
      return { what: `track completed (${b.frames} fr)`, where: short(b.track) };
    case "track_cancelled":
      return { what: "track cancelled", where: short(b.track) };
    case "track_failed":
      return { what: `track failed: ${b.reason}`, where: short(b.track) };
    case "tracked_accepted":
      return { what: "saved tracked results", where: short(b.track), source: "tracked" };
    case "tracked_discarded":
      return { what: "discarded tracked results", where: short(b.track) };
    case "undone":
    case "redone": {
      const n = b.changes.length;
      const first = b.changes[0];
      return {
        what: `${b.type === "undone" ? "undo" : "redo"} (${n} change${n === 1 ? "" : "s"}${b.conflicts ? `, ${b.conflicts} left alone` : ""})`,
        where: first?.frame !== undefined ? `${first.object} @${first.frame}` : first?.object ?? "",
        frame: first?.frame,
        object: first?.object,
      };
    }
    default:
      return { what: b.type.replaceAll("_", " "), where: "" };
  }
}

export class HistoryPanel {
  /**
   * page: {model, goto(frame), pickObject(id, additive), historyPage(media, after, limit) (the
   * REST answer), replayAt(seq), replayMark()}
   */
  constructor(page, root) {
    this.page = page;
    this.root = root;
    this.rows = []; // newest first: {seq, event, count, firstFrame, el}
    this.loaded = false;
    this.buffer = [];
    this.generation = 0;
  }

  /** Forget everything (another media item is being opened). */
  reset() {
    this.generation += 1;
    this.loaded = false;
    this.buffer = [];
    this.rows = [];
    this.root.replaceChildren();
  }

  /** Fetch the recent events of the media item (newest ~KEEP). */
  async load() {
    const generation = ++this.generation;
    const { model } = this.page;
    const media = model.media.media;
    this.loaded = false;
    this.buffer = [];
    this.rows = [];
    this.root.replaceChildren(el("div", "muted small-text empty", "loading…"));
    const head = model.seq;
    let window = 4000;
    let events = [];
    try {
      for (;;) {
        const after = Math.max(0, head - window);
        events = [];
        let cursor = after;
        while (cursor !== null && cursor !== undefined) {
          const batch = await this.page.historyPage(media, cursor, 1000);
          if (generation !== this.generation) return;
          events.push(...batch.events);
          if (events.length > 4 * KEEP) events = events.slice(-KEEP);
          cursor = batch.next_after;
        }
        if (events.length >= KEEP || after === 0 || window > 1_000_000) break;
        window *= 8;
      }
    } catch (error) {
      if (generation !== this.generation) return;
      this.root.replaceChildren(el("div", "error-text small-text empty", `history: ${error.message}`));
      return;
    }
    this.root.replaceChildren();
    const last = events.length ? events[events.length - 1].seq : 0;
    this.loaded = true;
    this._add(events.slice(-KEEP));
    this._add(this.buffer.filter((e) => e.seq > last));
    this.buffer = [];
    if (!this.rows.length) this.root.appendChild(el("div", "muted small-text empty", "Nothing yet."));
    this.page.replayMark();
  }

  /** Live events from the socket. */
  onEvents(events) {
    const stream = `media:${this.page.model.media?.media}`;
    const mine = events.filter((e) => e.stream === stream);
    if (!mine.length) return;
    if (!this.loaded) {
      this.buffer.push(...mine);
      return;
    }
    const top = this.rows[0]?.seq ?? 0;
    this._add(mine.filter((e) => e.seq > top));
    this.page.replayMark();
  }

  _add(events) {
    if (!events.length) return;
    const empty = this.root.querySelector(".empty");
    if (empty) empty.remove();
    for (const event of events) {
      const top = this.rows[0];
      if (
        top &&
        event.body.type === "track_frame_produced" &&
        top.event.body.type === "track_frame_produced" &&
        top.event.body.track === event.body.track
      ) {
        top.count += 1;
        top.event = event;
        top.seq = event.seq;
        this._fill(top);
        continue;
      }
      const row = { seq: event.seq, event, count: 1, firstFrame: event.body.frame ?? null, el: null };
      row.el = this._element(row);
      this.rows.unshift(row);
      this.root.insertBefore(row.el, this.root.firstChild);
    }
    while (this.rows.length > KEEP) this.rows.pop().el.remove();
  }

  _element(row) {
    const node = el("div", "ev");
    node.dataset.testid = "history-row";
    node.append(el("span", "seq"), el("span", "who"), el("span", "what"), el("span", "time"));
    node.addEventListener("click", () => {
      const d = describe(row.event, row.count, row.firstFrame);
      if (d.frame !== undefined && d.frame !== null) this.page.goto(d.frame);
      if (d.object && this.page.model.objects.has(d.object)) this.page.pickObject(d.object, false);
    });
    node.addEventListener("dblclick", () => this.page.replayAt(row.seq));
    this._fill(row, node);
    return node;
  }

  _fill(row, node = row.el) {
    const event = row.event;
    const d = describe(event, row.count, row.firstFrame);
    node.dataset.seq = String(row.seq);
    const [seq, who, what, at] = node.children;
    seq.textContent = String(row.seq);
    who.textContent = shortActor(event.actor);
    who.title = event.actor;
    what.replaceChildren(document.createTextNode(d.what));
    if (d.source) {
      const src = el("span", "src", SOURCE_NAMES[d.source] ?? d.source);
      src.style.background = SOURCE_COLOURS[d.source];
      what.appendChild(src);
    }
    if (d.where) what.appendChild(el("span", "where", d.where));
    what.title = `${d.what} ${d.where ?? ""}${d.source ? ` (${d.source})` : ""}`;
    at.textContent = time(event.at);
    at.title = new Date(event.at * 1000).toLocaleString();
  }
}
