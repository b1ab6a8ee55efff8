// The annotator's page: signs in, opens a media item over its socket, keeps the model fed and
// wires the editor, the timeline and the panels to it. Commands go out through `send`, which
// shows the server's message when one is refused. Keys are bound in keymap.js and tracking is
// in tracking.js; every module gets from the page only the data and actions it uses (see
// `setup`), never the page itself.

import { Api, Connection } from "./net.js";
import { MediaModel } from "./model.js";
import { Editor } from "./editor.js";
import { FrameImages } from "./frames.js";
import { Timeline } from "./timeline.js";
import { OntologyPanel, ObjectsPanel, TracksPanel, renderAudit, renderLabelInfo, renderPresence } from "./panels.js";
import { HistoryPanel } from "./history.js";
import { Replay } from "./replay.js";
import { SamSession, newObjectId, shapeMask } from "./sam.js";
import { AutoDialog, ContextMenu, Settings, toast } from "./dialogs.js";
import { SOURCE_COLOURS, classColour, labelColour, userColour } from "./colours.js";
import { handleKey, keyLabel } from "./keymap.js";
import { Tracking } from "./tracking.js";
import { AuditTable } from "./audit.js";
import { BrushSession, stepSize } from "./brush.js";
import { Provenance } from "./provenance.js";

const PLAY_SVG = '<svg class="icon" viewBox="0 0 16 16" aria-hidden="true"><path d="M4 3v10l9-5z"/></svg>';
const PAUSE_SVG = '<svg class="icon" viewBox="0 0 16 16" aria-hidden="true"><rect x="3.5" y="3" width="3" height="10"/><rect x="9.5" y="3" width="3" height="10"/></svg>';
const TOKEN_KEY = "masklog.token";
const $ = (id) => document.getElementById(id);

// Events whose effect is not tied to one frame: the shapes on screen are redrawn after them.
const GLOBAL_KINDS = new Set([
  "snapshot", "object_created", "object_deleted", "object_reclassed", "class_added", "track_requested",
  "tracked_accepted", "tracked_discarded", "undone", "redone",
]);

const KIND_LABELS = {
  bitmask: "mask (polygon)", polygon: "polygon", bbox: "box", rotated_bbox: "rotated box",
  polyline: "polyline", keypoint: "keypoint", skeleton: "skeleton",
};

function isEditable(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName.toLowerCase();
  return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
}

function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

class App {
  constructor() {
    this.api = null;
    this.me = null;
    this.model = new MediaModel();
    this.connection = null;
    this.editor = null;
    this.settings = new Settings();
    this.state = {
      frame: 0,
      selected: new Set(),
      activeClass: null,
      samMode: false,
      tool: "select", // select | sam | draw | brush | eraser
      replaySeq: null,
      samStatus: "idle",
      colourBySource: false,
      undo: 0,
      redo: 0,
      media: null,
      project: null,
      cursor: null,
    };
    this.samKinds = new Set(); // the shape kinds SAM can make, from the server (GET /api/me)
    this.projects = [];
    this.roster = [];
    this.images = null;
    this._ready = deferred();
    this._drawn = false;
    this._dirty = new Set();
    this._raf = 0;
    this._frameToken = 0;
    this._mode = "";
    this._playing = false;
    this._started = false;
  }

  get ready() {
    return this._ready.promise;
  }

  // ---- start ----------------------------------------------------------------------------------

