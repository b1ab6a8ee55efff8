// Setting up a project in the page, so that a new user never needs curl: create a project, its
// classes and its members (admins only), upload media by drag and drop or a picker (files, image
// folders, DICOM series) with a progress bar, and export (COCO RLE or polygons, YOLO, the event
// log). One dialog with a tab per task, built here so the page's HTML only holds its button.
// Every refusal shows the server's own message. What an upload is, is decided by the server from
// the files' content (docs/api.md, Uploads): the page sends a kind only when the user picks one.

import { ApiError } from "./net.js";

export const TABS = [
  ["project", "Project"],
  ["classes", "Classes"],
  ["members", "Members"],
  ["media", "Media"],
  ["export", "Export"],
];

export const ROLES = ["annotator", "viewer", "admin"];

export const MEDIA_KINDS = [
  ["", "detect from the content"],
  ["video", "video"],
  ["image", "image"],
  ["image_group", "image group"],
  ["image_sequence", "image sequence"],
  ["dicom_series", "DICOM series"],
];

/** A media kind as people read it ("DICOM series", "image group"). */
export function kindLabel(kind) {
  return MEDIA_KINDS.find(([value]) => value === kind)?.[1] ?? String(kind).replace("_", " ");
}

export const EXPORTS = [
  ["coco", { format: "coco" }, "COCO, masks as RLE"],
  ["coco-polygons", { format: "coco", masks: "polygon" }, "COCO, masks as polygons"],
  ["yolo", { format: "yolo" }, "YOLO"],
  ["events", { format: "events" }, "event log (JSON lines)"],
];

// Used only when the server does not list its kinds (an older server).
const FALLBACK_KINDS = ["bitmask", "polygon", "bbox", "rotated_bbox", "polyline", "keypoint", "skeleton"];
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#008080", "#9a6324"];
// Files a folder drop brings along that are never frames.
const SKIPPED = /^(\.|thumbs\.db$|desktop\.ini$)/i;

/** An id the server accepts (ID_PATTERN: a letter or digit, then letters, digits, _ . : -; 64 at most). */
export function slug(text, fallback = "item") {
  const base = String(text ?? "")
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/\.[a-z0-9]{1,5}$/, "")
    .replace(/[^a-z0-9_.-]+/g, "-")
    .replace(/^[^a-z0-9]+|[-_.]+$/g, "")
    .slice(0, 48);
  return base || fallback;
}

/** `base`, or `base-2`, `base-3`, ... : the first that `taken` lacks. */
export function freeId(base, taken) {
  if (!taken.has(base)) return base;
  for (let n = 2; ; n += 1) if (!taken.has(`${base}-${n}`)) return `${base}-${n}`;
}

/** A skeleton template from "head, neck, tail" and "head-neck, 1-2" (names or 0-based indexes). */
export function parseSkeleton(pointsText, edgesText) {
  const points = pointsText.split(",").map((p) => p.trim()).filter(Boolean);
  if (points.length < 1) throw new Error("a skeleton needs its points: names, separated by commas");
  if (new Set(points).size !== points.length) throw new Error("each skeleton point needs a name of its own");
  const index = (name) => {
    const at = points.indexOf(name);
    if (at >= 0) return at;
    if (/^\d+$/.test(name) && Number(name) < points.length) return Number(name);
    throw new Error(`the edge end '${name}' is none of the points (${points.join(", ")}) and no point's number (0–${points.length - 1})`);
  };
  const edges = edgesText.split(",").map((e) => e.trim()).filter(Boolean).map((edge) => {
    const ends = edge.split("-").map((e) => e.trim());
    if (ends.length !== 2 || !ends[0] || !ends[1]) throw new Error(`the edge '${edge}' is not two points joined by '-'`);
    return [index(ends[0]), index(ends[1])];
  });
  return { points, edges };
}

