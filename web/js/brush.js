// The brush and the eraser (issue 14, point 4): hand edits of bitmask labels on any frame, SAM
// and tracked labels included. A stroke paints discs along the pointer's path into a working copy
// of the mask, shown live over the frame; on release the whole mask is saved as ONE command (one
// undo step per stroke): `label_saved` (source manual, `edited` naming the label the stroke
// started from), `object_created` with its first label for a new object, or `label_deleted` when
// the eraser took the last pixel.
//
// Pixels: a mask is row-major 0/1, height x width; pixel (i, j) has its centre at shape point
// (i, j) (domain/shapes.py). A stroke segment from a to b with radius r covers the pixels whose
// centre lies within r of the segment: a disc for a click, a capsule for a drag. A straight drag
// covers the same pixels however the browser splits it into pointer events.
//
// The functions at the top are pure (node --test tests/web/js/brush.test.mjs); `BrushSession`
// gets from the page only what it uses.

import { decodeRle, encodeRle } from "./rle.js";
import { isHead } from "./model.js";

export const MIN_BRUSH = 1;
export const MAX_BRUSH = 256;
export const DEFAULT_BRUSH = 13;
const SIZE_KEY = "masklog.brushSize";

/** The brush size (diameter, image pixels) one step up (+1) or down (-1): about 15% a step. */
export function stepSize(size, direction) {
  const step = Math.max(1, Math.round(size * 0.15));
  return Math.max(MIN_BRUSH, Math.min(MAX_BRUSH, Math.round(size) + (direction > 0 ? step : -step)));
}

/**
 * Paint (value 1) or erase (value 0) the pixels within `radius` of the segment a–b into `mask`
 * (width x height, row-major). Returns the changed box {x0, y0, x1, y1} (inclusive pixel
 * indices), or null when the segment misses the frame.
 */
export function paintSegment(mask, width, height, a, b, radius, value) {
  const r = Math.max(0.5, radius);
  const x0 = Math.max(0, Math.ceil(Math.min(a.x, b.x) - r));
  const x1 = Math.min(width - 1, Math.floor(Math.max(a.x, b.x) + r));
  const y0 = Math.max(0, Math.ceil(Math.min(a.y, b.y) - r));
  const y1 = Math.min(height - 1, Math.floor(Math.max(a.y, b.y) + r));
  if (x0 > x1 || y0 > y1) return null;
  const dx = b.x - a.x, dy = b.y - a.y;
  const length2 = dx * dx + dy * dy;
  const r2 = r * r;
  const v = value ? 1 : 0;
  for (let y = y0; y <= y1; y++) {
    const row = y * width;
    for (let x = x0; x <= x1; x++) {
      let t = length2 > 0 ? ((x - a.x) * dx + (y - a.y) * dy) / length2 : 0;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const ex = x - (a.x + t * dx), ey = y - (a.y + t * dy);
      if (ex * ex + ey * ey <= r2) mask[row + x] = v;
    }
  }
  return { x0, y0, x1, y1 };
}

/** `paintSegment` along a path of points (one point: a disc); the union of the changed boxes. */
export function paintPath(mask, width, height, points, radius, value) {
  let box = null;
  for (let i = 0; i < points.length; i++) {
    const changed = paintSegment(mask, width, height, points[Math.max(0, i - 1)], points[i], radius, value);
    box = unionBox(box, changed);
  }
  return box;
}

export function unionBox(a, b) {
  if (!a) return b;
  if (!b) return a;
  return { x0: Math.min(a.x0, b.x0), y0: Math.min(a.y0, b.y0), x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1) };
}

/** Whether a mask has no pixel set. */
export function maskEmpty(mask) {
  for (let i = 0; i < mask.length; i++) if (mask[i]) return false;
  return true;
}

/** A bitmask shape's pixels as a fresh row-major mask; null for other shapes or another size. */
export function maskOfShape(shape, width, height) {
  if (!shape || shape.type !== "bitmask") return null;
  const [h, w] = shape.rle.size;
  if (h !== height || w !== width) return null;
  return decodeRle(shape.rle);
}

