// Unit tests of the page's keymap (web/js/keymap.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { KEYMAP, bindingFor, chordLabel, handleKey, helpRows, keyLabel, matchesChord, parseChord } from "../../../web/js/keymap.js";

/** A keydown as the browser gives it: `code` for where the key is, `key` for what it types. */
function press(code, { key = code, ctrl = false, meta = false, shift = false, alt = false, target = null } = {}) {
  return {
    code, key, ctrlKey: ctrl, metaKey: meta, shiftKey: shift, altKey: alt, target,
    defaultPrevented: false,
    preventDefault() {
      this.defaultPrevented = true;
    },
  };
}

const actionOf = (event) => bindingFor(event)?.binding.action ?? null;

test("a chord names its modifiers as held, optional or not held", () => {
  assert.deepEqual(parseChord("Ctrl+Shift?+KeyY"), { ctrl: true, shift: null, alt: false, key: "KeyY" });
  assert.deepEqual(parseChord("Home"), { ctrl: false, shift: false, alt: false, key: "Home" });
  assert.throws(() => parseChord("Hyper+KeyA"), /unknown modifier/);
  assert.throws(() => parseChord("Ctrl+"), /names no key/);
});

test("every binding parses, has help, and no action is bound twice", () => {
  const actions = new Set();
  for (const binding of KEYMAP) {
    assert.ok(binding.keys.length && binding.help && binding.action);
    for (const chord of binding.keys) parseChord(chord);
    assert.ok(!actions.has(binding.action), binding.action);
    actions.add(binding.action);
  }
});

test("a chord matches its key by code or by key, and its modifiers exactly", () => {
  assert.ok(matchesChord("Shift+KeyA", press("KeyA", { key: "A", shift: true })));
  assert.ok(!matchesChord("Shift+KeyA", press("KeyA", { key: "A", shift: true, alt: true })));
  assert.ok(!matchesChord("KeyF", press("KeyF", { key: "F", shift: true })));
  assert.ok(matchesChord("Alt?+ArrowLeft", press("ArrowLeft", { alt: true })));
  assert.ok(matchesChord("Alt?+ArrowLeft", press("ArrowLeft")));
  // The numeric keypad without Num Lock: the key says Home, the code where it is.
  assert.ok(matchesChord("Shift?+Alt?+Home", press("Numpad7", { key: "Home" })));
  // ⌘ counts as Ctrl.
  assert.ok(matchesChord("Ctrl+Alt?+KeyZ", press("KeyZ", { key: "z", meta: true })));
});

test("the page's keys go to the actions they always did", () => {
  assert.equal(actionOf(press("KeyZ", { key: "z", ctrl: true })), "undo");
  assert.equal(actionOf(press("KeyZ", { key: "Z", ctrl: true, shift: true })), "redo");
  assert.equal(actionOf(press("KeyY", { key: "y", ctrl: true })), "redo");
  assert.equal(actionOf(press("ArrowLeft")), "previousFrame");
  assert.equal(actionOf(press("ArrowLeft", { shift: true })), "back10");
  assert.equal(actionOf(press("ArrowRight", { shift: true })), "forward10");
  assert.equal(actionOf(press("End", { shift: true })), "lastFrame");
  assert.equal(actionOf(press("Escape", { shift: true })), "escape");
  assert.equal(actionOf(press("Backspace")), "deleteLabels");
  assert.equal(actionOf(press("Delete", { shift: true })), "deleteObjects");
  assert.equal(actionOf(press("KeyT", { key: "T", shift: true })), "trackForward");
  assert.equal(actionOf(press("KeyT", { key: "T", shift: true, alt: true })), "trackBackward");
  assert.equal(actionOf(press("Digit3", { key: "3" })), "pickClass");
  // An AZERTY keyboard types "é" on Digit2: the place counts.
  assert.equal(actionOf(press("Digit2", { key: "é" })), "pickClass");
  assert.equal(actionOf(press("KeyN", { key: "n" })), "newObject");
  assert.equal(actionOf(press("KeyF", { key: "f" })), "fit");
});

test("other chords are left to the browser", () => {
  assert.equal(actionOf(press("ArrowLeft", { ctrl: true })), null);
  assert.equal(actionOf(press("KeyS", { key: "s", ctrl: true })), null);
  assert.equal(actionOf(press("Digit1", { key: "!", shift: true })), null);
  assert.equal(actionOf(press("Digit0", { key: "0" })), null);
  assert.equal(actionOf(press("KeyA", { key: "A", shift: true, alt: true })), null);
  assert.equal(actionOf(press("Enter", { ctrl: true })), null);
});

test("handleKey runs the action with the chord's key and prevents the default", () => {
  const calls = [];
  const actions = { pickClass: (event, key) => calls.push(key), undo: () => calls.push("undo") };
  const digit = press("Digit4", { key: "4" });
  assert.equal(handleKey(digit, actions), true);
  assert.ok(digit.defaultPrevented);
  const undo = press("KeyZ", { key: "z", ctrl: true });
  assert.equal(handleKey(undo, actions), true);
  assert.deepEqual(calls, ["Digit4", "undo"]);
});

test("an action that does not apply, or is not given, leaves the event alone", () => {
  const notNow = press("KeyN", { key: "n" });
  assert.equal(handleKey(notNow, { newObject: () => false }), false);
  assert.ok(!notNow.defaultPrevented);
  const unbound = press("KeyF", { key: "f" });
  assert.equal(handleKey(unbound, {}), false);
  assert.ok(!unbound.defaultPrevented);
  const nothing = press("KeyQ", { key: "q" });
  assert.equal(handleKey(nothing, { fit: () => true }), false);
});

test("a custom table is read the same way", () => {
  const keymap = [{ keys: ["Shift?+KeyP"], action: "play", help: "Play or pause" }];
  assert.equal(bindingFor(press("KeyP", { shift: true }), keymap).binding.action, "play");
  assert.equal(bindingFor(press("KeyZ", { ctrl: true }), keymap), null);
});

test("chords are written for people without optional modifiers or code prefixes", () => {
  assert.equal(chordLabel("Ctrl+Alt?+KeyZ"), "Ctrl+Z");
  assert.equal(chordLabel("Shift+Alt?+Delete"), "Shift+Del");
  assert.equal(chordLabel("Shift+Alt+KeyT"), "Shift+Alt+T");
  assert.equal(chordLabel("Alt?+ArrowLeft"), "\u2190");
  assert.equal(chordLabel("Digit7"), "7");
  assert.equal(chordLabel("Shift?+Alt?+Escape"), "Esc");
  // What the menus and titles showed before the table.
  assert.equal(keyLabel("trackForward"), "Shift+T");
  assert.equal(keyLabel("trackBackward"), "Shift+Alt+T");
  assert.equal(keyLabel("deleteLabels"), "Del");
  assert.equal(keyLabel("deleteObjects"), "Shift+Del");
  assert.equal(keyLabel("toggleSam"), "Shift+A");
  assert.equal(keyLabel("nothing"), "");
});

test("the help rows list every binding with all its keys", () => {
  const rows = helpRows();
  assert.equal(rows.length, KEYMAP.length);
  const redo = rows.find((r) => r.action === "redo");
  assert.deepEqual(redo.keys, ["Ctrl+Shift+Z", "Ctrl+Y"]);
  assert.equal(rows.find((r) => r.action === "pickClass").keys.join(""), "123456789");
});