/** The file name in a Content-Disposition header, or null. */
export function dispositionName(header) {
  const match = /filename="?([^";]+)"?/i.exec(header ?? "");
  return match ? match[1] : null;
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "testid") el.dataset.testid = value;
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) el.append(child);
  return el;
}

function options(select, items, selected = null) {
  select.replaceChildren(...items.map(([value, text]) => h("option", { value, text })));
  if (selected !== null) select.value = selected;
}

// ---- reading a drop: files and whole folders -----------------------------------------------------

function readAll(directory) {
  // readEntries answers in batches (100 in Chromium) until it answers an empty one.
  const reader = directory.createReader();
  const all = [];
  return new Promise((resolve, reject) => {
    const next = () =>
      reader.readEntries((batch) => {
        if (!batch.length) resolve(all);
        else {
          all.push(...batch);
          next();
        }
      }, reject);
    next();
  });
}

async function folderFiles(entry) {
  const files = [];
  const walk = async (dir) => {
    for (const child of await readAll(dir)) {
      if (SKIPPED.test(child.name)) continue;
      if (child.isDirectory) await walk(child);
      else {
        const file = await new Promise((resolve, reject) => child.file(resolve, reject));
        files.push({ file, name: child.fullPath.replace(/^\/+/, "") });
      }
    }
  };
  await walk(entry);
  files.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  return files;
}

/**
 * What a drop holds, as uploads: each folder is one media item (its files in name order), the
 * loose files together another. Entries are taken while the event lasts (the browser empties
 * the DataTransfer after it).
 */
export async function dropUploads(dataTransfer) {
  const folders = [];
  const loose = [];
  for (const item of [...(dataTransfer.items ?? [])]) {
    if (item.kind !== "file") continue;
    const entry = item.webkitGetAsEntry?.() ?? null;
    if (entry?.isDirectory) folders.push(entry);
    else {
      const file = item.getAsFile();
      if (file) loose.push({ file, name: file.name });
    }
  }
  if (!dataTransfer.items?.length) for (const file of dataTransfer.files ?? []) loose.push({ file, name: file.name });
  const uploads = [];
  for (const folder of folders) {
    const files = await folderFiles(folder);
    if (files.length) uploads.push({ name: folder.name, files });
  }
  if (loose.length) uploads.push({ name: loose.length === 1 ? loose[0].name : `${loose[0].name} and ${loose.length - 1} more`, files: loose });
  return uploads;
}

/** Files from an <input type=file> (with webkitdirectory: one folder, its files in name order). */
export function pickedUpload(fileList) {
  const files = [...fileList]
    .map((file) => ({ file, name: file.webkitRelativePath || file.name }))
    .filter(({ name }) => !name.split("/").some((part) => SKIPPED.test(part)));
  if (!files.length) return null;
  files.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  const folder = files[0].name.includes("/") ? files[0].name.split("/")[0] : null;
  const name = folder ?? (files.length === 1 ? files[0].name : `${files[0].name} and ${files.length - 1} more`);
  return { name, files };
}

// ---- the dialog ------------------------------------------------------------------------------------

/**
 * page: {api() -> the Api, me() -> GET /api/me's answer, projects() -> the project views,
 *        currentProject() / currentMedia() -> the toolbar's ids or null, hasMedia() -> whether a
 *        media item is open, reload(projectId) -> reload the projects and the pickers (a promise),
 *        openMedia(id), toast(message, options)}
 */
export class ProjectSetup {
  constructor(page, openButton) {
    this.page = page;
    this.tab = "project";
    this.project = null; // the project the dialog works on
    this.uploads = 0;
    this.build();
    openButton.addEventListener("click", () => this.open());
    // Files dropped anywhere on the page (a new user drags a video onto it) go to the media tab
    // instead of the browser opening them in place of the page.
    const carriesFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes("Files");
    window.addEventListener("dragover", (e) => {
      if (carriesFiles(e)) e.preventDefault();
    });
    window.addEventListener("drop", (e) => {
      if (!carriesFiles(e) || e.defaultPrevented || this.dialog.contains(e.target)) return;
      e.preventDefault();
      this.open("media");
      if (!this.project || !this.isProjectAdmin()) {
        this.refused(new Error(this.project ? "only the project's admins upload media" : "create a project first, then upload its media"));
        return;
      }
      dropUploads(e.dataTransfer).then((uploads) => uploads.forEach((upload) => this.upload(upload)), (error) => this.refused(error));
    });
  }

