// SAM mode (S1–S7): the clicks and box of the object being segmented on this frame, the prompt
// sent for them, and the model's answer shown as the preview until it is saved or discarded.

import { encodeRle, runLengths } from "./rle.js";
import { isHead } from "./model.js";
import { classColour, contrastColour } from "./colours.js";

const ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789";

/** `<class>-<6 random chars>`: a new object's id. */
export function newObjectId(classId) {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  let tail = "";
  for (const b of bytes) tail += ID_CHARS[b % ID_CHARS.length];
  return `${classId}-${tail}`.slice(0, 64);
}

function rleEmpty(rle) {
  const runs = runLengths(rle);
  for (let i = 1; i < runs.length; i += 2) if (runs[i] > 0) return false;
  return true;
}

/** A label's shape as a mask prompt (S7): bitmasks as they are, polygons and boxes drawn. */
export function shapeMask(shape, width, height) {
  if (shape.type === "bitmask") return shape.rle;
  if (shape.type !== "polygon" && shape.type !== "bbox") return null;
  const canvas = typeof OffscreenCanvas === "function" ? new OffscreenCanvas(width, height) : Object.assign(document.createElement("canvas"), { width, height });
  const g = canvas.getContext("2d", { willReadFrequently: true });
  g.fillStyle = "#fff";
  // Whole coordinates are pixel centres: shift by half a pixel into canvas space.
  g.translate(0.5, 0.5);
  g.beginPath();
  if (shape.type === "bbox") g.rect(shape.x - 0.5, shape.y - 0.5, shape.w, shape.h);
  else {
    for (const part of shape.parts) {
      for (const ring of [part.outer, ...(part.holes ?? [])]) {
        for (let i = 0; i + 1 < ring.length; i += 2) (i ? g.lineTo : g.moveTo).call(g, ring[i], ring[i + 1]);
        g.closePath();
      }
    }
  }
  g.fill("evenodd");
  const data = g.getImageData(0, 0, width, height).data;
  const mask = new Uint8Array(width * height);
  let any = false;
  for (let i = 0; i < mask.length; i++) {
    if (data[i * 4 + 3] > 127) {
      mask[i] = 1;
      any = true;
    }
  }
  return any ? encodeRle(mask, height, width) : null;
}

export class SamSession {
  /**
   * page: {model, state, settings, editor, canEdit(), send(body, options), toast(message, options),
   * track(objects, direction), selectOnly(id), selectionChanged(),
   * statusChanged() (the SAM bar shows `status`)}
   */
  constructor(page) {
    this.page = page;
    this.object = null; // the object being segmented
    this.objectClass = null;
    this.seen = false; // whether the model has had the object (a created one arrives later)
    this.created = false; // whether this session created it
    this.frame = null;
    this.points = [];
    this.box = null;
    this.refine = null; // the mask prompt (S7)
    this.prompt = null; // the latest prompt id sent
    this.answer = null; // its segment_proposed body
    this.status = "idle"; // idle | waiting | ready | empty
  }

  get active() {
    return this.points.length > 0 || this.box !== null || this.prompt !== null;
  }

  /** The object prompts go to: this session's, else a selected object of the active class. */
  target() {
    const { model, state } = this.page;
    const fits = (id) => id && model.objects.has(id) && model.objects.get(id).class_id === state.activeClass;
    if (fits(this.object)) return this.object;
    // Just created: the model may not have it yet.
    if (this.created && this.object && this.objectClass === state.activeClass && !this.seen) return this.object;
    for (const id of state.selected) if (fits(id)) return id;
    return null;
  }

