// Adding and removing vertices of polygons and polylines (issue 14, point 4): a click on an edge of
// the selected shape inserts a vertex there (and drags it while the button is held); Alt+click on
// a vertex removes it. Pure functions on shapes (domain/shapes.py coordinates); no DOM, so Node's
// test runner loads this module (tests/web/js/vertices.test.mjs).

import { quantize, ringArea, segmentDistance } from "./geometry.js";

/** The rings of a polygon as [{part, ring, flat}] (ring 0 the outer one), or the polyline's path. */
function paths(shape) {
  if (shape.type === "polygon") {
    const out = [];
    shape.parts.forEach((part, p) => [part.outer, ...(part.holes ?? [])].forEach((flat, r) => out.push({ part: p, ring: r, flat, closed: true })));
    return out;
  }
  if (shape.type === "polyline") return [{ part: 0, ring: 0, flat: shape.points, closed: false }];
  return [];
}

function withRing(shape, part, ring, flat) {
  if (shape.type === "polyline") return { type: "polyline", points: flat };
  const parts = shape.parts.map((pt, p) => {
    if (p !== part) return pt;
    const rings = [pt.outer, ...(pt.holes ?? [])];
    rings[ring] = flat;
    return { outer: rings[0], holes: rings.slice(1) };
  });
  return { type: "polygon", parts };
}

/**
 * The edge of `shape` nearest to (x, y) within `tolerance`: {part, ring, index (the new vertex's
 * index: after the edge's first vertex), x, y (the nearest point on the edge)}; null if none.
 */
export function edgeAt(shape, x, y, tolerance) {
  let best = null;
  for (const { part, ring, flat, closed } of paths(shape)) {
    const n = flat.length / 2;
    const edges = closed ? n : n - 1;
    for (let i = 0; i < edges; i++) {
      const j = (i + 1) % n;
      const ax = flat[2 * i], ay = flat[2 * i + 1], bx = flat[2 * j], by = flat[2 * j + 1];
      const d = segmentDistance(x, y, ax, ay, bx, by);
      if (d > tolerance || (best && d >= best.d)) continue;
      const dx = bx - ax, dy = by - ay;
      const length2 = dx * dx + dy * dy;
      const t = length2 > 0 ? Math.max(0, Math.min(1, ((x - ax) * dx + (y - ay) * dy) / length2)) : 0;
      best = { part, ring, index: i + 1, x: quantize(ax + t * dx), y: quantize(ay + t * dy), d };
    }
  }
  if (!best) return null;
  const { d, ...edge } = best;
  return edge;
}

/** `shape` with a vertex inserted on an edge (from edgeAt) at (x, y); {shape, handle} for dragging it. */
export function insertVertex(shape, edge, x = edge.x, y = edge.y) {
  const path = paths(shape).find((p) => p.part === edge.part && p.ring === edge.ring);
  if (!path) return null;
  const flat = path.flat.slice();
  flat.splice(2 * edge.index, 0, quantize(x), quantize(y));
  const out = withRing(shape, edge.part, edge.ring, flat);
  const handle = shape.type === "polygon"
    ? { x, y, kind: "vertex", part: edge.part, ring: edge.ring, index: edge.index }
    : { x, y, kind: "vertex", index: edge.index };
  return { shape: out, handle };
}

/**
 * `shape` without the vertex `handle` (from geometry.shapeHandles), or null when that would leave
 * too few: a polygon ring keeps 3 vertices and some area, a polyline 2 points.
 */
export function removeVertex(shape, handle) {
  if (shape.type !== "polygon" && shape.type !== "polyline") return null;
  const part = handle.part ?? 0, ring = handle.ring ?? 0;
  const path = paths(shape).find((p) => p.part === part && p.ring === ring);
  if (!path) return null;
  const n = path.flat.length / 2;
  if (handle.index < 0 || handle.index >= n || n - 1 < (path.closed ? 3 : 2)) return null;
  const flat = path.flat.slice();
  flat.splice(2 * handle.index, 2);
  if (path.closed && ringArea(flat) <= 1e-9) return null;
  return withRing(shape, part, ring, flat);
}
