// The canvas editor: draws a frame with its shapes, a SAM preview and prompt, and turns the
// pointer into prompts, new shapes, handle edits, picks, zoom and pan. It owns no labels: the app
// passes shapes in (setShapes) and answers the events it dispatches.
//
// Events (CustomEvent, `detail`):
//   "prompt" {point: {x, y, include}} | {box: {x0, y0, x1, y1}}    (mode sam)
//   "draw"   {shape}                                                (mode draw)
//   "edit"   {id, shape}                                            (mode select, handle or body drag)
//   "pick"   {id, additive}                                         (id null on empty space)
//   "brush"  {phase: down|move|up|cancel, x, y, erase}              (mode brush: a stroke; erase
//            when the mode is the eraser or Alt is held)
//   "brushsize" {step: +1|-1}                                       (mode brush: Shift+wheel)
//   "cursor" {x, y}                                                 (throttled to ~10/s)
//   "view"   {scale}                                                (after zoom, pan or fit)
// Coordinates are shape coordinates (domain/shapes.py), see geometry.js. Keys: the editor only
// handles Space (hold to pan); everything else is left to the app (Enter -> finish(),
// Escape -> cancel(), ...).

import { decodeRleCropped } from "./rle.js";
import { placeTags } from "./tags.js";
import {
  quantize,
  bboxFromDrag,
  clampPoint,
  closesPolygon,
  dragHandle,
  fitView,
  hitTest,
  moveShape,
  nearestHandle,
  polygonFromPoints,
  polylineFromPoints,
  promptBoxFromDrag,
  rotatedCorners,
  rotatedFromDrag,
  rotationHandle,
  screenToShape,
  shapeBounds,
  shapeHandles,
  shapeToScreen,
  zoomAt,
} from "./geometry.js";
import { edgeAt, insertVertex, removeVertex } from "./vertices.js";

const DRAG_THRESHOLD = 4; // screen px before a press becomes a drag
const HIT_TOLERANCE = 6; // screen px around lines and points
const HANDLE_RADIUS = 5; // screen px
const ROTATE_OFFSET = 24; // screen px from a rotated box's top edge to its rotation handle
const OUTSIDE_MARGIN = 12; // screen px: a click further outside the frame is not a prompt/vertex
const CURSOR_INTERVAL = 100; // ms between "cursor" events
const PENDING_MS = 2000; // how long an emitted edit is shown before the app's shapes win again
const MASK_CACHE = 64;
const MAX_SCALE = 64;

const INCLUDE_COLOR = "#22c55e";
const EXCLUDE_COLOR = "#ef4444";

/** A small LRU map. */
class Lru {
  constructor(limit) {
    this.limit = limit;
    this.map = new Map();
  }
  get(key, make) {
    let value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
      return value;
    }
    value = make();
    this.map.set(key, value);
    while (this.map.size > this.limit) this.map.delete(this.map.keys().next().value);
    return value;
  }
  clear() {
    this.map.clear();
  }
}

function parseColor(color) {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color ?? "");
  if (!m) {
    const s = /^#?([0-9a-f])([0-9a-f])([0-9a-f])$/i.exec(color ?? "");
    if (s) return [parseInt(s[1] + s[1], 16), parseInt(s[2] + s[2], 16), parseInt(s[3] + s[3], 16)];
    return [255, 200, 0];
  }
  return [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
}

function rgba(color, alpha) {
  const [r, g, b] = parseColor(color);
  return `rgba(${r},${g},${b},${alpha})`;
}

function makeCanvas(width, height) {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(width, height);
  const c = document.createElement("canvas");
  c.width = width;
  c.height = height;
  return c;
}

function isEditable(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName.toLowerCase();
  return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
}

export class Editor extends EventTarget {
  constructor(canvas) {
    super();
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.image = null;
    this.width = 0;
    this.height = 0;
    this.items = []; // {id, shape, color, selected, dashed, text, locked}: locked ones get no handles, no drags
    this.tags = []; // the tags drawn last: {id, text, x, y, w, h} (canvas pixels)
    this.preview = null; // {rle, color}
    this.overlay = null; // {canvas, hide}: a frame-sized canvas drawn over the shapes (the brush's mask)
    this.promptPoints = [];
    this.promptBox = null;
    this.mode = { kind: "select" };
    this.view = { scale: 1, ox: 0, oy: 0 };
    this._autoFit = true;
    this._cssW = 0;
    this._cssH = 0;
    this._dpr = 1;
    this._draft = null; // {shape, points: [{x, y}]} while clicking a polygon/polyline/skeleton
    this._gesture = null; // the pointer press in progress
    this._live = null; // {id, shape}: the shape being dragged
    this._pending = new Map(); // id -> {shape, base, timer}: emitted edits, until the app's shapes catch up
    this._hover = null; // {sx, sy, x, y}
    this._over = false;
    this._space = false;
    this._frame = 0;
    this._cursorAt = 0;
    this._cursorTimer = 0;
    this._masks = new Lru(MASK_CACHE); // counts -> {mask, width, height, area, bounds}
    this._maskCanvases = new Lru(MASK_CACHE); // counts|color|style -> canvas

    canvas.style.touchAction = "none";
    if (!canvas.hasAttribute("tabindex")) canvas.tabIndex = 0;
    this._listen(canvas, "pointerdown", (e) => this._onDown(e));
    this._listen(canvas, "pointermove", (e) => this._onMove(e));
    this._listen(canvas, "pointerup", (e) => this._onUp(e));
    this._listen(canvas, "pointercancel", () => this._abortGesture());
    this._listen(canvas, "pointerenter", () => (this._over = true));
    this._listen(canvas, "pointerleave", () => {
      this._over = false;
      if (this._hover && !this._gesture) {
        this._hover = null;
        this._invalidate();
      }
    });
    this._listen(canvas, "dblclick", (e) => this._onDoubleClick(e));
    this._listen(canvas, "wheel", (e) => this._onWheel(e), { passive: false });
    this._listen(canvas, "contextmenu", (e) => e.preventDefault());
    this._listen(canvas, "mousedown", (e) => {
      if (e.button === 1) e.preventDefault(); // no autoscroll
    });
    this._listen(window, "keydown", (e) => this._onKey(e, true));
    this._listen(window, "keyup", (e) => this._onKey(e, false));
    this._listen(window, "blur", () => {
      this._space = false;
      this._updateCursorStyle();
    });
    if (typeof ResizeObserver !== "undefined") {
      this._resizeObserver = new ResizeObserver(() => this._resize());
      this._resizeObserver.observe(canvas);
    }
    this._resize();
  }

