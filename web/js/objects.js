// Objects you can tell apart (issue 14, point 5): what an object is called, and how this browser
// shows it. A name is shared by everyone (the log's `object_renamed`); an unnamed object is
// "<class> #<n>", n counting the class's objects on this media item in log order (the same
// number for everyone). Hide, lock and solo are this browser's view, kept per media item in
// localStorage: hidden objects are not drawn, locked ones cannot be changed from this page, and
// while any object is soloed only the soloed ones are drawn.
//
// This module touches no DOM (storage is passed in): node --test tests/web/js/ tests it.

import { instanceIndex } from "./colours.js";

/** The name people see for an object: its own, else "<class> #<n>". */
export function objectName(model, id) {
  const info = model.objects.get(id);
  if (!info) return String(id);
  if (info.name) return info.name;
  const cls = model.classes.get(info.class_id);
  return `${cls?.name ?? info.class_id} #${instanceIndex(model, id) + 1}`;
}

/** The command that gives `id` the name typed in `text` (blank clears it), or null if nothing changes. */
export function renameCommand(model, id, text) {
  const info = model.objects.get(id);
  if (!info) return null;
  const name = String(text ?? "").trim();
  if (name === (info.name ?? "")) return null;
  return { type: "object_renamed", object: id, name };
}

// Commands that change an object or its labels: refused by the page for a locked object.
export const LOCKED_KINDS = new Set(["label_saved", "label_deleted", "object_deleted", "object_reclassed", "prompt_added"]);

const KINDS = ["hidden", "locked", "solo"];

export class ObjectView extends EventTarget {
  /** storage: a localStorage-like object (getItem/setItem), or null to keep nothing. */
  constructor(storage = null) {
    super();
    this.storage = storage;
    this.media = null;
    this.hidden = new Set();
    this.locked = new Set();
    this.solo = new Set();
  }

  key(media) {
    return `masklog.objects.${media}`;
  }

  /** Take up the view kept for `media` (nothing hidden, locked or soloed if none was kept). */
  open(media) {
    this.media = media;
    let kept = {};
    try {
      kept = JSON.parse(this.storage?.getItem(this.key(media)) ?? "{}") ?? {};
    } catch {
      kept = {};
    }
    for (const kind of KINDS) this[kind] = new Set(Array.isArray(kept[kind]) ? kept[kind].map(String) : []);
    this._changed();
  }

  /** Whether `id` is drawn: while anything is soloed, only what is soloed; else what is not hidden. */
  isShown(id) {
    return this.solo.size ? this.solo.has(id) : !this.hidden.has(id);
  }

  isLocked(id) {
    return this.locked.has(id);
  }

  /** Flip `kind` ("hidden", "locked", "solo") for `ids`: all on unless all are on, then all off. */
  toggle(kind, ids) {
    if (!KINDS.includes(kind)) throw new Error(`unknown view kind ${kind}`);
    ids = [...ids];
    if (!ids.length) return false;
    const set = this[kind];
    const on = !ids.every((id) => set.has(id));
    for (const id of ids) {
      if (on) set.add(id);
      else set.delete(id);
      // Soloing an object shows it; hiding one takes it out of the solo.
      if (on && kind === "solo") this.hidden.delete(id);
      if (on && kind === "hidden") this.solo.delete(id);
    }
    this._save();
    this._changed();
    return on;
  }

  /** Forget objects that no longer exist (`live`: a Set or Map of the live ids). */
  prune(live) {
    let changed = false;
    for (const kind of KINDS) {
      for (const id of this[kind]) {
        if (!live.has(id)) {
          this[kind].delete(id);
          changed = true;
        }
      }
    }
    if (changed) this._save();
    return changed;
  }

  _save() {
    if (!this.storage || this.media === null) return;
    const kept = {};
    for (const kind of KINDS) if (this[kind].size) kept[kind] = [...this[kind]];
    try {
      if (Object.keys(kept).length) this.storage.setItem(this.key(this.media), JSON.stringify(kept));
      else this.storage.removeItem?.(this.key(this.media));
    } catch {
      // storage full or refused: the view still applies to this page
    }
  }

  _changed() {
    this.dispatchEvent(new Event("change"));
  }
}
