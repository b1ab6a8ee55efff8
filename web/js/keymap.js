// The page's keys, in one table: each binding names its keys, the action the page runs and a
// line of help. The page's key handler reads it (`handleKey`); a keyboard help can be generated
// from it (`KEYMAP`, `chordLabel`; help.js does), and menus and titles show a key with
// `keyLabel(action)`. A binding may name its `group` in the help (help.js has a default for the
// page's actions). Space held while dragging (pan) and the mouse belong to the editor (editor.js).
//
// A chord is modifiers and a key joined by "+", e.g. "Ctrl+Shift+KeyZ". The key is a
// `KeyboardEvent.code` for letters and digits (the same physical key on every layout) and a
// `KeyboardEvent.key` for the others. "Ctrl" is Ctrl or ⌘. A modifier followed by "?" ("Alt?")
// may be held or not; a modifier the chord does not name must not be held. The first binding
// that matches wins.
//
// This module touches no DOM: node --test tests/web/js/ tests it.

const MODIFIERS = ["Ctrl", "Shift", "Alt"];

const DIGITS = ["Digit1", "Digit2", "Digit3", "Digit4", "Digit5", "Digit6", "Digit7", "Digit8", "Digit9"];

/** @typedef {{keys: string[], action: string, help: string, group?: string}} Binding */

/** @type {readonly Binding[]} */
export const KEYMAP = Object.freeze([
  { keys: ["Shift?+?"], action: "help", help: "Show or hide this keyboard help" },
  { keys: ["Ctrl+Alt?+KeyZ"], action: "undo", help: "Undo your last action" },
  { keys: ["Ctrl+Shift+Alt?+KeyZ", "Ctrl+Shift?+Alt?+KeyY"], action: "redo", help: "Redo" },
  { keys: ["Alt?+ArrowLeft"], action: "previousFrame", help: "Previous frame" },
  { keys: ["Shift+Alt?+ArrowLeft"], action: "back10", help: "10 frames back" },
  { keys: ["Alt?+ArrowRight"], action: "nextFrame", help: "Next frame" },
  { keys: ["Shift+Alt?+ArrowRight"], action: "forward10", help: "10 frames on" },
  { keys: ["Shift?+Alt?+Home"], action: "firstFrame", help: "First frame" },
  { keys: ["Shift?+Alt?+End"], action: "lastFrame", help: "Last frame" },
  { keys: ["Space"], action: "playPause", help: "Play or pause (tap; hold Space and drag to pan)" },
  { keys: ["Shift?+Alt?+Enter"], action: "finish", help: "Finish the shape being drawn, or save the SAM preview" },
  {
    keys: ["Shift?+Alt?+Escape"],
    action: "escape",
    help: "Cancel, in this order: the shape being drawn, the SAM preview, the tool, replay, the selection",
  },
  { keys: ["Alt?+Delete", "Alt?+Backspace"], action: "deleteLabels", help: "Delete the selected objects' labels on this frame" },
  { keys: ["Shift+Alt?+Delete", "Shift+Alt?+Backspace"], action: "deleteObjects", help: "Delete the selected objects" },
  { keys: ["Shift+KeyA"], action: "toggleSam", help: "SAM mode on or off for the active class" },
  { keys: ["Shift+KeyT"], action: "trackForward", help: "Track the selected objects forwards from this frame" },
  { keys: ["Shift+Alt+KeyT"], action: "trackBackward", help: "Track the selected objects backwards from this frame" },
  { keys: DIGITS, action: "pickClass", help: "Pick the class with this number" },
  { keys: ["KeyN"], action: "newObject", help: "SAM: the next click starts a new object" },
  { keys: ["KeyF"], action: "fit", help: "Fit the frame to the view" },
  { keys: ["KeyH"], action: "toggleHidden", help: "Hide or show the selected objects (in this browser)" },
  { keys: ["KeyL"], action: "toggleLocked", help: "Lock or unlock the selected objects: a locked object cannot be changed from this page" },
  { keys: ["KeyS"], action: "toggleSolo", help: "Solo the selected objects: only soloed objects are shown (again: all)" },
  { keys: ["F2"], action: "renameObject", help: "Rename the selected object (in the object list)" },
  { keys: ["KeyB"], action: "brush", help: "Brush: paint the selected mask (a new object when none is selected); hold Alt to erase" },
  { keys: ["KeyE"], action: "eraser", help: "Eraser: erase from the selected mask" },
  { keys: ["[", "BracketLeft"], action: "brushSmaller", help: "Smaller brush (also Shift+wheel)" },
  { keys: ["]", "BracketRight"], action: "brushLarger", help: "Larger brush (also Shift+wheel)" },
]);

