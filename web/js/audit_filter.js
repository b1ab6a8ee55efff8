// Filtering the labels by their provenance (issue 14, point 10): source, annotator, model and
// class. The filter bar sits in the history panel; while a filter is on, the canvas draws only
// the labels that match (and says so), and the audit table counts only them (the server applies
// the same filters: GET /api/media/{m}/audit?source=&annotator=&model=&class=).
//
// The functions at the top are pure (tests/web/js/audit_filter.test.mjs); `FilterBar` renders
// the bar and the canvas's "filtered" badge.

import { SOURCE_NAMES } from "./colours.js";

/** The filter's keys, in the bar's order. */
export const FILTER_KEYS = ["source", "annotator", "model", "class"];

/** The option value for "made without a model" (hand-drawn and imported labels). */
export const NO_MODEL = "(none)";

export function emptyFilter() {
  return { source: "", annotator: "", model: "", class: "" };
}

export function filterActive(filter) {
  return FILTER_KEYS.some((key) => Boolean(filter?.[key]));
}

/**
 * What a label is, for the filter: {source, annotator (its actor, e.g. "user:alice"), model
 * (NO_MODEL when none), class}. `label` as in the model ({source, actor, model}).
 */
export function labelFacts(label, classId) {
  return { source: label.source, annotator: label.actor ?? "", model: label.model || NO_MODEL, class: classId ?? "" };
}

/** Whether facts (labelFacts) pass the filter: every key that is set must be equal (AND). */
export function matches(filter, facts) {
  for (const key of FILTER_KEYS) if (filter[key] && facts[key] !== filter[key]) return false;
  return true;
}

/**
 * The options of each select, from the labels present: {key: [{value, count}]}, sorted by value;
 * a value the filter holds stays offered (count 0) so the bar never hides what filters now.
 * `facts`: an iterable of labelFacts.
 */
export function filterOptions(facts, filter = emptyFilter()) {
  const counts = Object.fromEntries(FILTER_KEYS.map((key) => [key, new Map()]));
  for (const f of facts) for (const key of FILTER_KEYS) counts[key].set(f[key], (counts[key].get(f[key]) ?? 0) + 1);
  const options = {};
  for (const key of FILTER_KEYS) {
    if (filter[key] && !counts[key].has(filter[key])) counts[key].set(filter[key], 0);
    options[key] = [...counts[key]].filter(([value]) => value !== "").map(([value, count]) => ({ value, count }))
      .sort((a, b) => String(a.value).localeCompare(String(b.value)));
  }
  return options;
}

/** How a value reads in the bar and the badge. */
export function valueText(key, value) {
  if (key === "source") return SOURCE_NAMES[value] ?? value;
  if (key === "annotator") return value.startsWith("user:") ? value.slice(5) : value;
  if (key === "model" && value === NO_MODEL) return "no model";
  return value;
}

/** "source SAM · annotator alice": what the filter keeps, for the badge. */
export function describeFilter(filter) {
  return FILTER_KEYS.filter((key) => filter[key]).map((key) => `${key} ${valueText(key, filter[key])}`).join(" · ");
}

/** The audit endpoint's query parameters for the filter (model "" there: labels without one). */
export function auditParams(filter) {
  const params = {};
  for (const key of FILTER_KEYS) {
    if (!filter[key]) continue;
    params[key] = key === "model" && filter[key] === NO_MODEL ? "" : filter[key];
  }
  return params;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const TITLES = { source: "source", annotator: "annotator", model: "model", class: "class" };

/**
 * The filter bar and the canvas's badge. page: {model, state (its `labelFilter` is the filter),
 * changed() (the filter changed: redraw the canvas and the audit table)}; elements: {bar, badge}.
 */
export class FilterBar {
  constructor(page, elements) {
    this.page = page;
    this.elements = elements;
    page.state.labelFilter = emptyFilter();
    this.selects = {};
    const { bar, badge } = elements;
    bar.replaceChildren();
    bar.appendChild(el("span", "muted small-text", "filter"));
    for (const key of FILTER_KEYS) {
      const select = el("select", "mini");
      select.dataset.testid = `filter-${key}`;
      select.setAttribute("aria-label", `filter by ${TITLES[key]}`);
      select.title = `Show only the labels of this ${TITLES[key]} (canvas and audit table)`;
      select.addEventListener("change", () => {
        select.blur(); // arrow keys step frames, not options
        this.set(key, select.value);
      });
      this.selects[key] = select;
      bar.appendChild(select);
    }
    this.clearButton = el("button", "small ghost", "clear filters");
    this.clearButton.dataset.testid = "filter-clear";
    this.clearButton.addEventListener("click", () => this.clear());
    bar.appendChild(this.clearButton);
    badge.replaceChildren();
    this.badgeText = el("span");
    const clear = el("button", "small", "show all");
    clear.dataset.testid = "filter-badge-clear";
    clear.addEventListener("click", () => this.clear());
    badge.append(this.badgeText, clear);
    this._signature = "";
    this.render();
  }

  get filter() {
    return this.page.state.labelFilter;
  }

  set(key, value) {
    this.page.state.labelFilter = { ...this.filter, [key]: value };
    this.render();
    this.page.changed();
  }

  clear() {
    this.page.state.labelFilter = emptyFilter();
    this.render();
    this.page.changed();
  }

  /** The facts of a label of `object` (labelFacts). */
  facts(object, label) {
    return labelFacts(label, this.page.model.objects.get(object)?.class_id ?? this.page.model.classOf(object)?.class_id);
  }

  /** A predicate (object, label) -> shown, for the canvas; null while no filter is on. */
  predicate() {
    const filter = this.filter;
    if (!filterActive(filter)) return null;
    return (object, label) => matches(filter, this.facts(object, label));
  }

  /** Refresh the options (from the labels present) and the badge. */
  render() {
    const { model } = this.page;
    const filter = this.filter;
    const facts = [];
    for (const entry of model.labels.values()) if (model.objects.has(entry.object)) facts.push(this.facts(entry.object, entry.label));
    const options = filterOptions(facts, filter);
    const signature = JSON.stringify([options, filter]);
    if (signature !== this._signature) {
      this._signature = signature;
      for (const key of FILTER_KEYS) {
        const select = this.selects[key];
        const any = el("option", "", `any ${TITLES[key]}`);
        any.value = "";
        const items = options[key].map(({ value, count }) => {
          const option = el("option", "", `${valueText(key, value)} (${count})`);
          option.value = value;
          return option;
        });
        select.replaceChildren(any, ...items);
        select.value = filter[key];
        select.classList.toggle("on", Boolean(filter[key]));
      }
    }
    const active = filterActive(filter);
    this.clearButton.disabled = !active;
    this.elements.bar.classList.toggle("active", active);
    this.elements.badge.hidden = !active;
    if (active) {
      let shown = 0;
      for (const f of facts) if (matches(filter, f)) shown += 1;
      this.badgeText.textContent = `filtered: ${describeFilter(filter)} · ${shown} of ${facts.length} labels`;
    }
  }
}
