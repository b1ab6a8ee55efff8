// The page's small windows: toasts, the settings dialog (kept in localStorage), the objects'
// context menu and the automated-labelling dialog.

import { classColour } from "./colours.js";
import { objectName } from "./objects.js";
import { fillTrackerSelect, resolveTracker } from "./trackers.js";

// ---- toasts ------------------------------------------------------------------------------------

/** Show a message in the corner; errors stay a little longer. Click to dismiss. */
export function toast(message, { code = null, kind = "error", ms = kind === "error" ? 7000 : 3500 } = {}) {
  const box = document.getElementById("toasts");
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.dataset.testid = "toast";
  el.textContent = message;
  if (code) {
    const c = document.createElement("span");
    c.className = "code";
    c.textContent = code;
    el.appendChild(c);
  }
  el.addEventListener("click", () => el.remove());
  box.appendChild(el);
  while (box.children.length > 5) box.firstElementChild.remove();
  setTimeout(() => el.remove(), ms);
  return el;
}

// ---- settings ----------------------------------------------------------------------------------

const SETTINGS_KEY = "masklog.settings";
// tracker: the registry name chosen (null: the server's default, the best it runs).
const DEFAULTS = { range: 30, tracker: null, panoptic: false };

export class Settings extends EventTarget {
  constructor() {
    super();
    let stored = {};
    try {
      stored = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}") ?? {};
    } catch {
      stored = {};
    }
    Object.assign(this, DEFAULTS, stored);
    this.range = clampInt(this.range, 1, 100000, DEFAULTS.range);
    // Settings saved before the server named its trackers: "advanced" off was the classical one.
    if (stored.advanced === false && !stored.tracker) this.tracker = "simple";
    delete this.advanced;
    this.tracker = typeof this.tracker === "string" ? this.tracker : null;
    this.panoptic = Boolean(this.panoptic);
    this.capabilities = null; // what the server runs (GET /api/capabilities, the welcome)
  }

  /** The tracker a request names: the chosen one if it runs here, else the server's best. */
  get algorithm() {
    return resolveTracker(this.capabilities, this.tracker) ?? "advanced";
  }

  /** What the server runs; the dialogs offer only that. */
  setCapabilities(caps) {
    if (!caps || JSON.stringify(caps) === JSON.stringify(this.capabilities)) return;
    this.capabilities = caps;
    this.dispatchEvent(new CustomEvent("change", { detail: { key: "capabilities", value: caps } }));
  }

  set(key, value) {
    this[key] = value;
    localStorage.setItem(SETTINGS_KEY, JSON.stringify({ range: this.range, tracker: this.tracker, panoptic: this.panoptic }));
    this.dispatchEvent(new CustomEvent("change", { detail: { key, value } }));
  }

  /** Wire the settings dialog: every input saves as it changes. */
  bind(dialog, openButton) {
    const range = dialog.querySelector("#setting-range");
    const tracker = dialog.querySelector("#setting-tracker");
    const why = dialog.querySelector("#setting-tracker-why");
    const panoptic = dialog.querySelector("#setting-panoptic");
    const fill = () => {
      range.value = this.range;
      fillTrackerSelect(tracker, this.capabilities, this.tracker, why);
      panoptic.checked = this.panoptic;
    };
    this.addEventListener("change", (e) => {
      if (e.detail.key === "capabilities") fill();
    });
    fill();
    openButton.addEventListener("click", () => {
      fill();
      dialog.showModal();
    });
    const saveRange = () => {
      const value = clampInt(range.value, 1, 100000, null);
      if (value !== null) this.set("range", value);
    };
    range.addEventListener("input", saveRange);
    range.addEventListener("change", () => {
      saveRange();
      range.value = this.range;
    });
    tracker.addEventListener("change", () => this.set("tracker", tracker.value));
    panoptic.addEventListener("change", () => this.set("panoptic", panoptic.checked));
    dialog.addEventListener("close", () => {
      saveRange();
      fill();
    });
  }
}

export function clampInt(value, lo, hi, fallback) {
  const n = Number.parseInt(value, 10);
  if (!Number.isFinite(n)) return fallback;
  return Math.min(hi, Math.max(lo, n));
}

// ---- context menu ------------------------------------------------------------------------------

