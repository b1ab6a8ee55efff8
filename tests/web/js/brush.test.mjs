// Unit tests of the brush's raster operations (web/js/brush.js) and of vertex editing
// (web/js/vertices.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { maskEmpty, maskOfShape, paintPath, paintSegment, stepSize, strokeCommand } from "../../../web/js/brush.js";
import { decodeRle, encodeRle } from "../../../web/js/rle.js";
import { edgeAt, insertVertex, removeVertex } from "../../../web/js/vertices.js";

const W = 40, H = 30;

/** The pixels within r of the segment a-b, computed the slow, obvious way. */
function capsule(a, b, r) {
  const out = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let best = Infinity;
      for (let k = 0; k <= 1000; k++) {
        const t = k / 1000;
        best = Math.min(best, Math.hypot(x - (a.x + t * (b.x - a.x)), y - (a.y + t * (b.y - a.y))));
      }
      if (best <= r) out[y * W + x] = 1;
    }
  }
  return out;
}

const count = (mask) => mask.reduce((n, v) => n + v, 0);

test("a click paints a disc of pixels whose centres are within the radius", () => {
  const mask = new Uint8Array(W * H);
  const box = paintSegment(mask, W, H, { x: 10, y: 12 }, { x: 10, y: 12 }, 2.5, 1);
  assert.deepEqual(box, { x0: 8, y0: 10, x1: 12, y1: 14 });
  // r = 2.5: offsets with dx^2 + dy^2 <= 6.25, i.e. 21 pixels.
  assert.equal(count(mask), 21);
  assert.equal(mask[12 * W + 12], 1);
  assert.equal(mask[14 * W + 12], 0); // (2, 2): 8 > 6.25
});

test("a drag paints the capsule around the segment, however it is split", () => {
  const whole = new Uint8Array(W * H);
  paintSegment(whole, W, H, { x: 5, y: 10 }, { x: 30, y: 14 }, 3.5, 1);
  assert.deepEqual([...whole], [...capsule({ x: 5, y: 10 }, { x: 30, y: 14 }, 3.5)]);
  const split = new Uint8Array(W * H);
  const points = [0, 0.1, 0.35, 0.5, 0.9, 1].map((t) => ({ x: 5 + 25 * t, y: 10 + 4 * t }));
  paintPath(split, W, H, points, 3.5, 1);
  assert.deepEqual([...split], [...whole]);
});

test("erasing clears pixels, painting off the frame is clipped", () => {
  const mask = new Uint8Array(W * H).fill(1);
  paintSegment(mask, W, H, { x: 0, y: 0 }, { x: 39, y: 0 }, 1.5, 0);
  for (let x = 0; x < W; x++) assert.equal(mask[x] + mask[W + x], 0);
  assert.equal(mask[2 * W + 5], 1);
  assert.equal(paintSegment(mask, W, H, { x: -20, y: -20 }, { x: -10, y: -20 }, 2, 1), null);
  const edge = new Uint8Array(W * H);
  paintSegment(edge, W, H, { x: 39, y: 29 }, { x: 39, y: 29 }, 1, 1);
  assert.equal(count(edge), 3); // the corner pixel and its two neighbours inside the frame
});

test("sizes step by about 15% within the limits", () => {
  assert.equal(stepSize(13, 1), 15);
  assert.equal(stepSize(13, -1), 11);
  assert.equal(stepSize(1, -1), 1);
  assert.equal(stepSize(256, 1), 256);
  assert.equal(stepSize(3, 1), 4);
});

test("a stroke is saved as one command: label_saved with edited, object_created for a new object, label_deleted when empty", () => {
  const mask = new Uint8Array(W * H);
  paintSegment(mask, W, H, { x: 10, y: 10 }, { x: 20, y: 10 }, 2, 1);
  const base = encodeRle(new Uint8Array(W * H).fill(0).map((_, i) => (i === 5 ? 1 : 0)), H, W);
  const common = { object: "o", classId: "mask", media: "m", frame: 3, mask, width: W, height: H };
  const saved = strokeCommand({ ...common, exists: true, base, edited: "e-1" });
  assert.equal(saved.type, "label_saved");
  assert.equal(saved.edited, "e-1");
  assert.equal(saved.source, "manual");
  assert.deepEqual([...decodeRle(saved.shape.rle)], [...mask]);
  const created = strokeCommand({ ...common, exists: false, base: null, edited: null });
  assert.deepEqual(Object.keys(created).sort(), ["class_id", "label", "media", "object", "type"]);
  assert.equal(created.type, "object_created");
  assert.deepEqual(created.label.frame, 3);
  assert.equal(created.label.source, "manual");
  const empty = new Uint8Array(W * H);
  assert.deepEqual(strokeCommand({ ...common, mask: empty, exists: true, base, edited: "e-1" }), { type: "label_deleted", object: "o", frame: 3 });
  assert.equal(strokeCommand({ ...common, mask: empty, exists: false, base: null }), null);
  // A stroke that changed nothing sends nothing.
  assert.equal(strokeCommand({ ...common, exists: true, base: encodeRle(mask, H, W), edited: "e-1" }), null);
  assert.ok(maskEmpty(empty) && !maskEmpty(mask));
  assert.deepEqual([...maskOfShape({ type: "bitmask", rle: encodeRle(mask, H, W) }, W, H)], [...mask]);
  assert.equal(maskOfShape({ type: "bbox", x: 1, y: 1, w: 2, h: 2 }, W, H), null);
});

const square = { type: "polygon", parts: [{ outer: [0, 0, 10, 0, 10, 10, 0, 10], holes: [] }] };

test("a click on an edge inserts a vertex there", () => {
  const edge = edgeAt(square, 5, 0.5, 1);
  assert.deepEqual(edge, { part: 0, ring: 0, index: 1, x: 5, y: 0 });
  const { shape, handle } = insertVertex(square, edge);
  assert.deepEqual(shape.parts[0].outer, [0, 0, 5, 0, 10, 0, 10, 10, 0, 10]);
  assert.equal(handle.index, 1);
  // The closing edge (last vertex back to the first) counts too.
  const closing = edgeAt(square, 0, 5, 1);
  assert.equal(closing.index, 4);
  assert.deepEqual(insertVertex(square, closing).shape.parts[0].outer, [0, 0, 10, 0, 10, 10, 0, 10, 0, 5]);
  assert.equal(edgeAt(square, 5, 5, 1), null);
  const line = { type: "polyline", points: [0, 0, 10, 0] };
  assert.deepEqual(insertVertex(line, edgeAt(line, 4, 0, 1)).shape.points, [0, 0, 4, 0, 10, 0]);
});

test("a vertex is removed unless too few would be left", () => {
  const five = insertVertex(square, edgeAt(square, 5, 0, 1)).shape;
  assert.deepEqual(removeVertex(five, { part: 0, ring: 0, index: 1 }).parts[0].outer, square.parts[0].outer);
  assert.equal(removeVertex({ type: "polygon", parts: [{ outer: [0, 0, 10, 0, 0, 10], holes: [] }] }, { part: 0, ring: 0, index: 0 }), null);
  assert.equal(removeVertex({ type: "polyline", points: [0, 0, 10, 0] }, { index: 0 }), null);
  assert.deepEqual(removeVertex({ type: "polyline", points: [0, 0, 5, 5, 10, 0] }, { index: 1 }).points, [0, 0, 10, 0]);
  assert.equal(removeVertex({ type: "bbox", x: 0, y: 0, w: 1, h: 1 }, { index: 0 }), null);
});
