// A label's prompt, shown where it was given (issue 14, point 10): while one object is selected
// and its label on this frame came from a SAM prompt, the prompt's include clicks (green), exclude
// clicks (red) and box are drawn over the frame, and the label's provenance says what they were.
// The prompt event comes from the socket (the model keeps those it saw) or, for older ones, from
// GET /api/media/{m}/events/{id}.

const SVG = "http://www.w3.org/2000/svg";
export const INCLUDE_COLOUR = "#2ecc71";
export const EXCLUDE_COLOUR = "#ff4d4f";

/** How a prompt reads in the provenance: "prompt: 2 clicks (1 include, 1 exclude) + box, on the frame". */
export function promptSummary(event) {
  if (event === undefined) return "prompt: loading…";
  if (event === null) return "prompt: not found";
  const points = event.body.points ?? [];
  const include = points.filter((p) => p.include !== false).length;
  const parts = [];
  if (points.length) parts.push(`${points.length} click${points.length === 1 ? "" : "s"} (${include} include, ${points.length - include} exclude)`);
  if (event.body.box) parts.push("box");
  if (event.body.mask) parts.push("refined mask");
  return `prompt: ${parts.join(" + ") || "empty"}, drawn on the frame`;
}

function node(tag, attributes) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) n.setAttribute(k, String(v));
  return n;
}

export class PromptOverlay {
  /**
   * page: {model, state, editor, promptEvent(media, id): Promise<event> (REST), changed() (a
   * prompt arrived: redraw the provenance), hidden(object, label) (filtered off the canvas)};
   * root: the overlay's <svg>, over the stage.
   */
  constructor(page, root) {
    this.page = page;
    this.root = root;
    this._events = new Map(); // prompt id -> event | null (not found) | Promise (asked)
    window.addEventListener("resize", () => this.render());
  }

  /** The prompt event if known (null: the server has none); undefined while it is asked for. */
  known(id) {
    const seen = this.page.model.prompts.get(id);
    if (seen) return seen;
    const kept = this._events.get(id);
    if (kept === undefined) {
      const media = this.page.model.media?.media;
      if (!media) return undefined;
      const asked = this.page.promptEvent(media, id).then(
        (event) => this._events.set(id, event ?? null),
        () => this._events.set(id, null),
      ).then(() => this.page.changed());
      this._events.set(id, asked);
      return undefined;
    }
    return kept instanceof Promise ? undefined : kept;
  }

  /** The prompt to show now: the single selected object's label on this frame, if it has one. */
  target() {
    const { model, state, editor } = this.page;
    if (state.selected.size !== 1 || state.replaySeq !== null) return null;
    if (state.tool === "sam" && (editor.promptPoints.length || editor.promptBox)) return null; // SAM shows its own clicks
    const [id] = state.selected;
    const label = model.label(id, state.frame);
    if (!label?.prompt) return null;
    const event = this.known(label.prompt);
    if (!event || event.body.frame !== state.frame) return null;
    if (this.page.hidden?.(id, label)) return null; // filtered off the canvas
    return { object: id, event };
  }

  render() {
    const root = this.root;
    const found = this.page.model.media ? this.target() : null;
    if (!found) {
      if (root.childElementCount) root.replaceChildren();
      root.removeAttribute("data-prompt");
      return;
    }
    const { editor } = this.page;
    const rect = root.getBoundingClientRect();
    const at = (x, y) => {
      const p = editor.imageToClient(x, y);
      return { x: p.x - rect.left, y: p.y - rect.top };
    };
    const body = found.event.body;
    const children = [];
    if (body.box) {
      const a = at(body.box.x0, body.box.y0);
      const b = at(body.box.x1, body.box.y1);
      const box = node("rect", {
        x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), width: Math.abs(b.x - a.x), height: Math.abs(b.y - a.y),
        fill: "none", stroke: "#fff", "stroke-width": 2, "stroke-dasharray": "6 4",
      });
      box.dataset.testid = "prompt-box";
      children.push(box);
    }
    for (const point of body.points ?? []) {
      const p = at(point.x, point.y);
      const include = point.include !== false;
      const dot = node("circle", { cx: p.x, cy: p.y, r: 7, fill: include ? INCLUDE_COLOUR : EXCLUDE_COLOUR, stroke: "#fff", "stroke-width": 2 });
      dot.dataset.testid = "prompt-point";
      dot.dataset.include = String(include);
      dot.dataset.x = String(point.x);
      dot.dataset.y = String(point.y);
      const title = node("title", {});
      title.textContent = `${include ? "include" : "exclude"} click at (${Math.round(point.x)}, ${Math.round(point.y)})`;
      dot.appendChild(title);
      children.push(dot);
    }
    root.replaceChildren(...children);
    root.dataset.prompt = found.event.id;
  }
}
