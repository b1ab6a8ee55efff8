// The timeline under the editor: a row per object, every object (in the log's order, as in the
// object list; the rows scroll with the wheel when they do not fit), with a mark on every frame
// where it has a label, coloured by source; unreviewed tracked proposals lighter, running tracks
// as a faint band over their range; the current frame; where the others are. Click or drag to
// scrub, click an object's name to select it.

import { CONFLICT_COLOUR, conflictsOf } from "./conflicts.js";
import { DOUBT_COLOUR, doubtfulOf } from "./doubt.js";
import { SOURCE_COLOURS, classColour, userColour, withAlpha } from "./colours.js";
import { objectName } from "./objects.js";

const GUTTER = 118;
const HEADER = 18;
const ROW = 9;
const FOOTER = 15; // where the others are
const RIGHT = 8;

export class Timeline {
  /** page: {model, state, goto(frame), pickObject(id, additive), objectMenu(id, x, y)} */
  constructor(canvas, page) {
    this.canvas = canvas;
    this.page = page;
    this.rows = []; // every object's row: {id, y} (y: its top in the rows' scrolled space)
    this.scroll = 0; // how far the rows are scrolled (px)
    this._scrolledTo = null;
    this.others = [];
    this._pending = false;
    this._scrubbing = false;
    new ResizeObserver(() => this.invalidate()).observe(canvas);
    canvas.addEventListener("pointerdown", (e) => this._down(e));
    canvas.addEventListener("pointermove", (e) => {
      if (this._scrubbing) this._scrub(e);
    });
    const up = (e) => {
      if (!this._scrubbing) return;
      this._scrubbing = false;
      canvas.releasePointerCapture?.(e.pointerId);
    };
    canvas.addEventListener("pointerup", up);
    canvas.addEventListener("pointercancel", up);
    canvas.addEventListener(
      "wheel",
      (e) => {
        const max = this._maxScroll();
        if (max <= 0) return;
        e.preventDefault();
        const dy = e.deltaMode === 1 ? e.deltaY * (ROW + 1) : e.deltaY;
        this.scrollTo(this.scroll + dy);
      },
      { passive: false },
    );
    canvas.addEventListener("contextmenu", (e) => {
      const row = this._rowAt(e);
      e.preventDefault();
      if (row) this.page.objectMenu(row.id, e.clientX, e.clientY);
    });
  }

  invalidate() {
    if (this._pending) return;
    this._pending = true;
    requestAnimationFrame(() => {
      this._pending = false;
      this.draw();
    });
  }

  setPresence(others) {
    this.others = others;
    this.invalidate();
  }

  get frames() {
    return this.page.model.media?.frames ?? 1;
  }

  _x(frame, width) {
    const span = width - GUTTER - RIGHT;
    return GUTTER + (frame / this.frames) * span;
  }

  _frameAt(clientX) {
    const rect = this.canvas.getBoundingClientRect();
    const span = rect.width - GUTTER - RIGHT;
    const f = Math.floor(((clientX - rect.left - GUTTER) / span) * this.frames);
    return Math.max(0, Math.min(this.frames - 1, f));
  }

  _rowAt(e) {
    const rect = this.canvas.getBoundingClientRect();
    const y = e.clientY - rect.top - HEADER - 2;
    if (y < 0 || y > this._rowsHeight()) return null;
    return this.rows[Math.floor((y + this.scroll) / (ROW + 1))] ?? null;
  }

  /** The height the rows are shown in (between the ticks and the others' strip). */
  _rowsHeight() {
    return Math.max(0, (this.canvas.clientHeight || 0) - HEADER - 2 - FOOTER);
  }

  _maxScroll() {
    return Math.max(0, this.rows.length * (ROW + 1) - this._rowsHeight());
  }

  /** Scroll the rows to `px` (clamped). */
  scrollTo(px) {
    const next = Math.max(0, Math.min(this._maxScroll(), Math.round(px)));
    if (next !== this.scroll) {
      this.scroll = next;
      this.invalidate();
    }
  }

  /** Scroll so that object `id`'s row is in view. */
  reveal(id) {
    const i = this.rows.findIndex((row) => row.id === id);
    if (i < 0) return;
    const top = i * (ROW + 1);
    const height = this._rowsHeight();
    if (top < this.scroll) this.scrollTo(top);
    else if (top + ROW > this.scroll + height) this.scrollTo(top + ROW + 1 - height);
  }

