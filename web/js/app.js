// The annotator's page: signs in, opens a media item over its socket, keeps the model fed and
// wires the editor, the timeline and the panels to it. Commands go out through `send`, which
// shows the server's message when one is refused. Keys are bound in keymap.js and tracking is
// in tracking.js; every module gets from the page only the data and actions it uses (see
// `setup`), never the page itself.

import { Api, Connection } from "./net.js";
import { LABEL_BLOCK, MediaModel, ensureLabels, isHead, labelsWindow } from "./model.js";
import { Editor } from "./editor.js";
import { FrameImages } from "./frames.js";
import { Timeline } from "./timeline.js";
import { OntologyPanel, ObjectsPanel, TracksPanel, renderAudit, renderLabelInfo, renderPresence } from "./panels.js";
import { HistoryPanel } from "./history.js";
import { Replay, replayView } from "./replay.js";
import { SamSession, newObjectId, shapeMask } from "./sam.js";
import { AutoDialog, ContextMenu, Settings, toast } from "./dialogs.js";
import { CONFLICT_COLOUR, isPersons } from "./conflicts.js";
import { isDoubtful } from "./doubt.js";
import { SOURCE_COLOURS, classColour, labelColour, userColour } from "./colours.js";
import { handleKey, keyLabel } from "./keymap.js";
import { Tracking } from "./tracking.js";
import { Interpolation } from "./interpolation.js";
import { AuditTable } from "./audit.js";
import { Outbox, connectionText, waitingLabels } from "./outbox.js";
import { FilterBar, auditParams } from "./audit_filter.js";
import { PromptOverlay, promptSummary } from "./prompt_overlay.js";
import { KeyboardHelp, addHelpButton } from "./help.js";
import { Player, frameCounter } from "./playback.js";
import { ProjectSetup } from "./setup.js";
import { LOCKED_KINDS, ObjectView, objectName } from "./objects.js";
import { BrushSession, stepSize } from "./brush.js";
import { Provenance } from "./provenance.js";
import { Placements, WorkersIndicator } from "./work.js";

const PLAY_SVG = '<svg class="icon" viewBox="0 0 16 16" aria-hidden="true"><path d="M4 3v10l9-5z"/></svg>';
const PAUSE_SVG = '<svg class="icon" viewBox="0 0 16 16" aria-hidden="true"><rect x="3.5" y="3" width="3" height="10"/><rect x="9.5" y="3" width="3" height="10"/></svg>';
const TOKEN_KEY = "masklog.token";
const $ = (id) => document.getElementById(id);

