// Pure geometry for the canvas editor: the view transform, shapes made from drags and clicks,
// hit testing and handle edits. No DOM here, so Node's test runner can load it.
//
// Coordinates (domain/shapes.py): shape coordinates put (0, 0) at the centre of the top-left
// pixel. "Image space" puts it at the pixel's top-left corner, so pixel i covers [i, i + 1) and a
// shape point (x, y) sits at image space (x + 0.5, y + 0.5). A bbox {x, y, w, h} covers the
// pixels whose centres lie in [x - 0.5, x + w - 0.5): in image space, the rectangle from (x, y)
// to (x + w, y + h). The view maps image space to canvas (CSS) pixels:
// screen = (ox + scale * u, oy + scale * v).
//
// Every coordinate the editor emits is a multiple of 1/QUANTUM pixel: binary fractions add and
// subtract exactly, so a clamped box really satisfies x + w <= width on the server.

export const QUANTUM = 16;

export function quantize(value) {
  return Math.round(value * QUANTUM) / QUANTUM;
}

const clamp = (value, lo, hi) => Math.min(hi, Math.max(lo, value));

// ---- the view ---------------------------------------------------------------------------------

/** The view that shows the whole width x height frame centred in a viewW x viewH canvas. */
export function fitView(width, height, viewW, viewH) {
  if (!(width > 0 && height > 0 && viewW > 0 && viewH > 0)) return { scale: 1, ox: 0, oy: 0 };
  const scale = Math.min(viewW / width, viewH / height);
  return { scale, ox: (viewW - width * scale) / 2, oy: (viewH - height * scale) / 2 };
}

/** Canvas (CSS px) position of the shape point (x, y). */
export function shapeToScreen(view, x, y) {
  return { x: view.ox + view.scale * (x + 0.5), y: view.oy + view.scale * (y + 0.5) };
}

/** Shape coordinates of the canvas (CSS px) position (sx, sy). */
export function screenToShape(view, sx, sy) {
  return { x: (sx - view.ox) / view.scale - 0.5, y: (sy - view.oy) / view.scale - 0.5 };
}

/** The view zoomed by `factor` (scale clamped to [minScale, maxScale]) around canvas point (sx, sy). */
export function zoomAt(view, sx, sy, factor, minScale = 1e-3, maxScale = 1e3) {
  const scale = clamp(view.scale * factor, minScale, maxScale);
  const k = scale / view.scale;
  return { scale, ox: sx - (sx - view.ox) * k, oy: sy - (sy - view.oy) * k };
}

// ---- shapes from clicks and drags -------------------------------------------------------------

/** A click at shape point (x, y) as a point inside the frame: [0, width - 1] x [0, height - 1]. */
export function clampPoint(x, y, width, height) {
  return { x: quantize(clamp(x, 0, Math.max(0, width - 1))), y: quantize(clamp(y, 0, Math.max(0, height - 1))) };
}

/** The image-space rectangle between two shape points, clamped to the frame and quantised;
 * null when it is empty. */
function dragRect(a, b, width, height) {
  const left = quantize(clamp(Math.min(a.x, b.x) + 0.5, 0, width));
  const right = quantize(clamp(Math.max(a.x, b.x) + 0.5, 0, width));
  const top = quantize(clamp(Math.min(a.y, b.y) + 0.5, 0, height));
  const bottom = quantize(clamp(Math.max(a.y, b.y) + 0.5, 0, height));
  if (right - left <= 0 || bottom - top <= 0) return null;
  return { left, top, right, bottom };
}

/** The bbox a drag between shape points a and b draws (x >= 0, y >= 0, x + w <= width,
 * y + h <= height, w, h > 0), or null for an empty one. */
export function bboxFromDrag(a, b, width, height) {
  const r = dragRect(a, b, width, height);
  if (!r) return null;
  return { type: "bbox", x: r.left, y: r.top, w: r.right - r.left, h: r.bottom - r.top };
}