  _down(e) {
    if (e.button !== 0 || !this.page.model.media) return;
    const rect = this.canvas.getBoundingClientRect();
    if (e.clientX - rect.left < GUTTER) {
      const row = this._rowAt(e);
      if (row) this.page.pickObject(row.id, e.shiftKey);
      return;
    }
    this._scrubbing = true;
    this.canvas.setPointerCapture?.(e.pointerId);
    this._scrub(e);
  }

  _scrub(e) {
    const frame = this._frameAt(e.clientX);
    if (frame !== this.page.state.frame) this.page.goto(frame);
  }

  /** Which objects get a row: all of them, in creation order (the object list's order). */
  _objects() {
    return [...this.page.model.objects.keys()];
  }

  draw() {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    g.font = "10px system-ui, sans-serif";
    g.textBaseline = "middle";
    const { model, state } = this.page;
    if (!model.media) return;
    const frames = this.frames;
    const span = width - GUTTER - RIGHT;
    const fw = span / frames;

    // Ticks.
    g.fillStyle = "#1b1f26";
    g.fillRect(0, 0, width, HEADER);
    const steps = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 50000, 100000];
    const step = steps.find((s) => s * fw >= 42) ?? 100000;
    g.strokeStyle = "#2c3340";
    g.fillStyle = "#6f7a8c";
    g.textAlign = "left";
    for (let f = 0; f < frames; f += step) {
      const x = Math.round(this._x(f, width)) + 0.5;
      g.beginPath();
      g.moveTo(x, HEADER - 5);
      g.lineTo(x, height);
      g.stroke();
      g.fillText(String(f), x + 3, 8);
    }

    // Rows: every object, scrolled; drawn clipped to the rows' band.
    const ids = this._objects();
    this.rows = ids.map((id, i) => ({ id, y: i * (ROW + 1) }));
    this.scroll = Math.max(0, Math.min(this.scroll, this._maxScroll()));
    const only = state.selected.size === 1 ? [...state.selected][0] : null;
    if (only !== this._scrolledTo) {
      // A single selection made elsewhere (list, canvas) scrolls its row into view.
      this._scrolledTo = only;
      if (only !== null) this.reveal(only);
    }
    const index = new Map(ids.map((id, i) => [id, i]));
    const band = this._rowsHeight();
    const top = HEADER + 2 - this.scroll;
    const first = Math.max(0, Math.floor(this.scroll / (ROW + 1)));
    const last = Math.min(ids.length - 1, Math.ceil((this.scroll + band) / (ROW + 1)));
    g.save();
    g.beginPath();
    g.rect(0, HEADER + 1, width, band + 1);
    g.clip();
    for (let i = first; i <= last; i++) {
      const y = top + i * (ROW + 1);
      const id = ids[i];
      if (state.selected.has(id)) {
        g.fillStyle = "rgba(76, 154, 255, 0.12)";
        g.fillRect(0, y - 0.5, width, ROW + 1);
      }
      g.fillStyle = classColour(model, id);
      g.fillRect(6, y + 2, 6, ROW - 4);
      g.fillStyle = state.selected.has(id) ? "#ffffff" : "#9aa5b8";
      g.textAlign = "left";
      g.fillText(ellipsis(g, objectName(model, id), GUTTER - 22), 17, y + ROW / 2 + 0.5);
    }

