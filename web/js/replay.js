// Replay of the open media item (C3, issue 14 point 8): a slider over this media item's own
// events — one step per event of its stream (`media:<id>`), never another media item's. Below
// the live end the page shows the media item as it was right after that event: the server
// replays the item's and its project's streams up to there (GET /api/media/{m}/snapshot?seq=S)
// and the answer is folded into a second MediaModel. The canvas, the object list, the timeline,
// the classes, the counts and the label info read that model through `replayView` (read-only)
// until "Back to live".
//
// Positions: slider value k (0..N, N the number of this media item's events) means "after the
// item's first k events"; 0 is the item before any of its events (but after it was added), N is
// live. They come from GET /api/media/{m}/positions, at most 10 000 a request, then grow with the
// live events of the item's stream.

import { MediaModel, REPLAY_BLOCK, ensureLabels, labelsWindow } from "./model.js";

/** Index of the last position <= seq, plus one: how many of `positions` (sorted) are <= seq. */
export function countUpTo(positions, seq) {
  let lo = 0;
  let hi = positions.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (positions[mid] <= seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The log position slider value `k` stands for: right after the k-th event of the item. */
export function seqOfStep(positions, k) {
  if (k <= 0) return positions.length ? positions[0] - 1 : 0;
  return positions[Math.min(k, positions.length) - 1];
}

/**
 * What the panels read: the live model, or the replayed one while replaying. Methods run on the
 * model they come from. `replay()` returns the Replay (or nothing yet).
 */
export function replayView(live, replay) {
  return new Proxy(live, {
    get(target, key) {
      const r = replay();
      const model = r?.active && r.model.media ? r.model : target;
      const value = Reflect.get(model, key, model);
      return typeof value === "function" ? value.bind(model) : value;
    },
  });
}

export class Replay {
  /**
   * page: {model, state, toast(message, options), snapshotAt(media, seq, window), fetchWindow(media,
   * seq, from, to) and positions(media, after) (the REST answers), historyRows() (the history
   * panel's rows), changed() (replay started, moved or ended)}
   */
  constructor(page) {
    this.page = page;
    this.model = new MediaModel(); // the replayed media item
    this.positions = []; // seqs of the open item's events, oldest first
    this.loaded = false;
    this.buffer = [];
    this.generation = 0;
    this.at = null; // the slider value shown (null: live)
    this.request = 0;
    this.slider = document.getElementById("replay");
    this.banner = document.getElementById("replay-banner");
    this.text = document.getElementById("replay-text");
    this.value = document.getElementById("replay-value");
    this._timer = null;
    this.slider.addEventListener("input", () => {
      const k = Number(this.slider.value);
      this.value.textContent = k >= this.positions.length ? "live" : this._stepText(k);
      clearTimeout(this._timer);
      this._timer = setTimeout(() => this._fromSlider(), 120);
    });
    this.slider.addEventListener("change", () => {
      clearTimeout(this._timer);
      this._fromSlider();
    });
    document.getElementById("replay-live").addEventListener("click", () => this.live());
    document.getElementById("replay-prev").addEventListener("click", () => this.step(-1));
    document.getElementById("replay-next").addEventListener("click", () => this.step(1));
  }

  get active() {
    return this.page.state.replaySeq !== null;
  }

  _stepText(k) {
    return `${k} / ${this.positions.length}`;
  }

  /** Fetch the positions of the open item's events (after its snapshot arrived). */
  async load() {
    const generation = ++this.generation;
    const media = this.page.model.media?.media;
    this.loaded = false;
    this.buffer = [];
    if (!media) return;
    const positions = [];
    try {
      let after = 0;
      while (after !== null && after !== undefined) {
        const page = await this.page.positions(media, after);
        if (generation !== this.generation) return;
        positions.push(...page.seqs);
        after = page.next_after;
      }
    } catch (error) {
      if (generation === this.generation) this.page.toast(`replay: ${error.message}`, { code: error.code });
      return;
    }
    for (const seq of this.buffer) if (seq > (positions[positions.length - 1] ?? 0)) positions.push(seq);
    this.buffer = [];
    this.positions = positions;
    this.loaded = true;
    this._render();
  }

  /** Forget the item (another one is being opened). */
  reset() {
    this.live();
    this.generation += 1;
    this.positions = [];
    this.loaded = false;
    this.buffer = [];
    this._render();
  }

  /** Live events: the item's own ones are new steps (the slider stays where it is while replaying). */
  onEvents(events) {
    const stream = `media:${this.page.model.media?.media}`;
    for (const event of events) {
      if (event.stream !== stream) continue;
      if (!this.loaded) this.buffer.push(event.seq);
      else if (event.seq > (this.positions[this.positions.length - 1] ?? 0)) this.positions.push(event.seq);
    }
    this._render();
  }

  _render() {
    const n = this.positions.length;
    this.slider.max = String(n);
    this.slider.disabled = !this.loaded;
    if (this.at === null) {
      this.slider.value = String(n);
      this.value.textContent = "live";
    } else {
      this.slider.value = String(this.at);
      this.value.textContent = this._stepText(this.at);
    }
  }

  _fromSlider() {
    const k = Number(this.slider.value);
    if (k >= this.positions.length) this.live();
    else this.showStep(k);
  }

  /** Show the item as of log position `seq` (a history row): the step of its last event <= seq. */
  show(seq) {
    const k = countUpTo(this.positions, seq);
    if (k >= this.positions.length) this.live();
    else this.showStep(k);
  }

  /** Show the item right after its first `k` events. */
  async showStep(k) {
    const page = this.page;
    const media = page.model.media;
    if (!media || !this.loaded) return;
    k = Math.max(0, Math.min(this.positions.length, k));
    if (k >= this.positions.length) {
      this.live();
      return;
    }
    const seq = seqOfStep(this.positions, k);
    const request = ++this.request;
    this.at = k;
    this._render();
    let snapshot;
    try {
      // Full labels around the frame shown, heads for the rest (issue 15); ensureLabels fetches more.
      snapshot = await page.snapshotAt(media.media, seq, labelsWindow(page.state.frame, REPLAY_BLOCK));
    } catch (error) {
      if (request === this.request) page.toast(error.message, { code: error.code });
      return;
    }
    if (request !== this.request || page.model.media !== media) return;
    this.model.loadSnapshot(snapshot);
    page.state.replaySeq = seq;
    const event = k > 0 ? `event ${k} of ${this.positions.length}` : `before its ${this.positions.length} events`;
    this.text.textContent = `replay: this item ${event} · seq ${seq}`;
    this.banner.hidden = false;
    this.mark();
    page.changed();
    this.ensureLabels(page.state.frame); // moved on while the snapshot came
  }

  live() {
    this.request += 1;
    const was = this.active;
    this.page.state.replaySeq = null;
    this.at = null;
    this.model.reset();
    this.banner.hidden = true;
    this._render();
    this.mark();
    if (was) this.page.changed();
  }

  /** Step to the previous / next event of this media item. */
  step(direction) {
    if (!this.loaded) return;
    const from = this.at ?? this.positions.length;
    this.showStep(from + (direction < 0 ? -1 : 1));
  }

  labelsAt(frame) {
    return this.model.labelsAt(frame);
  }

  /** Fetch the full labels of `frame` as of the replayed position into the replayed model. */
  ensureLabels(frame) {
    const seq = this.page.state.replaySeq;
    if (seq === null) return;
    const pending = ensureLabels(this.model, frame, this.page.fetchWindow, seq, REPLAY_BLOCK);
    pending
      ?.then((merged) => {
        if (merged && this.active) this.page.changed();
      })
      .catch((error) => this.page.toast(`labels of frame ${frame}: ${error.message}`, { code: error.code }));
  }

  /** Mark the history row replay stands on, and fade the later ones. */
  mark() {
    const seq = this.page.state.replaySeq;
    const rows = this.page.historyRows();
    let marked = false;
    for (const row of rows) {
      const future = seq !== null && row.seq > seq;
      row.el.classList.toggle("future", future);
      const at = seq !== null && !marked && row.seq <= seq;
      row.el.classList.toggle("at", at);
      if (at) marked = true;
    }
  }
}
