// COCO run-length encoded masks, as the log stores them: `size` is [height, width], `counts` the
// compressed string (5 bits a character, offset 48, 0x20 = more follow, 0x10 of the last = negative,
// values from the third on stored as the difference to the value two before). Runs alternate
// unset/set pixels, column-major.

export function runLengths(rle) {
  const s = rle.counts;
  const out = [];
  let i = 0;
  while (i < s.length) {
    let value = 0;
    let shift = 0;
    let more = true;
    let c = 0;
    while (more) {
      c = s.charCodeAt(i) - 48;
      value |= (c & 0x1f) << shift;
      more = (c & 0x20) !== 0;
      shift += 5;
      i += 1;
      if (!more && c & 0x10) value |= -1 << shift;
    }
    if (out.length > 2) value += out[out.length - 2];
    out.push(value);
  }
  return out;
}

/** The mask as a row-major Uint8Array of 0/1, height * width. */
export function decodeRle(rle) {
  const [height, width] = rle.size;
  const mask = new Uint8Array(height * width);
  let position = 0;
  let set = false;
  for (const run of runLengths(rle)) {
    if (set) {
      for (let p = position; p < position + run; p++) {
        const x = Math.floor(p / height);
        const y = p - x * height;
        mask[y * width + x] = 1;
      }
    }
    position += run;
    set = !set;
  }
  return mask;
}

/** Compressed RLE of a row-major 0/1 mask. */
export function encodeRle(mask, height, width) {
  const runs = [];
  let current = 0;
  let length = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== current) {
        runs.push(length);
        length = 0;
        current = v;
      }
      length += 1;
    }
  }
  runs.push(length);
  let counts = "";
  for (let i = 0; i < runs.length; i++) {
    let value = runs[i];
    if (i > 2) value -= runs[i - 2];
    let more = true;
    while (more) {
      let c = value & 0x1f;
      value >>= 5;
      more = c & 0x10 ? value !== -1 : value !== 0;
      if (more) c |= 0x20;
      counts += String.fromCharCode(c + 48);
    }
  }
  return { size: [height, width], counts };
}

/** An ImageData painting the mask's pixels in `rgba` (others transparent). */
export function maskImage(mask, width, height, rgba) {
  const image = new ImageData(width, height);
  const [r, g, b, a] = rgba;
  const data = image.data;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]) {
      const o = i * 4;
      data[o] = r;
      data[o + 1] = g;
      data[o + 2] = b;
      data[o + 3] = a;
    }
  }
  return image;
}

export function maskArea(mask) {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  return n;
}

/**
 * The mask cut to its bounding box: {mask (row-major 0/1, w * h), x, y, w, h, area}; w and h
 * are 0 for an empty mask. Work and memory grow with the mask's box, not with the frame, so a
 * small object on a 1280x720 frame decodes in well under a millisecond.
 */
export function decodeRleCropped(rle) {
  const [height] = rle.size;
  const runs = runLengths(rle);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, area = 0;
  for (let i = 1, position = runs[0]; i < runs.length; position += runs[i], i++) {
    if (i % 2 === 0 || runs[i] === 0) continue;
    const first = position, last = position + runs[i] - 1;
    const c0 = Math.floor(first / height), c1 = Math.floor(last / height);
    x0 = Math.min(x0, c0);
    x1 = Math.max(x1, c1);
    y0 = Math.min(y0, c0 === c1 ? first - c0 * height : 0);
    y1 = Math.max(y1, c0 === c1 ? last - c1 * height : height - 1);
    area += runs[i];
  }
  if (!area) return { mask: new Uint8Array(0), x: 0, y: 0, w: 0, h: 0, area: 0 };
  const w = x1 - x0 + 1, h = y1 - y0 + 1;
  const mask = new Uint8Array(w * h);
  for (let i = 1, position = runs[0]; i < runs.length; position += runs[i], i++) {
    if (i % 2 === 0) continue;
    for (let p = position; p < position + runs[i]; p++) {
      const col = Math.floor(p / height);
      mask[(p - col * height - y0) * w + (col - x0)] = 1;
    }
  }
  return { mask, x: x0, y: y0, w, h, area };
}
