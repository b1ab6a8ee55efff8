// Unit tests of label windows in the page's model (web/js/model.js, issue 15): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { LABEL_BLOCK, MediaModel, ensureLabels, isHead, labelsWindow } from "../../../web/js/model.js";

const box = (x) => ({ type: "bbox", x, y: 1, w: 2, h: 2 });
const full = (object, frame, x, id = `w-${object}-${frame}-${x}`) => ({
  object, frame, label: { written_by: id, shape: box(x), source: "manual", actor: "user:alice", model: null, prompt: null, track: null, score: null, edited: null },
});

/** A 300-frame item with objects a and b; a labelled on 0 and 250, b on 250 (tracked). */
function windowed(seq = 10) {
  const model = new MediaModel();
  model.loadSnapshot({
    seq,
    media: { media: "m", project: "p", frames: 300, width: 10, height: 10 },
    classes: [{ class_id: "box", project: "p", shape: "bbox" }],
    objects: { a: { media: "m", class_id: "box", created_by: "user:alice" }, b: { media: "m", class_id: "box", created_by: "user:bob" } },
    labels: [full("a", 0, 1)],
    proposals: [],
    tracks: [],
    undo: 0,
    redo: 0,
    window: [0, 127],
    heads: { objects: ["a", "b"], sources: ["manual", "tracked"], actors: ["user:alice", "model:t"], models: ["classical"], cells: [0, 250, 0, 0, -1, 1, 250, 1, 1, 0] },
  });
  return model;
}

const saved = (seq, object, frame, x) => ({ seq, id: `e${seq}`, actor: "user:bob", stream: "media:m", body: { type: "label_saved", object, frame, shape: box(x), source: "manual" } });
const deleted = (seq, object, frame) => ({ seq, id: `e${seq}`, actor: "user:bob", stream: "media:m", body: { type: "label_deleted", object, frame } });

test("the window is the 64-frame block holding the frame and the next block", () => {
  assert.equal(LABEL_BLOCK, 64);
  assert.deepEqual(labelsWindow(0), [0, 63]);
  assert.deepEqual(labelsWindow(250), [192, 255]);
  assert.deepEqual(labelsWindow(-3), [0, 63]);
  assert.deepEqual(labelsWindow(250, 16), [240, 255]);
});

test("a windowed snapshot: full labels in the window, heads (provenance, no shape) for the rest", () => {
  const model = windowed();
  assert.ok(model.isLoaded(0) && model.isLoaded(127) && !model.isLoaded(128) && !model.isLoaded(250));
  assert.equal(isHead(model.label("a", 0)), false);
  assert.deepEqual(model.label("a", 250), { source: "manual", actor: "user:alice", model: null });
  assert.deepEqual(model.label("b", 250), { source: "tracked", actor: "model:t", model: "classical" });
  assert.ok(isHead(model.label("b", 250)));
  assert.deepEqual(model.labelFrames("a"), [0, 250], "the timeline sees heads");
  assert.deepEqual(model.sourceCounts(), { manual: 2, sam: 0, tracked: 1, imported: 0 });
});

test("a window answer replaces the heads of its frames with full labels, and drops cells it does not have", () => {
  const model = windowed();
  const kinds = [];
  model.addEventListener("change", (e) => kinds.push(...e.detail.kinds));
  assert.equal(model.mergeWindow({ seq: 10, from: 192, to: 299, labels: [full("a", 250, 7)] }), true);
  assert.deepEqual(kinds, ["labels_loaded"]);
  assert.equal(model.label("a", 250).shape.x, 7);
  assert.equal(model.label("b", 250), null, "not in the answer: gone");
  assert.ok(model.isLoaded(250));
  assert.equal(model.mergeWindow({ seq: 9, from: 192, to: 299, labels: [] }), false, "an older answer changes nothing");
  assert.equal(model.label("a", 250).shape.x, 7);
});

test("events before the answer's position are not applied again; later ones are", () => {
  const model = windowed();
  model.mergeWindow({ seq: 14, from: 192, to: 299, labels: [full("a", 250, 7, "e14")] });
  model.apply([saved(12, "a", 250, 3), deleted(13, "b", 250)]); // both in the answer already
  assert.equal(model.label("a", 250).shape.x, 7);
  assert.equal(model.label("b", 250), null);
  assert.equal(model.seq, 13);
  model.apply([saved(15, "a", 250, 9)]);
  assert.equal(model.label("a", 250).shape.x, 9);
});

test("an answer older than an event keeps what the event wrote, deletions included", () => {
  const model = windowed();
  model.apply([saved(11, "a", 250, 5), deleted(12, "b", 250), saved(13, "b", 251, 4)]);
  assert.equal(model.label("a", 250).shape.x, 5, "an event's label is full");
  model.mergeWindow({ seq: 11, from: 192, to: 299, labels: [full("a", 250, 5, "e11"), full("b", 250, 2)] });
  assert.equal(model.label("b", 250), null, "deleted at 12, after the answer's 11");
  assert.equal(model.label("b", 251).shape.x, 4, "written at 13");
  assert.equal(model.label("a", 250).shape.x, 5);
});

test("without a window the model is as before: everything loaded, answers not needed", () => {
  const model = new MediaModel();
  model.loadSnapshot({ seq: 3, media: { media: "m", project: "p", frames: 300 }, classes: [], objects: {}, labels: [], proposals: [], tracks: [], undo: 0, redo: 0 });
  assert.ok(model.isLoaded(299));
  assert.equal(model.mergeWindow({ seq: 5, from: 0, to: 10, labels: [] }), false);
  assert.equal(ensureLabels(model, 200, () => assert.fail("no fetch")), null);
});

test("ensureLabels fetches a frame's window once while in flight, and drops an answer after a reset", async () => {
  const model = windowed();
  const asked = [];
  let answer;
  const fetchWindow = (media, seq, from, to) => {
    asked.push([media, seq, from, to]);
    return new Promise((resolve) => {
      answer = resolve;
    });
  };
  assert.equal(ensureLabels(model, 5, fetchWindow), null, "loaded already");
  const first = ensureLabels(model, 290, fetchWindow, 7);
  assert.equal(ensureLabels(model, 291, fetchWindow, 7), first, "the same block: the same request");
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(asked, [["m", 7, 256, 299]], "cut to the item's frames");
  answer({ seq: 10, from: 256, to: 299, labels: [full("a", 290, 8)] });
  assert.equal(await first, true);
  assert.equal(model.label("a", 290).shape.x, 8);

  const again = ensureLabels(model, 130, fetchWindow);
  await new Promise((resolve) => setTimeout(resolve, 0));
  model.loadSnapshot({ ...windowedSnapshotOf(model), seq: 20 });
  answer({ seq: 10, from: 128, to: 191, labels: [] });
  assert.equal(await again, false, "asked before the reset: dropped");
  assert.ok(!model.isLoaded(130));
});

function windowedSnapshotOf(model) {
  return {
    media: model.media, classes: [...model.classes.values()], objects: Object.fromEntries(model.objects), labels: [], proposals: [], tracks: [],
    undo: 0, redo: 0, window: [0, 127], heads: { objects: [], sources: [], actors: [], models: [], cells: [] },
  };
}