  async start() {
    // A link carries the token after '#' (never sent to a server, so in no log); an old link in
    // the query still works. Either way it is kept in this browser and taken out of the address.
    const fragment = new URLSearchParams(location.hash.slice(1));
    const query = new URLSearchParams(location.search);
    let token = fragment.get("token") || query.get("token");
    if (token) {
      localStorage.setItem(TOKEN_KEY, token);
      fragment.delete("token");
      query.delete("token");
      const [search, hash] = [query.toString(), fragment.toString()];
      history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}${hash ? `#${hash}` : ""}`);
    } else token = localStorage.getItem(TOKEN_KEY);
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const value = $("token").value.trim();
      if (value) this.signIn(value);
    });
    $("logout").addEventListener("click", () => {
      localStorage.removeItem(TOKEN_KEY);
      this.connection?.close();
      location.replace(location.pathname);
    });
    if (!token) {
      this.showLogin();
      return;
    }
    await this.signIn(token);
  }

  showLogin(message = "") {
    $("app").hidden = true;
    $("login-screen").hidden = false;
    $("login-error").hidden = !message;
    $("login-error").textContent = message;
    $("token").focus();
  }

  async signIn(token) {
    const api = new Api(token);
    let me;
    try {
      me = await api.me();
    } catch (error) {
      if (error.status === 401) {
        localStorage.removeItem(TOKEN_KEY);
        this.showLogin("That token is not valid here.");
      } else this.showLogin(`The server did not answer: ${error.message}`);
      return false;
    }
    localStorage.setItem(TOKEN_KEY, token);
    this.api = api;
    this.me = me;
    this.samKinds = new Set(me.shape_families?.sam ?? []);
    $("login-screen").hidden = true;
    $("app").hidden = false;
    $("logout").title = `Signed in as ${me.name} (${me.role}): forget the token on this browser`;
    this.setup();
    try {
      this.projects = await api.projects();
    } catch (error) {
      toast(error.message, { code: error.code });
      this.projects = [];
    }
    this.fillProjects();
    const hash = this.parseHash();
    if (hash.media) this.openMedia(hash.media, hash.frame ?? 0);
    else {
      const first = this.projects.find((p) => p.media.length);
      if (first) this.setHash(first.media[0].media, 0, true);
      else {
        $("empty-stage").hidden = false;
        $("empty-stage").textContent = this.projects.length ? "This project has no media yet." : "You are not a member of any project yet.";
      }
    }
    return true;
  }

  /** Build the components once (the editor needs its canvas on screen). */
  setup() {
    if (this._started) return;
    this._started = true;
    const { model, state, settings } = this;
    const editor = (this.editor = new Editor($("stage")));
    // What each module may use of the page: its data and a few actions.
    const goto = (frame) => this.goto(frame);
    const pickObject = (id, additive) => this.pickObject(id, additive);
    const objectMenu = (id, x, y) => this.objectMenu(id, x, y);
    const send = (body, options) => this.send(body, options);
    const canEdit = () => this.canEdit();
    this.tracking = new Tracking({
      model, state, settings, send, canEdit, toast,
      savePreview: () => this.savePreview(),
    });
    const track = (objects, direction, options) => this.tracking.request(objects, direction, options);
    this.sam = new SamSession({
      model, state, settings, editor, send, canEdit, track, toast,
      selectOnly: (id) => this.selectOnly(id),
      selectionChanged: () => this.selectionChanged(),
      statusChanged: () => this.renderSamBar(),
    });
    this.timeline = new Timeline($("timeline"), { model, state, goto, pickObject, objectMenu });
    this.ontology = new OntologyPanel({
      model, state,
      canSam: (kind) => this.canSam(kind),
      pickClass: (id) => this.pickClass(id),
      toggleSam: (id) => this.toggleSam(id),
    }, $("classes"));
    this.objects = new ObjectsPanel({ model, state, pickObject, objectMenu, gotoObject: (id) => this.gotoObject(id) }, $("objects"), $("objects-count"));
    this.tracks = new TracksPanel({ model, goto, send }, $("tracks"));
    this.replay = new Replay({
      model, state, toast,
      labelsAt: (media, seq) => this.api.labelsAt(media, seq),
      historySeqs: () => this.history.seqs(),
      historyRows: () => this.history?.rows ?? [],
      changed: () => this.replayChanged(),
    });
    this.history = new HistoryPanel({
      model, goto, pickObject,
      historyPage: (media, after, limit) => this.api.history(media, after, limit),
      replayAt: (seq) => this.replay.show(seq),
      replayMark: () => this.replay.mark(),
    }, $("history"));
    this.menu = new ContextMenu($("context-menu"));
    this.settings.bind($("settings"), $("settings-open"));
    this.auto = new AutoDialog({ model, state, settings, track }, $("auto-dialog"), $("auto-open"));
    this.auditTable = new AuditTable({
      model, goto, toast,
      auditCounts: (media, by) => this.api.get(`/api/media/${encodeURIComponent(media)}/audit`, { by }),
    }, { by: $("audit-by"), table: $("audit-table"), history: $("history") });
    this.brush = new BrushSession({
      model, state, settings, editor, send, canEdit, toast, newObjectId,
      selectOnly: (id) => this.selectOnly(id),
    });
    this.provenance = new Provenance({
      model,
      cellHistory: (media, object, frame) => this.api.get(`/api/media/${encodeURIComponent(media)}/cells/${encodeURIComponent(object)}/${frame}`),
    });
    this.keyActions = this.keyboardActions();

    editor.addEventListener("prompt", (e) => {
      if (this.state.tool === "sam") this.sam.onPrompt(e.detail);
    });
    editor.addEventListener("draw", (e) => this.onDraw(e.detail.shape));
    editor.addEventListener("edit", (e) => this.onEdit(e.detail.id, e.detail.shape));
    editor.addEventListener("brush", (e) => this.onBrush(e.detail));
    editor.addEventListener("brushsize", (e) => this.setBrushSize(e.detail.step));
    editor.addEventListener("refused", (e) => toast(e.detail.message, { kind: "info" }));
    editor.addEventListener("pick", (e) => {
      const { id, additive } = e.detail;
      if (id === null) {
        if (!additive && this.state.selected.size) {
          this.state.selected.clear();
          this.selectionChanged();
        }
      } else this.pickObject(id, additive);
    });
    editor.addEventListener("cursor", (e) => {
      this.state.cursor = [e.detail.x, e.detail.y];
      this.connection?.presence(this.state.frame, this.state.cursor);
    });
    editor.addEventListener("view", () => this.renderCursors());

    this.model.addEventListener("change", (e) => this.onModelChange(e.detail));

    $("project-select").addEventListener("change", (e) => {
      e.target.blur();
      const project = this.projects.find((p) => p.id === e.target.value);
      this.fillMedia(project);
      if (project?.media.length) this.setHash(project.media[0].media, 0, true);
    });
    $("media-select").addEventListener("change", (e) => {
      e.target.blur(); // arrow keys step frames, not media items
      this.setHash(e.target.value, 0, true);
    });
    // Working on the canvas takes the keyboard focus (Enter, Escape, Delete go to the page).
    $("stage").addEventListener("pointerdown", () => $("stage").focus({ preventScroll: true }));
    window.addEventListener("hashchange", () => this.onHashChange());

    $("tool-select").addEventListener("click", () => this.selectTool());
    $("tool-brush").addEventListener("click", () => this.brushTool("brush"));
    $("tool-eraser").addEventListener("click", () => this.brushTool("eraser"));
    $("undo").addEventListener("click", () => this.undo());
    $("redo").addEventListener("click", () => this.redo());
    $("frame-first").addEventListener("click", () => this.goto(0));
    $("frame-prev").addEventListener("click", () => this.goto(this.state.frame - 1));
    $("frame-next").addEventListener("click", () => this.goto(this.state.frame + 1));
    $("frame-last").addEventListener("click", () => this.goto(Infinity));
    $("play").addEventListener("click", () => this.togglePlay());
    $("colour-by-source").addEventListener("change", (e) => {
      this.state.colourBySource = e.target.checked;
      this.invalidate("shapes");
    });
    $("sam-save").addEventListener("click", () => this.sam.save());
    $("sam-save-track").addEventListener("click", () => this.sam.save({ track: true }));
    $("sam-reset").addEventListener("click", () => this.sam.clearPoints());
    $("sam-new").addEventListener("click", () => this.newObject());
    $("sam-discard").addEventListener("click", () => this.sam.discard());
    // Registered after the editor's own window listener (Space to pan).
    window.addEventListener("keydown", (e) => this.onKey(e));
    window.addEventListener("resize", () => this.renderCursors());
    this.renderUndo();
    renderAudit(this.model, $("audit"));
  }

  // ---- projects, media, the URL ---------------------------------------------------------------

  fillProjects(selected = null) {
    const select = $("project-select");
    select.replaceChildren();
    for (const project of this.projects) {
      const option = document.createElement("option");
      option.value = project.id;
      option.textContent = project.name;
      select.appendChild(option);
    }
    const project = this.projects.find((p) => p.id === selected) ?? this.projects[0];
    if (project) select.value = project.id;
    this.fillMedia(project);
  }

  fillMedia(project, selected = null) {
    const select = $("media-select");
    select.replaceChildren();
    for (const media of project?.media ?? []) {
      const option = document.createElement("option");
      option.value = media.media;
      option.textContent = `${media.name} · ${media.kind.replace("_", " ")}`;
      select.appendChild(option);
    }
    if (selected) select.value = selected;
  }

  parseHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const frame = Number.parseInt(params.get("frame") ?? "", 10);
    return { media: params.get("media"), frame: Number.isFinite(frame) ? frame : null };
  }

  /** Point the URL at a media item and frame; `navigate` opens it (through hashchange). */
  setHash(media, frame, navigate = false) {
    const hash = `#media=${encodeURIComponent(media)}&frame=${frame}`;
    if (navigate) location.hash = hash;
    else history.replaceState(null, "", `${location.pathname}${location.search}${hash}`);
  }