    const markWidth = Math.max(1, fw - (fw > 4 ? 1 : 0));
    // Running tracks: a faint band over what they will cover.
    for (const track of model.tracks.values()) {
      if (track.status !== "running") continue;
      const r = track.request;
      const [a, b] = trackSpan(r, frames);
      for (const object of r.objects) {
        const i = index.get(object);
        if (i === undefined) continue;
        g.fillStyle = "rgba(186, 104, 200, 0.13)";
        g.fillRect(this._x(a, width), top + i * (ROW + 1), (b - a + 1) * fw, ROW);
      }
    }
    // Proposals (lighter), then labels.
    g.fillStyle = withAlpha(SOURCE_COLOURS.tracked, 0.5);
    for (const cells of model.proposals.values()) {
      for (const entry of cells.values()) {
        const i = index.get(entry.object);
        if (i === undefined) continue;
        g.fillRect(this._x(entry.frame, width), top + i * (ROW + 1) + 2, markWidth, ROW - 4);
      }
    }
    for (const entry of model.labels.values()) {
      const i = index.get(entry.object);
      if (i === undefined || i < first || i > last) continue;
      g.fillStyle = SOURCE_COLOURS[entry.label.source] ?? "#9aa5b8";
      g.fillRect(this._x(entry.frame, width), top + i * (ROW + 1), markWidth, ROW);
    }
    // Review marks: a coloured frame round each marked cell (clipped to the rows, like them),
    // and the frames to mark on the header (after the clip). Doubtful results (a presence score
    // under PRESENCE_DOUBT, issue 18) in amber; conflicts (a result on a person's label, issue
    // 14) in red, drawn over them.
    const frameCells = (cellsOf, colour) => {
      const frames = new Set();
      g.strokeStyle = colour;
      g.lineWidth = 1.5;
      for (const track of model.proposals.keys()) {
        for (const c of cellsOf(model, track)) {
          frames.add(c.frame);
          const i = index.get(c.object);
          if (i !== undefined) g.strokeRect(this._x(c.frame, width) + 0.75, top + i * (ROW + 1) + 0.75, Math.max(1, markWidth - 1.5), ROW - 1.5);
        }
      }
      g.lineWidth = 1;
      return frames;
    };
    const doubtFrames = frameCells(doubtfulOf, DOUBT_COLOUR);
    const conflictFrames = frameCells(conflictsOf, CONFLICT_COLOUR);
    g.restore();
    g.fillStyle = DOUBT_COLOUR;
    for (const frame of doubtFrames) g.fillRect(this._x(frame, width), HEADER - 4, markWidth, 4);
    g.fillStyle = CONFLICT_COLOUR;
    for (const frame of conflictFrames) g.fillRect(this._x(frame, width), HEADER - 4, markWidth, 4);
    // A scroll bar when the rows do not all fit.
    const max = this._maxScroll();
    if (max > 0) {
      const length = Math.max(12, (band * band) / (ids.length * (ROW + 1)));
      const at = HEADER + 2 + ((band - length) * this.scroll) / max;
      g.fillStyle = "#3a4352";
      g.fillRect(GUTTER - 9, at, 3, length);
    }

    // The others, on the header (names of people on one frame together).
    const byFrame = new Map();
    for (const other of this.others) {
      const names = byFrame.get(other.frame) ?? [];
      if (!names.includes(other.user)) names.push(other.user);
      byFrame.set(other.frame, names);
    }
    g.fillStyle = "#181c22";
    g.fillRect(GUTTER - 4, height - FOOTER, width, FOOTER);
    for (const [frame, names] of byFrame) {
      const x = this._x(frame, width) + fw / 2;
      const y = height - FOOTER;
      g.fillStyle = userColour(names[0]);
      g.beginPath();
      g.moveTo(x, y + 2);
      g.lineTo(x + 5, y + 10);
      g.lineTo(x - 5, y + 10);
      g.closePath();
      g.fill();
      g.textAlign = "left";
      g.fillText(names.join(", "), x + 7, y + 7.5);
    }

    // The current frame.
    const cx = this._x(state.frame, width);
    g.fillStyle = fw > 12 ? "rgba(76, 154, 255, 0.10)" : "rgba(76, 154, 255, 0.22)";
    g.fillRect(cx, HEADER, Math.max(fw, 1), height - HEADER - FOOTER);
    g.strokeStyle = "#4c9aff";
    g.lineWidth = 1.5;
    g.beginPath();
    g.moveTo(cx + fw / 2, 14);
    g.lineTo(cx + fw / 2, height - FOOTER);
    g.stroke();
    g.lineWidth = 1;
    const text = String(state.frame);
    const tw = g.measureText(text).width + 8;
    g.fillStyle = "#4c9aff";
    const tx = Math.min(width - tw - 1, Math.max(GUTTER, cx + fw / 2 - tw / 2));
    g.fillRect(tx, 2, tw, 13);
    g.fillStyle = "#fff";
    g.textAlign = "center";
    g.fillText(text, tx + tw / 2, 9);
    g.textAlign = "left";

    // Gutter divider.
    g.fillStyle = "#323a48";
    g.fillRect(GUTTER - 4, 0, 1, height);
  }
}

/** The frames a track will cover, [low, high], clipped at the media's ends. */
export function trackSpan(request, frames) {
  const range = request.range ?? 30;
  if (request.direction === "backward") return [Math.max(0, request.start - range + 1), request.start];
  return [request.start, Math.min(frames - 1, request.start + range - 1)];
}

function ellipsis(g, text, max) {
  if (g.measureText(text).width <= max) return text;
  let s = text;
  while (s.length > 1 && g.measureText(`${s}…`).width > max) s = s.slice(0, -1);
  return `${s}…`;
}
