// Replay (C3): a slider over the log's positions; below the head the editor shows the labels as
// they were right after that position (read-only, fetched from the server), until "back to live".

export class Replay {
  /**
   * page: {model, state, toast(message, options), labelsAt(media, seq) (the REST answer),
   * historySeqs() and historyRows() (the history panel's), changed() (replay started or ended)}
   */
  constructor(page) {
    this.page = page;
    this.slider = document.getElementById("replay");
    this.banner = document.getElementById("replay-banner");
    this.text = document.getElementById("replay-text");
    this.value = document.getElementById("replay-value");
    this.byFrame = new Map(); // frame -> [{object, frame, label}]
    this.request = 0;
    this._timer = null;
    this.slider.addEventListener("input", () => {
      this.value.textContent = this._isHead(+this.slider.value) ? "live" : `seq ${this.slider.value}`;
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

  get head() {
    return this.page.model.seq;
  }

  get active() {
    return this.page.state.replaySeq !== null;
  }

  _isHead(value) {
    return value >= this.head;
  }

  /** The log grew: stretch the slider (it stays where it is while replaying). */
  setHead(head) {
    this.slider.max = String(head);
    if (!this.active) {
      this.slider.value = String(head);
      this.value.textContent = "live";
    }
  }

  _fromSlider() {
    const value = Number(this.slider.value);
    if (this._isHead(value)) this.live();
    else this.show(value);
  }

  /** Show the labels as of log position `seq`. */
  async show(seq) {
    const page = this.page;
    if (!page.model.media) return;
    if (seq >= this.head) {
      this.live();
      return;
    }
    const request = ++this.request;
    let answer;
    try {
      answer = await page.labelsAt(page.model.media.media, seq);
    } catch (error) {
      if (request === this.request) page.toast(error.message, { code: error.code });
      return;
    }
    if (request !== this.request) return;
    this.byFrame.clear();
    for (const entry of answer.labels) {
      let list = this.byFrame.get(entry.frame);
      if (!list) this.byFrame.set(entry.frame, (list = []));
      list.push(entry);
    }
    page.state.replaySeq = answer.seq;
    this.slider.value = String(answer.seq);
    this.value.textContent = `seq ${answer.seq}`;
    this.text.textContent = `as of seq ${answer.seq}`;
    this.banner.hidden = false;
    this.mark();
    page.changed();
  }

  live() {
    this.request += 1;
    const was = this.active;
    this.page.state.replaySeq = null;
    this.byFrame.clear();
    this.banner.hidden = true;
    this.setHead(this.head);
    this.mark();
    if (was) this.page.changed();
  }

  /** Step to the previous / next event of this media item. */
  step(direction) {
    const seqs = this.page.historySeqs();
    const at = this.active ? this.page.state.replaySeq : this.head;
    if (direction < 0) {
      const before = seqs.filter((s) => s < at);
      this.show(before.length ? before[before.length - 1] : 0);
    } else {
      const after = seqs.find((s) => s > at);
      if (after === undefined || after >= this.head) this.live();
      else this.show(after);
    }
  }

  labelsAt(frame) {
    return this.byFrame.get(frame) ?? [];
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
