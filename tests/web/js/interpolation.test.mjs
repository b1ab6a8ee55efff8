// Unit tests of the page's interpolation helpers (web/js/interpolation.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { INTERPOLATION, Interpolation, acrossKeyframes, isKeyframe, keyframes, nextKeyframe, toNextKeyframe } from "../../../web/js/interpolation.js";

test("people's labels are keyframes, a tracker's results are not", () => {
  assert.ok(isKeyframe({ source: "manual" }) && isKeyframe({ source: "sam" }) && isKeyframe({ source: "imported" }));
  assert.ok(!isKeyframe({ source: "tracked" }) && !isKeyframe(null));
  const sources = { 0: "manual", 3: "tracked", 7: "sam", 9: "tracked" };
  assert.deepEqual(keyframes([9, 0, 3, 7], "a", (_, f) => ({ source: sources[f] })), [0, 7]);
  assert.equal(nextKeyframe([0, 7], 0), 7);
  assert.equal(nextKeyframe([0, 7], 7), null);
});

test("to the next keyframe: from a labelled frame over the frames up to the next keyframe", () => {
  assert.deepEqual(toNextKeyframe([0, 3, 10], [0, 10], 3), { request: { start: 3, range: 8 }, reason: null });
  assert.match(toNextKeyframe([0, 10], [0, 10], 4).reason, /no label on this frame/);
  assert.match(toNextKeyframe([0, 10], [0, 10], 10).reason, /no keyframe/);
  assert.match(toNextKeyframe([0, 1], [0, 1], 0).reason, /nothing lies between/);
});

test("across all keyframes: from the first label to the last keyframe", () => {
  assert.deepEqual(acrossKeyframes([2, 4, 12, 15], [4, 12]), { start: 2, range: 11 });
  assert.equal(acrossKeyframes([4, 5], [4, 5]), null, "nothing between");
  assert.equal(acrossKeyframes([], []), null);
});

test("the object menu sends an interpolation track to review, or is disabled with the reason", async () => {
  const labels = new Map([[0, "manual"], [10, "manual"], [5, "tracked"]]);
  const sent = [];
  const page = {
    model: { labelFrames: () => [...labels.keys()].sort((a, b) => a - b), label: (_, f) => (labels.has(f) ? { source: labels.get(f) } : null) },
    state: { frame: 0 },
    canEdit: () => true,
    track: (objects, direction, options) => {
      sent.push({ objects, direction, ...options });
      return Promise.resolve({});
    },
  };
  const interpolation = new Interpolation(page);
  const [next, all] = interpolation.menuItems("a");
  assert.equal(next.testid, "ctx-interpolate-next");
  assert.ok(!next.disabled && !all.disabled);
  await next.action();
  assert.deepEqual(sent, [{ objects: ["a"], direction: "forward", start: 0, range: 11, interval: 0, algorithm: INTERPOLATION, autosave: false }]);
  page.state.frame = 4;
  const [unlabelled] = interpolation.menuItems("a");
  assert.ok(unlabelled.disabled && /no label on this frame/.test(unlabelled.label));
  page.canEdit = () => false;
  assert.ok(interpolation.menuItems("a").every((item) => item.disabled));
});