  onHashChange() {
    const { media, frame } = this.parseHash();
    if (media && media !== this.state.media) this.openMedia(media, frame ?? 0);
    else if (frame !== null && frame !== this.state.frame) this.goto(frame);
  }

  async refreshProjects() {
    try {
      this.projects = await this.api.projects();
    } catch {
      return;
    }
    this.fillProjects(this.state.project);
    this.fillMedia(this.projects.find((p) => p.id === this.state.project), this.state.media);
  }

  // ---- opening a media item -------------------------------------------------------------------

  openMedia(mediaId, frame = 0) {
    this.stopPlay();
    if (this.connection) this.connection.close();
    if (this._drawn) this._ready = deferred();
    this._drawn = false;
    this.sam.clearPoints();
    this.sam.object = null;
    this.sam.created = false;
    this.brush.reset();
    this.menu.close();
    this.model.reset();
    const state = this.state;
    state.media = mediaId;
    state.frame = Math.max(0, frame | 0);
    state.selected.clear();
    this.replay.live();
    this.images = null;
    this.roster = [];
    this._frameToken += 1;
    this.editor.setShapes([]);
    this.editor.setImage(null, 0, 0);
    this.timeline.draw();
    this.history.reset();
    $("empty-stage").hidden = true;
    const project = this.projects.find((p) => p.media.some((m) => m.media === mediaId));
    if (project) {
      state.project = project.id;
      $("project-select").value = project.id;
      this.fillMedia(project, mediaId);
    }
    const connection = new Connection(mediaId, this.api.token, {
      lastSeq: () => this.model.seq || null,
      frame: () => this.state.frame,
    });
    this.connection = connection;
    const mine = (handler) => (e) => {
      if (this.connection === connection) handler(e.detail);
    };
    connection.addEventListener("status", mine((status) => this.renderConnection(status)));
    connection.addEventListener("welcome", mine(() => this.applyTool()));
    connection.addEventListener("snapshot", mine((snapshot) => this.onSnapshot(snapshot)));
    connection.addEventListener("events", mine((events) => this.model.apply(events)));
    connection.addEventListener("presence", mine((users) => this.onPresence(users)));
    connection.addEventListener("refused", mine((error) => this.onRefused(error)));
    connection.connect();
  }

  onSnapshot(snapshot) {
    const fresh = this.model.media?.media !== snapshot.media.media || !this.images;
    this.model.loadSnapshot(snapshot);
    const state = this.state;
    state.undo = this.model.undo;
    state.redo = this.model.redo;
    state.project = snapshot.media.project;
    this.renderUndo();
    if (!fresh) {
      this.history.load();
      return;
    }
    const media = this.model.media;
    this.images = new FrameImages(this.api, media.media, media.frames);
    state.frame = Math.min(state.frame, media.frames - 1);
    if (!this.model.classes.has(state.activeClass)) {
      state.activeClass = this.model.classes.keys().next().value ?? null;
      if (state.tool !== "select") state.tool = "select";
    }
    $("media-kind").textContent = `${media.kind.replace("_", " ")} · ${media.width}×${media.height}${media.fps ? ` · ${media.fps} fps` : ""}`;
    document.title = `${media.name} — masklog`;
    this.setHash(media.media, state.frame);
    this.applyTool();
    this.history.load();
    this.invalidate("all");
    this.loadFrame(state.frame, 1);
  }