export class ContextMenu {
  constructor(el) {
    this.el = el;
    const close = (e) => {
      if (!this.el.hidden && !this.el.contains(e.target)) this.close();
    };
    document.addEventListener("pointerdown", close, true);
    window.addEventListener("blur", () => this.close());
    window.addEventListener("resize", () => this.close());
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !this.el.hidden) {
        e.stopPropagation();
        e.preventDefault();
        this.close();
      }
    }, true);
  }

  get open() {
    return !this.el.hidden;
  }

  /** items: [{label, key, action, disabled, testid}] or "-" for a separator. */
  show(x, y, title, items) {
    const el = this.el;
    el.replaceChildren();
    if (title) {
      const head = document.createElement("div");
      head.className = "head";
      head.textContent = title;
      el.appendChild(head);
    }
    for (const item of items) {
      if (item === "-") {
        const sep = document.createElement("div");
        sep.className = "sep";
        el.appendChild(sep);
        continue;
      }
      const button = document.createElement("button");
      button.className = "item";
      button.setAttribute("role", "menuitem");
      if (item.testid) button.dataset.testid = item.testid;
      const label = document.createElement("span");
      label.textContent = item.label;
      button.appendChild(label);
      if (item.key) {
        const key = document.createElement("span");
        key.className = "key";
        key.textContent = item.key;
        button.appendChild(key);
      }
      button.disabled = Boolean(item.disabled);
      button.addEventListener("click", () => {
        this.close();
        item.action();
      });
      el.appendChild(button);
    }
    el.hidden = false;
    const rect = el.getBoundingClientRect();
    el.style.left = `${Math.max(4, Math.min(x, innerWidth - rect.width - 4))}px`;
    el.style.top = `${Math.max(4, Math.min(y, innerHeight - rect.height - 4))}px`;
  }

  close() {
    this.el.hidden = true;
  }
}

// ---- automated labelling -----------------------------------------------------------------------

/** T5: objects, frame range, annotation interval and method; "Run" sends an autosaving track. */
export class AutoDialog {
  /** page: {model, state, settings, track(objects, direction, options)} */
  constructor(page, dialog, openButton) {
    this.page = page;
    this.dialog = dialog;
    this.form = dialog.querySelector("#auto-form");
    this.objects = dialog.querySelector("#auto-objects");
    this.first = dialog.querySelector("#auto-first");
    this.last = dialog.querySelector("#auto-last");
    this.interval = dialog.querySelector("#auto-interval");
    this.algorithm = dialog.querySelector("#auto-algorithm");
    openButton.addEventListener("click", () => this.open());
    this.form.addEventListener("submit", (e) => {
      if (e.submitter?.value !== "run") return;
      e.preventDefault();
      if (this.run()) dialog.close("run");
    });
  }

  open() {
    const { model, state, settings } = this.page;
    if (!model.media) return;
    const frames = model.media.frames;
    this.objects.replaceChildren();
    const ids = [...model.objects.keys()];
    if (!ids.length) {
      const none = document.createElement("span");
      none.className = "muted";
      none.textContent = "No objects yet: label an object on the first frame.";
      this.objects.appendChild(none);
    }
    for (const id of ids) {
      const row = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = id;
      box.dataset.testid = `auto-object-${id}`;
      box.checked = state.selected.size ? state.selected.has(id) : model.label(id, state.frame) !== null;
      const dot = document.createElement("i");
      dot.style.background = classColour(model, id);
      const name = document.createElement("span");
      name.textContent = objectName(model, id);
      name.title = `object ${id}`;
      const count = document.createElement("span");
      count.className = "muted";
      count.textContent = model.label(id, state.frame) ? "labelled here" : `${model.labelFrames(id).length} fr`;
      row.append(box, dot, name, count);
      this.objects.appendChild(row);
    }
    this.first.max = this.last.max = String(frames - 1);
    // Frames are numbered from 0 everywhere in the page (the counter reads "frame 12 of 0–247").
    for (const input of [this.first, this.last]) input.title = `a frame in 0–${frames - 1} (numbered from 0)`;
    this.first.closest(".grid2")?.setAttribute("data-frames", `frames 0–${frames - 1}`);
    this.first.value = String(state.frame);
    this.last.value = String(Math.min(frames - 1, state.frame + settings.range - 1));
    fillTrackerSelect(this.algorithm, settings.capabilities, this.algorithm.value || settings.algorithm, this.dialog.querySelector("#auto-algorithm-why"), { methods: true });
    this.dialog.showModal();
  }

  run() {
    const { model } = this.page;
    const frames = model.media.frames;
    const objects = [...this.objects.querySelectorAll("input:checked")].map((b) => b.value);
    const first = clampInt(this.first.value, 0, frames - 1, null);
    const last = clampInt(this.last.value, 0, frames - 1, null);
    const interval = clampInt(this.interval.value, 0, 100000, 0);
    if (!objects.length) {
      toast("Choose at least one object to track.");
      return false;
    }
    if (first === null || last === null || last <= first) {
      toast("The last frame must come after the first frame.");
      return false;
    }
    this.page.track(objects, "forward", {
      start: first,
      range: last - first + 1,
      interval,
      algorithm: this.algorithm.value,
      autosave: true,
    });
    return true;
  }
}
