// Where the canvas puts the tags (captions) of the shapes so that none covers another: each tag
// wants to sit just above its shape's top-left corner; taken in order, a tag that would overlap
// one placed before it moves down or up by a tag's height, then aside, to the first free place.
// Pure (no DOM): node --test tests/web/js/ tests it.

/** Whether two rectangles {x, y, w, h} overlap (touching edges do not). */
export function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

/**
 * Place tags without overlaps.
 * tags: [{x, y, w, h}] — where each wants its top-left corner, and its size (screen pixels).
 * view: {width, height} — tags are kept inside it.
 * Returns [{x, y, w, h, moved}] in the input order; a tag that finds no free place within
 * `maxSteps` steps either way keeps its wanted place (clamped), overlapping.
 */
export function placeTags(tags, view, { gap = 2, maxSteps = 24 } = {}) {
  const placed = [];
  const out = [];
  const clampX = (x, w) => Math.max(0, Math.min(x, view.width - w));
  const clampY = (y, h) => Math.max(0, Math.min(y, view.height - h));
  for (const tag of tags) {
    const w = tag.w, h = tag.h;
    const want = { x: clampX(tag.x, w), y: clampY(tag.y, h), w, h };
    let found = null;
    for (const candidate of candidates(want, view, gap, maxSteps)) {
      if (!placed.some((other) => overlaps(candidate, other))) {
        found = candidate;
        break;
      }
    }
    const rect = found ?? want;
    placed.push(rect);
    out.push({ ...rect, moved: rect.x !== want.x || rect.y !== want.y });
  }
  return out;
}

/** Places to try, nearest first: the wanted one, then down/up by whole tag heights, then aside. */
function* candidates(want, view, gap, maxSteps) {
  const { w, h } = want;
  const inside = (r) => r.x >= 0 && r.y >= 0 && r.x + r.w <= view.width + 1e-9 && r.y + r.h <= view.height + 1e-9;
  yield want;
  for (let step = 1; step <= maxSteps; step++) {
    const down = { x: want.x, y: want.y + step * (h + gap), w, h };
    const up = { x: want.x, y: want.y - step * (h + gap), w, h };
    if (inside(down)) yield down;
    if (inside(up)) yield up;
  }
  for (let step = 1; step <= maxSteps; step++) {
    for (const dx of [step * (w + gap), -step * (w + gap)]) {
      const aside = { x: want.x + dx, y: want.y, w, h };
      if (inside(aside)) yield aside;
    }
  }
}
