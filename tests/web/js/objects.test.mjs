// Unit tests of objects you can tell apart (web/js/tags.js, objects.js, colours.js): tags never
// overlap, names and instance colours, the per-media view (hide, lock, solo).
import assert from "node:assert/strict";
import { test } from "node:test";

import { overlaps, placeTags } from "../../../web/js/tags.js";
import { ObjectView, objectName, renameCommand } from "../../../web/js/objects.js";
import { contrastColour, instanceColour, labelColour, objectColour, SOURCE_COLOURS } from "../../../web/js/colours.js";

const VIEW = { width: 800, height: 600 };

test("tags that want the same place are stacked without overlapping", () => {
  const tags = Array.from({ length: 6 }, () => ({ x: 100, y: 100, w: 60, h: 14 }));
  const placed = placeTags(tags, VIEW);
  for (let i = 0; i < placed.length; i++) for (let j = i + 1; j < placed.length; j++) assert.ok(!overlaps(placed[i], placed[j]), `${i} and ${j} overlap`);
  assert.deepEqual(placed[0], { x: 100, y: 100, w: 60, h: 14, moved: false }, "the first keeps its place");
  assert.ok(placed.slice(1).every((p) => p.moved && p.x === 100), "the others move up or down, not aside");
});

test("a tag that collides with nothing stays; tags stay inside the view", () => {
  const placed = placeTags([{ x: 10, y: 10, w: 50, h: 14 }, { x: 300, y: 10, w: 50, h: 14 }, { x: 790, y: -20, w: 50, h: 14 }], VIEW);
  assert.deepEqual(placed.map((p) => p.moved), [false, false, false]);
  assert.deepEqual(placed[2], { x: 750, y: 0, w: 50, h: 14, moved: false }, "clamped into the view");
});

test("overlapping tags of different sizes are separated, and a full column sends a tag aside", () => {
  const tags = [{ x: 0, y: 0, w: 100, h: 20 }, { x: 50, y: 10, w: 100, h: 20 }];
  const [a, b] = placeTags(tags, { width: 400, height: 41 });
  assert.ok(!overlaps(a, b));
  const column = placeTags(Array.from({ length: 4 }, () => ({ x: 0, y: 0, w: 40, h: 20 })), { width: 200, height: 44 });
  for (let i = 0; i < column.length; i++) for (let j = i + 1; j < column.length; j++) assert.ok(!overlaps(column[i], column[j]));
  assert.ok(column.some((p) => p.x > 0), "no room above or below: aside");
});

test("randomised: tags never overlap when there is room", () => {
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < 50; round++) {
    const tags = Array.from({ length: 25 }, () => ({ x: random() * 700, y: random() * 500, w: 30 + random() * 70, h: 14 }));
    const placed = placeTags(tags, VIEW, { maxSteps: 40 });
    for (let i = 0; i < placed.length; i++) for (let j = i + 1; j < placed.length; j++) assert.ok(!overlaps(placed[i], placed[j]), `round ${round}: ${i}/${j}`);
  }
});

function model(objects, classes = [{ class_id: "car", name: "car", color: "#e53935" }, { class_id: "person", name: "person", color: "#1e88e5" }]) {
  return {
    seq: 1,
    objects: new Map(objects.map(([id, class_id, name]) => [id, { media: "m1", class_id, created_by: "user:a", ...(name ? { name } : {}) }])),
    classes: new Map(classes.map((c) => [c.class_id, c])),
    classOf(id) {
      const info = this.objects.get(id);
      return info ? this.classes.get(info.class_id) : null;
    },
  };
}

test("unnamed objects are '<class> #<n>', counted per class in log order; a name wins", () => {
  const m = model([["a", "car"], ["b", "person"], ["c", "car", "lead car"], ["d", "car"]]);
  assert.deepEqual(["a", "b", "c", "d"].map((id) => objectName(m, id)), ["car #1", "person #1", "lead car", "car #3"]);
  assert.equal(objectName(m, "gone"), "gone");
});

test("a rename command trims, clears with a blank, and is null when nothing changes", () => {
  const m = model([["a", "car", "old"], ["b", "car"]]);
  assert.deepEqual(renameCommand(m, "a", "  new "), { type: "object_renamed", object: "a", name: "new" });
  assert.deepEqual(renameCommand(m, "a", "  "), { type: "object_renamed", object: "a", name: "" });
  assert.equal(renameCommand(m, "a", "old "), null);
  assert.equal(renameCommand(m, "b", ""), null);
  assert.equal(renameCommand(m, "nope", "x"), null);
});

test("instances of one class get distinct colours; the first keeps the class colour", () => {
  const colours = Array.from({ length: 21 }, (_, i) => instanceColour("#e53935", i));
  assert.equal(colours[0], "#e53935");
  assert.equal(new Set(colours).size, 21, "21 instances, 21 colours");
  assert.ok(colours.every((c) => /^#[0-9a-f]{6}$/.test(c)));
  assert.equal(instanceColour("#e53935", 5), colours[5], "deterministic");
  const m = model([["a", "car"], ["b", "car"], ["c", "person"]]);
  assert.equal(objectColour(m, "a"), "#e53935");
  assert.notEqual(objectColour(m, "b"), objectColour(m, "a"));
  assert.equal(objectColour(m, "c"), "#1e88e5");
  assert.equal(labelColour(m, "b", "sam", true), SOURCE_COLOURS.sam, "colour by source still wins");
  assert.notEqual(contrastColour("#e53935"), "#e53935");
});

class Storage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

test("hide, lock and solo are kept per media item", () => {
  const storage = new Storage();
  const view = new ObjectView(storage);
  view.open("m1");
  assert.ok(view.isShown("a") && !view.isLocked("a"));
  assert.equal(view.toggle("hidden", ["a"]), true);
  view.toggle("locked", ["b"]);
  assert.ok(!view.isShown("a") && view.isShown("b") && view.isLocked("b"));
  view.toggle("solo", ["c"]);
  assert.ok(view.isShown("c") && !view.isShown("b"), "solo: only the soloed are shown");
  view.toggle("solo", ["a"]);
  assert.ok(view.isShown("a"), "soloing a hidden object shows it");
  view.open("m2");
  assert.ok(view.isShown("a") && !view.isLocked("b") && view.solo.size === 0, "another media item has its own view");
  const again = new ObjectView(storage);
  again.open("m1");
  assert.deepEqual([[...again.hidden], [...again.locked], [...again.solo].sort()], [[], ["b"], ["a", "c"]]);
  again.toggle("solo", ["a", "c"]);
  assert.ok(again.isShown("b") && again.solo.size === 0, "all soloed: the toggle turns them all off");
  assert.equal(again.prune(new Set(["a"])), true);
  assert.deepEqual([...again.locked], []);
});