  onPrompt(detail) {
    const page = this.page;
    const { model, state } = page;
    if (!page.canEdit()) return;
    const cls = model.classes.get(state.activeClass);
    if (!cls) return;
    let object = this.target();
    if (object !== this.object || this.frame !== state.frame) {
      // A new object or another frame: start over with its clicks.
      this.points = [];
      this.box = null;
      this.prompt = null;
      this.answer = null;
      this.refine = null;
      if (object !== this.object) this.created = false;
    }
    if (!object) {
      // A new object: its prompts name its class and media item, and only saving the preview
      // creates it (with its label, one undo step). An abandoned preview leaves no object.
      object = newObjectId(cls.class_id);
      this.created = true;
      this.seen = false;
      this.objectClass = cls.class_id;
    }
    if (this.object !== object || this.frame !== state.frame) {
      // S7: an existing label of this object on this frame is refined.
      const label = model.label(object, state.frame);
      if (isHead(label)) {
        // The label to refine is not loaded yet (issue 15): no prompt on a shape not known.
        page.toast("This frame's labels are still loading: try again in a moment.", { kind: "info" });
        return;
      }
      this.refine = label ? shapeMask(label.shape, model.media.width, model.media.height) : null;
    }
    this.object = object;
    this.frame = state.frame;
    if (!state.selected.has(object) || state.selected.size !== 1) page.selectOnly(object);
    if (detail.point) this.points.push({ x: detail.point.x, y: detail.point.y, include: detail.point.include !== false });
    if (detail.box) this.box = { ...detail.box };
    page.editor.setPromptPoints(this.points, this.box);
    const body = { type: "prompt_added", object, frame: state.frame, points: this.points.map((p) => ({ ...p })) };
    if (this.box) body.box = this.box;
    if (this.refine) body.mask = this.refine;
    if (this.created && !model.objects.has(object)) {
      body.class_id = this.objectClass;
      body.media = model.media.media;
    }
    const id = crypto.randomUUID();
    this.prompt = id;
    this.answer = null;
    this._status("waiting");
    page.send(body, { id }).catch(() => {
      if (this.prompt === id) {
        this.prompt = null;
        this._status("idle");
      }
    });
    this.check();
  }

  /** Called after every model change: show the answer to the latest prompt once it is there. */
  check() {
    if (this.object && this.page.model.objects.has(this.object)) this.seen = true;
    if (!this.prompt || this.answer) return;
    const segment = this.page.model.segments.get(this.prompt);
    if (!segment) return;
    this.answer = segment.body;
    const empty = rleEmpty(segment.body.mask);
    // A preview that refines a label (S7) is drawn in a colour that stands out from the label's;
    // the page draws that label dashed meanwhile (app.js shapeItems), so the change shows.
    const colour = classColour(this.page.model, this.object);
    this.page.editor.setPreview(empty ? null : segment.body.mask, this.refine ? contrastColour(colour) : colour);
    this._status(empty ? "empty" : "ready");
  }

  canSave() {
    return this.status === "ready" && this.prompt !== null;
  }

  /** Enter / Save: the preview becomes a label in the class's shape (S3). */
  async save({ track = false } = {}) {
    const page = this.page;
    if (!this.canSave()) {
      if (this.status === "waiting") page.toast("The preview is not there yet: wait for the model's answer.", { kind: "info" });
      else if (this.status === "empty") page.toast("The model found nothing there: add a click on the object.", { kind: "info" });
      return false;
    }
    const prompt = this.prompt;
    const object = this.object;
    const cls = page.model.classOf(object);
    const panoptic = Boolean(page.settings.panoptic && cls?.shape === "bitmask");
    try {
      await page.send({ type: "save_segment", prompt }, { panoptic });
    } catch {
      return false;
    }
    this.created = false;
    if (this.prompt === prompt) this.clearPoints();
    // A new object arrives with the save's event, which may follow its ack.
    await this.whenObject(object);
    if (track) await page.track([object], "forward").catch(() => {});
    return true;
  }

  /** Resolves (true) once the model has `object`, or (false) after `ms` without it. */
  whenObject(object, ms = 10_000) {
    const model = this.page.model;
    if (model.objects.has(object)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (found) => {
        model.removeEventListener("change", on);
        clearTimeout(timer);
        resolve(found);
      };
      const on = () => model.objects.has(object) && done(true);
      const timer = setTimeout(() => done(false), ms);
      model.addEventListener("change", on);
    });
  }

  /** Escape: drop the clicks and the preview. A new object only exists once its preview is saved,
   * so nothing else goes (an object without labels, as older pages made, is deleted). */
  discard() {
    const page = this.page;
    const object = this.object;
    const created = this.created;
    this.clearPoints();
    this.object = null;
    this.created = false;
    if (created && object && page.model.objects.has(object) && page.model.labelFrames(object).length === 0) {
      page.send({ type: "object_deleted", object });
      page.state.selected.delete(object);
      page.selectionChanged();
    }
  }

  /** The reset button: the clicks go, the object stays. */
  clearPoints() {
    this.points = [];
    this.box = null;
    this.prompt = null;
    this.answer = null;
    this.refine = null;
    this.frame = null;
    this.page.editor.setPromptPoints([], null);
    this.page.editor.setPreview(null, null);
    this._status("idle");
  }

  /** Another class or tool: forget the session (the object stays if it was saved). */
  end() {
    if (this.active && this.created) this.discard();
    else {
      this.clearPoints();
      this.object = null;
      this.created = false;
    }
  }

  _status(status) {
    this.status = status;
    this.page.state.samStatus = status;
    this.page.statusChanged();
  }
}