/** The rotated bbox (angle 0) a drag between shape points a and b draws, or null. */
export function rotatedFromDrag(a, b, width, height) {
  const r = dragRect(a, b, width, height);
  if (!r) return null;
  return {
    type: "rotated_bbox",
    cx: clamp((r.left + r.right) / 2 - 0.5, 0, width),
    cy: clamp((r.top + r.bottom) / 2 - 0.5, 0, height),
    w: r.right - r.left,
    h: r.bottom - r.top,
    angle: 0,
  };
}

/** A SAM prompt box from a drag: both corners as clicks (clamped points), x0 < x1, y0 < y1;
 * null when it is empty. */
export function promptBoxFromDrag(a, b, width, height) {
  const p = clampPoint(Math.min(a.x, b.x), Math.min(a.y, b.y), width, height);
  const q = clampPoint(Math.max(a.x, b.x), Math.max(a.y, b.y), width, height);
  if (q.x <= p.x || q.y <= p.y) return null;
  return { x0: p.x, y0: p.y, x1: q.x, y1: q.y };
}

/** Twice the signed area of a flat ring [x0, y0, x1, y1, ...]. */
function doubleArea(flat) {
  let sum = 0;
  const n = flat.length / 2;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    sum += flat[2 * i] * flat[2 * j + 1] - flat[2 * j] * flat[2 * i + 1];
  }
  return sum;
}

export function ringArea(flat) {
  return Math.abs(doubleArea(flat)) / 2;
}

/** Points [{x, y}] without consecutive repeats (and, for a ring, without a last point equal to
 * the first). */
function dedupe(points, ring) {
  const out = [];
  for (const p of points) {
    const last = out[out.length - 1];
    if (!last || last.x !== p.x || last.y !== p.y) out.push(p);
  }
  while (ring && out.length > 1 && out[0].x === out[out.length - 1].x && out[0].y === out[out.length - 1].y) out.pop();
  return out;
}

/** A polygon of clicked points [{x, y}], or null unless it has >= 3 points and a non-zero area. */
export function polygonFromPoints(points) {
  const ring = dedupe(points, true);
  if (ring.length < 3) return null;
  const outer = ring.flatMap((p) => [p.x, p.y]);
  if (ringArea(outer) <= 1e-9) return null;
  return { type: "polygon", parts: [{ outer, holes: [] }] };
}

/** A polyline of clicked points, or null unless it has >= 2 distinct points. */
export function polylineFromPoints(points) {
  const line = dedupe(points, false);
  if (line.length < 2) return null;
  return { type: "polyline", points: line.flatMap((p) => [p.x, p.y]) };
}

/** Whether a click at p (shape coordinates) closes a polygon in progress: it has >= 3 points and
 * p lies within `tolerance` of the first one. */
export function closesPolygon(points, p, tolerance) {
  return points.length >= 3 && Math.hypot(points[0].x - p.x, points[0].y - p.y) <= tolerance;
}

// ---- rotated boxes ----------------------------------------------------------------------------

function axes(rb) {
  const a = (rb.angle * Math.PI) / 180;
  return { uw: [Math.cos(a), Math.sin(a)], uh: [-Math.sin(a), Math.cos(a)] };
}

/** The 4 corners [[x, y], ...] of a rotated bbox: top-left, top-right, bottom-right, bottom-left of
 * the unrotated box (as domain.geometry.rotated_bbox_corners). */
export function rotatedCorners(rb) {
  const { uw, uh } = axes(rb);
  const wx = (uw[0] * rb.w) / 2, wy = (uw[1] * rb.w) / 2;
  const hx = (uh[0] * rb.h) / 2, hy = (uh[1] * rb.h) / 2;
  return [
    [rb.cx - wx - hx, rb.cy - wy - hy],
    [rb.cx + wx - hx, rb.cy + wy - hy],
    [rb.cx + wx + hx, rb.cy + wy + hy],
    [rb.cx - wx + hx, rb.cy - wy + hy],
  ];
}

