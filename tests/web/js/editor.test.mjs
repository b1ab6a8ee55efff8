// Unit tests of the editor's pure geometry (web/js/geometry.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  bboxFromDrag,
  clampPoint,
  closesPolygon,
  dragHandle,
  fitView,
  hitTest,
  moveShape,
  nearestHandle,
  pointInPolygon,
  polygonFromPoints,
  polylineFromPoints,
  promptBoxFromDrag,
  quantize,
  rotatedCorners,
  rotatedFromDrag,
  rotateTowards,
  screenToShape,
  shapeBounds,
  shapeHandles,
  shapeToScreen,
  zoomAt,
} from "../../../web/js/geometry.js";
import { encodeRle } from "../../../web/js/rle.js";

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test("fitView centres the frame and the mapping round-trips", () => {
  const view = fitView(1280, 720, 800, 600);
  close(view.scale, 800 / 1280);
  close(view.ox, 0);
  close(view.oy, (600 - 720 * view.scale) / 2);
  // The top-left pixel's corner is the frame's corner on screen, its centre half a pixel in.
  const corner = shapeToScreen(view, -0.5, -0.5);
  close(corner.x, view.ox);
  close(corner.y, view.oy);
  const centre = shapeToScreen(view, 0, 0);
  close(centre.x, view.ox + 0.5 * view.scale);
  for (const [x, y] of [[0, 0], [10.25, 3], [1279, 719]]) {
    const s = shapeToScreen(view, x, y);
    const back = screenToShape(view, s.x, s.y);
    close(back.x, x);
    close(back.y, y);
  }
});

test("zoomAt keeps the point under the cursor fixed and clamps the scale", () => {
  const view = { scale: 1, ox: 10, oy: 20 };
  const before = screenToShape(view, 300, 200);
  const zoomed = zoomAt(view, 300, 200, 2.5);
  close(zoomed.scale, 2.5);
  const after = screenToShape(zoomed, 300, 200);
  close(after.x, before.x);
  close(after.y, before.y);
  assert.equal(zoomAt(view, 0, 0, 1000, 0.1, 64).scale, 64);
  assert.equal(zoomAt(view, 0, 0, 1e-6, 0.1, 64).scale, 0.1);
});

test("a click becomes a point clamped to the frame's pixel centres", () => {
  assert.deepEqual(clampPoint(10.2, 5.7, 100, 50), { x: quantize(10.2), y: quantize(5.7) });
  assert.deepEqual(clampPoint(-3, 80, 100, 50), { x: 0, y: 49 });
  assert.deepEqual(clampPoint(250, -0.4, 100, 50), { x: 99, y: 0 });
});

test("bbox from a drag: image-space corners, clamped, either direction", () => {
  // Shape points (9.5, 19.5) and (39.5, 34.5) are image-space (10, 20) and (40, 35).
  const box = bboxFromDrag({ x: 39.5, y: 34.5 }, { x: 9.5, y: 19.5 }, 100, 50);
  assert.deepEqual(box, { type: "bbox", x: 10, y: 20, w: 30, h: 15 });
  const clamped = bboxFromDrag({ x: -20, y: -20 }, { x: 500, y: 500 }, 100, 50);
  assert.deepEqual(clamped, { type: "bbox", x: 0, y: 0, w: 100, h: 50 });
  // Fractional drags still satisfy x + w <= width exactly.
  const frac = bboxFromDrag({ x: 12.3333, y: 1.1 }, { x: 99.7, y: 49.9 }, 100, 50);
  assert.ok(frac.x >= 0 && frac.y >= 0 && frac.w > 0 && frac.h > 0);
  assert.ok(frac.x + frac.w <= 100 && frac.y + frac.h <= 50);
  // Empty (zero width, or entirely outside) gives null.
  assert.equal(bboxFromDrag({ x: 5, y: 5 }, { x: 5, y: 30 }, 100, 50), null);
  assert.equal(bboxFromDrag({ x: 200, y: 5 }, { x: 300, y: 30 }, 100, 50), null);
});

