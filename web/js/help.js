// The keyboard help (`?`): generated from the keymap (keymap.js), so a key added to the table
// appears here without touching this module. Each binding is listed in a group: its own
// `group` if it has one, else the group its action is known under here, else "More keys".
// The mouse is the editor's, not the keymap's: it has a short section of its own.
//
// `helpSections` touches no DOM (node --test tests/web/js/help.test.mjs); `KeyboardHelp` builds
// the overlay, a <dialog> made on first use.

import { KEYMAP, MOUSE_HELP, chordLabels } from "./keymap.js";

/** The groups, in the order the help shows them. */
export const GROUPS = ["Frames and playback", "Classes and drawing", "Objects and labels", "Tracking", "Undo", "View and help"];
export const OTHER_GROUP = "More keys";

// Where the page's actions are listed when their binding names no group.
const GROUP_OF = {
  previousFrame: "Frames and playback",
  nextFrame: "Frames and playback",
  back10: "Frames and playback",
  forward10: "Frames and playback",
  firstFrame: "Frames and playback",
  lastFrame: "Frames and playback",
  playPause: "Frames and playback",
  pickClass: "Classes and drawing",
  toggleSam: "Classes and drawing",
  newObject: "Classes and drawing",
  finish: "Classes and drawing",
  escape: "Classes and drawing",
  deleteLabels: "Objects and labels",
  deleteObjects: "Objects and labels",
  toggleHidden: "Objects and labels",
  toggleLocked: "Objects and labels",
  toggleSolo: "Objects and labels",
  renameObject: "Objects and labels",
  brush: "Classes and drawing",
  eraser: "Classes and drawing",
  brushSmaller: "Classes and drawing",
  brushLarger: "Classes and drawing",
  trackForward: "Tracking",
  trackBackward: "Tracking",
  undo: "Undo",
  redo: "Undo",
  fit: "View and help",
  help: "View and help",
};

/** The mouse on the canvas (the editor's), for the end of the help. */
export const MOUSE_ROWS = Object.freeze([
  { keys: ["Wheel"], help: "Zoom around the cursor" },
  { keys: ["Middle drag", "Space+drag"], help: "Pan" },
  { keys: ["Click", "Shift+click"], help: "Select an object, add it to the selection" },
  { keys: ["SAM: left / right click, drag"], help: "Include point / exclude point / box prompt" },
  { keys: ["Right click on an object"], help: "The object's menu (tracking, review, delete)" },
  ...MOUSE_HELP, // the editing tools' gestures, listed with them in keymap.js
]);

/** The group a binding is listed under. */
export function groupOf(binding) {
  return binding.group ?? GROUP_OF[binding.action] ?? OTHER_GROUP;
}

/**
 * The help's sections, [{group, rows: [{action, keys: ["Ctrl+Z"], help}]}]: every binding of
 * `keymap` once, in its group (known groups in GROUPS order, then new ones as they come, then
 * "More keys"), in the table's order within a group.
 */
export function helpSections(keymap = KEYMAP) {
  const byGroup = new Map();
  for (const binding of keymap) {
    const group = groupOf(binding);
    if (!byGroup.has(group)) byGroup.set(group, []);
    byGroup.get(group).push({ action: binding.action, keys: chordLabels(binding.keys), help: binding.help ?? binding.action });
  }
  const rank = (group) => {
    if (group === OTHER_GROUP) return GROUPS.length + 1;
    const i = GROUPS.indexOf(group);
    return i < 0 ? GROUPS.length : i;
  };
  const groups = [...byGroup.keys()].sort((a, b) => rank(a) - rank(b)); // stable: new groups keep their order
  return groups.map((group) => ({ group, rows: byGroup.get(group) }));
}

/** Digits 1…9 written as one range, not nine keys. */
function keysText(keys) {
  if (keys.length > 3 && keys.every((k) => /^\d$/.test(k))) return [`${keys[0]}…${keys[keys.length - 1]}`];
  return keys;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class KeyboardHelp {
  constructor(keymap = KEYMAP) {
    this.keymap = keymap;
    this.dialog = null;
  }

  get open() {
    return Boolean(this.dialog?.open);
  }

  toggle() {
    if (this.open) this.close();
    else this.show();
  }

  close() {
    if (this.open) this.dialog.close();
  }

  show() {
    if (!this.dialog) this._build();
    this._fill();
    this.dialog.showModal();
  }

  _build() {
    const dialog = (this.dialog = el("dialog", "dialog help-dialog"));
    dialog.dataset.testid = "keyboard-help";
    dialog.setAttribute("aria-label", "keyboard help");
    // `?` or Esc closes it, wherever the focus is (Esc by hand too: the browser's own cancel
    // needs the focus in the dialog); clicking outside closes it too.
    window.addEventListener("keydown", (e) => {
      if (!this.open || e.ctrlKey || e.metaKey || e.altKey || (e.key !== "?" && e.key !== "Escape")) return;
      e.preventDefault();
      e.stopPropagation();
      this.close();
    }, true);
    dialog.addEventListener("click", (e) => {
      if (e.target === dialog) this.close();
    });
    document.body.appendChild(dialog);
  }

  _fill() {
    const dialog = this.dialog;
    dialog.replaceChildren();
    const head = el("div", "help-head");
    head.append(el("h3", "", "Keyboard"), el("span", "muted small-text", "? or Esc closes"));
    const close = el("button", "small ghost", "Close");
    close.dataset.testid = "help-close";
    close.addEventListener("click", () => this.close());
    head.appendChild(close);
    const body = el("div", "help-body");
    const section = (title, rows, testid) => {
      const part = el("section", "help-group");
      part.appendChild(el("h4", "", title));
      const table = el("table", "help-table");
      for (const row of rows) {
        const tr = el("tr");
        tr.dataset.testid = testid;
        if (row.action) tr.dataset.action = row.action;
        const keys = el("td", "help-keys");
        keysText(row.keys).forEach((k, i) => {
          if (i) keys.append(" ");
          keys.appendChild(el("kbd", "", k));
        });
        tr.append(keys, el("td", "help-text", row.help));
        table.appendChild(tr);
      }
      part.appendChild(table);
      body.appendChild(part);
    };
    for (const { group, rows } of helpSections(this.keymap)) section(group, rows, "help-row");
    section("Mouse on the frame", MOUSE_ROWS, "help-mouse");
    const note = el("p", "muted small-text", "Frames are numbered from 0, as in the API and the exports: \u201cframe 12 of 0\u2013247\u201d.");
    dialog.append(head, body, note);
  }
}

/** A toolbar button that opens the help (before `before`). */
export function addHelpButton(help, before) {
  const button = el("button", "ghost", "?");
  button.id = "help-open";
  button.dataset.testid = "help-open";
  button.title = "Keyboard help (?)";
  button.setAttribute("aria-label", "keyboard help");
  button.addEventListener("click", () => {
    button.blur();
    help.show();
  });
  before.parentNode.insertBefore(button, before);
  return button;
}