/** Where the rotation handle of a rotated bbox sits: `offset` beyond the middle of its top edge. */
export function rotationHandle(rb, offset) {
  const { uh } = axes(rb);
  const d = rb.h / 2 + offset;
  return [rb.cx - uh[0] * d, rb.cy - uh[1] * d];
}

function normaliseAngle(degrees) {
  let a = degrees % 360;
  if (a > 180) a -= 360;
  if (a <= -180) a += 360;
  return a;
}

/** The rotated bbox turned so that its rotation handle points at (x, y); `snap` (degrees, 0 for
 * none) rounds the angle. */
export function rotateTowards(rb, x, y, snap = 0) {
  const dx = x - rb.cx, dy = y - rb.cy;
  if (dx === 0 && dy === 0) return rb;
  let angle = (Math.atan2(dy, dx) * 180) / Math.PI + 90;
  angle = snap > 0 ? Math.round(angle / snap) * snap : Math.round(angle * 100) / 100;
  return { ...rb, angle: normaliseAngle(angle) };
}

/** The rotated bbox with corner `index` (0..3, as rotatedCorners) moved to (x, y) and the opposite
 * corner fixed; the angle is kept. Null when it would be empty. */
export function moveRotatedCorner(rb, index, x, y, width, height) {
  const { uw, uh } = axes(rb);
  const [ox, oy] = rotatedCorners(rb)[(index + 2) % 4];
  const dx = x - ox, dy = y - oy;
  const a = dx * uw[0] + dy * uw[1];
  const b = dx * uh[0] + dy * uh[1];
  const w = quantize(Math.abs(a)), h = quantize(Math.abs(b));
  if (w <= 0 || h <= 0) return null;
  const cx = ox + (a * uw[0] + b * uh[0]) / 2;
  const cy = oy + (a * uw[1] + b * uh[1]) / 2;
  return { ...rb, cx: quantize(clamp(cx, 0, width)), cy: quantize(clamp(cy, 0, height)), w, h };
}

// ---- handles ----------------------------------------------------------------------------------

/** The drag handles of a shape: [{x, y, kind, ...where}] in shape coordinates. `rotateOffset` is
 * the distance of a rotated bbox's rotation handle from its top edge (shape px). Bitmasks have
 * none. */
export function shapeHandles(shape, rotateOffset = 20) {
  const out = [];
  switch (shape.type) {
    case "polygon":
      shape.parts.forEach((part, p) => {
        const rings = [part.outer, ...(part.holes ?? [])];
        rings.forEach((ring, r) => {
          for (let i = 0; i + 1 < ring.length; i += 2) out.push({ x: ring[i], y: ring[i + 1], kind: "vertex", part: p, ring: r, index: i / 2 });
        });
      });
      break;
    case "polyline":
      for (let i = 0; i + 1 < shape.points.length; i += 2) out.push({ x: shape.points[i], y: shape.points[i + 1], kind: "vertex", index: i / 2 });
      break;
    case "keypoint":
      out.push({ x: shape.x, y: shape.y, kind: "vertex", index: 0 });
      break;
    case "skeleton":
      shape.points.forEach((pt, i) => out.push({ x: pt.x, y: pt.y, kind: "vertex", index: i }));
      break;
    case "bbox": {
      const l = shape.x - 0.5, t = shape.y - 0.5, r = l + shape.w, b = t + shape.h;
      [[l, t], [r, t], [r, b], [l, b]].forEach(([x, y], index) => out.push({ x, y, kind: "corner", index }));
      break;
    }
    case "rotated_bbox": {
      rotatedCorners(shape).forEach(([x, y], index) => out.push({ x, y, kind: "corner", index }));
      const [x, y] = rotationHandle(shape, rotateOffset);
      out.push({ x, y, kind: "rotate", index: 0 });
      break;
    }
    default:
      break;
  }
  return out;
}

/** The shape with `handle` (from shapeHandles) dragged to shape point (x, y), clamped to the
 * frame; null when the result would be invalid (an empty box, a polygon ring with no area). */
