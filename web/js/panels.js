// The side panels and strips: ontology (classes, SAM wands), objects, tracks and review, who is
// here, the audit strip and the selected label's provenance. Each keeps its rows keyed by id and
// only touches what changed.

import { SOURCE_COLOURS, SOURCE_NAMES, classColour, userColour } from "./colours.js";
import { acceptBody, conflictText, conflictsOf, keepsPeople } from "./conflicts.js";
import { doubtText, doubtfulOf, nextDoubtful } from "./doubt.js";
import { keyLabel } from "./keymap.js";
import { trackSpan } from "./timeline.js";
import { objectName, renameCommand } from "./objects.js";
import { isHead } from "./model.js";

// The view buttons of an object row (issue 14, point 5): which ObjectView set each flips, its
// icons (on, off) and titles (on, off).
const svg = (body) => `<svg class="icon" viewBox="0 0 16 16" aria-hidden="true">${body}</svg>`;
const EYE = svg('<path d="M8 3.5C4.4 3.5 1.7 6.2 1 8c.7 1.8 3.4 4.5 7 4.5s6.3-2.7 7-4.5c-.7-1.8-3.4-4.5-7-4.5zm0 7.3A2.8 2.8 0 1 1 8 5.2a2.8 2.8 0 0 1 0 5.6z"/>');
const EYE_OFF = svg('<path d="M8 3.5C4.4 3.5 1.7 6.2 1 8c.7 1.8 3.4 4.5 7 4.5s6.3-2.7 7-4.5c-.7-1.8-3.4-4.5-7-4.5z" opacity=".35"/><path d="M2.2 1.5l12.3 12.3-1 1L1.2 2.5z"/>');
const LOCK = svg('<path d="M4.5 7V5a3.5 3.5 0 0 1 7 0v2h1v7h-9V7zm1.6 0h3.8V5a1.9 1.9 0 0 0-3.8 0z"/>');
const UNLOCK = svg('<path d="M4.5 7V5a3.5 3.5 0 0 1 6.9-.8l-1.5.5A1.9 1.9 0 0 0 6.1 5v2h6.4v7h-9V7z" opacity=".55"/>');
const SOLO = svg('<circle cx="8" cy="8" r="3"/><path d="M8 1.5a6.5 6.5 0 1 0 0 13 6.5 6.5 0 0 0 0-13zm0 1.5a5 5 0 1 1 0 10A5 5 0 0 1 8 3z"/>');
const VIEW_BUTTONS = [
  { kind: "hidden", testid: "hide", on: EYE_OFF, off: EYE, title: ["Hidden here: show it", "Hide it in this browser"], action: "toggleHidden" },
  { kind: "locked", testid: "lock", on: LOCK, off: UNLOCK, title: ["Locked: unlock it", "Lock it: no edits from this page"], action: "toggleLocked" },
  { kind: "solo", testid: "solo", on: SOLO, off: SOLO, title: ["Soloed: show the others again", "Solo: show only this object (and other soloed ones)"], action: "toggleSolo" },
];

const WAND_SVG =
  '<svg class="icon" viewBox="0 0 16 16" aria-hidden="true"><path d="M2.5 13.5l7-7 1 1-7 7z"/>' +
  '<path d="M11 1.5l.6 1.6 1.6.6-1.6.6-.6 1.6-.6-1.6-1.6-.6 1.6-.6zM14 6l.4 1 1 .4-1 .4-.4 1-.4-1-1-.4 1-.4zM6.5 1l.4 1 1 .4-1 .4-.4 1-.4-1-1-.4 1-.4z"/></svg>';

