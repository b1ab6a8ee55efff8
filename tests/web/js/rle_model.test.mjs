// rle.js against masks encoded by the server (pycocotools), and model.js folding events the way
// domain/state.py does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeRle, encodeRle, maskArea } from "../../../web/js/rle.js";
import { MediaModel } from "../../../web/js/model.js";

// A 4x5 mask (height 4, width 5) with pixels (row, col) (1,1), (2,1), (1,3) set, as pycocotools
// encodes it: column-major runs 5,2,6,1,6, the third on stored as differences ("526O0").
const RLE = { size: [4, 5], counts: "526O0" };

test("decodes a COCO RLE into a row-major mask", () => {
  const mask = decodeRle(RLE);
  const set = [...mask].flatMap((v, i) => (v ? [[Math.floor(i / 5), i % 5]] : []));
  assert.deepEqual(set, [[1, 1], [1, 3], [2, 1]]);
  assert.equal(maskArea(mask), 3);
});

test("encodes back to the same string", () => {
  assert.deepEqual(encodeRle(decodeRle(RLE), 4, 5), RLE);
  const big = new Uint8Array(300 * 200);
  for (let i = 0; i < big.length; i += 7) big[i] = 1;
  assert.deepEqual(decodeRle(encodeRle(big, 300, 200)), big);
});

const event = (seq, body, extra = {}) => ({ seq, id: `e${seq}`, stream: "media:m1", actor: "user:alice", at: 0, cause: null, v: 1, body, ...extra });

test("the model folds labels, tracks, review and undo", () => {
  const model = new MediaModel();
  model.loadSnapshot({
    seq: 10, media: { project: "p1", media: "m1", frames: 5, width: 5, height: 4 },
    classes: [{ project: "p1", class_id: "box", name: "box", shape: "bbox", color: "#ff0000" }],
    objects: {}, labels: [], proposals: [], tracks: [], undo: 0, redo: 0,
  });
  const box = { type: "bbox", x: 1, y: 1, w: 2, h: 2 };
  model.apply([
    event(11, { type: "object_created", object: "a", media: "m1", class_id: "box" }),
    event(12, { type: "label_saved", object: "a", frame: 0, shape: box, source: "manual" }),
    event(13, { type: "track_requested", media: "m1", objects: ["a"], start: 0, direction: "forward", range: 3, interval: 0, algorithm: "simple", autosave: false }),
    event(14, { type: "track_frame_produced", track: "e13", object: "a", frame: 1, shape: box, score: 0.9, model: "m/x@1" }, { actor: "model:m/x@1" }),
    event(15, { type: "track_frame_produced", track: "e13", object: "a", frame: 2, shape: null, score: 0, model: "m/x@1" }, { actor: "model:m/x@1" }),
    event(16, { type: "track_completed", track: "e13", frames: 2 }, { actor: "model:m/x@1" }),
  ]);
  assert.equal(model.proposalsAt(1).length, 1);
  assert.equal(model.proposalsAt(2).length, 0, "a lost frame proposes nothing");
  assert.equal(model.tracks.get("e13").status, "completed");
  model.apply([event(17, { type: "tracked_accepted", track: "e13", objects: null, frames: null })]);
  assert.equal(model.label("a", 1).source, "tracked");
  assert.equal(model.pendingCount("e13"), 0);
  model.apply([
    event(18, { type: "undone", media: "m1", target: "e17", conflicts: 0, changes: [
      { type: "label", object: "a", frame: 1, before: model.label("a", 1), after: null },
      { type: "proposal", track: "e13", object: "a", frame: 1, before: null, after: { written_by: "e14", shape: box, score: 0.9, model: "m/x@1" } },
    ] }),
  ]);
  assert.equal(model.label("a", 1), null);
  assert.equal(model.proposalsAt(1).length, 1, "undo brings the proposal back");
  assert.deepEqual(model.sourceCounts(), { manual: 1, sam: 0, tracked: 0, imported: 0 });
  model.apply([event(12, { type: "label_deleted", object: "a", frame: 0 })]);
  assert.ok(model.label("a", 0), "an event at or before the model's position is ignored");
});

test("a cropped decode is the full decode cut to the mask's box", async () => {
  const { decodeRleCropped } = await import("../../../web/js/rle.js");
  const height = 30, width = 40;
  const full = new Uint8Array(height * width);
  for (let y = 5; y < 12; y++) for (let x = 7; x < 20; x++) if ((x * 7 + y * 3) % 5) full[y * width + x] = 1;
  full[29 * width + 39] = 1; // a run that wraps into the last column's bottom
  const crop = decodeRleCropped(encodeRle(full, height, width));
  assert.deepEqual([crop.x, crop.y, crop.w, crop.h], [7, 5, 33, 25]);
  let area = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inside = x >= crop.x && y >= crop.y && x < crop.x + crop.w && y < crop.y + crop.h;
      const got = inside ? crop.mask[(y - crop.y) * crop.w + (x - crop.x)] : 0;
      assert.equal(got, full[y * width + x], `pixel ${x},${y}`);
      area += got;
    }
  }
  assert.equal(area, crop.area);
  assert.equal(decodeRleCropped(encodeRle(new Uint8Array(12), 3, 4)).area, 0);
});