export function dragHandle(shape, handle, x, y, width, height, { snapAngle = 0 } = {}) {
  switch (shape.type) {
    case "polygon": {
      const p = clampPoint(x, y, width, height);
      const parts = shape.parts.map((part, pi) => {
        if (pi !== handle.part) return part;
        const rings = [part.outer, ...(part.holes ?? [])].map((ring, ri) => {
          if (ri !== handle.ring) return ring;
          const copy = ring.slice();
          copy[2 * handle.index] = p.x;
          copy[2 * handle.index + 1] = p.y;
          return copy;
        });
        return { outer: rings[0], holes: rings.slice(1) };
      });
      const ring = handle.ring === 0 ? parts[handle.part].outer : parts[handle.part].holes[handle.ring - 1];
      if (ringArea(ring) <= 1e-9) return null;
      return { type: "polygon", parts };
    }
    case "polyline": {
      const p = clampPoint(x, y, width, height);
      const points = shape.points.slice();
      points[2 * handle.index] = p.x;
      points[2 * handle.index + 1] = p.y;
      return { type: "polyline", points };
    }
    case "keypoint": {
      const p = clampPoint(x, y, width, height);
      return { type: "keypoint", x: p.x, y: p.y };
    }
    case "skeleton": {
      const p = clampPoint(x, y, width, height);
      const points = shape.points.map((pt, i) => (i === handle.index ? { x: p.x, y: p.y, visible: pt.visible ?? true } : pt));
      return { type: "skeleton", points };
    }
    case "bbox": {
      const corners = shapeHandles(shape);
      const [ox, oy] = [corners[(handle.index + 2) % 4].x, corners[(handle.index + 2) % 4].y];
      return bboxFromDrag({ x: ox, y: oy }, { x, y }, width, height);
    }
    case "rotated_bbox":
      if (handle.kind === "rotate") return rotateTowards(shape, x, y, snapAngle);
      return moveRotatedCorner(shape, handle.index, x, y, width, height);
    default:
      return null;
  }
}

/** All the points of a point-based shape, flat [x0, y0, ...]. */
function flatPoints(shape) {
  switch (shape.type) {
    case "polygon":
      return shape.parts.flatMap((part) => [...part.outer, ...(part.holes ?? []).flat()]);
    case "polyline":
      return shape.points;
    case "keypoint":
      return [shape.x, shape.y];
    case "skeleton":
      return shape.points.flatMap((p) => [p.x, p.y]);
    default:
      return [];
  }
}

/** The shape moved by (dx, dy), the move clamped so it stays in the frame ([0, width] x
 * [0, height]; a bbox covers frame pixels only; a rotated bbox keeps its centre in the frame).
 * Bitmasks are not moved (null). */
export function moveShape(shape, dx, dy, width, height) {
  dx = quantize(dx);
  dy = quantize(dy);
  const fit = (d, lo, hi) => clamp(d, lo, Math.max(lo, hi));
  switch (shape.type) {
    case "bbox": {
      const x = clamp(shape.x + fit(dx, -shape.x, width - shape.x - shape.w), 0, width - shape.w);
      const y = clamp(shape.y + fit(dy, -shape.y, height - shape.y - shape.h), 0, height - shape.h);
      return { ...shape, x, y };
    }
    case "rotated_bbox":
      return { ...shape, cx: clamp(shape.cx + dx, 0, width), cy: clamp(shape.cy + dy, 0, height) };
    case "bitmask":
      return null;
    default: {
      const flat = flatPoints(shape);
      let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
      for (let i = 0; i + 1 < flat.length; i += 2) {
        minX = Math.min(minX, flat[i]);
        maxX = Math.max(maxX, flat[i]);
        minY = Math.min(minY, flat[i + 1]);
        maxY = Math.max(maxY, flat[i + 1]);
      }
      const mx = fit(dx, -minX, width - maxX), my = fit(dy, -minY, height - maxY);
      const mv = (ring) => ring.map((v, i) => (i % 2 ? clamp(v + my, 0, height) : clamp(v + mx, 0, width)));
      switch (shape.type) {
        case "polygon":
          return { type: "polygon", parts: shape.parts.map((part) => ({ outer: mv(part.outer), holes: (part.holes ?? []).map(mv) })) };
        case "polyline":
          return { type: "polyline", points: mv(shape.points) };
        case "keypoint": {
          const [x, y] = mv([shape.x, shape.y]);
          return { type: "keypoint", x, y };
        }
        case "skeleton":
          return {
            type: "skeleton",
            points: shape.points.map((p) => {
              const [x, y] = mv([p.x, p.y]);
              return { x, y, visible: p.visible ?? true };
            }),
          };
        default:
          return null;
      }
    }
  }
}