  _listen(target, type, handler, options) {
    (this._listeners ??= []).push([target, type, handler, options]);
    target.addEventListener(type, handler, options);
  }

  /** Remove the listeners (the editor is unusable afterwards). */
  destroy() {
    for (const [target, type, handler, options] of this._listeners ?? []) target.removeEventListener(type, handler, options);
    this._listeners = [];
    this._resizeObserver?.disconnect();
    if (this._frame) cancelAnimationFrame(this._frame);
    clearTimeout(this._cursorTimer);
    for (const p of this._pending.values()) clearTimeout(p.timer);
  }

  // ---- the public API ---------------------------------------------------------------------------

  setImage(image, width, height) {
    const resized = width !== this.width || height !== this.height;
    if (image !== this.image) for (const id of [...this._pending.keys()]) this._clearPending(id); // another frame
    this.image = image ?? null;
    this.width = width | 0;
    this.height = height | 0;
    if (image && typeof HTMLImageElement !== "undefined" && image instanceof HTMLImageElement && !image.complete) {
      image.addEventListener("load", () => this.image === image && this._invalidate(), { once: true });
    }
    if (resized) {
      this._draft = null;
      this._abortGesture();
      this._masks.clear();
      this._maskCanvases.clear();
      this.fit();
    }
    this._invalidate();
  }

  setShapes(items) {
    this.items = Array.isArray(items) ? items : [];
    for (const [id, pending] of this._pending) {
      const item = this.items.find((it) => it.id === id);
      if (!item || JSON.stringify(item.shape) !== pending.base) this._clearPending(id);
    }
    if (this._live && !this.items.some((it) => it.id === this._live.id)) this._abortGesture();
    this._invalidate();
  }

  setPreview(rle, color) {
    this.preview = rle ? { rle, color: color || "#00e0ff" } : null;
    this._invalidate();
  }

  /** A frame-sized canvas drawn over the shapes (the brush's working mask); the shape of
   * object `hide` is not drawn meanwhile. null removes it. */
  setOverlay(overlay) {
    this.overlay = overlay && overlay.canvas ? overlay : null;
    this._invalidate();
  }

  setPromptPoints(points, box) {
    this.promptPoints = Array.isArray(points) ? points : [];
    this.promptBox = box ?? null;
    this._invalidate();
  }

  setMode(mode) {
    this.mode = mode && mode.kind ? { ...mode } : { kind: "select" };
    this._draft = null;
    this._abortGesture();
    this._updateCursorStyle();
    this._invalidate();
  }

  /** Abandon a drawing, prompt box or handle drag in progress; true if there was one. */
  cancel() {
    const had = !!this._draft || !!this._gesture;
    this._draft = null;
    this._abortGesture();
    this._invalidate();
    return had;
  }

  /** Complete the polygon/polyline in progress; true if a shape was emitted. */
  finish() {
    const draft = this._draft;
    if (!draft) return false;
    let shape = null;
    if (draft.shape === "polygon") shape = polygonFromPoints(draft.points);
    else if (draft.shape === "polyline") shape = polylineFromPoints(draft.points);
    if (!shape) return false;
    this._draft = null;
    this._invalidate();
    this._emit("draw", { shape });
    return true;
  }

  drawing() {
    return !!this._draft && this._draft.points.length > 0;
  }

  fit() {
    this._autoFit = true;
    this.view = fitView(this.width, this.height, this._cssW, this._cssH);
    this._invalidate();
    this._emit("view", { scale: this.view.scale });
  }

  /** Take up the canvas's new size now (the page calls it after a layout change of its own). */
  resize() {
    this._resize();
  }

    /** Zoom by `factor` around the canvas centre (for toolbar buttons). */
  zoom(factor) {
    this._zoomAt(this._cssW / 2, this._cssH / 2, factor);
  }

  imageToClient(x, y) {
    const rect = this.canvas.getBoundingClientRect();
    const s = shapeToScreen(this.view, x, y);
    return { x: rect.left + this.canvas.clientLeft + s.x, y: rect.top + this.canvas.clientTop + s.y };
  }

  clientToImage(x, y) {
    const rect = this.canvas.getBoundingClientRect();
    return screenToShape(this.view, x - rect.left - this.canvas.clientLeft, y - rect.top - this.canvas.clientTop);
  }

  /** Render now (normally rendering happens on the next animation frame after a change). */
  redraw() {
    if (this._frame) {
      cancelAnimationFrame(this._frame);
      this._frame = 0;
    }
    this._render();
  }

