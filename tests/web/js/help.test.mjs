// Unit tests of the keyboard help (web/js/help.js) and playback's pure parts (web/js/playback.js):
// node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { GROUPS, OTHER_GROUP, helpSections } from "../../../web/js/help.js";
import { KEYMAP, bindingFor, chordLabel } from "../../../web/js/keymap.js";
import { frameCounter, nextStep, playbackFps } from "../../../web/js/playback.js";

test("the help lists every binding of the keymap once, with all its keys and its help", () => {
  const rows = helpSections().flatMap((s) => s.rows);
  assert.deepEqual(rows.map((r) => r.action).sort(), KEYMAP.map((b) => b.action).sort());
  for (const binding of KEYMAP) {
    const row = rows.find((r) => r.action === binding.action);
    assert.deepEqual(row.keys, [...new Set(binding.keys.map(chordLabel))]); // each written once
    assert.equal(row.help, binding.help);
  }
});

test("the page's own keys sit in the known groups, in their order", () => {
  const sections = helpSections();
  assert.ok(sections.every((s) => s.group !== OTHER_GROUP), "every page action has a group");
  const known = sections.map((s) => s.group);
  assert.deepEqual(known, GROUPS.filter((g) => known.includes(g)));
});

test("a key bound by its character and its code is written once", () => {
  const rows = helpSections().flatMap((s) => s.rows);
  assert.deepEqual(rows.find((r) => r.action === "brushSmaller").keys, ["["]);
});

test("a key added later appears without editing the help: in its own group or in 'More keys'", () => {
  const keymap = [
    ...KEYMAP,
    { keys: ["KeyQ"], action: "paintBucket", help: "Fill" },
    { keys: ["KeyH"], action: "hide", help: "Hide the selected objects", group: "Objects and labels" },
    { keys: ["KeyX"], action: "something", help: "A new thing", group: "A new group" },
  ];
  const sections = helpSections(keymap);
  const find = (action) => sections.find((s) => s.rows.some((r) => r.action === action)).group;
  assert.equal(find("paintBucket"), OTHER_GROUP);
  assert.equal(find("hide"), "Objects and labels");
  assert.equal(find("something"), "A new group");
  assert.equal(sections[sections.length - 1].group, OTHER_GROUP, "'More keys' comes last");
  assert.equal(sections.flatMap((s) => s.rows).length, keymap.length);
});

test("? opens the help and Space plays, whatever the layout types for Shift", () => {
  const key = (code, k, shift = false) => ({ code, key: k, ctrlKey: false, metaKey: false, shiftKey: shift, altKey: false });
  assert.equal(bindingFor(key("Slash", "?", true)).binding.action, "help");
  assert.equal(bindingFor(key("Comma", "?", true)).binding.action, "help"); // AZERTY: ? is Shift+,
  assert.equal(bindingFor(key("Space", " ")).binding.action, "playPause");
  assert.equal(bindingFor(key("Space", " ", true)), null);
  assert.equal(chordLabel("Shift?+?"), "?");
  assert.equal(chordLabel("Space"), "Space");
});

test("the frame counter numbers frames from 0 and says the range", () => {
  assert.equal(frameCounter(12, 248), "frame 12 of 0\u2013247");
  assert.equal(frameCounter(0, 1), "frame 0 of 0\u20130");
  assert.equal(frameCounter(0, 0), "frame \u2013");
});

test("playback runs at the media's fps (10 without one, at most 60)", () => {
  assert.equal(playbackFps({ fps: 25 }), 25);
  assert.equal(playbackFps({ fps: null }), 10);
  assert.equal(playbackFps({}), 10);
  assert.equal(playbackFps({ fps: 240 }), 60);
});

test("playback waits for the next frame's time, skips ahead when late, and stops at the end", () => {
  const origin = { time: 1000, frame: 5 };
  // On time: frame 6 is due 100 ms after the start at 10 fps.
  assert.deepEqual(nextStep({ now: 1000, origin, fps: 10, current: 5, last: 99 }), { frame: 6, wait: 100 });
  assert.deepEqual(nextStep({ now: 1040, origin, fps: 10, current: 5, last: 99 }), { frame: 6, wait: 60 });
  // A frame that took 350 ms to arrive: frame 8 is due now, 6 and 7 are skipped.
  assert.deepEqual(nextStep({ now: 1350, origin, fps: 10, current: 5, last: 99 }), { frame: 8, wait: 0 });
  // Never past the last frame, and nothing after it.
  assert.deepEqual(nextStep({ now: 99_000, origin, fps: 10, current: 90, last: 99 }), { frame: 99, wait: 0 });
  assert.equal(nextStep({ now: 99_000, origin, fps: 10, current: 99, last: 99 }), null);
});
