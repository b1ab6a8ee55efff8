// Colours of the page: a label takes its class's colour, or its source's when "colour by source"
// is on; the timeline, the audit strip and the history always use the source colours.

export const SOURCE_COLOURS = {
  manual: "#4fc3f7",
  sam: "#ffca28",
  tracked: "#ba68c8",
  imported: "#81c784",
};

export const SOURCE_NAMES = { manual: "manual", sam: "SAM", tracked: "tracked", imported: "imported" };

const FALLBACK = "#9aa5b8";

/** The class colour of an object, also for objects the model no longer has (replay). */
export function classColour(model, object) {
  const cls = model.classOf(object);
  if (cls) return cls.color;
  const guess = model.classes.get(String(object).split("-")[0]);
  return guess ? guess.color : FALLBACK;
}

export function labelColour(model, object, source, bySource) {
  if (bySource) return SOURCE_COLOURS[source] ?? FALLBACK;
  return classColour(model, object);
}

/** A stable colour per user name, for presence. */
export function userColour(name) {
  let h = 0;
  for (const c of String(name)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360}, 70%, 62%)`;
}

/** "#rrggbb" with an alpha, as rgba(). */
export function withAlpha(hex, alpha) {
  if (!/^#[0-9a-f]{6}$/i.test(hex)) return hex;
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