test("rotated bbox from a drag: the same rectangle, angle 0, centre in shape coordinates", () => {
  const rb = rotatedFromDrag({ x: 9.5, y: 19.5 }, { x: 39.5, y: 34.5 }, 100, 50);
  assert.deepEqual(rb, { type: "rotated_bbox", cx: 24.5, cy: 27, w: 30, h: 15, angle: 0 });
  const corners = rotatedCorners(rb);
  assert.deepEqual(corners, [[9.5, 19.5], [39.5, 19.5], [39.5, 34.5], [9.5, 34.5]]);
});

test("rotatedCorners follows domain.geometry: clockwise on screen, width axis along (cos a, sin a)", () => {
  const corners = rotatedCorners({ type: "rotated_bbox", cx: 0, cy: 0, w: 4, h: 2, angle: 90 });
  // Turned 90 degrees clockwise: the top-left corner goes to the top-right.
  close(corners[0][0], 1);
  close(corners[0][1], -2);
  close(corners[1][0], 1);
  close(corners[1][1], 2);
  close(corners[2][0], -1);
  close(corners[2][1], 2);
});

test("the rotation handle turns the box towards the pointer", () => {
  const rb = { type: "rotated_bbox", cx: 50, cy: 50, w: 20, h: 10, angle: 0 };
  assert.equal(rotateTowards(rb, 50, 0).angle, 0); // straight up: unchanged
  assert.equal(rotateTowards(rb, 100, 50).angle, 90); // to the right: clockwise by 90
  assert.equal(rotateTowards(rb, 0, 50).angle, -90);
  assert.equal(rotateTowards(rb, 50, 100).angle, 180);
  assert.equal(rotateTowards(rb, 60, 0, 15).angle, 15);
  const handles = shapeHandles(rb, 5);
  const rotate = handles.find((h) => h.kind === "rotate");
  close(rotate.x, 50);
  close(rotate.y, 50 - 5 - 5);
});

test("dragging a rotated box corner keeps the opposite corner", () => {
  const rb = { type: "rotated_bbox", cx: 50, cy: 50, w: 20, h: 10, angle: 30 };
  const opposite = rotatedCorners(rb)[0];
  const moved = dragHandle(rb, { kind: "corner", index: 2 }, 70, 65, 100, 100);
  assert.equal(moved.angle, 30);
  const after = rotatedCorners(moved)[0];
  close(after[0], opposite[0], 0.1);
  close(after[1], opposite[1], 0.1);
  assert.equal(dragHandle(rb, { kind: "corner", index: 2 }, opposite[0], opposite[1], 100, 100), null);
});

test("bbox handles are the covered area's corners; dragging one keeps the opposite one", () => {
  const box = { type: "bbox", x: 10, y: 20, w: 30, h: 15 };
  const handles = shapeHandles(box);
  assert.deepEqual(handles.map((h) => [h.x, h.y]), [[9.5, 19.5], [39.5, 19.5], [39.5, 34.5], [9.5, 34.5]]);
  // Bottom-right corner to image-space (50, 45).
  assert.deepEqual(dragHandle(box, handles[2], 49.5, 44.5, 100, 100), { type: "bbox", x: 10, y: 20, w: 40, h: 25 });
  // Dragged past the opposite corner: the box flips.
  assert.deepEqual(dragHandle(box, handles[2], 4.5, 9.5, 100, 100), { type: "bbox", x: 5, y: 10, w: 5, h: 10 });
  // Beyond the frame: clamped.
  assert.deepEqual(dragHandle(box, handles[2], 500, 500, 100, 100), { type: "bbox", x: 10, y: 20, w: 90, h: 80 });
});