/** The command that saves a stroke's result (see the top of this file); null if it changes nothing. */
export function strokeCommand({ object, exists, classId, media, frame, mask, width, height, base, edited }) {
  if (maskEmpty(mask)) return exists && base ? { type: "label_deleted", object, frame } : null;
  const shape = { type: "bitmask", rle: encodeRle(mask, height, width) };
  if (base && shape.rle.counts === base.counts) return null;
  if (!exists) return { type: "object_created", object, media, class_id: classId, label: { frame, shape, source: "manual" } };
  const body = { type: "label_saved", object, frame, shape, source: "manual" };
  if (edited) body.edited = edited;
  return body;
}

function parseHex(color) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color ?? "");
  return m ? [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)] : [255, 200, 0];
}

export class BrushSession {
  /**
   * page: {model, state, settings, editor, canEdit(), send(body, options), toast(message, options),
   * newObjectId(classId), selectOnly(id)}
   */
  constructor(page) {
    this.page = page;
    let size = DEFAULT_BRUSH;
    try {
      size = Number(localStorage.getItem(SIZE_KEY)) || DEFAULT_BRUSH;
    } catch {
      // no storage
    }
    this.size = Math.max(MIN_BRUSH, Math.min(MAX_BRUSH, Math.round(size)));
    this.stroke = null; // the stroke being drawn: {object, frame, mask, erase, last, ...}
    this.pending = null; // a saved stroke shown until the model has its result: {object, frame, mask, id}
    this.overlay = null; // {canvas, image, color} the working mask painted for the editor
  }

  setSize(size) {
    this.size = Math.max(MIN_BRUSH, Math.min(MAX_BRUSH, Math.round(size)));
    try {
      localStorage.setItem(SIZE_KEY, String(this.size));
    } catch {
      // no storage
    }
    return this.size;
  }

  /** The object a stroke goes to: the one selected bitmask object, else (painting) a new one. */
  _target(erase) {
    const { model, state } = this.page;
    const pending = this.pending;
    if (pending && pending.frame === state.frame && state.selected.has(pending.object) && state.selected.size === 1) {
      // The last stroke's object (maybe created by it, not back from the server yet).
      return { object: pending.object, exists: true, classId: pending.classId };
    }
    const masks = [...state.selected].filter((id) => model.objects.has(id) && model.classOf(id)?.shape === "bitmask");
    if (masks.length === 1) return { object: masks[0], exists: true, classId: model.objects.get(masks[0]).class_id };
    if (masks.length > 1) {
      this.page.toast("Select one mask to paint on.", { kind: "info" });
      return null;
    }
    if (erase) {
      this.page.toast("Select the mask to erase from.", { kind: "info" });
      return null;
    }
    const cls = model.classes.get(state.activeClass);
    if (!cls || cls.shape !== "bitmask") {
      this.page.toast("The brush paints masks: pick a mask class or select a mask.", { kind: "info" });
      return null;
    }
    return { object: this.page.newObjectId(cls.class_id), exists: false, classId: cls.class_id };
  }

  /** Pointer down at shape point (x, y): start a stroke; false if there is nothing to paint on. */
  begin(x, y, erase) {
    const page = this.page;
    if (!page.canEdit() || !page.model.media) return false;
    const target = this._target(erase);
    if (!target) return false;
    const { width, height, media } = page.model.media;
    const frame = page.state.frame;
    const label = target.exists ? page.model.label(target.object, frame) : null;
    const pendingHere = this.pending && this.pending.object === target.object && this.pending.frame === frame;
    if (isHead(label) && !pendingHere) {
      // Painting on it would start from an empty mask and overwrite the real one.
      page.toast("This frame's labels are still loading: try again in a moment.", { kind: "info" });
      return false;
    }
    let base = null;
    let edited = label?.written_by ?? null;
    let mask = null;
    const pending = this.pending;
    if (pending && pending.object === target.object && pending.frame === frame) {
      // The last stroke is not back from the server yet: go on from it.
      mask = pending.mask.slice();
      base = pending.rle;
      edited = pending.deleted ? null : pending.id;
    } else if (label) {
      mask = maskOfShape(label.shape, width, height);
      base = label.shape.type === "bitmask" ? label.shape.rle : null;
    }
    mask ??= new Uint8Array(width * height);
    this.stroke = { ...target, media, frame, mask, base, edited, erase: Boolean(erase), last: null };
    const color = page.model.classes.get(target.classId)?.color ?? "#ffcc00";
    this._startOverlay(mask, width, height, color, target.object);
    if (!target.exists || !page.state.selected.has(target.object)) page.selectOnly(target.object);
    this.move(x, y);
    return true;
  }