  onRefused(error) {
    // A refused hello is answered with an error and then a close: one toast is enough.
    const now = performance.now();
    const repeat = error.code.startsWith("closed_") && now - (this._refusedAt ?? -1e9) < 2000;
    this._refusedAt = now;
    if (!repeat) toast(error.message, { code: error.code });
    if (!this.model.media) {
      $("empty-stage").hidden = false;
      $("empty-stage").textContent = `Media item '${this.state.media}' cannot be opened: ${error.message}`;
    }
    if (error.code === "closed_4001" || error.code === "unauthorized") {
      localStorage.removeItem(TOKEN_KEY);
      this.showLogin("Your token is no longer valid.");
    }
  }

  renderConnection(status) {
    const el = $("connection");
    const [text, look] = {
      open: ["connected", "connected"],
      connecting: ["connecting…", "reconnecting"],
      reconnecting: ["reconnecting…", "reconnecting"],
      closed: ["offline", "offline"],
    }[status] ?? ["offline", "offline"];
    el.textContent = text;
    el.dataset.state = look;
    if (status !== "open" && this.roster.length) this.onPresence([]);
  }

  // ---- model changes and rendering ------------------------------------------------------------

  onModelChange({ kinds, events }) {
    const state = this.state;
    const global = kinds.some((k) => GLOBAL_KINDS.has(k));
    let shapes = global;
    if (!shapes) {
      for (const event of events) {
        if (event.body.frame === state.frame) {
          shapes = true;
          break;
        }
      }
    }
    if (global) {
      // Objects that went away leave the selection.
      let pruned = false;
      for (const id of state.selected) {
        if (!this.model.objects.has(id) && !(this.sam.created && this.sam.object === id && !this.sam.seen)) {
          state.selected.delete(id);
          pruned = true;
        }
      }
      if (pruned) this.invalidate("info");
    }
    if (shapes) this.invalidate("shapes");
    this.invalidate("objects", "timeline", "audit", "info");
    if (kinds.some((k) => k.startsWith("track"))) this.invalidate("tracks");
    if (kinds.includes("snapshot") || kinds.includes("class_added")) this.invalidate("classes");
    if (kinds.includes("media_added")) this.refreshProjects();
    this.sam.check();
    this.brush.sync();
    if (!kinds.includes("snapshot")) this.history.onEvents(events);
    this.replay.setHead(this.model.seq);
    this.auditTable.onEvents();
  }

  invalidate(...parts) {
    for (const part of parts) this._dirty.add(part);
    if (!this._raf) this._raf = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this._raf = 0;
    const dirty = this._dirty;
    this._dirty = new Set();
    const all = dirty.has("all");
    if (!this.model.media) return;
    if (all || dirty.has("shapes")) this.renderShapes();
    if (all || dirty.has("classes")) this.ontology.render();
    if (all || dirty.has("objects")) this.objects.render();
    if (all || dirty.has("timeline")) this.timeline.draw();
    if (all || dirty.has("tracks")) this.tracks.render();
    if (all || dirty.has("audit")) renderAudit(this.model, $("audit"));
    if (all || dirty.has("info")) {
      renderLabelInfo(this.model, this.state, $("label-info"));
      this.renderEdited();
    }
    if (all || dirty.has("frame")) this.renderFrameLabel();
    if (all || dirty.has("shapes") || dirty.has("info")) this.renderSamBar();
  }

  /** The label info's line for a hand edit: what it edited (provenance.js). */
  renderEdited() {
    const { model, state } = this;
    if (state.selected.size !== 1 || !model.media) return;
    const [id] = state.selected;
    const line = this.provenance.describe(model.media.media, id, state.frame, model.label(id, state.frame), () => this.invalidate("info"));
    if (!line) return;
    const div = document.createElement("div");
    div.dataset.testid = "label-edited";
    div.textContent = line;
    $("label-info").appendChild(div);
  }

  renderFrameLabel() {
    const frames = this.model.media?.frames ?? 0;
    $("frame-label").textContent = `frame ${this.state.frame} / ${frames}`;
    $("frame-label").title = `frame index ${this.state.frame} of ${frames} frames (0–${Math.max(0, frames - 1)})`;
  }

  /** The current frame's shapes: labels, then unreviewed proposals (dashed) where there is none. */
  shapeItems() {
    const { model, state } = this;
    const f = state.frame;
    const bySource = state.colourBySource;
    const items = [];
    if (this.replay.active) {
      for (const entry of this.replay.labelsAt(f)) {
        items.push({
          id: entry.object, shape: entry.label.shape, color: labelColour(model, entry.object, entry.label.source, bySource),
          selected: state.selected.has(entry.object), dashed: false, text: entry.object,
        });
      }
      return items;
    }
    const labelled = new Set();
    for (const entry of model.labelsAt(f)) {
      labelled.add(entry.object);
      items.push({
        id: entry.object, shape: entry.label.shape, color: labelColour(model, entry.object, entry.label.source, bySource),
        selected: state.selected.has(entry.object), dashed: false, text: entry.object,
      });
    }
    const proposals = new Map();
    for (const p of model.proposalsAt(f)) if (!labelled.has(p.object)) proposals.set(p.object, p);
    for (const p of proposals.values()) {
      items.push({
        id: p.object, shape: p.proposal.shape, color: bySource ? SOURCE_COLOURS.tracked : classColour(model, p.object),
        selected: state.selected.has(p.object), dashed: true, text: `${p.object} · tracked`,
      });
    }
    return items;
  }