  // ---- internals: state ---------------------------------------------------------------------------

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _invalidate() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this._render();
    });
  }

  _resize() {
    const w = this.canvas.clientWidth;
    const h = this.canvas.clientHeight;
    const dpr = window.devicePixelRatio || 1;
    if (w === this._cssW && h === this._cssH && dpr === this._dpr) return;
    const oldW = this._cssW, oldH = this._cssH;
    this._cssW = w;
    this._cssH = h;
    this._dpr = dpr;
    if (this._autoFit || !oldW || !oldH) {
      this.view = fitView(this.width, this.height, w, h);
    } else {
      this.view = { ...this.view, ox: this.view.ox + (w - oldW) / 2, oy: this.view.oy + (h - oldH) / 2 };
    }
    this.redraw();
  }

  _clearPending(id) {
    const pending = this._pending.get(id);
    if (!pending) return;
    clearTimeout(pending.timer);
    this._pending.delete(id);
  }

  _abortGesture() {
    const g = this._gesture;
    this._gesture = null;
    if (g && g.type === "brush") this._emit("brush", { phase: "cancel" });
    this._live = null;
    if (g && g.pointerId !== undefined && this.canvas.hasPointerCapture?.(g.pointerId)) {
      try {
        this.canvas.releasePointerCapture(g.pointerId);
      } catch {
        // the pointer is gone already
      }
    }
    this._updateCursorStyle();
    this._invalidate();
  }

  _shapeOf(item) {
    if (this._live && this._live.id === item.id) return this._live.shape;
    const pending = this._pending.get(item.id);
    if (pending) return pending.shape;
    return item.shape;
  }

  _maskInfo(rle) {
    return this._masks.get(`${rle.size[0]}x${rle.size[1]}:${rle.counts}`, () => {
      const [height, width] = rle.size;
      let crop;
      try {
        crop = decodeRleCropped(rle);
      } catch {
        crop = { mask: new Uint8Array(0), x: 0, y: 0, w: 0, h: 0, area: 0 };
      }
      // Only the mask's box is decoded and kept (see rle.decodeRleCropped).
      const bounds = crop.area ? { x0: crop.x - 0.5, y0: crop.y - 0.5, x1: crop.x + crop.w - 0.5, y1: crop.y + crop.h - 0.5 } : null;
      return { mask: crop.mask, x: crop.x, y: crop.y, cropWidth: crop.w, cropHeight: crop.h, width, height, area: crop.area, bounds };
    });
  }

  /** The mask painted in `color`: interior translucent, its border pixels opaque (every other
   * pair of border pixels when dashed). */
  _maskCanvas(rle, color, style) {
    const key = `${rle.size[0]}x${rle.size[1]}:${rle.counts}|${color}|${style}`;
    return this._maskCanvases.get(key, () => {
      const { mask, cropWidth: width, cropHeight: height, area } = this._maskInfo(rle);
      if (!area) return null;
      const [r, g, b] = parseColor(color);
      const image = new ImageData(width, height);
      const data = image.data;
      const interior = style === "dashed" ? 60 : style === "preview" ? 110 : 95;
      for (let row = 0, i = 0; row < height; row++) {
        for (let col = 0; col < width; col++, i++) {
          if (!mask[i]) continue;
          // The crop is the mask's box: a pixel on its edge borders the outside.
          const border =
            col === 0 || row === 0 || col === width - 1 || row === height - 1 ||
            !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width];
          let alpha = interior;
          if (border) alpha = style === "dashed" && ((col + row) >> 1) & 1 ? interior : 255;
          const o = i * 4;
          data[o] = r;
          data[o + 1] = g;
          data[o + 2] = b;
          data[o + 3] = alpha;
        }
      }
      const canvas = makeCanvas(width, height);
      canvas.getContext("2d").putImageData(image, 0, 0);
      return canvas;
    });
  }

  _maskOf = (shape) => (shape.type === "bitmask" ? this._maskInfo(shape.rle) : null);

  // ---- internals: pointer ---------------------------------------------------------------------

  _screen(e) {
    const rect = this.canvas.getBoundingClientRect();
    const sx = e.clientX - rect.left - this.canvas.clientLeft;
    const sy = e.clientY - rect.top - this.canvas.clientTop;
    const p = screenToShape(this.view, sx, sy);
    return { sx, sy, x: p.x, y: p.y };
  }

  /** Whether the canvas point lies inside the frame or within OUTSIDE_MARGIN of it. */
  _nearFrame(pos) {
    const tl = shapeToScreen(this.view, -0.5, -0.5);
    const br = shapeToScreen(this.view, this.width - 0.5, this.height - 0.5);
    return (
      pos.sx >= tl.x - OUTSIDE_MARGIN && pos.sx <= br.x + OUTSIDE_MARGIN &&
      pos.sy >= tl.y - OUTSIDE_MARGIN && pos.sy <= br.y + OUTSIDE_MARGIN
    );
  }

  _tolerance() {
    return HIT_TOLERANCE / this.view.scale;
  }

  _pick(pos, additive) {
    const id = hitTest(this.items.map((it) => ({ id: it.id, shape: this._shapeOf(it) })), pos.x, pos.y, this._tolerance(), this._maskOf);
    this._emit("pick", { id: id ?? null, additive: !!additive });
  }

  _selectedHandleAt(pos) {
    const tolerance = (HANDLE_RADIUS + 3) / this.view.scale;
    let best = null;
    for (const item of this.items) {
      if (!item.selected || item.locked || !item.shape || item.shape.type === "bitmask") continue;
      const shape = this._shapeOf(item);
      const handle = nearestHandle(shapeHandles(shape, ROTATE_OFFSET / this.view.scale), pos.x, pos.y, tolerance);
      if (handle) {
        const d = Math.hypot(handle.x - pos.x, handle.y - pos.y);
        if (!best || d <= best.d) best = { item, shape, handle, d };
      }
    }
    return best;
  }

  _onDown(e) {
    if (this._gesture || !this.width) return;
    const pos = this._screen(e);
    const base = { pointerId: e.pointerId, start: pos, moved: false, shift: e.shiftKey };
    const kind = this.mode.kind;
    let gesture = null;
    if (e.button === 1 || (e.button === 0 && this._space)) {
      gesture = { ...base, type: "pan", moved: true, view0: { ...this.view } };
    } else if (e.button === 2) {
      if (kind === "sam") gesture = { ...base, type: "exclude" };
      else if (kind === "draw" && this._draft) gesture = { ...base, type: "unclick" };
    } else if (e.button === 0) {
      if (kind === "sam") {
        gesture = { ...base, type: "sam" };
      } else if (kind === "brush") {
        gesture = { ...base, type: "brush", moved: true };
      } else if (kind === "draw") {
        const shape = this.mode.shape;
        if (shape === "bbox" || shape === "rotated_bbox") gesture = { ...base, type: "box" };
        else gesture = { ...base, type: "click", view0: { ...this.view } };
      } else {
        const handle = this._selectedHandleAt(pos);
        const edge = handle ? null : this._selectedEdgeAt(pos);
        if (handle && e.altKey && handle.handle.kind === "vertex") {
          // Alt+click on a vertex of a polygon or polyline removes it.
          e.preventDefault();
          const shape = removeVertex(handle.shape, handle.handle);
          if (shape) {
            this._setPending(handle.item.id, shape, handle.shape);
            this._emit("edit", { id: handle.item.id, shape });
          } else if (handle.shape.type === "polygon" || handle.shape.type === "polyline") {
            this._emit("refused", { message: `A ${handle.shape.type} needs at least ${handle.shape.type === "polygon" ? 3 : 2} vertices.` });
          }
          this._invalidate();
          return;
        } else if (edge) {
          // A press on an edge of the selected polygon or polyline inserts a vertex there and drags it.
          gesture = {
            ...base, type: "handle", id: edge.item.id, shape0: edge.inserted.shape, handle: edge.inserted.handle,
            grab: { x: edge.inserted.handle.x - pos.x, y: edge.inserted.handle.y - pos.y }, inserted: edge.base,
          };
          this._live = { id: edge.item.id, shape: edge.inserted.shape };
        } else if (handle) {
          gesture = {
            ...base, type: "handle", id: handle.item.id, shape0: handle.shape, handle: handle.handle,
            grab: { x: handle.handle.x - pos.x, y: handle.handle.y - pos.y },
          };
        } else {
          const hit = hitTest(this.items.map((it) => ({ id: it.id, shape: this._shapeOf(it) })), pos.x, pos.y, this._tolerance(), this._maskOf);
          const item = hit !== null ? this.items.find((it) => it.id === hit) : null;
          if (item && item.selected && !item.locked && item.shape.type !== "bitmask") {
            gesture = { ...base, type: "move", id: item.id, shape0: this._shapeOf(item) };
          } else {
            gesture = { ...base, type: "select", hit, view0: { ...this.view } };
          }
        }
      }
    }
    if (!gesture) return;
    e.preventDefault();
    if (gesture.type === "brush") this._emit("brush", { phase: "down", x: quantize(pos.x), y: quantize(pos.y), erase: Boolean(this.mode.erase || e.altKey) });
    // Keys (Enter, Escape, ...) go to the page, not to a text field that had the focus.
    if (document.activeElement !== this.canvas) this.canvas.focus({ preventScroll: true });
    this._gesture = gesture;
    try {
      this.canvas.setPointerCapture(e.pointerId);
    } catch {
      // synthetic events have no capturable pointer
    }
    this._updateCursorStyle();
  }

  _onMove(e) {
    const pos = this._screen(e);
    this._hover = pos;
    this._emitCursor(pos);
    const g = this._gesture;
    if (g && g.type === "brush") {
      const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
      for (const c of events.length ? events : [e]) {
        const p = this._screen(c);
        this._emit("brush", { phase: "move", x: quantize(p.x), y: quantize(p.y) });
      }
      this._brushAlt = e.altKey;
      this._invalidate();
      return;
    }
    if (!g) {
      if (this.mode.kind === "brush") {
        this._brushAlt = e.altKey;
        this._invalidate();
      }
      if (this._draft) this._invalidate();
      if (this.mode.kind === "select") this._updateCursorStyle(pos);
      return;
    }
    if (!g.moved && Math.hypot(pos.sx - g.start.sx, pos.sy - g.start.sy) > DRAG_THRESHOLD) g.moved = true;
    g.last = pos;
    g.shift = e.shiftKey;
    if (!g.moved) return;
    switch (g.type) {
      case "pan":
      case "select":
      case "click":
        this.view = { ...g.view0, ox: g.view0.ox + pos.sx - g.start.sx, oy: g.view0.oy + pos.sy - g.start.sy };
        this._autoFit = false;
        break;
      case "handle": {
        const shape = dragHandle(g.shape0, g.handle, pos.x + g.grab.x, pos.y + g.grab.y, this.width, this.height, { snapAngle: e.shiftKey ? 15 : 0 });
        if (shape) this._live = { id: g.id, shape };
        break;
      }
      case "move": {
        const shape = moveShape(g.shape0, pos.x - g.start.x, pos.y - g.start.y, this.width, this.height);
        if (shape) this._live = { id: g.id, shape };
        break;
      }
      default:
        break;
    }
    this._invalidate();
  }

  _onUp(e) {
    const g = this._gesture;
    if (!g || e.pointerId !== g.pointerId) return;
    const pos = this._screen(e);
    if (!g.moved && Math.hypot(pos.sx - g.start.sx, pos.sy - g.start.sy) > DRAG_THRESHOLD) g.moved = true;
    const live = this._live;
    this._gesture = null;
    this._live = null;
    try {
      this.canvas.releasePointerCapture(e.pointerId);
    } catch {
      // not captured
    }
    const W = this.width, H = this.height;
    switch (g.type) {
      case "brush":
        this._emit("brush", { phase: "up", x: quantize(pos.x), y: quantize(pos.y) });
        break;
      case "pan":
        if (g.moved) this._emit("view", { scale: this.view.scale });
        break;
      case "select":
      case "click":
        if (g.moved) {
          this._emit("view", { scale: this.view.scale });
        } else if (g.type === "select") {
          this._emit("pick", { id: g.hit ?? null, additive: e.shiftKey });
        } else {
          this._clickDraw(pos, e);
        }
        break;
      case "sam":
        if (g.moved) {
          const box = promptBoxFromDrag(g.start, pos, W, H);
          if (box) this._emit("prompt", { box });
        } else if (this._nearFrame(pos)) {
          const p = clampPoint(pos.x, pos.y, W, H);
          this._emit("prompt", { point: { x: p.x, y: p.y, include: true } });
        } else {
          this._pick(pos, e.shiftKey);
        }
        break;
      case "exclude":
        if (!g.moved && this._nearFrame(pos)) {
          const p = clampPoint(pos.x, pos.y, W, H);
          this._emit("prompt", { point: { x: p.x, y: p.y, include: false } });
        }
        break;
      case "unclick":
        if (!g.moved && this._draft) {
          this._draft.points.pop();
          if (!this._draft.points.length) this._draft = null;
        }
        break;
      case "box":
        if (g.moved) {
          const make = this.mode.shape === "rotated_bbox" ? rotatedFromDrag : bboxFromDrag;
          const shape = make(g.start, pos, W, H);
          if (shape) this._emit("draw", { shape });
        } else {
          this._pick(pos, e.shiftKey);
        }
        break;
      case "handle":
      case "move":
        if (!g.moved && g.inserted) {
          // A click on an edge: the vertex it inserted, where it was clicked.
          this._setPending(g.id, g.shape0, g.inserted);
          this._emit("edit", { id: g.id, shape: g.shape0 });
        } else if (!g.moved) {
          this._emit("pick", { id: g.id, additive: e.shiftKey });
        } else if (live && JSON.stringify(live.shape) !== JSON.stringify(g.shape0)) {
          this._setPending(g.id, live.shape, g.inserted ?? g.shape0);
          this._emit("edit", { id: g.id, shape: live.shape });
        }
        break;
      default:
        break;
    }
    this._updateCursorStyle(pos);
    this._invalidate();
  }

  _setPending(id, shape, base) {
    const old = this._pending.get(id);
    if (old) clearTimeout(old.timer);
    const pending = { shape, base: old ? old.base : JSON.stringify(base), timer: 0 };
    pending.timer = setTimeout(() => {
      if (this._pending.get(id) === pending) {
        this._pending.delete(id);
        this._invalidate();
      }
    }, PENDING_MS);
    this._pending.set(id, pending);
  }

  /** A click in a click-drawn mode: add a vertex, or complete the shape. */
  _clickDraw(pos, e) {
    const shape = this.mode.shape;
    // The second click of a double click that closed a polygon starts no new one.
    const closed = this._closedAt;
    this._closedAt = null;
    if (!this._draft && closed && performance.now() - closed.time < 500 && Math.hypot(pos.sx - closed.sx, pos.sy - closed.sy) <= DRAG_THRESHOLD) return;
    if (!this._draft && !this._nearFrame(pos)) {
      this._pick(pos, e.shiftKey);
      return;
    }
    const p = clampPoint(pos.x, pos.y, this.width, this.height);
    if (shape === "keypoint") {
      this._emit("draw", { shape: { type: "keypoint", x: p.x, y: p.y } });
      return;
    }
    if (shape !== "polygon" && shape !== "polyline" && shape !== "skeleton") return;
    const draft = (this._draft ??= { shape, points: [] });
    const tolerance = (HANDLE_RADIUS + 3) / this.view.scale;
    if (shape === "polygon" && closesPolygon(draft.points, p, tolerance)) {
      if (this.finish()) {
        this._closedAt = { time: performance.now(), sx: pos.sx, sy: pos.sy };
        return;
      }
    }
    const last = draft.points[draft.points.length - 1];
    // The second click of a double click lands on the last vertex: not a new one.
    if (shape !== "skeleton" && last && Math.hypot(last.x - p.x, last.y - p.y) <= 3 / this.view.scale) return;
    draft.points.push(p);
    if (shape === "skeleton" && draft.points.length >= Math.max(1, this.mode.points | 0)) {
      const points = draft.points.map((q) => ({ x: q.x, y: q.y, visible: true }));
      this._draft = null;
      this._emit("draw", { shape: { type: "skeleton", points } });
    }
  }

  _onDoubleClick(e) {
    if (this.mode.kind === "draw" && this._draft) {
      e.preventDefault();
      this.finish();
    }
  }

  _onWheel(e) {
    if (!this.width) return;
    e.preventDefault();
    if (this.mode.kind === "brush" && e.shiftKey) {
      // Shift+wheel sizes the brush (browsers may turn a shifted wheel into deltaX).
      const d = e.deltaY || e.deltaX;
      if (d) this._emit("brushsize", { step: d < 0 ? 1 : -1 });
      return;
    }
    const pos = this._screen(e);
    let dy = e.deltaY;
    if (e.deltaMode === 1) dy *= 16;
    else if (e.deltaMode === 2) dy *= this._cssH || 400;
    this._zoomAt(pos.sx, pos.sy, Math.exp(-dy * 0.0015));
  }

  _zoomAt(sx, sy, factor) {
    const fitScale = fitView(this.width, this.height, this._cssW, this._cssH).scale;
    this.view = zoomAt(this.view, sx, sy, factor, Math.min(fitScale / 8, 1), Math.max(MAX_SCALE, fitScale));
    this._autoFit = false;
    this._invalidate();
    this._emit("view", { scale: this.view.scale });
  }

  _onKey(e, down) {
    if (e.code !== "Space" && e.key !== " ") return;
    if (down && isEditable(e.target)) return;
    if (down && !this._over && !this._gesture) return;
    if (down) e.preventDefault();
    if (this._space !== down) {
      this._space = down;
      this._updateCursorStyle();
    }
  }

  _emitCursor(pos) {
    this._cursorPos = { x: pos.x, y: pos.y };
    const now = performance.now();
    const wait = CURSOR_INTERVAL - (now - this._cursorAt);
    if (wait <= 0) {
      this._cursorAt = now;
      this._emit("cursor", this._cursorPos);
    } else if (!this._cursorTimer) {
      this._cursorTimer = setTimeout(() => {
        this._cursorTimer = 0;
        this._cursorAt = performance.now();
        this._emit("cursor", this._cursorPos);
      }, wait);
    }
  }

  _updateCursorStyle(pos) {
    const g = this._gesture;
    let cursor = "default";
    if (g && (g.type === "pan" || (g.moved && (g.type === "select" || g.type === "click")))) cursor = "grabbing";
    else if (g && (g.type === "handle" || g.type === "move")) cursor = "grabbing";
    else if (this._space) cursor = "grab";
    else if (this.mode.kind === "sam" || this.mode.kind === "draw" || this.mode.kind === "brush") cursor = "crosshair";
    else if (pos && this.width) {
      const handle = this._selectedHandleAt(pos);
      if (handle) cursor = handle.handle.kind === "rotate" ? "alias" : "move";
      else {
        const hit = hitTest(this.items.map((it) => ({ id: it.id, shape: this._shapeOf(it) })), pos.x, pos.y, this._tolerance(), this._maskOf);
        const item = hit !== null ? this.items.find((it) => it.id === hit) : null;
        cursor = item ? (item.selected && !item.locked && item.shape.type !== "bitmask" ? "move" : "pointer") : "default";
      }
    }
    if (this.canvas.style.cursor !== cursor) this.canvas.style.cursor = cursor;
  }

  // ---- internals: rendering -------------------------------------------------------------------

  _render() {
    const canvas = this.canvas;
    this._dpr = window.devicePixelRatio || 1; // it changes when the window moves to another screen
    const w = this._cssW, h = this._cssH, dpr = this._dpr;
    if (!w || !h) return;
    const bw = Math.round(w * dpr), bh = Math.round(h * dpr);
    if (canvas.width !== bw || canvas.height !== bh) {
      canvas.width = bw;
      canvas.height = bh;
    }
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, bw, bh);
    if (!this.width || !this.height) return;
    const { scale, ox, oy } = this.view;
    const toImage = () => ctx.setTransform(dpr * scale, 0, 0, dpr * scale, dpr * ox, dpr * oy);
    const toScreen = () => ctx.setTransform(dpr, 0, 0, dpr, 0, 0);

    // The frame.
    toImage();
    ctx.imageSmoothingEnabled = scale < 2;
    if (this.image) {
      try {
        ctx.drawImage(this.image, 0, 0, this.width, this.height);
      } catch {
        // an image that failed to load
      }
    } else {
      ctx.fillStyle = "#2a2a2a";
      ctx.fillRect(0, 0, this.width, this.height);
    }
    ctx.imageSmoothingEnabled = false;

    // Shapes, in the order given (later ones on top).
    const hidden = this.overlay ? this.overlay.hide : undefined;
    for (const item of this.items) {
      const shape = this._shapeOf(item);
      if (!shape || (hidden !== undefined && item.id === hidden)) continue;
      if (shape.type === "bitmask") {
        toImage();
        this._drawMask(shape.rle, item.color, item.dashed ? "dashed" : "solid", item.selected ? 1 : 0.75);
      } else {
        toScreen();
        this._drawVector(shape, item);
      }
    }

    // The brush's working mask.
    if (this.overlay) {
      toImage();
      ctx.drawImage(this.overlay.canvas, 0, 0, this.width, this.height);
    }

    // The SAM preview.
    if (this.preview) {
      toImage();
      this._drawMask(this.preview.rle, this.preview.color, "preview", 0.9);
    }

    toScreen();
    ctx.textBaseline = "bottom";
    this._drawCaptions();
    for (const item of this.items) if (item.selected) this._drawHandles(item);
    this._drawPrompt();
    this._drawDraft();
    this._drawBrushCursor();
  }

  /** The brush's footprint around the pointer (mode brush): red for the eraser. */
  _drawBrushCursor() {
    if (this.mode.kind !== "brush" || !this._hover || !this._over) return;
    const ctx = this.ctx;
    const p = this._pt(this._hover.x, this._hover.y);
    const r = Math.max(1.5, ((this.mode.size || 1) / 2) * this.view.scale);
    const erase = this.mode.erase || this._brushAlt;
    ctx.beginPath();
    ctx.arc(p.x, p.y, r, 0, 2 * Math.PI);
    ctx.lineWidth = 3;
    ctx.strokeStyle = "rgba(0,0,0,0.6)";
    ctx.stroke();
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = erase ? "#ef4444" : "#ffffff";
    ctx.stroke();
  }

  /** The selected polygon or polyline edge near `pos` (no vertex there): the shape with a vertex
   * inserted on it, for the handle gesture that drags that vertex. */
  _selectedEdgeAt(pos) {
    const tolerance = HIT_TOLERANCE / this.view.scale;
    for (const item of this.items) {
      if (!item.selected || !item.shape || (item.shape.type !== "polygon" && item.shape.type !== "polyline")) continue;
      const shape = this._shapeOf(item);
      const edge = edgeAt(shape, pos.x, pos.y, tolerance);
      if (!edge) continue;
      const p = clampPoint(edge.x, edge.y, this.width, this.height);
      const inserted = insertVertex(shape, edge, p.x, p.y);
      if (inserted) return { item, base: shape, inserted };
    }
    return null;
  }

  _drawMask(rle, color, style, alpha) {
    if (!rle || !rle.size) return;
    const canvas = this._maskCanvas(rle, color || "#ffcc00", style);
    if (!canvas) return;
    const { x, y, cropWidth, cropHeight } = this._maskInfo(rle);
    const ctx = this.ctx;
    ctx.globalAlpha = alpha;
    ctx.drawImage(canvas, x, y, cropWidth, cropHeight);
    ctx.globalAlpha = 1;
  }

  _pt(x, y) {
    return shapeToScreen(this.view, x, y);
  }

  _ringPath(ctx, flat, closed) {
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const p = this._pt(flat[i], flat[i + 1]);
      if (i === 0) ctx.moveTo(p.x, p.y);
      else ctx.lineTo(p.x, p.y);
    }
    if (closed) ctx.closePath();
  }

  _drawVector(shape, item) {
    const ctx = this.ctx;
    const color = item.color || "#ffcc00";
    const width = item.selected ? 2.5 : 1.5;
    ctx.setLineDash(item.dashed ? [6, 4] : []);
    ctx.lineJoin = "round";
    ctx.lineCap = "round";
    const strokeAndFill = (fill) => {
      if (fill) {
        ctx.fillStyle = rgba(color, item.selected ? 0.3 : item.dashed ? 0.12 : 0.2);
        ctx.fill("evenodd");
      }
      ctx.lineWidth = width + 2;
      ctx.strokeStyle = "rgba(0,0,0,0.45)";
      ctx.stroke();
      ctx.lineWidth = width;
      ctx.strokeStyle = color;
      ctx.stroke();
    };
    ctx.beginPath();
    switch (shape.type) {
      case "polygon":
        for (const part of shape.parts) {
          this._ringPath(ctx, part.outer, true);
          for (const hole of part.holes ?? []) this._ringPath(ctx, hole, true);
        }
        strokeAndFill(true);
        break;
      case "bbox": {
        const a = this._pt(shape.x - 0.5, shape.y - 0.5);
        const b = this._pt(shape.x + shape.w - 0.5, shape.y + shape.h - 0.5);
        ctx.rect(a.x, a.y, b.x - a.x, b.y - a.y);
        strokeAndFill(true);
        break;
      }
      case "rotated_bbox": {
        this._ringPath(ctx, rotatedCorners(shape).flat(), true);
        strokeAndFill(true);
        // A tick on the top edge shows which way is up.
        const [tl, tr] = rotatedCorners(shape);
        const m = this._pt((tl[0] + tr[0]) / 2, (tl[1] + tr[1]) / 2);
        const c = this._pt(shape.cx, shape.cy);
        const d = Math.hypot(m.x - c.x, m.y - c.y) || 1;
        ctx.beginPath();
        ctx.moveTo(m.x, m.y);
        ctx.lineTo(m.x + ((m.x - c.x) / d) * 6, m.y + ((m.y - c.y) / d) * 6);
        ctx.setLineDash([]);
        ctx.strokeStyle = color;
        ctx.lineWidth = width;
        ctx.stroke();
        break;
      }
      case "polyline":
        this._ringPath(ctx, shape.points, false);
        strokeAndFill(false);
        ctx.setLineDash([]);
        for (let i = 0; i + 1 < shape.points.length; i += 2) this._dot(shape.points[i], shape.points[i + 1], 2.5, color, true);
        break;
      case "keypoint":
        ctx.setLineDash([]);
        this._dot(shape.x, shape.y, item.selected ? 5 : 4, color, !item.dashed);
        break;
      case "skeleton": {
        const pts = shape.points;
        for (const [i, j] of item.edges ?? []) {
          if (!pts[i] || !pts[j]) continue;
          const a = this._pt(pts[i].x, pts[i].y), b = this._pt(pts[j].x, pts[j].y);
          ctx.moveTo(a.x, a.y);
          ctx.lineTo(b.x, b.y);
        }
        if (item.edges?.length) strokeAndFill(false);
        ctx.setLineDash([]);
        for (const p of pts) this._dot(p.x, p.y, item.selected ? 4.5 : 3.5, color, p.visible !== false && !item.dashed);
        break;
      }
      default:
        break;
    }
    ctx.setLineDash([]);
  }

  /** A dot at shape point (x, y): filled, or hollow (an invisible skeleton point). */
  _dot(x, y, radius, color, filled) {
    const ctx = this.ctx;
    const p = this._pt(x, y);
    ctx.beginPath();
    ctx.arc(p.x, p.y, radius, 0, 2 * Math.PI);
    if (filled) {
      ctx.fillStyle = color;
      ctx.fill();
      ctx.lineWidth = 1;
      ctx.strokeStyle = "rgba(0,0,0,0.6)";
      ctx.stroke();
    } else {
      ctx.lineWidth = 3;
      ctx.strokeStyle = "rgba(0,0,0,0.5)";
      ctx.stroke();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = color;
      ctx.stroke();
    }
  }

  /** The shapes' tags, each just above its shape's top-left corner, moved where they would
   * cover one another (tags.js); the selected ones are placed first (they keep their place). */
  _drawCaptions() {
    const ctx = this.ctx;
    ctx.font = "11px system-ui, sans-serif";
    const wanted = [];
    for (const item of this.items) {
      if (!item.text) continue;
      const shape = this._shapeOf(item);
      if (!shape) continue;
      const bounds = shapeBounds(shape, shape.type === "bitmask" ? this._maskInfo(shape.rle) : null);
      if (!bounds) continue;
      const p = this._pt(bounds.x0, bounds.y0);
      const q = this._pt(bounds.x1, bounds.y1);
      if (q.x < 0 || q.y < 0 || p.x > this._cssW || p.y > this._cssH) continue; // off screen
      const text = String(item.text);
      wanted.push({ item, text, x: p.x, y: p.y - 16, w: ctx.measureText(text).width + 6, h: 14 });
    }
    wanted.sort((a, b) => Number(b.item.selected) - Number(a.item.selected));
    const placed = placeTags(wanted, { width: this._cssW, height: this._cssH });
    this.tags = placed.map((rect, i) => ({ id: wanted[i].item.id, text: wanted[i].text, x: rect.x, y: rect.y, w: rect.w, h: rect.h }));
    placed.forEach((rect, i) => {
      const { item, text } = wanted[i];
      ctx.fillStyle = rgba(item.color || "#ffcc00", 0.85);
      ctx.fillRect(rect.x, rect.y, rect.w, rect.h);
      ctx.fillStyle = "#000";
      ctx.fillText(text, rect.x + 3, rect.y + rect.h - 1.5);
    });
  }

  _drawHandles(item) {
    const shape = this._shapeOf(item);
    if (!shape || item.locked || shape.type === "bitmask") return;
    const ctx = this.ctx;
    const handles = shapeHandles(shape, ROTATE_OFFSET / this.view.scale);
    const small = handles.length > 200;
    if (shape.type === "rotated_bbox") {
      const [tl, tr] = rotatedCorners(shape);
      const m = this._pt((tl[0] + tr[0]) / 2, (tl[1] + tr[1]) / 2);
      const [rx, ry] = rotationHandle(shape, ROTATE_OFFSET / this.view.scale);
      const r = this._pt(rx, ry);
      ctx.beginPath();
      ctx.moveTo(m.x, m.y);
      ctx.lineTo(r.x, r.y);
      ctx.lineWidth = 1;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    }
    for (const h of handles) {
      const p = this._pt(h.x, h.y);
      ctx.beginPath();
      if (h.kind === "rotate") ctx.arc(p.x, p.y, HANDLE_RADIUS, 0, 2 * Math.PI);
      else {
        const r = small ? 2.5 : h.kind === "corner" ? HANDLE_RADIUS : HANDLE_RADIUS - 1;
        ctx.rect(p.x - r, p.y - r, 2 * r, 2 * r);
      }
      ctx.fillStyle = "#fff";
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = item.color || "#000";
      ctx.stroke();
    }
  }

  _drawPrompt() {
    const ctx = this.ctx;
    const g = this._gesture;
    let box = this.promptBox;
    if (g && g.type === "sam" && g.moved && g.last) box = promptBoxFromDrag(g.start, g.last, this.width, this.height);
    if (box) {
      const a = this._pt(box.x0, box.y0), b = this._pt(box.x1, box.y1);
      ctx.lineWidth = 1.5;
      ctx.setLineDash([6, 4]);
      ctx.strokeStyle = "#000";
      ctx.strokeRect(a.x, a.y, b.x - a.x, b.y - a.y);
      ctx.lineDashOffset = 5;
      ctx.strokeStyle = "#fff";
      ctx.strokeRect(a.x, a.y, b.x - a.x, b.y - a.y);
      ctx.lineDashOffset = 0;
      ctx.setLineDash([]);
    }
    for (const point of this.promptPoints) {
      const p = this._pt(point.x, point.y);
      const include = point.include !== false;
      ctx.beginPath();
      ctx.arc(p.x, p.y, 6, 0, 2 * Math.PI);
      ctx.fillStyle = include ? INCLUDE_COLOR : EXCLUDE_COLOR;
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
      ctx.beginPath();
      ctx.moveTo(p.x - 3, p.y);
      ctx.lineTo(p.x + 3, p.y);
      if (include) {
        ctx.moveTo(p.x, p.y - 3);
        ctx.lineTo(p.x, p.y + 3);
      }
      ctx.stroke();
    }
  }

  _drawDraft() {
    const ctx = this.ctx;
    const g = this._gesture;
    const color = "#ffffff";
    if (g && g.type === "box" && g.moved && g.last) {
      const make = this.mode.shape === "rotated_bbox" ? rotatedFromDrag : bboxFromDrag;
      const shape = make(g.start, g.last, this.width, this.height);
      if (shape) this._drawVector(shape, { color, dashed: true });
    }
    const draft = this._draft;
    if (!draft || !draft.points.length) return;
    const pts = draft.points;
    const hover = this._hover && !this._gesture ? clampPoint(this._hover.x, this._hover.y, this.width, this.height) : null;
    if (draft.shape !== "skeleton") {
      ctx.beginPath();
      const flat = pts.flatMap((p) => [p.x, p.y]);
      if (hover) flat.push(hover.x, hover.y);
      this._ringPath(ctx, flat, false);
      if (draft.shape === "polygon" && hover && pts.length >= 2) {
        const first = this._pt(pts[0].x, pts[0].y);
        ctx.lineTo(first.x, first.y);
      }
      ctx.lineWidth = 3;
      ctx.strokeStyle = "rgba(0,0,0,0.5)";
      ctx.stroke();
      ctx.lineWidth = 1.5;
      ctx.setLineDash([5, 4]);
      ctx.strokeStyle = color;
      ctx.stroke();
      ctx.setLineDash([]);
    }
    pts.forEach((p, i) => {
      const closable = i === 0 && draft.shape === "polygon" && pts.length >= 3;
      this._dot(p.x, p.y, closable ? 6 : 3.5, closable ? "#facc15" : color, true);
      if (draft.shape === "skeleton") {
        const s = this._pt(p.x, p.y);
        ctx.font = "10px system-ui, sans-serif";
        ctx.fillStyle = "#fff";
        ctx.fillText(String(i + 1), s.x + 5, s.y - 3);
      }
    });
  }
}
