// What a hand edit edited (issue 14, point 4): a label saved by the brush, a vertex edit or a drag
// names the label it started from (`edited`: that label's `written_by`). The page shows it as
// "edited from the SAM label by alice". The model keeps only current labels, so this module
// remembers the provenance of every label the page has seen, and asks the server's cell history
// (GET /api/media/<m>/cells/<object>/<frame>) for one it never saw (saved before the page opened).

import { SOURCE_NAMES } from "./colours.js";

const KEEP = 50_000;

function shortActor(actor) {
  return String(actor ?? "").replace(/^user:/, "").replace(/^model:/, "");
}

/** "edited from the SAM label by alice": a line for a label's `edited`, given what it edited. */
export function editedText(edited, known) {
  if (!known) return `edited from label ${String(edited).slice(0, 8)}`;
  const source = SOURCE_NAMES[known.source] ?? known.source;
  const model = known.model ? ` (${known.model})` : "";
  return `edited from the ${source} label by ${shortActor(known.actor)}${model}`;
}

export class Provenance {
  /** page: {model, cellHistory(media, object, frame): Promise<{history: [{value, replaced}]}>} */
  constructor(page) {
    this.page = page;
    this.known = new Map(); // written_by -> {source, actor, model}
    this.asked = new Set(); // edited ids looked up already
    page.model.addEventListener("change", (e) => this._onChange(e.detail));
  }

  _remember(label) {
    if (!label || !label.written_by || this.known.has(label.written_by)) return;
    this.known.set(label.written_by, { source: label.source, actor: label.actor, model: label.model ?? null });
    if (this.known.size > KEEP) this.known.delete(this.known.keys().next().value);
  }

  _onChange({ kinds, events }) {
    const { model } = this.page;
    const many = kinds.some((k) => k === "snapshot" || k === "labels_loaded" || k === "tracked_accepted" || k === "track_frame_produced" || k === "undone" || k === "redone");
    if (many) {
      for (const entry of model.labels.values()) this._remember(entry.label);
      return;
    }
    for (const event of events) {
      const body = event.body;
      const frame = body.frame ?? body.label?.frame;
      if (body.object !== undefined && frame !== undefined) this._remember(model.label(body.object, frame));
    }
  }

  /** The line for `label`'s edit, or null if it edited nothing; looks up an unknown one once
   * (then `changed()` is called to show it). */
  describe(media, object, frame, label, changed) {
    if (!label?.edited) return null;
    const known = this.known.get(label.edited);
    if (!known && !this.asked.has(label.edited)) {
      this.asked.add(label.edited);
      this.page
        .cellHistory(media, object, frame)
        .then((answer) => {
          for (const entry of answer.history ?? []) {
            this._remember(entry.value);
            this._remember(entry.replaced);
          }
          if (this.known.has(label.edited)) changed();
        })
        .catch(() => {});
    }
    return editedText(label.edited, known);
  }
}