  renderShapes() {
    this.editor.setShapes(this.shapeItems());
    this.renderCursors();
  }

  // ---- frames ---------------------------------------------------------------------------------

  /** Go to a frame (clamped); resolves once its image is on the canvas. */
  goto(frame) {
    const media = this.model.media;
    if (!media) return Promise.resolve();
    const target = Math.max(0, Math.min(media.frames - 1, Math.round(Number.isFinite(frame) ? frame : frame > 0 ? media.frames - 1 : 0)));
    if (target === this.state.frame && this._drawn) return Promise.resolve();
    const direction = target - this.state.frame;
    this.state.frame = target;
    if (this.sam.active) this.sam.clearPoints();
    if (this.editor.drawing()) this.editor.cancel();
    this.brush.reset();
    this.setHash(media.media, target);
    this.renderFrameLabel();
    this.invalidate("objects", "timeline", "info");
    this.connection?.presence(target, null);
    return this.loadFrame(target, direction);
  }

  async loadFrame(frame, direction) {
    const token = ++this._frameToken;
    const media = this.model.media;
    let image;
    try {
      image = await this.images.get(frame);
    } catch (error) {
      if (token === this._frameToken) toast(error.message);
      return;
    }
    if (token !== this._frameToken || this.model.media !== media) return;
    this.editor.setImage(image, media.width, media.height);
    this.renderShapes();
    this.renderFrameLabel();
    this.images.preload(frame, direction);
    if (!this._drawn) {
      this._drawn = true;
      this.invalidate("all");
      this.editor.redraw();
      this._ready.resolve(true);
    }
  }

  togglePlay() {
    if (this._playing) this.stopPlay();
    else this.play();
  }