// Events whose effect is not tied to one frame: the shapes on screen are redrawn after them.
const GLOBAL_KINDS = new Set([
  "snapshot", "object_created", "object_deleted", "object_reclassed", "class_added", "track_requested",
  "tracked_accepted", "tracked_discarded", "undone", "redone", "object_renamed", "labels_loaded",
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
    // Hide, lock and solo per object: this browser's view, kept per media item (objects.js).
    this.view = new ObjectView(localStorage);
    this.projects = [];
    this.roster = [];
    this.images = null;
    this._ready = deferred();
    this._drawn = false;
    this._dirty = new Set();
    this._raf = 0;
    this._frameToken = 0;
    this._mode = "";
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
    this.workers.start();
    api.get("/api/capabilities").then((caps) => this.settings.setCapabilities(caps), () => {}); // the welcome says it too
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
      else this.projectSetup.renderEmpty($("empty-stage")); // what to do next: create a project, upload media
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
    // What the object list, timeline, classes, counts and label info read: the replayed model while replaying.
    const shown = (this.shown = replayView(model, () => this.replay)); // the model as replayed, or live
    this.tracking = new Tracking({
      model, state, settings, send, canEdit, toast,
      savePreview: () => this.savePreview(),
    });
    const track = (objects, direction, options) => this.tracking.request(objects, direction, options);
    this.interpolation = new Interpolation({ model, state, canEdit, track });
    this.sam = new SamSession({
      model, state, settings, editor, send, canEdit, track, toast,
      selectOnly: (id) => this.selectOnly(id),
      selectionChanged: () => this.selectionChanged(),
      statusChanged: () => {
        this.renderSamBar();
        this.invalidate("shapes"); // a refined label is drawn dashed while its preview shows
      },
    });
    this.timeline = new Timeline($("timeline"), { model: shown, state, goto, pickObject, objectMenu });
    this.ontology = new OntologyPanel({
      model: shown, state,
      canSam: (kind) => this.canSam(kind),
      pickClass: (id) => this.pickClass(id),
      toggleSam: (id) => this.toggleSam(id),
    }, $("classes"));
    this.objects = new ObjectsPanel({
      model: shown, state, pickObject, objectMenu, canEdit,
      view: this.view,
      gotoObject: (id) => this.gotoObject(id),
      toggleView: (kind, id) => this.toggleView(kind, [id]),
      rename: (command) => this.send(command),
    }, $("objects"), $("objects-count"));
    this.view.addEventListener("change", () => this.invalidate("shapes", "objects", "timeline"));
    // The model work (issue 17): the live workers in the toolbar, and where each running track is.
    this.workers = new WorkersIndicator({
      workers: () => this.api.get("/api/workers"),
      sharedChanged: () => this.placements.sync(),
    }, $("workers"));
    this.placements = new Placements({
      media: () => this.model.media?.media ?? null,
      running: () => [...this.model.tracks.values()].some((t) => t.status === "running"),
      shared: () => this.workers.shared,
      tracks: (media) => this.api.get(`/api/media/${encodeURIComponent(media)}/tracks`),
      changed: () => this.invalidate("tracks"),
    });
    this.tracks = new TracksPanel({
      model, goto, send, frame: () => state.frame,
      stale: () => this._stale !== false,
      placement: (track) => this.placements.of(track),
    }, $("tracks"));
    this.replay = new Replay({
      model, state, toast,
      snapshotAt: (media, seq, window) => this.api.get(`/api/media/${encodeURIComponent(media)}/snapshot`, { seq, from: window?.[0], to: window?.[1] }),
      fetchWindow: (media, seq, from, to) => this.fetchWindow(media, seq, from, to),
      positions: (media, after) => this.api.get(`/api/media/${encodeURIComponent(media)}/positions`, { after }),
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
      auditCounts: (media, by) => this.api.get(`/api/media/${encodeURIComponent(media)}/audit`, { by, ...auditParams(state.labelFilter) }),
    }, { by: $("audit-by"), table: $("audit-table"), history: $("history") });
    // Filters by source, annotator, model and class: the canvas and the audit table (audit_filter.js).
    this.filterBar = new FilterBar({
      model, state,
      changed: () => {
        this.invalidate("shapes", "info");
        this.auditTable.render();
      },
    }, { bar: $("label-filter"), badge: $("filter-badge") });
    // A selected label's prompt, drawn on the frame (prompt_overlay.js).
    this.promptOverlay = new PromptOverlay({
      model, state, editor,
      promptEvent: (media, id) => this.api.get(`/api/media/${encodeURIComponent(media)}/events/${encodeURIComponent(id)}`).then((a) => a.event),
      changed: () => this.invalidate("info"),
      hidden: (object, label) => !(this.filterBar.predicate()?.(object, label) ?? true),
    }, $("prompt-overlay"));
    this.brush = new BrushSession({
      model, state, settings, editor, send, canEdit, toast, newObjectId,
      selectOnly: (id) => this.selectOnly(id),
    });
    this.provenance = new Provenance({
      model,
      cellHistory: (media, object, frame) => this.api.get(`/api/media/${encodeURIComponent(media)}/cells/${encodeURIComponent(object)}/${frame}`),
    });
    this.keyActions = this.keyboardActions();
    this.help = new KeyboardHelp();
    addHelpButton(this.help, $("logout"));
    this.player = new Player({
      state,
      media: () => this.model.media,
      goto,
      changed: (playing) => {
        $("play").classList.toggle("active", playing);
        $("play").innerHTML = playing ? PAUSE_SVG : PLAY_SVG;
        $("play").title = `${playing ? "Pause" : "Play"} (Space)`;
      },
    });
    this.player.attach($("stage"));
    this.projectSetup = new ProjectSetup({
      api: () => this.api, me: () => this.me, projects: () => this.projects, toast,
      currentProject: () => $("project-select").value || this.state.project,
      currentMedia: () => this.state.media,
      hasMedia: () => Boolean(this.model.media),
      reload: (project) => this.reloadProjects(project),
      openMedia: (media) => this.setHash(media, 0, true),
    }, $("setup-open"));

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
    editor.addEventListener("view", () => {
      this.renderCursors();
      this.promptOverlay.render();
    });

    this.model.addEventListener("change", (e) => this.onModelChange(e.detail));

    $("project-select").addEventListener("change", (e) => {
      e.target.blur();
      const project = this.projects.find((p) => p.id === e.target.value);
      this.fillMedia(project);
      if (project?.media.length) this.setHash(project.media[0].media, 0, true);
      else if (!this.model.media) this.projectSetup.renderEmpty($("empty-stage"));
    });
    $("media-select").addEventListener("change", (e) => {
      e.target.blur(); // arrow keys step frames, not media items
      e.target.title = e.target.selectedOptions[0]?.textContent ?? "Media item";
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
    renderAudit(shown, $("audit"));
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
      option.title = option.textContent;
      select.appendChild(option);
    }
    if (selected) select.value = selected;
    // The whole name shows on hover when the picker is too narrow for it.
    select.title = select.selectedOptions[0]?.textContent ?? "Media item";
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

  /** After the set-up dialog changed projects: the pickers show `project` unless a media item is open. */
  async reloadProjects(project) {
    try {
      this.projects = await this.api.projects();
    } catch (error) {
      toast(error.message, { code: error.code });
      return;
    }
    const open = this.projects.find((p) => p.media.some((m) => m.media === this.state.media));
    this.fillProjects(open?.id ?? project);
    if (open) $("media-select").value = this.state.media;
    if (!this.model.media) this.projectSetup.renderEmpty($("empty-stage"));
  }

  // ---- opening a media item -------------------------------------------------------------------

  openMedia(mediaId, frame = 0) {
    this.stopPlay();
    this.outbox?.detach();
    if (this.connection) this.connection.close();
    if (this._drawn) this._ready = deferred();
    this._drawn = false;
    this.sam.clearPoints();
    this.sam.object = null;
    this.sam.created = false;
    this.brush.reset();
    this.menu.close();
    this.model.reset();
    this.placements.sync(); // nothing to poll until the new item's tracks are known
    const state = this.state;
    state.media = mediaId;
    state.frame = Math.max(0, frame | 0);
    state.selected.clear();
    this.view.open(mediaId);
    this.replay.reset();
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
      // Full labels only around the frame the page opens on; the rest as heads (issue 15).
      labelsWindow: () => labelsWindow(this.state.frame),
    });
    this.connection = connection;
    const mine = (handler) => (e) => {
      if (this.connection === connection) handler(e.detail);
    };
    connection.addEventListener("status", mine((status) => this.renderConnection(status)));
    connection.addEventListener("welcome", mine((welcome) => {
      this.settings.setCapabilities(welcome.capabilities); // which trackers run here (issue 14)
      this.applyTool();
    }));
    connection.addEventListener("snapshot", mine((snapshot) => this.onSnapshot(snapshot)));
    connection.addEventListener("events", mine((events) => this.model.apply(events)));
    connection.addEventListener("presence", mine((users) => this.onPresence(users)));
    connection.addEventListener("refused", mine((error) => this.onRefused(error)));
    // Commands made offline wait in the connection; a reload keeps them (outbox.js).
    this.outbox = new Outbox({
      connection, user: this.me.name, storage: sessionStorage,
      answered: (promise) => this.answered(promise),
      changed: () => {
        if (this.connection !== connection) return;
        this.renderConnection(connection.status);
        this.invalidate("shapes");
      },
    });
    this.outbox.restore();
    connection.connect();
  }

  onSnapshot(snapshot) {
    const fresh = this.model.media?.media !== snapshot.media.media || !this.images;
    this.model.loadSnapshot(snapshot);
    this.view.prune(this.model.objects);
    const state = this.state;
    state.undo = this.model.undo;
    state.redo = this.model.redo;
    state.project = snapshot.media.project;
    this.renderUndo();
    this.replay.load();
    if (!fresh) {
      this.history.load();
      this.ensureLabels(state.frame);
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
    this.ensureLabels(state.frame);
    this.ensureLabels(state.frame + LABEL_BLOCK); // the next block, before the user gets there
    this.loadFrame(state.frame, 1);
  }

  /** GET …/labels?from&to[&seq]: the full labels of a window of frames (model.mergeWindow). */
  fetchWindow(media, seq, from, to) {
    return this.api.get(`/api/media/${encodeURIComponent(media)}/labels`, { seq, from, to });
  }

  /** Fetch the full labels of `frame` if only heads of them are here (the live or the replayed model). */
  ensureLabels(frame) {
    if (this.replay.active) {
      this.replay.ensureLabels(frame);
      return;
    }
    const pending = ensureLabels(this.model, frame, (media, seq, from, to) => this.fetchWindow(media, seq, from, to));
    // A merge is a model change: onModelChange redraws.
    pending?.catch((error) => toast(`labels of frame ${frame}: ${error.message}`, { code: error.code }));
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
    const { text, look, title } = connectionText(status, this.connection?.waitingCount() ?? 0);
    el.textContent = text;
    el.dataset.state = look;
    el.title = title;
    if (status !== "open" && this.roster.length) this.onPresence([]);
    // Running tracks' progress is only as fresh as the last event: stale while the socket is down.
    const stale = status !== "open";
    if (stale !== this._stale) {
      this._stale = stale;
      this.invalidate("tracks", "shapes");
    }
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
    this.replay.onEvents(events);
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
    if (all || dirty.has("tracks")) {
      this.tracks.render();
      this.placements.sync(); // polls while the item has running tracks
    }
    if (all || dirty.has("audit")) {
      renderAudit(this.shown, $("audit"));
      this.filterBar.render();
    }
    if (all || dirty.has("info")) {
      renderLabelInfo(this.shown, this.state, $("label-info"), (label) => promptSummary(this.promptOverlay.known(label.prompt)));
      this.promptOverlay.render();
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
    $("frame-label").textContent = frameCounter(this.state.frame, frames);
    $("frame-label").title = `${frames} frame${frames === 1 ? "" : "s"}, numbered from 0 as in the API and the exports`;
  }

  /** The current frame's shapes: labels, then unreviewed proposals (dashed) where there is none. */
  shapeItems() {
    const { model, state } = this;
    const f = state.frame;
    const bySource = state.colourBySource;
    const items = [];
    // While a filter is on, only the labels that match are drawn (audit_filter.js).
    const show = this.filterBar.predicate() ?? (() => true);
    if (this.replay.active) {
      for (const entry of this.replay.labelsAt(f)) {
        if (isHead(entry.label) || !show(entry.object, entry.label)) continue; // a head has no shape yet
        items.push({
          id: entry.object, shape: entry.label.shape, color: labelColour(this.shown, entry.object, entry.label.source, bySource),
          selected: state.selected.has(entry.object), dashed: false, text: objectName(this.shown, entry.object),
        });
      }
      return items;
    }
    const labelled = new Set();
    // While the socket is down, the labels its waiting commands save (or delete) are shown as
    // they will be: dashed and marked "waiting" (outbox.js).
    const connection = this.connection;
    const waiting = connection && connection.status !== "open" && connection.waitingCount() ? waitingLabels(connection.waiting(), f) : new Map();
    for (const [object, shape] of waiting) {
      labelled.add(object);
      if (shape) items.push({ id: object, shape, color: classColour(model, object), selected: state.selected.has(object), dashed: true, text: `${object} · waiting` });
    }
    const view = this.view;
    // A SAM preview that refines a label (S7) is drawn in a contrasting colour (sam.js); the
    // label it would replace is drawn dashed and lighter meanwhile, so the change shows.
    const refining = this.sam.refine && this.sam.answer && this.sam.frame === f ? this.sam.object : null;
    for (const entry of model.labelsAt(f)) {
      if (waiting.has(entry.object)) continue;
      labelled.add(entry.object);
      if (isHead(entry.label)) continue; // its shape is being loaded (ensureLabels)
      if (!view.isShown(entry.object) || !show(entry.object, entry.label)) continue;
      items.push({
        id: entry.object, shape: entry.label.shape, color: labelColour(model, entry.object, entry.label.source, bySource),
        selected: state.selected.has(entry.object), dashed: entry.object === refining, text: objectName(model, entry.object),
        locked: view.isLocked(entry.object),
      });
    }
    const proposals = new Map();
    for (const p of model.proposalsAt(f)) {
      const facts = { source: "tracked", actor: model.tracks.get(p.track)?.actor, model: p.proposal.model };
      if (!labelled.has(p.object) && view.isShown(p.object) && show(p.object, facts)) proposals.set(p.object, p);
    }
    // A result on a person's label (a conflict, issue 14): drawn over it in the conflict colour.
    for (const p of model.proposalsAt(f)) {
      if (!isPersons(model.label(p.object, f))) continue; // p is a result on this frame: a conflict if a person's label is here
      if (!view.isShown(p.object) || !show(p.object, { source: "tracked", actor: model.tracks.get(p.track)?.actor, model: p.proposal.model })) continue;
      items.push({ id: p.object, shape: p.proposal.shape, color: CONFLICT_COLOUR, selected: false, dashed: true, text: `${objectName(model, p.object)} · conflict: tracked` });
    }
    for (const p of proposals.values()) {
      // A doubtful result (issue 18) says so, with its score, in its tag.
      const doubt = isDoubtful(p.proposal.score) ? ` · doubtful ${Number(p.proposal.score).toFixed(2)}` : "";
      items.push({
        id: p.object, shape: p.proposal.shape, color: bySource ? SOURCE_COLOURS.tracked : classColour(model, p.object),
        selected: state.selected.has(p.object), dashed: true, text: `${objectName(model, p.object)} · tracked${doubt}`, locked: view.isLocked(p.object),
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
    this.ensureLabels(target);
    // Playing: the next block's labels come before playback reaches them.
    if (this.player?.playing) this.ensureLabels(target + (direction < 0 ? -LABEL_BLOCK : LABEL_BLOCK));
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
    this.player.toggle();
  }

  stopPlay() {
    this.player?.stop();
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
    if (bar.hidden === on) {
      // The bar is a row above the stage: the stage's size changes now, not on the next resize
      // callback, so that a click right after lands where the image is drawn.
      bar.hidden = !on;
      this.editor?.resize();
      this.renderCursors();
    }
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
        else if (this.model.label(target, this.state.frame)) text = `click to refine ${objectName(this.model, target)}`;
        else text = `click to segment ${objectName(this.model, target)} here`;
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
    if (LOCKED_KINDS.has(body.type) && this.view.isLocked(body.object)) {
      // A locked object's labels cannot be changed from this page (issue 14, point 5).
      const error = Object.assign(new Error(`${objectName(this.model, body.object)} is locked: unlock it first (${keyLabel("toggleLocked")})`), { code: "locked" });
      toast(error.message, { code: error.code, kind: "info" });
      this.invalidate("shapes");
      const refused = Promise.reject(error);
      refused.catch(() => {});
      return refused;
    }
    if (this.state.replaySeq !== null) {
      // Replay is read-only: nothing is sent until "Back to live".
      toast("Replay is read-only: go back to live to edit.", { kind: "info" });
      const refused = Promise.reject(Object.assign(new Error("replay is read-only"), { code: "replaying" }));
      refused.catch(() => {});
      return refused;
    }
    return this.answered(this.connection.command(body, { id, panoptic }));
  }

  /** A command's answer: an ack updates the undo counts, a refusal shows the server's message. */
  answered(promise) {
    const result = promise.then(
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
    items.push("-", ...this.interpolation.menuItems(id));
    items.push("-");
    items.push({ label: "Go to nearest label", testid: "ctx-goto", disabled: !this.model.labelFrames(id).length, action: () => this.gotoObject(id) });
    if (this.model.label(id, this.state.frame)) {
      items.push({ label: "Delete label on this frame", key: keyLabel("deleteLabels"), testid: "ctx-delete-label", disabled: !canEdit, action: () => this.send({ type: "label_deleted", object: id, frame: this.state.frame }) });
    }
    items.push({ label: "Delete object", key: keyLabel("deleteObjects"), testid: "ctx-delete-object", disabled: !canEdit, action: () => this.deleteObjects([id]) });
    items.push("-");
    const view = this.view;
    items.push({ label: "Rename…", key: keyLabel("renameObject"), testid: "ctx-rename", disabled: !canEdit, action: () => this.objects.startRename(id) });
    items.push({ label: view.hidden.has(id) ? "Show" : "Hide", key: keyLabel("toggleHidden"), testid: "ctx-hide", action: () => this.toggleView("hidden", selected) });
    items.push({ label: view.isLocked(id) ? "Unlock" : "Lock", key: keyLabel("toggleLocked"), testid: "ctx-lock", action: () => this.toggleView("locked", selected) });
    items.push({ label: view.solo.has(id) ? "Unsolo" : "Solo", key: keyLabel("toggleSolo"), testid: "ctx-solo", action: () => this.toggleView("solo", selected) });
    this.menu.show(x, y, `${objectName(this.model, id)} · ${id} · frame ${this.state.frame}`, items);
  }

  /** Hide / lock / solo objects in this browser (objects.js); a hidden object leaves the selection. */
  toggleView(kind, ids = [...this.state.selected]) {
    ids = ids.filter((id) => this.model.objects.has(id));
    if (!ids.length) {
      toast("Select an object first.", { kind: "info" });
      return false;
    }
    this.view.toggle(kind, ids);
    let pruned = false;
    for (const id of [...this.state.selected]) {
      if (!this.view.isShown(id) && kind !== "locked") {
        this.state.selected.delete(id);
        pruned = true;
      }
    }
    if (pruned) this.selectionChanged();
    return true;
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
    this.invalidate("shapes", "objects", "timeline", "classes", "audit", "info", "tracks");
    this.ensureLabels(this.state.frame); // back to live: frames seen while replaying may not be loaded here
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
      help: () => this.help.toggle(),
      playPause: (e) => this.player.spaceDown(e),
      toggleHidden: () => this.toggleView("hidden"),
      toggleLocked: () => this.toggleView("locked"),
      toggleSolo: () => this.toggleView("solo"),
      renameObject: () => {
        if (state.selected.size !== 1) return false;
        return this.objects.startRename([...state.selected][0]);
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
  get setup() {
    return app.projectSetup;
  },
  /** This browser's hide / lock / solo of objects (objects.js). */
  get view() {
    return app.view;
  },
  /** The name an object is shown under. */
  objectName: (id) => objectName(app.model, id),
  /** The shapes on the canvas now ({id, shape, color, selected, dashed, text}). */
  /** The timeline (tests read its marks). */
  get timeline() {
    return app.timeline;
  },
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
