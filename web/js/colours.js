// Colours of the page: a label takes its object's colour (its class's, shifted per instance), or
// its source's when "colour by source" is on; the timeline, the audit strip and the history always
// use the source colours.

export const SOURCE_COLOURS = {
  manual: "#4fc3f7",
  sam: "#ffca28",
  tracked: "#ba68c8",
  imported: "#81c784",
};

export const SOURCE_NAMES = { manual: "manual", sam: "SAM", tracked: "tracked", imported: "imported" };

const FALLBACK = "#9aa5b8";

/**
 * The colour of an object: its class's colour, shifted per instance so that objects of one class
 * can be told apart (the first instance keeps the class colour exactly; see `instanceColour`).
 * The instance number follows the log's order of the class's objects, so everyone sees the same
 * colours. Objects the model no longer has (replay) get their class's colour.
 */
export function classColour(model, object) {
  const cls = model.classOf(object);
  if (cls) return instanceColour(cls.color, instanceIndex(model, object));
  const guess = model.classes.get(String(object).split("-")[0]);
  return guess ? guess.color : FALLBACK;
}

/** The same as `classColour`, by the name that says what it is. */
export const objectColour = classColour;

export function labelColour(model, object, source, bySource) {
  if (bySource) return SOURCE_COLOURS[source] ?? FALLBACK;
  return classColour(model, object);
}

const INDEXES = new WeakMap(); // model -> {stamp, index: Map(object id -> place in its class)}

/** An object's place (0, 1, ...) among its class's objects on this media item, in log order. */
export function instanceIndex(model, object) {
  const stamp = `${model.media?.media}:${model.seq}:${model.objects.size}`;
  let cached = INDEXES.get(model);
  if (!cached || cached.stamp !== stamp) {
    const counts = new Map();
    const index = new Map();
    for (const [id, info] of model.objects) {
      const n = counts.get(info.class_id) ?? 0;
      index.set(id, n);
      counts.set(info.class_id, n + 1);
    }
    cached = { stamp, index };
    INDEXES.set(model, cached);
  }
  return cached.index.get(object) ?? 0;
}

// Hue steps (degrees) and lightness steps (percent) that instance colours cycle through: 7 x 3
// distinct colours per class before one repeats; neighbours in the order differ in hue.
const HUE_STEPS = [0, 24, -24, 48, -48, 72, -72];
const LIGHT_STEPS = [0, 14, -14];
const SHADES = new Map();

/** The `index`-th instance's colour of a class colour "#rrggbb" (index 0: the colour itself). */
export function instanceColour(hex, index) {
  if (!index || !/^#[0-9a-f]{6}$/i.test(hex)) return hex;
  const key = `${hex}|${index}`;
  let shade = SHADES.get(key);
  if (shade === undefined) {
    const [h, s, l] = hexToHsl(hex);
    const hue = h + HUE_STEPS[index % HUE_STEPS.length] + 7 * Math.floor(index / (HUE_STEPS.length * LIGHT_STEPS.length));
    const light = Math.min(78, Math.max(32, l + LIGHT_STEPS[Math.floor(index / HUE_STEPS.length) % LIGHT_STEPS.length]));
    shade = hslToHex(hue, Math.max(s, 45), light);
    SHADES.set(key, shade);
  }
  return shade;
}

/** A colour that stands out against `hex`: a SAM preview that refines a label is drawn in it. */
export function contrastColour(hex) {
  if (!/^#[0-9a-f]{6}$/i.test(hex)) return "#00e5ff";
  const [h] = hexToHsl(hex);
  return hslToHex(h + 180, 100, 60);
}

function hexToHsl(hex) {
  const n = parseInt(hex.slice(1), 16);
  const r = (n >> 16) / 255, g = ((n >> 8) & 255) / 255, b = (n & 255) / 255;
  const max = Math.max(r, g, b), min = Math.min(r, g, b);
  const l = (max + min) / 2;
  if (max === min) return [0, 0, l * 100];
  const d = max - min;
  const s = l > 0.5 ? d / (2 - max - min) : d / (max + min);
  let h;
  if (max === r) h = (g - b) / d + (g < b ? 6 : 0);
  else if (max === g) h = (b - r) / d + 2;
  else h = (r - g) / d + 4;
  return [h * 60, s * 100, l * 100];
}

function hslToHex(h, s, l) {
  h = ((h % 360) + 360) % 360;
  s /= 100;
  l /= 100;
  const k = (n) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => Math.round(255 * (l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1))));
  return `#${[f(0), f(8), f(4)].map((v) => v.toString(16).padStart(2, "0")).join("")}`;
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