  get me() {
    return this.page.me();
  }

  isAccountAdmin() {
    return this.me?.role === "admin";
  }

  projectView(id = this.project) {
    return this.page.projects().find((p) => p.id === id) ?? null;
  }

  isProjectAdmin() {
    return this.isAccountAdmin() || this.projectView()?.role === "admin";
  }

  build() {
    const tabs = h("nav", { class: "setup-tabs", role: "tablist" },
      TABS.map(([id, text]) => h("button", { type: "button", role: "tab", class: "small", testid: `setup-tab-${id}`, "data-tab": id, text, onclick: () => this.show(id) })));
    this.projectSelect = h("select", { testid: "setup-project", "aria-label": "project to set up", onchange: (e) => this.choose(e.target.value) });
    this.error = h("p", { class: "error-text setup-error", testid: "setup-error", hidden: true, role: "alert" });
    this.panes = {
      project: h("section", { class: "setup-pane", "data-pane": "project" }),
      classes: h("section", { class: "setup-pane", "data-pane": "classes" }),
      members: h("section", { class: "setup-pane", "data-pane": "members" }),
      media: h("section", { class: "setup-pane", "data-pane": "media" }),
      export: h("section", { class: "setup-pane", "data-pane": "export" }),
    };
    this.buildMedia();
    this.dialog = h("dialog", { class: "dialog setup-dialog", id: "setup-dialog", testid: "setup" },
      h("div", { class: "setup-head" },
        h("h3", { text: "Project set-up" }),
        h("label", { class: "setup-which" }, "Project ", this.projectSelect),
        h("button", { type: "button", class: "ghost small", testid: "setup-close", title: "Close (Esc)", text: "Close", onclick: () => this.dialog.close() })),
      tabs, this.error, ...Object.values(this.panes));
    document.body.appendChild(this.dialog);
    // A drop anywhere on the dialog's media tab uploads; elsewhere the browser must not open the file.
    this.dialog.addEventListener("dragover", (e) => e.preventDefault());
    this.dialog.addEventListener("drop", (e) => e.preventDefault());
  }

  /** Open on a tab (default: where a new user is: no project → Project, no media → Media). */
  open(tab = null) {
    const projects = this.page.projects();
    this.project = this.page.currentProject() ?? this.project ?? projects[0]?.id ?? null;
    if (!this.projectView()) this.project = projects[0]?.id ?? null;
    if (!this.project) tab = "project"; // the other tabs work on a project
    if (!tab) {
      if (!this.project) tab = "project";
      else if (!this.projectView()?.media.length) tab = this.projectView()?.classes.length ? "media" : "classes";
      else tab = this.tab;
    }
    if (!this.dialog.open) this.dialog.showModal();
    this.show(tab);
  }

  choose(projectId) {
    this.project = projectId || null;
    this.show(this.tab);
  }

  show(tab) {
    this.tab = tab;
    this.clearError();
    const projects = this.page.projects();
    options(this.projectSelect, projects.map((p) => [p.id, `${p.name} (${p.id})`]), this.project ?? "");
    this.projectSelect.disabled = !projects.length;
    for (const button of this.dialog.querySelectorAll(".setup-tabs button")) {
      const on = button.dataset.tab === tab;
      button.classList.toggle("active", on);
      button.setAttribute("aria-selected", String(on));
      button.disabled = button.dataset.tab !== "project" && !this.project;
    }
    for (const [id, pane] of Object.entries(this.panes)) pane.hidden = id !== tab;
    const render = { project: () => this.renderProject(), classes: () => this.renderClasses(), members: () => this.renderMembers(), media: () => this.renderMedia(), export: () => this.renderExport() }[tab];
    render();
  }