test("vertex handles of polygons, polylines, keypoints and skeletons", () => {
  const polygon = { type: "polygon", parts: [{ outer: [0, 0, 10, 0, 10, 10, 0, 10], holes: [[2, 2, 4, 2, 4, 4]] }] };
  const handles = shapeHandles(polygon);
  assert.equal(handles.length, 7);
  const moved = dragHandle(polygon, handles[2], 20, 30, 100, 100);
  assert.deepEqual(moved.parts[0].outer, [0, 0, 10, 0, 20, 30, 0, 10]);
  assert.deepEqual(moved.parts[0].holes, [[2, 2, 4, 2, 4, 4]]);
  // A drag that flattens a ring is refused.
  const tri = { type: "polygon", parts: [{ outer: [0, 0, 10, 0, 0, 10], holes: [] }] };
  assert.equal(dragHandle(tri, shapeHandles(tri)[2], 5, 0, 100, 100), null);

  const line = { type: "polyline", points: [1, 1, 5, 5] };
  assert.deepEqual(dragHandle(line, shapeHandles(line)[1], 200, -3, 100, 50), { type: "polyline", points: [1, 1, 99, 0] });
  assert.deepEqual(dragHandle({ type: "keypoint", x: 1, y: 1 }, { index: 0 }, 3, 4, 100, 50), { type: "keypoint", x: 3, y: 4 });
  const skeleton = { type: "skeleton", points: [{ x: 1, y: 1, visible: true }, { x: 2, y: 2, visible: false }] };
  assert.deepEqual(dragHandle(skeleton, { index: 1 }, 7, 8, 100, 50).points[1], { x: 7, y: 8, visible: false });
  assert.deepEqual(shapeHandles({ type: "bitmask", rle: { size: [1, 1], counts: "01" } }), []);
});

test("polygon and polyline completion", () => {
  assert.equal(polygonFromPoints([{ x: 0, y: 0 }, { x: 5, y: 5 }]), null);
  assert.equal(polygonFromPoints([{ x: 0, y: 0 }, { x: 5, y: 5 }, { x: 10, y: 10 }]), null); // collinear
  assert.equal(polygonFromPoints([{ x: 0, y: 0 }, { x: 5, y: 0 }, { x: 5, y: 0 }, { x: 0, y: 0 }]), null);
  assert.deepEqual(polygonFromPoints([{ x: 0, y: 0 }, { x: 5, y: 0 }, { x: 5, y: 0 }, { x: 5, y: 5 }, { x: 0, y: 0 }]), {
    type: "polygon",
    parts: [{ outer: [0, 0, 5, 0, 5, 5], holes: [] }],
  });
  assert.equal(polylineFromPoints([{ x: 1, y: 1 }, { x: 1, y: 1 }]), null);
  assert.deepEqual(polylineFromPoints([{ x: 1, y: 1 }, { x: 1, y: 1 }, { x: 4, y: 2 }]), { type: "polyline", points: [1, 1, 4, 2] });
  const pts = [{ x: 0, y: 0 }, { x: 10, y: 0 }, { x: 10, y: 10 }];
  assert.equal(closesPolygon(pts, { x: 0.5, y: 0.5 }, 1), true);
  assert.equal(closesPolygon(pts, { x: 3, y: 3 }, 1), false);
  assert.equal(closesPolygon(pts.slice(0, 2), { x: 0, y: 0 }, 1), false);
});

test("SAM prompt box from a drag: ordered corners clamped to the frame", () => {
  assert.deepEqual(promptBoxFromDrag({ x: 40, y: 30 }, { x: 10, y: 5 }, 100, 50), { x0: 10, y0: 5, x1: 40, y1: 30 });
  assert.deepEqual(promptBoxFromDrag({ x: -10, y: -10 }, { x: 300, y: 300 }, 100, 50), { x0: 0, y0: 0, x1: 99, y1: 49 });
  assert.equal(promptBoxFromDrag({ x: 200, y: 5 }, { x: 300, y: 30 }, 100, 50), null);
});

