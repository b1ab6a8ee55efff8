// The audit table (C4): current labels counted by source per object, frame, annotator or class,
// from the server, in place of the history while a grouping is picked. It follows the log: a
// change refreshes it (at most every 800 ms).

import { SOURCE_COLOURS } from "./colours.js";
import { objectName } from "./objects.js";

export class AuditTable {
  /**
   * page: {model, goto(frame), toast(message, options), auditCounts(media, by) (the REST answer)};
   * elements: {by (the grouping's select), table (where the table goes), history (hidden meanwhile)}
   */
  constructor(page, elements) {
    this.page = page;
    this.elements = elements;
    this._timer = null;
    elements.by.addEventListener("change", () => this.render());
  }

  /** Events arrived: refresh soon if the table is shown. */
  onEvents() {
    if (this.elements.table.hidden) return;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this.render(), 800);
  }

  async render() {
    const { by: select, table, history } = this.elements;
    const { model } = this.page;
    const by = select.value;
    history.hidden = Boolean(by);
    table.hidden = !by;
    if (!by || !model.media) return;
    let answer;
    try {
      answer = await this.page.auditCounts(model.media.media, by);
    } catch (error) {
      this.page.toast(error.message, { code: error.code });
      return;
    }
    if (select.value !== by) return;
    const sources = Object.keys(SOURCE_COLOURS);
    const t = document.createElement("table");
    const head = t.insertRow();
    for (const title of [by, ...sources, "all"]) {
      const th = document.createElement("th");
      th.textContent = title === "sam" ? "SAM" : title;
      if (SOURCE_COLOURS[title]) th.style.color = SOURCE_COLOURS[title];
      head.appendChild(th);
    }
    const keys = Object.keys(answer.counts).sort((a, b) => (by === "frame" ? Number(a) - Number(b) : a.localeCompare(b)));
    for (const key of keys) {
      const row = t.insertRow();
      const counts = answer.counts[key];
      const first = row.insertCell();
      first.dataset.key = key;
      // Objects by the name people gave them (or "class #n"); the id stays in the title.
      first.textContent = by === "object" ? objectName(model, key) : key;
      if (by === "object") first.title = `object ${key}`;
      let total = 0;
      for (const source of sources) {
        const n = counts[source] ?? 0;
        total += n;
        row.insertCell().textContent = n ? String(n) : "·";
      }
      row.insertCell().textContent = String(total);
      if (by === "frame") {
        row.style.cursor = "pointer";
        row.addEventListener("click", () => this.page.goto(Number(key)));
      }
    }
    if (!keys.length) {
      const row = t.insertRow();
      const cell = row.insertCell();
      cell.colSpan = sources.length + 2;
      cell.textContent = "no labels";
    }
    table.replaceChildren(t);
  }
}