// ---- hit testing ------------------------------------------------------------------------------

/** Distance from (px, py) to the segment (ax, ay)-(bx, by). */
export function segmentDistance(px, py, ax, ay, bx, by) {
  const dx = bx - ax, dy = by - ay;
  const len2 = dx * dx + dy * dy;
  let t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0;
  t = clamp(t, 0, 1);
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/** Distance from (px, py) to a flat point list, as an open path or (closed) a ring. */
export function pathDistance(px, py, flat, closed) {
  const n = flat.length / 2;
  if (n === 1) return Math.hypot(px - flat[0], py - flat[1]);
  let best = Infinity;
  const last = closed ? n : n - 1;
  for (let i = 0; i < last; i++) {
    const j = (i + 1) % n;
    best = Math.min(best, segmentDistance(px, py, flat[2 * i], flat[2 * i + 1], flat[2 * j], flat[2 * j + 1]));
  }
  return best;
}

/** Even-odd crossing test of (px, py) against a flat ring. */
function crossings(px, py, flat) {
  let inside = false;
  const n = flat.length / 2;
  for (let i = 0, j = n - 1; i < n; j = i++) {
    const xi = flat[2 * i], yi = flat[2 * i + 1], xj = flat[2 * j], yj = flat[2 * j + 1];
    if (yi > py !== yj > py && px < ((xj - xi) * (py - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Whether (px, py) lies inside a polygon shape (even-odd over each part's rings). */
export function pointInPolygon(shape, px, py) {
  for (const part of shape.parts) {
    let inside = crossings(px, py, part.outer);
    for (const hole of part.holes ?? []) if (crossings(px, py, hole)) inside = !inside;
    if (inside) return true;
  }
  return false;
}

/** Whether (px, py) lies inside a convex quadrilateral of corners [[x, y] x 4]. */
function inQuad(px, py, corners) {
  return crossings(px, py, corners.flat());
}

/** The area of a shape in pixels (0 for lines and points); bitmasks take `maskInfo.area`. */
export function shapeArea(shape, maskInfo) {
  switch (shape.type) {
    case "bbox":
    case "rotated_bbox":
      return shape.w * shape.h;
    case "polygon":
      return shape.parts.reduce((s, part) => s + ringArea(part.outer) - (part.holes ?? []).reduce((t, h) => t + ringArea(h), 0), 0);
    case "bitmask":
      return maskInfo ? maskInfo.area : 0;
    default:
      return 0;
  }
}

/**
 * How well the shape point (px, py) hits `shape`: null for a miss, else {rank, distance, area}.
 * rank 0: near a line or point (within `tolerance`); rank 1: inside an area shape (or within
 * `tolerance` of its outline). `maskOf(shape)` gives a bitmask's {mask (row-major 0/1), width,
 * height, area} or null.
 */
export function hitShape(shape, px, py, tolerance, maskOf) {
  switch (shape.type) {
    case "keypoint": {
      const d = Math.hypot(px - shape.x, py - shape.y);
      return d <= tolerance ? { rank: 0, distance: d, area: 0 } : null;
    }
    case "skeleton": {
      let d = Infinity;
      for (const p of shape.points) d = Math.min(d, Math.hypot(px - p.x, py - p.y));
      return d <= tolerance ? { rank: 0, distance: d, area: 0 } : null;
    }
    case "polyline": {
      const d = pathDistance(px, py, shape.points, false);
      return d <= tolerance ? { rank: 0, distance: d, area: 0 } : null;
    }
    case "polygon": {
      const area = shapeArea(shape);
      if (pointInPolygon(shape, px, py)) return { rank: 1, distance: 0, area };
      let d = Infinity;
      for (const part of shape.parts) for (const ring of [part.outer, ...(part.holes ?? [])]) d = Math.min(d, pathDistance(px, py, ring, true));
      return d <= tolerance ? { rank: 1, distance: d, area } : null;
    }
    case "bbox":
    case "rotated_bbox": {
      const corners = shape.type === "bbox" ? shapeHandles(shape).map((h) => [h.x, h.y]) : rotatedCorners(shape);
      const area = shape.w * shape.h;
      if (inQuad(px, py, corners)) return { rank: 1, distance: 0, area };
      const d = pathDistance(px, py, corners.flat(), true);
      return d <= tolerance ? { rank: 1, distance: d, area } : null;
    }
    case "bitmask": {
      const info = maskOf ? maskOf(shape) : null;
      if (!info) return null;
      // The mask may be cut to its box at (x, y), cropWidth wide (see rle.decodeRleCropped).
      const col = Math.floor(px + 0.5) - (info.x ?? 0), row = Math.floor(py + 0.5) - (info.y ?? 0);
      const width = info.cropWidth ?? info.width, height = info.cropHeight ?? info.height;
      if (col < 0 || row < 0 || col >= width || row >= height) return null;
      return info.mask[row * width + col] ? { rank: 1, distance: 0, area: info.area } : null;
    }
    default:
      return null;
  }
}

/**
 * The id of the item [{id, shape}] that a click at shape point (px, py) picks, or null. Lines and
 * points within `tolerance` win over areas (the nearest one); among areas the smallest wins, so
 * a small shape inside a large one can be picked; ties go to the item drawn last (on top).
 */
export function hitTest(items, px, py, tolerance, maskOf) {
  let best = null;
  let bestId = null;
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i];
    if (!item || !item.shape) continue;
    const hit = hitShape(item.shape, px, py, tolerance, maskOf);
    if (!hit) continue;
    const better =
      !best ||
      hit.rank < best.rank ||
      (hit.rank === best.rank && (hit.rank === 0 ? hit.distance < best.distance : hit.area < best.area));
    if (better) {
      best = hit;
      bestId = item.id;
    }
  }
  return bestId;
}

/** The nearest handle of `handles` to (px, py) within `tolerance`, or null. */
export function nearestHandle(handles, px, py, tolerance) {
  let best = null;
  let bestD = tolerance;
  for (const h of handles) {
    const d = Math.hypot(px - h.x, py - h.y);
    if (d <= bestD) {
      best = h;
      bestD = d;
    }
  }
  return best;
}

/** The bounds {x0, y0, x1, y1} of a shape in shape coordinates (bitmasks: `maskInfo.bounds`);
 * null when unknown. */
export function shapeBounds(shape, maskInfo) {
  let flat;
  switch (shape.type) {
    case "bbox":
      return { x0: shape.x - 0.5, y0: shape.y - 0.5, x1: shape.x + shape.w - 0.5, y1: shape.y + shape.h - 0.5 };
    case "rotated_bbox":
      flat = rotatedCorners(shape).flat();
      break;
    case "bitmask":
      return maskInfo ? maskInfo.bounds : null;
    default:
      flat = flatPoints(shape);
  }
  if (!flat.length) return null;
  const b = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
  for (let i = 0; i + 1 < flat.length; i += 2) {
    b.x0 = Math.min(b.x0, flat[i]);
    b.x1 = Math.max(b.x1, flat[i]);
    b.y0 = Math.min(b.y0, flat[i + 1]);
    b.y1 = Math.max(b.y1, flat[i + 1]);
  }
  return b;
}