  /** Pointer moved to (x, y) while painting. */
  move(x, y) {
    const stroke = this.stroke;
    if (!stroke) return;
    const { width, height } = this.page.model.media;
    const point = { x, y };
    const box = paintSegment(stroke.mask, width, height, stroke.last ?? point, point, this.size / 2, stroke.erase ? 0 : 1);
    stroke.last = point;
    if (box) this._paintOverlay(stroke.mask, width, box);
  }

  /** Pointer released: save the stroke's mask as one command. */
  end() {
    const stroke = this.stroke;
    this.stroke = null;
    if (!stroke) return null;
    const page = this.page;
    const { width, height } = page.model.media;
    const body = strokeCommand({ ...stroke, width, height });
    if (!body) {
      this._settle();
      return null;
    }
    const id = crypto.randomUUID();
    const rle = body.shape?.rle ?? body.label?.shape.rle ?? null;
    this.pending = {
      object: stroke.object, classId: stroke.classId, frame: stroke.frame, mask: stroke.mask, rle, id,
      created: !stroke.exists, deleted: body.type === "label_deleted",
    };
    const panoptic = Boolean(page.settings.panoptic);
    const sent = page.send(body, { id, panoptic });
    sent.catch(() => {
      if (this.pending?.id === id) {
        this.pending = null;
        this._settle();
      }
    });
    return sent;
  }

  /** Escape mid-stroke: the stroke is dropped, nothing is sent. */
  cancel() {
    if (!this.stroke) return false;
    this.stroke = null;
    this._settle();
    return true;
  }

  /** After every model change (and frame change): stop showing a saved stroke once it is in. */
  sync() {
    const pending = this.pending;
    if (!pending || this.stroke) return;
    const { model, state } = this.page;
    const label = model.label(pending.object, pending.frame);
    const landed = pending.deleted ? label === null : label?.written_by === pending.id;
    const gone = pending.created ? false : !model.objects.has(pending.object);
    if (landed || gone || pending.frame !== state.frame) {
      this.pending = null;
      this._settle();
    }
  }

  /** Another frame, media item or tool: forget the stroke and the overlay. */
  reset() {
    this.stroke = null;
    this.pending = null;
    this._settle();
  }

  _settle() {
    if (this.stroke) return;
    if (this.pending) return; // still shown until the model has it
    this.overlay = null;
    this.page.editor.setOverlay(null);
  }

  _startOverlay(mask, width, height, color, object) {
    let overlay = this.overlay;
    if (!overlay || overlay.width !== width || overlay.height !== height) {
      const canvas = typeof OffscreenCanvas === "function" ? new OffscreenCanvas(width, height) : Object.assign(document.createElement("canvas"), { width, height });
      overlay = { canvas, ctx: canvas.getContext("2d"), image: new ImageData(width, height), width, height };
    }
    overlay.rgb = parseHex(color);
    overlay.object = object;
    this.overlay = overlay;
    this._paintOverlay(mask, width, { x0: 0, y0: 0, x1: width - 1, y1: height - 1 });
  }

  _paintOverlay(mask, width, box) {
    const overlay = this.overlay;
    if (!overlay) return;
    const data = overlay.image.data;
    const [r, g, b] = overlay.rgb;
    for (let y = box.y0; y <= box.y1; y++) {
      for (let x = box.x0, i = y * width + box.x0; x <= box.x1; x++, i++) {
        const o = i * 4;
        if (mask[i]) {
          data[o] = r;
          data[o + 1] = g;
          data[o + 2] = b;
          data[o + 3] = 150;
        } else data[o + 3] = 0;
      }
    }
    overlay.ctx.putImageData(overlay.image, 0, 0, box.x0, box.y0, box.x1 - box.x0 + 1, box.y1 - box.y0 + 1);
    this.page.editor.setOverlay({ canvas: overlay.canvas, hide: overlay.object });
  }
}