  refused(error) {
    const message = error instanceof ApiError ? error.message : String(error.message ?? error);
    this.error.textContent = error.code ? `${message} (${error.code})` : message;
    this.error.hidden = false;
    this.page.toast(message, error.code ? { code: error.code } : {});
  }

  clearError() {
    this.error.hidden = true;
    this.error.textContent = "";
  }

  async call(method, path, body) {
    return this.page.api().request(method, path, body === undefined ? {} : { body });
  }

  // ---- project -----------------------------------------------------------------------------------

  renderProject() {
    const pane = this.panes.project;
    const projects = this.page.projects();
    const list = projects.length
      ? h("ul", { class: "setup-list", testid: "setup-projects" },
          projects.map((p) => h("li", {},
            h("button", { type: "button", class: "link", text: p.name, title: "Set up this project", onclick: () => this.choose(p.id) }),
            h("span", { class: "muted small-text", text: ` ${p.id} · ${p.role} · ${p.classes.length} classes · ${p.media.length} media` }))))
      : h("p", { class: "muted", testid: "setup-no-projects", text: "There is no project yet." });
    if (!this.isAccountAdmin()) {
      pane.replaceChildren(list, h("p", { class: "muted small-text", text: "Only account admins create projects: ask one to make a project and add you to it." }));
      return;
    }
    const name = h("input", { type: "text", testid: "project-name", placeholder: "e.g. Street scenes", maxlength: 256, required: true });
    const id = h("input", { type: "text", testid: "project-id", placeholder: "street-scenes", pattern: "[A-Za-z0-9][A-Za-z0-9_.:\\-]{0,63}", title: "letters, digits, _ . : - (64 at most)" });
    let idTouched = false;
    id.addEventListener("input", () => (idTouched = true));
    name.addEventListener("input", () => {
      if (!idTouched) id.value = freeId(slug(name.value, "project"), new Set(this.page.projects().map((p) => p.id)));
    });
    const form = h("form", { class: "setup-form", testid: "project-form" },
      h("h4", { text: "New project" }),
      h("div", { class: "grid2" },
        h("label", { class: "row-field" }, "Name", name),
        h("label", { class: "row-field" }, "Id (in links and exports)", id)),
      h("div", { class: "dialog-buttons" }, h("button", { type: "submit", class: "primary", testid: "project-create", text: "Create project" })));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { id: id.value.trim() || slug(name.value, "project"), name: name.value.trim() };
      try {
        await this.call("POST", "/api/projects", body);
      } catch (error) {
        this.refused(error);
        return;
      }
      this.project = body.id;
      await this.page.reload(body.id);
      this.page.toast(`Project '${body.name}' created: now its classes.`, { kind: "info" });
      this.show("classes");
    });
    pane.replaceChildren(h("h4", { text: "Projects" }), list, form);
  }

  // ---- classes ----------------------------------------------------------------------------------

  renderClasses() {
    const pane = this.panes.classes;
    const project = this.projectView();
    if (!project) return pane.replaceChildren();
    const rows = project.classes.length
      ? h("ul", { class: "setup-list", testid: "setup-classes" },
          project.classes.map((c) => h("li", { testid: `setup-class-${c.class_id}` },
            h("i", { class: "swatch", style: `background:${c.color}` }),
            h("b", { text: c.name }),
            h("span", { class: "muted small-text", text: ` ${c.shape.replace("_", " ")} · ${c.class_id}${c.skeleton ? ` · ${c.skeleton.points.join(", ")}` : ""}` }))))
      : h("p", { class: "muted", text: "No classes yet: add what the annotators will label." });
    if (!this.isProjectAdmin()) {
      pane.replaceChildren(rows, h("p", { class: "muted small-text", text: "Only the project's admins add classes." }));
      return;
    }
    const kinds = this.me?.shape_kinds ?? FALLBACK_KINDS;
    const name = h("input", { type: "text", testid: "class-name", placeholder: "e.g. Car", maxlength: 256, required: true });
    const kind = h("select", { testid: "class-kind" });
    options(kind, kinds.map((k) => [k, k.replace("_", " ")]), kinds[0]);
    const colour = h("input", { type: "color", testid: "class-color", value: PALETTE[project.classes.length % PALETTE.length] });
    const points = h("input", { type: "text", testid: "class-points", placeholder: "head, neck, tail" });
    const edges = h("input", { type: "text", testid: "class-edges", placeholder: "head-neck, neck-tail" });
    const skeleton = h("div", { class: "grid2", hidden: true },
      h("label", { class: "row-field" }, "Points (names, in order)", points),
      h("label", { class: "row-field" }, "Edges (point-point, or numbers from 0)", edges));
    kind.addEventListener("change", () => (skeleton.hidden = kind.value !== "skeleton"));
    const form = h("form", { class: "setup-form", testid: "class-form" },
      h("h4", { text: "New class" }),
      h("div", { class: "setup-row" },
        h("label", { class: "row-field grow" }, "Name", name),
        h("label", { class: "row-field" }, "Shape", kind),
        h("label", { class: "row-field" }, "Colour", colour)),
      skeleton,
      h("div", { class: "dialog-buttons" }, h("button", { type: "submit", class: "primary", testid: "class-add", text: "Add class" })));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = {
        id: freeId(slug(name.value, "class"), new Set(project.classes.map((c) => c.class_id))),
        name: name.value.trim(), shape: kind.value, color: colour.value,
      };
      try {
        if (kind.value === "skeleton") body.skeleton = parseSkeleton(points.value, edges.value);
        await this.call("POST", `/api/projects/${encodeURIComponent(project.id)}/classes`, body);
      } catch (error) {
        this.refused(error);
        return;
      }
      await this.page.reload(project.id);
      this.show("classes");
      this.panes.classes.querySelector("[data-testid=class-name]")?.focus();
    });
    pane.replaceChildren(h("h4", { text: `Classes of ${project.name}` }), rows, form);
  }

  // ---- members ----------------------------------------------------------------------------------

  async renderMembers() {
    const pane = this.panes.members;
    const project = this.projectView();
    if (!project) return pane.replaceChildren();
    pane.replaceChildren(h("p", { class: "muted", text: "Loading the members…" }));
    let members;
    try {
      members = await this.page.api().get(`/api/projects/${encodeURIComponent(project.id)}/members`);
    } catch (error) {
      pane.replaceChildren();
      this.refused(error);
      return;
    }
    if (this.tab !== "members" || this.project !== project.id) return; // moved on meanwhile
    const admin = this.isProjectAdmin();
    const path = (user) => `/api/projects/${encodeURIComponent(project.id)}/members/${encodeURIComponent(user)}`;
    const setRole = async (user, role) => {
      try {
        if (role === null) await this.call("DELETE", path(user));
        else await this.call("PUT", path(user), { role });
      } catch (error) {
        this.refused(error);
        return;
      }
      await this.page.reload(project.id);
      this.show("members");
    };
    const rows = h("table", { class: "setup-table", testid: "setup-members" },
      h("tr", {}, h("th", { text: "User" }), h("th", { text: "Role" }), h("th")),
      Object.entries(members).map(([user, role]) => {
        const select = h("select", { testid: `member-role-${user}`, disabled: !admin, "aria-label": `role of ${user}`, onchange: (e) => setRole(user, e.target.value) });
        options(select, ROLES.map((r) => [r, r]), role);
        return h("tr", { testid: `member-${user}` },
          h("td", { text: user }), h("td", {}, select),
          h("td", {}, admin ? h("button", { type: "button", class: "small ghost danger", testid: `member-remove-${user}`, text: "Remove", onclick: () => setRole(user, null) }) : null));
      }));
    if (!admin) {
      pane.replaceChildren(h("h4", { text: `Members of ${project.name}` }), rows, h("p", { class: "muted small-text", text: "Only the project's admins change its members." }));
      return;
    }
    const user = h("input", { type: "text", testid: "member-user", placeholder: "user name", required: true, spellcheck: "false" });
    const role = h("select", { testid: "member-role" });
    options(role, ROLES.map((r) => [r, r]), "annotator");
    const form = h("form", { class: "setup-form", testid: "member-form" },
      h("h4", { text: "Add a member" }),
      h("div", { class: "setup-row" },
        h("label", { class: "row-field grow" }, "User (as `masklog user add` named them)", user),
        h("label", { class: "row-field" }, "Role", role)),
      h("p", { class: "muted small-text", text: "annotators label; viewers only look; admins also change classes, members and media." }),
      h("div", { class: "dialog-buttons" }, h("button", { type: "submit", class: "primary", testid: "member-add", text: "Add member" })));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (user.value.trim()) setRole(user.value.trim(), role.value);
    });
    pane.replaceChildren(h("h4", { text: `Members of ${project.name}` }), rows, form);
  }

  // ---- media ------------------------------------------------------------------------------------

  buildMedia() {
    this.fileInput = h("input", { type: "file", multiple: true, hidden: true, testid: "upload-files" });
    this.folderInput = h("input", { type: "file", multiple: true, webkitdirectory: true, hidden: true, testid: "upload-folder" });
    for (const input of [this.fileInput, this.folderInput]) {
      input.addEventListener("change", () => {
        const upload = pickedUpload(input.files);
        input.value = "";
        if (upload) this.upload(upload);
      });
    }
    this.kindSelect = h("select", { testid: "upload-kind", title: "What the files make; by default the server tells from their content" });
    options(this.kindSelect, MEDIA_KINDS, "");
    this.dropZone = h("div", { class: "drop-zone", testid: "drop-zone", tabindex: 0 },
      h("b", { text: "Drop a video, images, an image folder or a DICOM series here" }),
      h("span", { class: "muted small-text", text: "Each folder becomes one media item (its files in name order); loose files together another." }),
      h("div", { class: "setup-row" },
        h("button", { type: "button", class: "small", testid: "upload-pick-files", text: "Choose files…", onclick: () => this.fileInput.click() }),
        h("button", { type: "button", class: "small", testid: "upload-pick-folder", text: "Choose a folder…", onclick: () => this.folderInput.click() }),
        h("label", { class: "small-text" }, "Kind ", this.kindSelect)),
      this.fileInput, this.folderInput);
    const zone = this.dropZone;
    zone.addEventListener("dragover", (e) => {
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      dropUploads(e.dataTransfer).then((uploads) => {
        if (!uploads.length) this.refused(new Error("the drop held no files"));
        for (const upload of uploads) this.upload(upload);
      }, (error) => this.refused(error));
    });
    this.uploadList = h("ul", { class: "setup-list uploads", testid: "uploads" });
    this.mediaList = h("ul", { class: "setup-list", testid: "setup-media" });
  }

  renderMedia() {
    const pane = this.panes.media;
    const project = this.projectView();
    if (!project) return pane.replaceChildren();
    this.mediaList.replaceChildren(...(project.media.length
      ? project.media.map((m) => h("li", { testid: `setup-media-${m.media}` },
          h("button", { type: "button", class: "link", text: m.name, title: "Open it", onclick: () => this.openMedia(m.media) }),
          h("span", { class: "muted small-text", text: ` ${kindLabel(m.kind)} · ${m.frames} frame${m.frames === 1 ? "" : "s"} · ${m.width}×${m.height} · ${m.media}` })))
      : [h("li", { class: "muted", text: "No media yet." })]));
    const admin = this.isProjectAdmin();
    pane.replaceChildren(
      h("h4", { text: `Media of ${project.name}` }), this.mediaList,
      ...(admin ? [h("h4", { text: "Upload" }), this.dropZone, this.uploadList] : [h("p", { class: "muted small-text", text: "Only the project's admins upload media." })]));
  }

  openMedia(mediaId) {
    this.dialog.close();
    this.page.openMedia(mediaId);
  }

  /** Upload one media item ({name, files: [{file, name}]}) with a row showing its progress. */
  upload({ name, files }) {
    const project = this.projectView();
    if (!project) return null;
    const taken = new Set(this.page.projects().flatMap((p) => p.media.map((m) => m.media)));
    let id = slug(name, "media");
    if (taken.has(id)) id = `${id}-${crypto.randomUUID().slice(0, 6)}`;
    const title = name.replace(/\.[A-Za-z0-9]{1,5}$/, "").slice(0, 256) || id;
    const bytes = files.reduce((sum, f) => sum + f.file.size, 0);
    const number = (this.uploads += 1);
    const bar = h("progress", { max: 1, value: 0, testid: "upload-progress" });
    const status = h("span", { class: "small-text", testid: "upload-status", text: "starting…" });
    const row = h("li", { class: "upload", testid: `upload-${number}`, "data-state": "uploading", "data-media": id },
      h("div", { class: "upload-name" }, h("b", { text: title }), h("span", { class: "muted small-text", text: ` ${files.length} file${files.length === 1 ? "" : "s"} · ${megabytes(bytes)}` })),
      bar, status);
    this.uploadList.prepend(row);
    const form = new FormData();
    form.append("id", id);
    form.append("name", title);
    if (this.kindSelect.value) form.append("kind", this.kindSelect.value);
    for (const { file, name: fileName } of files) form.append("file", file, fileName);
    const xhr = new XMLHttpRequest();
    let steps = 0;
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      bar.value = e.loaded / e.total;
      if (e.loaded < e.total) row.dataset.partial = String((steps += 1)); // seen part-way: the tests read it
      status.textContent = `uploading ${Math.round((100 * e.loaded) / e.total)}%`;
    });
    xhr.upload.addEventListener("load", () => {
      bar.value = 1;
      status.textContent = "uploaded; the server is checking the files…";
    });
    const done = new Promise((resolve) => {
      xhr.addEventListener("load", async () => {
        let data = null;
        try {
          data = JSON.parse(xhr.responseText || "null");
        } catch {
          data = null;
        }
        if (xhr.status === 201) {
          const media = data.media;
          row.dataset.state = "done";
          status.textContent = `added: ${kindLabel(media.kind)}, ${media.frames} frame${media.frames === 1 ? "" : "s"}, ${media.width}×${media.height}`;
          row.append(h("button", { type: "button", class: "small", testid: "upload-open", text: "Open", onclick: () => this.openMedia(media.media) }));
          await this.page.reload(project.id);
          if (this.dialog.open && this.tab === "media") this.renderMedia();
          if (!this.page.hasMedia()) this.openMedia(media.media);
          resolve(media);
        } else {
          const error = data?.error ?? { code: "http_error", message: `${xhr.status} ${xhr.statusText}` };
          fail(new ApiError(xhr.status, error.code, error.message));
          resolve(null);
        }
      });
      xhr.addEventListener("error", () => {
        fail(new ApiError(0, "network_error", "the upload failed: the server did not answer"));
        resolve(null);
      });
    });
    const fail = (error) => {
      row.dataset.state = "refused";
      status.textContent = `refused: ${error.message}`;
      status.classList.add("error-text");
      this.refused(error);
    };
    xhr.open("POST", `/api/projects/${encodeURIComponent(project.id)}/media`);
    xhr.setRequestHeader("Authorization", `Bearer ${this.page.api().token}`);
    xhr.send(form);
    return done;
  }

  // ---- export -----------------------------------------------------------------------------------

  renderExport() {
    const pane = this.panes.export;
    const project = this.projectView();
    if (!project) return pane.replaceChildren();
    const format = h("select", { testid: "export-format" });
    options(format, EXPORTS.map(([id, , text]) => [id, text]), "coco");
    const current = this.page.currentMedia();
    const only = h("input", { type: "checkbox", testid: "export-only-media", disabled: !current || !project.media.some((m) => m.media === current) });
    const proposals = h("input", { type: "checkbox", testid: "export-proposals" });
    const status = h("p", { class: "small-text", testid: "export-status" });
    const button = h("button", { type: "button", class: "primary", testid: "export-run", text: "Export" });
    button.addEventListener("click", async () => {
      const [, params] = EXPORTS.find(([id]) => id === format.value);
      const query = { ...params, ...(only.checked ? { media: current } : {}), ...(proposals.checked ? { proposals: 1 } : {}) };
      button.disabled = true;
      status.textContent = "exporting…";
      try {
        const { name, size } = await this.download(project.id, query);
        status.textContent = `saved ${name} (${megabytes(size)})`;
      } catch (error) {
        status.textContent = "";
        this.refused(error);
      } finally {
        button.disabled = false;
      }
    });
    pane.replaceChildren(
      h("h4", { text: `Export ${project.name}` }),
      h("label", { class: "row-field" }, "Format", format),
      h("label", { class: "row-field check" }, only, `Only the open media item${current ? ` (${current})` : ""}`),
      h("label", { class: "row-field check" }, proposals, "Include unreviewed tracking proposals"),
      h("p", { class: "muted small-text", text: "The labels as they are now, every media item of the project unless you choose otherwise. The event log holds everything, for a full backup or another server." }),
      h("div", { class: "dialog-buttons" }, button),
      status);
  }

  /** Fetch an export with the token in a header (never in a URL) and hand it to the browser as a download. */
  async download(projectId, query) {
    const url = new URL(`/api/projects/${encodeURIComponent(projectId)}/export`, location.origin);
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
    const response = await fetch(url, { headers: { Authorization: `Bearer ${this.page.api().token}` } });
    if (!response.ok) {
      let error = null;
      try {
        error = (await response.json()).error;
      } catch {
        error = null;
      }
      throw new ApiError(response.status, error?.code ?? "http_error", error?.message ?? `${response.status} ${response.statusText}`);
    }
    const blob = await response.blob();
    const name = dispositionName(response.headers.get("content-disposition")) ?? `${projectId}-export`;
    const href = URL.createObjectURL(blob);
    const link = h("a", { href, download: name, hidden: true });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60_000);
    return { name, size: blob.size };
  }

  // ---- what an empty page says -----------------------------------------------------------------------

  /** Fill `el` (the empty stage) with what to do next when there is nothing to open. */
  renderEmpty(el) {
    const projects = this.page.projects();
    const current = this.projectView(this.page.currentProject() ?? projects[0]?.id);
    let text;
    let action = null;
    if (!projects.length) {
      text = this.isAccountAdmin() ? "There is no project yet." : "You are not a member of any project yet: ask an admin to add you.";
      if (this.isAccountAdmin()) action = ["Create a project", "project", "empty-create-project"];
    } else {
      text = `${current?.name ?? "This project"} has no media yet.`;
      if (this.isAccountAdmin() || current?.role === "admin") action = [current?.classes.length ? "Upload media" : "Add classes and upload media", current?.classes.length ? "media" : "classes", "empty-upload"];
      else text += " An admin of the project uploads it.";
    }
    el.replaceChildren(h("div", { class: "empty-box", testid: "empty-state" },
      h("p", { text }),
      action ? h("button", { type: "button", class: "primary", testid: action[2], text: action[0], onclick: () => this.open(action[1]) }) : null));
    el.hidden = false;
  }
}

function megabytes(bytes) {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
}
