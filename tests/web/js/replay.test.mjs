// Unit tests of the replay's positions (web/js/replay.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { countUpTo, replayView, seqOfStep } from "../../../web/js/replay.js";
import { MediaModel } from "../../../web/js/model.js";

test("slider steps are this item's events: step k is right after its k-th event", () => {
  const positions = [7, 9, 15, 40];
  assert.equal(seqOfStep(positions, 0), 6, "before the first event");
  assert.equal(seqOfStep(positions, 1), 7);
  assert.equal(seqOfStep(positions, 3), 15);
  assert.equal(seqOfStep(positions, 4), 40);
  assert.equal(seqOfStep([], 0), 0);
});

test("a log position maps to the step of the item's last event at or before it", () => {
  const positions = [7, 9, 15, 40];
  assert.equal(countUpTo(positions, 3), 0);
  assert.equal(countUpTo(positions, 7), 1);
  assert.equal(countUpTo(positions, 14), 2, "another item's event at 14 is not a step");
  assert.equal(countUpTo(positions, 40), 4);
  assert.equal(countUpTo(positions, 99), 4);
});

test("the view reads the replayed model while replaying, the live one otherwise", () => {
  const live = new MediaModel();
  const replayed = new MediaModel();
  live.media = { media: "m" };
  replayed.media = { media: "m" };
  live.objects.set("now", {});
  replayed.objects.set("then", {});
  const replay = { active: false, model: replayed };
  const view = replayView(live, () => replay);
  assert.deepEqual([...view.objects.keys()], ["now"]);
  replay.active = true;
  assert.deepEqual([...view.objects.keys()], ["then"]);
  assert.deepEqual(view.labelFrames("then"), [], "methods run on the model they come from");
});
