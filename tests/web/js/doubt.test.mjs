// Unit tests of the page's doubtful results (web/js/doubt.js), issue 18 part 2: node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { PRESENCE_DOUBT, doubtText, doubtfulOf, isDoubtful, nextDoubtful } from "../../../web/js/doubt.js";
import { MediaModel } from "../../../web/js/model.js";

const box = (x) => ({ type: "bbox", x, y: 1, w: 5, h: 5 });
let seq = 0;
const event = (body, actor = "user:alice", id = `e${seq + 1}`) => ({ seq: ++seq, id, actor, body });

function modelWithScores(scores) {
  seq = 0;
  const model = new MediaModel();
  model.loadSnapshot({ seq: 0, media: { media: "m", project: "p", frames: 10 }, classes: [], objects: {}, labels: [], proposals: [], tracks: [], undo: 0, redo: 0 });
  model.apply([
    event({ type: "object_created", object: "a", media: "m", class_id: "c" }),
    event({ type: "label_saved", object: "a", frame: 0, shape: box(1), source: "manual" }),
    event({ type: "track_requested", media: "m", objects: ["a"], start: 0, direction: "forward", range: 6, keep_people: true }, "user:alice", "t1"),
  ]);
  model.apply(scores.map((score, i) => event({ type: "track_frame_produced", track: "t1", object: "a", frame: i + 1, shape: box(2 + i), score, model: "classical/x@1" }, "model:classical")));
  return model;
}

test("results under PRESENCE_DOUBT are doubtful, by frame, with their scores", () => {
  const model = modelWithScores([0.9, 0.62, 0.95, 0.51, 0.7]);
  assert.equal(PRESENCE_DOUBT, 0.7);
  assert.deepEqual(doubtfulOf(model, "t1"), [
    { object: "a", frame: 2, score: 0.62 },
    { object: "a", frame: 4, score: 0.51 },
  ]);
  assert.ok(isDoubtful(0.69) && !isDoubtful(0.7) && !isDoubtful(null) && !isDoubtful(undefined));
  assert.equal(doubtText(2), "2 doubtful");
  assert.deepEqual(doubtfulOf(model, "nope"), []);
});

test("next doubtful goes to the first doubtful frame after the current one, then wraps", () => {
  const doubtful = doubtfulOf(modelWithScores([0.9, 0.62, 0.95, 0.51]), "t1");
  assert.equal(nextDoubtful(doubtful, 0), 2);
  assert.equal(nextDoubtful(doubtful, 2), 4);
  assert.equal(nextDoubtful(doubtful, 4), 2);
  assert.equal(nextDoubtful([], 3), null);
});

test("a reviewed result is no longer pointed at", () => {
  const model = modelWithScores([0.6, 0.6]);
  model.apply([event({ type: "tracked_accepted", track: "t1", frames: [1] })]);
  assert.deepEqual(doubtfulOf(model, "t1").map((d) => d.frame), [2]);
});