/** What the mouse does on the canvas (editor.js), for a keyboard help next to the keys. */
export const MOUSE_HELP = Object.freeze([
  { keys: ["Drag"], help: "Brush or eraser: one stroke, saved as one undo step when the button is released" },
  { keys: ["Alt+drag"], help: "Brush: erase instead of painting" },
  { keys: ["Shift+wheel"], help: "Brush or eraser: size" },
  { keys: ["Click an edge"], help: "Selected polygon or polyline: insert a vertex there (hold and drag to place it)" },
  { keys: ["Alt+click a vertex"], help: "Selected polygon or polyline: remove that vertex" },
]);

/** A chord's parts: each modifier true (held), false (not held) or null (either), and the key. */
export function parseChord(chord) {
  const parts = chord.split("+");
  const key = parts.pop();
  if (!key) throw new Error(`chord ${JSON.stringify(chord)} names no key`);
  const parsed = { ctrl: false, shift: false, alt: false, key };
  for (const part of parts) {
    const optional = part.endsWith("?");
    const name = optional ? part.slice(0, -1) : part;
    if (!MODIFIERS.includes(name)) throw new Error(`chord ${JSON.stringify(chord)}: unknown modifier ${JSON.stringify(name)}`);
    parsed[name.toLowerCase()] = optional ? null : true;
  }
  return parsed;
}

/** Whether a keyboard event (anything with key, code and the modifier flags) plays `chord`. */
export function matchesChord(chord, event) {
  const { ctrl, shift, alt, key } = parseChord(chord);
  const held = { ctrl: Boolean(event.ctrlKey || event.metaKey), shift: Boolean(event.shiftKey), alt: Boolean(event.altKey) };
  for (const [name, wanted] of [["ctrl", ctrl], ["shift", shift], ["alt", alt]]) {
    if (wanted !== null && held[name] !== wanted) return false;
  }
  return event.code === key || event.key === key;
}

/** The first binding `event` plays and the chord it played, or null. */
export function bindingFor(event, keymap = KEYMAP) {
  for (const binding of keymap) {
    for (const chord of binding.keys) if (matchesChord(chord, event)) return { binding, chord };
  }
  return null;
}

/**
 * Run the action `event` is bound to: `actions[name](event, key)`, where `key` is the chord's
 * key ("Digit3"). An action returns false when it does not apply now, which leaves the event to
 * the browser. Returns whether an action took the event (and prevented its default).
 */
export function handleKey(event, actions, keymap = KEYMAP) {
  const found = bindingFor(event, keymap);
  if (!found) return false;
  const run = actions[found.binding.action];
  if (!run || run(event, parseChord(found.chord).key) === false) return false;
  event.preventDefault();
  return true;
}

const KEY_NAMES = { ArrowLeft: "\u2190", ArrowRight: "\u2192", Delete: "Del", Escape: "Esc", BracketLeft: "[", BracketRight: "]" };

/** How a chord is written for people: "Shift+Alt?+Delete" -> "Shift+Del", "Ctrl+KeyZ" -> "Ctrl+Z". */
export function chordLabel(chord) {
  const { ctrl, shift, alt, key } = parseChord(chord);
  const name = /^(Key|Digit)./.test(key) ? key.replace(/^(Key|Digit)/, "") : (KEY_NAMES[key] ?? key);
  return [ctrl && "Ctrl", shift && "Shift", alt && "Alt", name].filter(Boolean).join("+");
}

/** A binding's chords written for people, each once (a key bound by its character and by its
 * code, as "[" and "BracketLeft" for layouts that type something else there, reads "[" once). */
export function chordLabels(chords) {
  return [...new Set(chords.map(chordLabel))];
}

/** The first chord of `action`, written for people ("" if no key runs it). */
export function keyLabel(action, keymap = KEYMAP) {
  const binding = keymap.find((b) => b.action === action);
  return binding ? chordLabel(binding.keys[0]) : "";
}

/** The table as rows for a keyboard help: every chord of a binding written out, and its help. */
export function helpRows(keymap = KEYMAP) {
  return keymap.map((b) => ({ action: b.action, keys: chordLabels(b.keys), help: b.help }));
}