  async play() {
    const media = this.model.media;
    if (!media || media.frames < 2) return;
    this._playing = true;
    $("play").classList.add("active");
    $("play").innerHTML = PAUSE_SVG;
    if (this.state.frame >= media.frames - 1) await this.goto(0);
    const delay = 1000 / Math.min(30, media.fps || 10);
    while (this._playing && this.model.media === media && this.state.frame < media.frames - 1) {
      const started = performance.now();
      await this.goto(this.state.frame + 1);
      const wait = delay - (performance.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    this.stopPlay();
  }

  stopPlay() {
    this._playing = false;
    $("play").classList.remove("active");
    $("play").innerHTML = PLAY_SVG;
  }

  // ---- tools and classes ----------------------------------------------------------------------

  canEdit() {
    return Boolean(this.connection && this.connection.role !== "viewer" && this.state.replaySeq === null);
  }

  /** Whether SAM can make labels of this shape kind (the server says which: GET /api/me). */
  canSam(kind) {
    return this.samKinds.has(kind);
  }

  activeClassInfo() {
    return this.model.classes.get(this.state.activeClass) ?? null;
  }

  /** Click on a class: it becomes the active class; SAM if SAM mode is on and it can, else draw. */
  pickClass(classId) {
    const cls = this.model.classes.get(classId);
    if (!cls) return;
    if (classId !== this.state.activeClass) this.sam.end();
    this.state.activeClass = classId;
    const brushing = (this.state.tool === "brush" || this.state.tool === "eraser") && cls.shape === "bitmask";
    if (!brushing) this.state.tool = this.state.samMode && this.canSam(cls.shape) ? "sam" : "draw";
    this.applyTool();
  }

  /** The wand of a class (or Shift+A for the active class): SAM mode on or off. */
  toggleSam(classId = this.state.activeClass) {
    const cls = this.model.classes.get(classId);
    if (!cls) return;
    if (!this.canSam(cls.shape)) {
      toast(`SAM cannot make ${cls.shape.replace("_", " ")} labels (class ${cls.name}): draw them instead.`, { kind: "info" });
      return;
    }
    if (this.state.tool === "sam" && this.state.activeClass === classId) {
      this.sam.end();
      this.state.samMode = false;
      this.state.tool = "draw";
    } else {
      if (classId !== this.state.activeClass) this.sam.end();
      this.state.activeClass = classId;
      this.state.samMode = true;
      this.state.tool = "sam";
    }
    this.applyTool();
  }

  selectTool() {
    this.sam.end();
    this.editor.cancel();
    this.state.samMode = false;
    this.state.tool = "select";
    this.applyTool();
  }

  /** Put the editor in the mode the state asks for. */
  applyTool() {
    if (!this.editor) return;
    const state = this.state;
    const cls = this.activeClassInfo();
    let mode = { kind: "select" };
    if (this.canEdit() && cls) {
      if (state.tool === "sam" && this.canSam(cls.shape)) mode = { kind: "sam" };
      else if (state.tool === "sam") state.tool = "draw";
      if (state.tool === "brush" || state.tool === "eraser") {
        if (cls.shape === "bitmask") mode = { kind: "brush", erase: state.tool === "eraser", size: this.brush.size };
        else state.tool = "draw";
      }
      if (state.tool === "draw") {
        mode = { kind: "draw", shape: cls.shape === "bitmask" ? "polygon" : cls.shape, points: cls.skeleton?.points?.length ?? 0 };
      }
    }
    if (!cls && state.tool !== "select") state.tool = "select";
    const key = JSON.stringify(mode);
    if (key !== this._mode) {
      this._mode = key;
      this.editor.setMode(mode);
    }
    $("tool-select").classList.toggle("active", mode.kind === "select");
    $("tool-brush").classList.toggle("active", mode.kind === "brush" && !mode.erase);
    $("tool-eraser").classList.toggle("active", mode.kind === "brush" && Boolean(mode.erase));
    document.body.classList.toggle("read-only", !this.canEdit());
    $("auto-open").disabled = !this.canEdit();
    const indicator = $("tool-indicator");
    indicator.replaceChildren();
    const name = document.createElement("b");
    if (mode.kind === "sam") {
      name.textContent = cls.name;
      indicator.append("SAM · ", name);
    } else if (mode.kind === "draw") {
      name.textContent = cls.name;
      indicator.append(`Draw ${KIND_LABELS[cls.shape] ?? cls.shape} · `, name);
    } else if (mode.kind === "brush") {
      name.textContent = cls.name;
      indicator.append(`${mode.erase ? "Eraser" : "Brush"} ${mode.size} px · `, name);
    } else if (!this.canEdit() && this.connection?.role === "viewer") indicator.append("view only");
    else if (this.state.replaySeq !== null) indicator.append("replay (read-only)");
    if (this.model.media) this.ontology.render();
    this.renderSamBar();
    this.renderUndo();
  }

  renderSamBar() {
    const bar = $("sam-bar");
    const on = this.state.tool === "sam" && this._mode.includes('"sam"');
    bar.hidden = !on;
    if (!on) return;
    const sam = this.sam;
    const cls = this.activeClassInfo();
    const label = $("sam-class");
    label.replaceChildren();
    const dot = document.createElement("i");
    dot.style.background = cls?.color ?? "#888";
    label.append(dot, cls?.name ?? "");
    const status = $("sam-status");
    status.dataset.state = sam.status;
    const target = sam.target();
    let text;
    switch (sam.status) {
      case "waiting":
        text = "waiting for the model…";
        break;
      case "ready":
        text = `ready · score ${Number(sam.answer?.score ?? 0).toFixed(2)} · Enter saves`;
        break;
      case "empty":
        text = "nothing found · add a click on the object";
        break;
      default:
        if (!target) text = "click the object";
        else if (this.model.label(target, this.state.frame)) text = `click to refine ${target}`;
        else text = `click to segment ${target} here`;
    }
    status.textContent = text;
    const ready = sam.canSave();
    $("sam-save").disabled = !ready;
    $("sam-save-track").disabled = !ready;
    $("sam-new").disabled = !target && !sam.active;
    $("sam-reset").disabled = !sam.active;
    $("sam-discard").disabled = !sam.active && !sam.created;
  }

  renderUndo() {
    const { undo, redo } = this.state;
    $("undo-count").textContent = String(undo);
    $("redo-count").textContent = String(redo);
    $("undo").disabled = !this.canEdit() || undo === 0;
    $("redo").disabled = !this.canEdit() || redo === 0;
  }

  // ---- selection ------------------------------------------------------------------------------

  selectOnly(id) {
    this.state.selected.clear();
    if (id !== null && id !== undefined) this.state.selected.add(id);
    this.selectionChanged();
  }

  pickObject(id, additive = false) {
    const state = this.state;
    if (additive) {
      if (state.selected.has(id)) state.selected.delete(id);
      else state.selected.add(id);
    } else {
      state.selected.clear();
      state.selected.add(id);
      // The object's class becomes the active one, so SAM / drawing continue this object (S5).
      const classId = this.model.objects.get(id)?.class_id;
      if (classId && classId !== state.activeClass) {
        this.sam.end();
        state.activeClass = classId;
        if (state.tool !== "select") {
          const cls = this.model.classes.get(classId);
          const brushing = (state.tool === "brush" || state.tool === "eraser") && cls.shape === "bitmask";
          if (!brushing) state.tool = state.samMode && this.canSam(cls.shape) ? "sam" : "draw";
        }
        this.applyTool();
      }
    }
    this.selectionChanged();
  }

  selectionChanged() {
    this.invalidate("shapes", "objects", "timeline", "info");
    this.renderSamBar();
  }

  /** SAM: the next click starts a new object (the current one is kept if it has labels). */
  newObject() {
    this.sam.end();
    this.state.selected.clear();
    this.selectionChanged();
  }

  gotoObject(id) {
    const frames = this.model.labelFrames(id);
    if (!frames.length) return;
    const nearest = frames.reduce((best, f) => (Math.abs(f - this.state.frame) < Math.abs(best - this.state.frame) ? f : best), frames[0]);
    this.goto(nearest);
  }

  // ---- commands -------------------------------------------------------------------------------

  /** Send a command; a refusal shows the server's message. Resolves with the ack. */
  send(body, { id = crypto.randomUUID(), panoptic = false } = {}) {
    if (!this.connection) return Promise.reject(new Error("no media item is open"));
    const result = this.connection.command(body, { id, panoptic }).then(
      (ack) => {
        this.state.undo = ack.undo;
        this.state.redo = ack.redo;
        this.renderUndo();
        return ack;
      },
      (error) => {
        toast(error.message, { code: error.code });
        throw error;
      },
    );
    result.catch(() => {});
    return result;
  }

  onDraw(shape) {
    if (!this.canEdit()) return;
    const { model, state } = this;
    const cls = this.activeClassInfo();
    if (!cls) return;
    // A selected object of this class without a label here gets it (the same object on another
    // frame); otherwise the shape is a new object.
    let object = null;
    for (const id of state.selected) {
      if (model.objects.get(id)?.class_id === cls.class_id && !model.label(id, state.frame)) {
        object = id;
        break;
      }
    }
    let final = shape;
    if (cls.shape === "bitmask" && shape.type === "polygon") {
      const rle = shapeMask(shape, model.media.width, model.media.height);
      if (!rle) {
        toast("That outline covers no pixel.", { kind: "info" });
        return;
      }
      final = { type: "bitmask", rle };
    }
    const panoptic = Boolean(this.settings.panoptic && final.type === "bitmask");
    if (!object) {
      // A new object and its label: one event, one undo step.
      object = newObjectId(cls.class_id);
      const label = { frame: state.frame, shape: final, source: "manual" };
      this.send({ type: "object_created", object, media: model.media.media, class_id: cls.class_id, label }, { panoptic });
      this.selectOnly(object);
      return;
    }
    this.send({ type: "label_saved", object, frame: state.frame, shape: final, source: "manual" }, { panoptic });
  }

  onEdit(id, shape) {
    if (!this.canEdit() || !this.model.objects.has(id)) {
      this.invalidate("shapes");
      return;
    }
    // A hand edit names the label it started from (its provenance: "edited from ...").
    const body = { type: "label_saved", object: id, frame: this.state.frame, shape, source: "manual" };
    const edited = this.model.label(id, this.state.frame)?.written_by;
    if (edited) body.edited = edited;
    this.send(body).catch(() => this.invalidate("shapes"));
  }

  // ---- brush and eraser (brush.js) ------------------------------------------------------------

  /** B / E and the toolbar: the brush or the eraser, on a mask class (the selected mask's, the
   * active one, or the first of the ontology). */
  brushTool(tool) {
    if (!this.canEdit()) return;
    const { model, state } = this;
    const isMask = (cls) => cls?.shape === "bitmask";
    let cls = [...state.selected].map((id) => model.classOf(id)).find(isMask) ?? null;
    if (!cls && isMask(this.activeClassInfo())) cls = this.activeClassInfo();
    cls ??= [...model.classes.values()].find(isMask) ?? null;
    if (!cls) {
      toast("The brush paints masks, and this project has no mask class.", { kind: "info" });
      return;
    }
    if (cls.class_id !== state.activeClass) this.sam.end();
    else if (state.tool === "sam") this.sam.end();
    state.activeClass = cls.class_id;
    state.samMode = false;
    state.tool = tool;
    this.applyTool();
  }

  onBrush(detail) {
    const brush = this.brush;
    switch (detail.phase) {
      case "down":
        brush.begin(detail.x, detail.y, detail.erase);
        break;
      case "move":
        brush.move(detail.x, detail.y);
        break;
      case "up":
        brush.end();
        break;
      default:
        brush.cancel();
    }
  }

  setBrushSize(step) {
    this.brush.setSize(stepSize(this.brush.size, step));
    this.applyTool();
  }

  deleteLabels() {
    if (!this.canEdit()) return;
    const ids = [...this.state.selected].filter((id) => this.model.label(id, this.state.frame));
    if (!ids.length) {
      toast(this.state.selected.size ? "The selection has no label on this frame." : "Select an object first.", { kind: "info" });
      return;
    }
    for (const object of ids) this.send({ type: "label_deleted", object, frame: this.state.frame });
  }

  deleteObjects(ids = [...this.state.selected]) {
    if (!this.canEdit()) return;
    ids = ids.filter((id) => this.model.objects.has(id));
    if (!ids.length) {
      toast("Select an object first.", { kind: "info" });
      return;
    }
    for (const object of ids) {
      this.send({ type: "object_deleted", object });
      this.state.selected.delete(object);
    }
    if (ids.includes(this.sam.object)) this.sam.end();
    this.selectionChanged();
  }

  undo() {
    if (this.canEdit() && this.model.media) this.send({ type: "undo", media: this.model.media.media });
  }

  redo() {
    if (this.canEdit() && this.model.media) this.send({ type: "redo", media: this.model.media.media });
  }

  // ---- the object menu ------------------------------------------------------------------------

  /** SAM: save the preview if there is one to save (before tracking it, T3); false if that failed. */
  async savePreview() {
    if (this.state.tool !== "sam" || !this.sam.canSave()) return true;
    const object = this.sam.object;
    if (!(await this.sam.save())) return false;
    this.state.selected.add(object);
    return true;
  }

  objectMenu(id, x, y) {
    if (!this.model.objects.has(id)) return;
    if (!this.state.selected.has(id)) this.pickObject(id, false);
    const selected = [...this.state.selected].filter((o) => this.model.objects.has(o));
    const canEdit = this.canEdit();
    const items = this.tracking.menuItems(id, selected);
    items.push("-");
    items.push({ label: "Go to nearest label", testid: "ctx-goto", disabled: !this.model.labelFrames(id).length, action: () => this.gotoObject(id) });
    if (this.model.label(id, this.state.frame)) {
      items.push({ label: "Delete label on this frame", key: keyLabel("deleteLabels"), testid: "ctx-delete-label", disabled: !canEdit, action: () => this.send({ type: "label_deleted", object: id, frame: this.state.frame }) });
    }
    items.push({ label: "Delete object", key: keyLabel("deleteObjects"), testid: "ctx-delete-object", disabled: !canEdit, action: () => this.deleteObjects([id]) });
    this.menu.show(x, y, `${id} · frame ${this.state.frame}`, items);
  }

  // ---- presence -------------------------------------------------------------------------------

  onPresence(users) {
    this.roster = users;
    const me = this.connection?.user;
    renderPresence($("presence"), users, me, (frame) => this.goto(frame));
    this.timeline.setPresence(users.filter((u) => u.user !== me));
    this.renderCursors();
  }

  renderCursors() {
    const root = $("cursors");
    const me = this.connection?.user;
    const here = this.roster.filter((u) => u.user !== me && u.frame === this.state.frame && u.cursor && this.state.replaySeq === null);
    if (!here.length && !root.childElementCount) return;
    root.replaceChildren();
    if (!this.editor || !this.model.media) return;
    const rect = $("stage-wrap").getBoundingClientRect();
    for (const u of here) {
      const p = this.editor.imageToClient(u.cursor[0], u.cursor[1]);
      const x = p.x - rect.left;
      const y = p.y - rect.top;
      if (x < 0 || y < 0 || x > rect.width || y > rect.height) continue;
      const mark = document.createElement("div");
      mark.className = "remote";
      mark.style.left = `${x}px`;
      mark.style.top = `${y}px`;
      mark.style.color = userColour(u.user);
      const name = document.createElement("span");
      name.textContent = u.user;
      name.style.background = userColour(u.user);
      mark.appendChild(name);
      root.appendChild(mark);
    }
  }

  // ---- replay ----------------------------------------------------------------------------------

  replayChanged() {
    if (this.state.replaySeq !== null) {
      this.sam.clearPoints();
      this.editor.cancel();
    }
    this.applyTool();
    this.invalidate("shapes");
  }

  // ---- keyboard -------------------------------------------------------------------------------

  /** What each action of the keymap (keymap.js) does; false: it does not apply now. */
  keyboardActions() {
    const state = this.state;
    const step = (frames) => () => this.goto(state.frame + frames);
    return {
      undo: () => this.undo(),
      redo: () => this.redo(),
      previousFrame: step(-1),
      back10: step(-10),
      nextFrame: step(1),
      forward10: step(10),
      firstFrame: () => this.goto(0),
      lastFrame: () => this.goto(this.model.media.frames - 1),
      finish: (e) => {
        if (e.target instanceof HTMLButtonElement) return false; // the button's own click
        if (this.editor.drawing()) this.editor.finish();
        else if (state.tool === "sam") this.sam.save();
      },
      escape: () => {
        if (this.editor.cancel()) return;
        if (state.tool === "sam" && (this.sam.active || this.sam.created)) this.sam.discard();
        else if (state.tool !== "select") this.selectTool();
        else if (state.replaySeq !== null) this.replay.live();
        else if (state.selected.size) {
          state.selected.clear();
          this.selectionChanged();
        }
      },
      deleteLabels: () => this.deleteLabels(),
      deleteObjects: () => this.deleteObjects(),
      toggleSam: () => {
        let cls = this.activeClassInfo();
        if (!cls || !this.canSam(cls.shape)) cls = [...this.model.classes.values()].find((c) => this.canSam(c.shape)) ?? cls;
        if (cls) this.toggleSam(cls.class_id);
      },
      trackForward: () => this.tracking.trackSelection("forward"),
      trackBackward: () => this.tracking.trackSelection("backward"),
      pickClass: (e, key) => {
        const cls = [...this.model.classes.values()][Number(key.slice("Digit".length)) - 1];
        if (!cls) return false;
        this.pickClass(cls.class_id);
      },
      newObject: () => {
        if (state.tool !== "sam") return false;
        this.newObject();
      },
      fit: () => {
        this.editor.fit();
        this.renderCursors();
      },
      brush: () => this.brushTool("brush"),
      eraser: () => this.brushTool("eraser"),
      brushSmaller: () => {
        if (state.tool !== "brush" && state.tool !== "eraser") return false;
        this.setBrushSize(-1);
      },
      brushLarger: () => {
        if (state.tool !== "brush" && state.tool !== "eraser") return false;
        this.setBrushSize(1);
      },
    };
  }

  onKey(e) {
    if (isEditable(e.target) || document.querySelector("dialog[open]") || !this.model.media) return;
    if (this.menu.open) return;
    handleKey(e, this.keyActions);
  }
}

const app = new App();

window.masklog = {
  get api() {
    return app.api;
  },
  get model() {
    return app.model;
  },
  get connection() {
    return app.connection;
  },
  get editor() {
    return app.editor;
  },
  get state() {
    return app.state;
  },
  get ready() {
    return app.ready;
  },
  get settings() {
    return app.settings;
  },
  /** The shapes on the canvas now ({id, shape, color, selected, dashed, text}). */
  shown: () => app.editor?.items ?? [],
  goto: (frame) => app.goto(frame),
  select: (ids) => {
    app.state.selected.clear();
    for (const id of ids) app.state.selected.add(id);
    app.selectionChanged();
  },
  send: (body, options) => app.send(body, options),
  app,
};

app.start().catch((error) => {
  console.error(error);
  toast(`The page failed to start: ${error.message}`);
});