test("hit testing: areas, lines, points, bitmask pixels; lines and small areas win", () => {
  const W = 20, H = 10;
  const mask = new Uint8Array(W * H);
  mask[3 * W + 4] = 1; // pixel (col 4, row 3)
  const rle = encodeRle(mask, H, W);
  const maskOf = (shape) => (shape.type === "bitmask" ? { mask, width: W, height: H, area: 1 } : null);
  const items = [
    { id: "big", shape: { type: "bbox", x: 0, y: 0, w: 20, h: 10 } },
    { id: "small", shape: { type: "polygon", parts: [{ outer: [10, 2, 14, 2, 14, 6, 10, 6], holes: [[11, 3, 13, 3, 13, 5, 11, 5]] }] } },
    { id: "mask", shape: { type: "bitmask", rle } },
    { id: "line", shape: { type: "polyline", points: [0, 8, 19, 8] } },
    { id: "kp", shape: { type: "keypoint", x: 17, y: 2 } },
  ];
  assert.equal(hitTest(items, 4.2, 2.8, 0.5, maskOf), "mask");
  assert.equal(hitTest(items, 4.6, 2.8, 0.5, maskOf), "big"); // pixel (5, 3) is not in the mask
  assert.equal(hitTest(items, 10.5, 2.5, 0.5, maskOf), "small");
  assert.equal(hitTest(items, 12, 4, 0.1, maskOf), "big"); // in the hole
  assert.equal(hitTest(items, 5, 8.3, 0.5, maskOf), "line");
  assert.equal(hitTest(items, 17.3, 2.2, 0.5, maskOf), "kp");
  assert.equal(hitTest(items, 30, 30, 0.5, maskOf), null);
  assert.equal(hitTest([{ id: "r", shape: { type: "rotated_bbox", cx: 10, cy: 5, w: 10, h: 2, angle: 90 } }], 10, 9, 0.1), "r");
  assert.equal(hitTest([{ id: "r", shape: { type: "rotated_bbox", cx: 10, cy: 5, w: 10, h: 2, angle: 90 } }], 14, 5, 0.1), null);
  assert.equal(pointInPolygon(items[1].shape, 12, 4), false);
  assert.equal(nearestHandle([{ x: 0, y: 0 }, { x: 1, y: 0 }], 0.8, 0, 0.5).x, 1);
  assert.equal(nearestHandle([{ x: 0, y: 0 }], 3, 0, 0.5), null);
});

test("moving a shape keeps it in the frame", () => {
  assert.deepEqual(moveShape({ type: "bbox", x: 10, y: 10, w: 20, h: 10 }, 100, -100, 50, 40), { type: "bbox", x: 30, y: 0, w: 20, h: 10 });
  assert.deepEqual(moveShape({ type: "keypoint", x: 5, y: 5 }, 2, 3, 50, 40), { type: "keypoint", x: 7, y: 8 });
  assert.deepEqual(moveShape({ type: "polyline", points: [5, 5, 20, 10] }, 100, 0, 50, 40), { type: "polyline", points: [35, 5, 50, 10] });
  assert.deepEqual(moveShape({ type: "rotated_bbox", cx: 5, cy: 5, w: 4, h: 4, angle: 10 }, -10, 1, 50, 40), { type: "rotated_bbox", cx: 0, cy: 6, w: 4, h: 4, angle: 10 });
  const moved = moveShape({ type: "polygon", parts: [{ outer: [1, 1, 4, 1, 4, 4], holes: [[2, 1.5, 3, 1.5, 3, 2]] }] }, -5, 0, 50, 40);
  assert.deepEqual(moved.parts[0], { outer: [0, 1, 3, 1, 3, 4], holes: [[1, 1.5, 2, 1.5, 2, 2]] });
  assert.equal(moveShape({ type: "bitmask", rle: { size: [1, 1], counts: "01" } }, 1, 1, 5, 5), null);
  const sk = moveShape({ type: "skeleton", points: [{ x: 1, y: 1, visible: false }] }, 1, 1, 5, 5);
  assert.deepEqual(sk, { type: "skeleton", points: [{ x: 2, y: 2, visible: false }] });
});

test("shape bounds", () => {
  assert.deepEqual(shapeBounds({ type: "bbox", x: 10, y: 20, w: 5, h: 5 }), { x0: 9.5, y0: 19.5, x1: 14.5, y1: 24.5 });
  assert.deepEqual(shapeBounds({ type: "polyline", points: [3, 1, 1, 3] }), { x0: 1, y0: 1, x1: 3, y1: 3 });
  assert.equal(shapeBounds({ type: "bitmask", rle: {} }, null), null);
});