const KIND_NAMES = {
  bitmask: "mask",
  polygon: "polygon",
  bbox: "box",
  rotated_bbox: "rot. box",
  polyline: "polyline",
  keypoint: "point",
  skeleton: "skeleton",
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function shortActor(actor) {
  if (!actor) return "";
  if (actor.startsWith("user:")) return actor.slice(5);
  if (actor.startsWith("model:")) return actor.slice(6).split("@")[0];
  return actor;
}

// ---- ontology ----------------------------------------------------------------------------------

export class OntologyPanel {
  /** page: {model, state, canSam(kind), pickClass(id), toggleSam(id)} */
  constructor(page, root) {
    this.page = page;
    this.root = root;
    this.rows = new Map();
    this.signature = "";
  }

  render() {
    const { model, state } = this.page;
    const classes = [...model.classes.values()];
    const signature = classes.map((c) => `${c.class_id}:${c.color}:${c.shape}`).join("|");
    if (signature !== this.signature) {
      this.signature = signature;
      this.root.replaceChildren();
      this.rows.clear();
      classes.forEach((cls, i) => {
        const row = el("div", "class-row");
        row.dataset.testid = `class-${cls.class_id}`;
        row.title = `${cls.name} (${cls.shape})${i < 9 ? ` — key ${i + 1}` : ""}`;
        const key = el("span", "key", i < 9 ? String(i + 1) : "");
        const swatch = el("span", "swatch");
        swatch.style.background = cls.color;
        const name = el("span", "name", cls.name);
        const kind = el("span", "kind", KIND_NAMES[cls.shape] ?? cls.shape);
        const wand = el("button", "wand");
        wand.innerHTML = WAND_SVG;
        wand.dataset.testid = `wand-${cls.class_id}`;
        wand.disabled = !this.page.canSam(cls.shape);
        wand.title = wand.disabled
          ? `SAM cannot make ${cls.shape.replace("_", " ")} labels: draw them`
          : `SAM mode for this class (${keyLabel("toggleSam")})`;
        wand.addEventListener("click", (e) => {
          e.stopPropagation();
          this.page.toggleSam(cls.class_id);
        });
        row.addEventListener("click", () => this.page.pickClass(cls.class_id));
        row.append(key, swatch, name, kind, wand);
        this.root.appendChild(row);
        this.rows.set(cls.class_id, { row, wand });
      });
    }
    for (const [id, { row, wand }] of this.rows) {
      const active = id === state.activeClass;
      row.classList.toggle("active", active);
      const on = active && state.tool === "sam";
      wand.classList.toggle("on", on);
      wand.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }
}

// ---- objects -----------------------------------------------------------------------------------

export class ObjectsPanel {
  /**
   * page: {model, state, view (ObjectView), pickObject(id, additive), gotoObject(id),
   * objectMenu(id, x, y), toggleView(kind, id), rename(command)}
   */
  constructor(page, root, countEl) {
    this.page = page;
    this.root = root;
    this.countEl = countEl;
    this.rows = new Map(); // id -> {row, swatch, name, frames, here, buttons}
    this.editing = null; // {id, input} while a name is edited in place
    this.empty = el("div", "muted small-text empty", "No objects yet. Pick a class and draw, or use SAM.");
  }

  render() {
    const { model, state } = this.page;
    const counts = new Map();
    const here = new Set();
    for (const entry of model.labels.values()) {
      counts.set(entry.object, (counts.get(entry.object) ?? 0) + 1);
      if (entry.frame === state.frame) here.add(entry.object);
    }
    const proposedHere = new Set();
    for (const cells of model.proposals.values()) for (const e of cells.values()) if (e.frame === state.frame) proposedHere.add(e.object);

    for (const [id, row] of this.rows) {
      if (!model.objects.has(id)) {
        row.row.remove();
        this.rows.delete(id);
      }
    }
    let previous = null;
    for (const id of model.objects.keys()) {
      let row = this.rows.get(id);
      if (!row) {
        row = this._row(id);
        this.rows.set(id, row);
      }
      // Keep the log's order (creation order) in the DOM.
      const expected = previous ? previous.nextSibling : this.root.firstChild;
      if (expected !== row.row) this.root.insertBefore(row.row, expected);
      previous = row.row;
      const colour = classColour(model, id);
      if (row.colour !== colour) {
        row.swatch.style.background = colour;
        row.colour = colour;
      }
      const n = counts.get(id) ?? 0;
      const text = `${n} fr`;
      if (row.frames.textContent !== text) row.frames.textContent = text;
      const name = objectName(model, id);
      if (row.name.textContent !== name) {
        row.name.textContent = name;
        row.name.title = `${name} — object ${id}\nDouble-click or ${keyLabel("renameObject") || "F2"} to rename`;
      }
      const view = this.page.view;
      for (const button of VIEW_BUTTONS) {
        const on = view[button.kind].has(id);
        const b = row.buttons[button.kind];
        if (b.dataset.on !== String(on)) {
          b.innerHTML = on ? button.on : button.off;
          b.dataset.on = String(on);
        }
        b.classList.toggle("on", on);
        b.setAttribute("aria-pressed", on ? "true" : "false");
        const key = keyLabel(button.action);
        b.title = `${button.title[on ? 0 : 1]}${key ? ` (${key})` : ""}`;
      }
      row.row.classList.toggle("hidden-object", !view.isShown(id));
      row.row.classList.toggle("locked-object", view.isLocked(id));
      row.row.classList.toggle("selected", state.selected.has(id));
      row.here.className = here.has(id) ? "here on" : proposedHere.has(id) ? "here proposal" : "here";
      row.here.title = here.has(id) ? "labelled on this frame" : proposedHere.has(id) ? "tracked proposal on this frame" : "";
    }
    // A single selection made elsewhere (canvas, timeline) scrolls its row into view.
    const only = state.selected.size === 1 ? [...state.selected][0] : null;
    if (only !== this.scrolledTo) {
      this.scrolledTo = only;
      this.rows.get(only)?.row.scrollIntoView({ block: "nearest" });
    }
    if (model.objects.size === 0) {
      if (!this.empty.isConnected) this.root.appendChild(this.empty);
    } else this.empty.remove();
    this.countEl.textContent = model.objects.size ? String(model.objects.size) : "";
  }

  _row(id) {
    const row = el("div", "object-row");
    row.dataset.testid = `object-${id}`;
    row.dataset.object = id;
    const swatch = el("span", "swatch");
    const name = el("span", "oid", "");
    name.dataset.testid = `object-name-${id}`;
    const here = el("span", "here");
    const frames = el("span", "frames", "");
    frames.title = "Double-click: go to the nearest label";
    const buttons = {};
    const tools = el("span", "object-tools");
    for (const button of VIEW_BUTTONS) {
      const b = el("button", `small ghost view-${button.testid}`);
      b.type = "button";
      b.dataset.testid = `object-${button.testid}-${id}`;
      b.addEventListener("click", (e) => {
        e.stopPropagation();
        this.page.toggleView(button.kind, id);
      });
      b.addEventListener("dblclick", (e) => e.stopPropagation());
      buttons[button.kind] = b;
      tools.append(b);
    }
    row.append(swatch, name, here, frames, tools);
    // Shift-click selects more objects, not the rows' text.
    row.addEventListener("mousedown", (e) => {
      if (e.shiftKey && !(e.target instanceof HTMLInputElement)) e.preventDefault();
    });
    row.addEventListener("click", (e) => {
      if (e.target instanceof HTMLInputElement) return;
      this.page.pickObject(id, e.shiftKey);
    });
    name.addEventListener("dblclick", (e) => {
      e.stopPropagation();
      this.startRename(id);
    });
    row.addEventListener("dblclick", (e) => {
      if (!(e.target instanceof HTMLInputElement)) this.page.gotoObject(id);
    });
    row.addEventListener("contextmenu", (e) => {
      e.preventDefault();
      this.page.objectMenu(id, e.clientX, e.clientY);
    });
    return { row, swatch, name, frames, here, buttons, colour: null };
  }

  /** Edit an object's name in place: Enter or leaving the field saves, Escape cancels. */
  startRename(id) {
    const row = this.rows.get(id);
    if (!row || !this.page.canEdit()) return false;
    if (this.editing) this.editing.input.blur();
    const { model } = this.page;
    const input = el("input", "name-input");
    input.type = "text";
    input.dataset.testid = "object-name-input";
    input.maxLength = 200;
    input.value = model.objects.get(id)?.name ?? "";
    input.placeholder = objectName(model, id);
    input.setAttribute("aria-label", `name of object ${id}`);
    let done = false;
    const finish = (save) => {
      if (done) return;
      done = true;
      this.editing = null;
      input.replaceWith(row.name);
      const command = save ? renameCommand(model, id, input.value) : null;
      if (command) this.page.rename(command);
    };
    input.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Enter") finish(true);
      else if (e.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
    input.addEventListener("click", (e) => e.stopPropagation());
    row.name.replaceWith(input);
    this.editing = { id, input };
    input.focus();
    input.select();
    return true;
  }
}

// ---- the selected label's provenance (C4) ------------------------------------------------------

/** `promptText(label)`: how the label's prompt reads (default: its id). */
export function renderLabelInfo(model, state, root, promptText = null) {
  root.replaceChildren();
  if (state.selected.size !== 1) return;
  const [id] = state.selected;
  if (!model.objects.has(id)) return;
  const head = el("div");
  const name = el("b", "", objectName(model, id));
  name.title = `object ${id}`;
  head.append(name, document.createTextNode(` · ${model.classOf(id)?.name ?? ""} · frame ${state.frame}: `));
  const label = model.label(id, state.frame);
  if (label) {
    const src = el("span", "src", SOURCE_NAMES[label.source] ?? label.source);
    src.style.background = SOURCE_COLOURS[label.source];
    head.append(src, document.createTextNode(` by ${shortActor(label.actor)}`));
    root.appendChild(head);
    const parts = [];
    if (label.model) parts.push(`model ${label.model}`);
    if (isHead(label)) parts.push("loading…"); // only its provenance is here yet (issue 15)
    if (label.prompt) parts.push(promptText?.(label) ?? `prompt ${label.prompt.slice(0, 8)}`);
    if (label.track) parts.push(`track ${label.track.slice(0, 8)}`);
    if (label.score !== null && label.score !== undefined) parts.push(`score ${Number(label.score).toFixed(2)}`);
    if (parts.length) root.appendChild(el("div", "", parts.join(" · ")));
  } else {
    const proposal = model.proposalsAt(state.frame).find((p) => p.object === id);
    head.append(document.createTextNode(proposal ? `tracked proposal (score ${Number(proposal.proposal.score).toFixed(2)}), unreviewed` : "no label"));
    root.appendChild(head);
  }
  const frames = model.labelFrames(id);
  if (frames.length) root.appendChild(el("div", "", `labelled on ${frames.length} frame${frames.length === 1 ? "" : "s"} (${frames[0]}–${frames[frames.length - 1]})`));
}

// ---- tracks and review -------------------------------------------------------------------------

/** Frames a track is expected to produce per object (after its start, clipped at the ends). */
export function expectedFrames(request, frames) {
  const [a, b] = trackSpan(request, frames);
  return Math.max(0, b - a);
}

export class TracksPanel {
  /**
   * page: {model, goto(frame), send(body), frame(): the frame shown, stale(): true while the socket is down (progress is not
   * live), placement(track): where a running track stands ({text, look, title} or null: work.js)}
   */
  constructor(page, root) {
    this.page = page;
    this.root = root;
    this.rows = new Map();
    this.empty = root.querySelector(".empty");
  }

  render() {
    const { model } = this.page;
    const frames = model.media?.frames ?? 1;
    const all = [...model.tracks.values()];
    const ended = all.filter((t) => t.status !== "running" && model.pendingCount(t.id) === 0);
    // Running tracks and those awaiting review, plus the last few that ended with nothing to review
    // (failed, cancelled, saved directly); newest first.
    const keep = new Set(all.filter((t) => t.status === "running" || model.pendingCount(t.id) > 0).map((t) => t.id));
    for (const t of ended.slice(-3)) keep.add(t.id);
    const shown = all.filter((t) => keep.has(t.id)).reverse();
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.row.remove();
        this.rows.delete(id);
      }
    }
    let previous = null;
    for (const track of shown) {
      let row = this.rows.get(track.id);
      if (!row) {
        row = this._row(track);
        this.rows.set(track.id, row);
      }
      const expected = previous ? previous.nextSibling : this.root.firstChild;
      if (expected !== row.row) this.root.insertBefore(row.row, expected);
      previous = row.row;
      this._update(row, track, frames);
    }
    if (this.empty) this.empty.hidden = shown.length > 0;
  }

  _row(track) {
    const row = el("div", "track-row");
    row.dataset.testid = `track-${track.id}`;
    row.dataset.track = track.id;
    const line = el("div", "line");
    const what = el("span", "what");
    const status = el("span", "status");
    status.dataset.testid = "track-status";
    // Where a running track is (issue 17): "queued #2", "on host:pid", "resumed on host:pid".
    const where = el("span", "where");
    where.dataset.testid = "track-worker";
    where.hidden = true;
    const jump = el("button", "small ghost jump", "\u21A6");
    jump.title = "Go to the start frame";
    jump.addEventListener("click", () => this.page.goto(track.request.start));
    line.append(what, where, status, jump);
    const progress = el("progress");
    progress.dataset.testid = "track-progress";
    progress.max = 1;
    progress.value = 0;
    const buttons = el("div", "line review-buttons");
    const cancel = el("button", "small danger", "Cancel");
    cancel.dataset.testid = "track-cancel";
    cancel.addEventListener("click", () => this.page.send({ type: "track_cancelled", track: track.id }));
    const accept = el("button", "small primary", "Save");
    accept.dataset.testid = "review-accept";
    accept.title = "Save the tracked results as labels";
    accept.addEventListener("click", () => this.page.send(acceptBody(track.id)));
    // People's labels are keyframes (issue 14): Save keeps them; replacing them is this explicit choice.
    const overwrite = el("button", "small danger", "Overwrite people's labels");
    overwrite.dataset.testid = "review-overwrite";
    overwrite.title = "Save every tracked result, replacing the people's labels on the conflicting frames";
    overwrite.addEventListener("click", () => this.page.send(acceptBody(track.id, { overwrite: true })));
    const conflicts = el("button", "small ghost conflicts");
    conflicts.dataset.testid = "track-conflicts";
    conflicts.addEventListener("click", () => {
      const first = conflictsOf(this.page.model, track.id)[0];
      if (first) this.page.goto(first.frame);
    });
    // Doubtful results (issue 18): each click goes to the next frame with one.
    const doubtful = el("button", "small ghost doubtful");
    doubtful.dataset.testid = "track-doubtful";
    doubtful.addEventListener("click", () => {
      const frame = nextDoubtful(doubtfulOf(this.page.model, track.id), this.page.frame());
      if (frame !== null) this.page.goto(frame);
    });
    const discard = el("button", "small", "Discard");
    discard.dataset.testid = "review-discard";
    discard.title = "Drop the tracked results";
    discard.addEventListener("click", () => this.page.send({ type: "tracked_discarded", track: track.id }));
    const pending = el("span", "status");
    const spacer = el("span", "spacer");
    spacer.style.flex = "1";
    row.append(line);
    // Buttons are in the DOM only while they apply (see _update).
    return { row, what, where, status, progress, cancel, accept, discard, pending, spacer, jump, buttons, overwrite, conflicts, doubtful, key: "" };
  }

  _update(row, track, frames) {
    const { model } = this.page;
    const r = track.request;
    const pending = model.pendingCount(track.id);
    // While the socket is down a running track's progress is only as of the last event received.
    const stale = track.status === "running" && Boolean(this.page.stale?.());
    const conflicts = conflictsOf(model, track.id);
    const doubtful = doubtfulOf(model, track.id);
    const placement = track.status === "running" ? this.page.placement?.(track.id) ?? null : null;
    this._where(row, placement);
    const key = `${track.status}|${track.produced}|${pending}|${track.reason}|${stale}|${conflicts.map((c) => `${c.object}@${c.frame}`).join(",")}|${doubtful.length}`;
    if (row.key === key) return;
    row.key = key;
    const first = objectName(model, r.objects[0]);
    const objects = r.objects.length === 1 ? first : `${first} +${r.objects.length - 1}`;
    const arrow = r.direction === "backward" ? "\u2190" : "\u2192";
    row.what.textContent = `${arrow} ${objects} · from ${r.start}${r.algorithm === "interpolation" ? " · interpolated" : ""}${r.autosave ? " · auto" : ""} · ${shortActor(track.actor)}`;
    row.what.title = `${r.direction} ${r.range} frames from ${r.start}, ${r.algorithm}${r.interval ? `, interval ${r.interval}` : ""}${r.autosave ? ", saved directly" : ""}${r.replaces ? `, replaces ${r.replaces.slice(0, 8)}` : ""}\ntrack ${track.id}`;
    const total = Math.max(1, r.objects.length * expectedFrames(r, frames));
    const done = track.status === "completed" ? total : Math.min(total, track.produced);
    row.progress.max = total;
    row.progress.value = done;
    row.progress.title = `${track.produced} / ${total} frames produced`;

    let status = track.status;
    if (track.status === "running") status = `${Math.round((100 * done) / total)}%`;
    else if (track.status === "failed") status = `failed: ${track.reason ?? "unknown reason"}`;
    else if (track.status === "cancelled") status = "cancelled";
    else if (track.status === "completed") status = r.autosave ? `done · ${track.produced} saved` : "completed";
    if (stale) status = `stale · ${status}`;
    row.status.textContent = status;
    row.status.className = `status ${track.status}`;
    row.status.title = stale ? `${status}: the connection is down, so this progress is as of the last event received` : status;
    row.row.classList.toggle("stale", stale);
    // Cancel while it runs; review once it has ended (T9). The progress bar stays, at its
    // final value, while the row is shown.
    const running = track.status === "running";
    row.pending.textContent = pending ? `${pending} ${running ? "proposed so far" : "to review"}` : "";
    const review = !running && pending > 0;
    const parts = [row.pending, row.spacer];
    if (running) parts.push(row.cancel);
    if (conflicts.length) {
      row.conflicts.textContent = conflictText(conflicts.length);
      const where = conflicts.slice(0, 8).map((c) => `${objectName(model, c.object)} on frame ${c.frame}`).join(", ") + (conflicts.length > 8 ? ", …" : "");
      row.conflicts.title = `Tracked results on frames with a person's label (${where}): ${keepsPeople(r) ? "Save keeps the person's label" : "this older track's Save replaces it"}. Click: go to the first.`;
      parts.splice(1, 0, row.conflicts);
    }
    if (doubtful.length) {
      row.doubtful.textContent = doubtText(doubtful.length);
      const where = doubtful.slice(0, 8).map((d) => `${objectName(model, d.object)} on frame ${d.frame} (${d.score.toFixed(2)})`).join(", ") + (doubtful.length > 8 ? ", …" : "");
      row.doubtful.title = `Results the tracker is unsure of (presence score under 0.7): ${where}. Click: go to the next.`;
      parts.splice(1, 0, row.doubtful);
    }
    if (review) parts.push(row.discard, row.accept);
    if (review && conflicts.length && keepsPeople(r)) parts.push(row.overwrite);
    row.accept.title = conflicts.length && keepsPeople(r) ? "Save the tracked results as labels, keeping people's labels on the conflicting frames" : "Save the tracked results as labels";
    row.buttons.replaceChildren(...parts);
    row.progress.className = track.status;
    const children = [row.row.firstChild, row.progress];
    if (running || review) children.push(row.buttons);
    row.row.replaceChildren(...children);
  }

  /** The row's "where" (shown while the track runs and the server says where it is). */
  _where(row, placement) {
    const where = row.where;
    where.hidden = !placement;
    const text = placement?.text ?? "";
    if (where.textContent !== text) where.textContent = text;
    where.title = placement?.title ?? "";
    where.className = `where${placement ? ` ${placement.look}` : ""}`;
  }
}

// ---- presence ----------------------------------------------------------------------------------

/** `me`: this socket's user; `goto(frame)`: where clicking someone else's chip goes. */
export function renderPresence(root, users, me, goto) {
  root.replaceChildren();
  const sorted = [...users].sort((a, b) => (a.user === me ? -1 : b.user === me ? 1 : a.user.localeCompare(b.user)));
  for (const u of sorted) {
    const chip = el("span", `who${u.user === me ? " me" : ""}`);
    chip.dataset.user = u.user;
    chip.dataset.frame = String(u.frame);
    const dot = el("span", "dot", u.user.slice(0, 1).toUpperCase());
    dot.style.background = userColour(u.user);
    chip.append(dot, document.createTextNode(`${u.user === me ? "you" : u.user} · ${u.frame}`));
    chip.title = u.user === me ? "you" : `${u.user} is on frame ${u.frame}: click to go there`;
    if (u.user !== me) chip.addEventListener("click", () => goto(u.frame));
    root.appendChild(chip);
  }
}

// ---- audit strip -------------------------------------------------------------------------------

export function renderAudit(model, root) {
  const counts = model.sourceCounts();
  if (!root.childElementCount) {
    for (const source of Object.keys(SOURCE_COLOURS)) {
      const chip = el("span", "chip");
      chip.dataset.testid = `audit-${source}`;
      chip.dataset.source = source;
      const dot = el("i");
      dot.style.background = SOURCE_COLOURS[source];
      const name = el("span", "", SOURCE_NAMES[source]);
      const n = el("b", "", "0");
      chip.append(dot, name, n);
      root.appendChild(chip);
    }
  }
  for (const chip of root.children) {
    const n = String(counts[chip.dataset.source] ?? 0);
    const b = chip.querySelector("b");
    if (b.textContent !== n) b.textContent = n;
    chip.title = `${n} current label${n === "1" ? "" : "s"} ${chip.dataset.source === "sam" ? "made with SAM" : chip.dataset.source}`;
  }
}
