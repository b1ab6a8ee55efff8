// Unit tests of the page's keyframe conflicts (web/js/conflicts.js) and tracker choice
// (web/js/trackers.js), issue 14 points 1 and 3: node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { acceptBody, conflictText, conflictsOf, isConflict, isPersons } from "../../../web/js/conflicts.js";
import { MediaModel } from "../../../web/js/model.js";
import { resolveTracker, unavailableText } from "../../../web/js/trackers.js";

const box = (x) => ({ type: "bbox", x, y: 1, w: 5, h: 5 });
let seq = 0;
const event = (body, actor = "user:alice", id = `e${seq + 1}`) => ({ seq: ++seq, id, actor, body });

function modelWithTrack({ autosave = false, keep = true } = {}) {
  seq = 0;
  const model = new MediaModel();
  model.loadSnapshot({ seq: 0, media: { media: "m", project: "p", frames: 10 }, classes: [], objects: {}, labels: [], proposals: [], tracks: [], undo: 0, redo: 0 });
  const request = { type: "track_requested", media: "m", objects: ["a"], start: 0, direction: "forward", range: 5, autosave };
  if (keep) request.keep_people = true;
  model.apply([
    event({ type: "object_created", object: "a", media: "m", class_id: "c" }),
    event({ type: "label_saved", object: "a", frame: 0, shape: box(1), source: "manual" }),
    event({ type: "label_saved", object: "a", frame: 3, shape: box(9), source: "manual" }, "user:bob"),
    event(request, "user:alice", "t1"),
  ]);
  const produced = [1, 2, 3, 4].map((f) => event({ type: "track_frame_produced", track: "t1", object: "a", frame: f, shape: box(1 + f), score: 0.9, model: "classical/x@1" }, "model:classical"));
  model.apply(produced);
  return model;
}

test("a result on a person's label is a conflict", () => {
  const model = modelWithTrack();
  assert.deepEqual(conflictsOf(model, "t1"), [{ object: "a", frame: 3 }]);
  assert.ok(isConflict(model, "t1", "a", 3));
  assert.ok(!isConflict(model, "t1", "a", 2));
  assert.ok(isPersons({ source: "sam" }) && isPersons({ source: "imported" }) && !isPersons({ source: "tracked" }) && !isPersons(null));
  assert.equal(conflictText(1), "1 conflict");
  assert.equal(conflictText(2), "2 conflicts");
});

test("Save keeps the person's label; overwrite replaces it", () => {
  const model = modelWithTrack();
  model.apply([event(acceptBody("t1"))]);
  assert.equal(model.label("a", 3).source, "manual");
  assert.deepEqual(model.label("a", 3).shape, box(9));
  assert.equal(model.label("a", 2).source, "tracked");
  assert.equal(model.pendingCount("t1"), 0);
  const again = modelWithTrack();
  assert.deepEqual(acceptBody("t1", { objects: ["a"], frames: [3], overwrite: true }), { type: "tracked_accepted", track: "t1", objects: ["a"], frames: [3], overwrite: true });
  again.apply([event(acceptBody("t1", { overwrite: true }))]);
  assert.equal(again.label("a", 3).source, "tracked");
});

test("auto-label saves everywhere but on a person's label, which waits in review", () => {
  const model = modelWithTrack({ autosave: true });
  assert.deepEqual([1, 2, 4].map((f) => model.label("a", f).source), ["tracked", "tracked", "tracked"]);
  assert.equal(model.label("a", 3).source, "manual");
  assert.deepEqual(conflictsOf(model, "t1"), [{ object: "a", frame: 3 }]);
});

test("a track from before keep_people replaces as it did", () => {
  const model = modelWithTrack({ keep: false });
  model.apply([event(acceptBody("t1"))]);
  assert.equal(model.label("a", 3).source, "tracked");
});

const caps = {
  trackers: [
    { name: "classical", label: "Classical", available: true, why: null },
    { name: "sam2", label: "SAM 2", available: false, why: "start it with --backend sam2" },
  ],
  default_tracker: "classical",
  aliases: { simple: "classical", advanced: "classical" },
};

test("the tracker a request names runs on the server", () => {
  assert.equal(resolveTracker(null, "sam2"), null, "until the server said");
  assert.equal(resolveTracker(caps, null), "classical");
  assert.equal(resolveTracker(caps, "sam2"), "classical", "not run here: the default");
  assert.equal(resolveTracker(caps, "advanced"), "classical", "an alias: what it names here");
  assert.equal(resolveTracker(caps, "simple"), "classical");
  assert.equal(resolveTracker(caps, "classical"), "classical");
  assert.equal(unavailableText(caps), "SAM 2: start it with --backend sam2");
});
