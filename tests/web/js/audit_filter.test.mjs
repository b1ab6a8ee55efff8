// Unit tests of the label filters (web/js/audit_filter.js) and the prompt's summary
// (web/js/prompt_overlay.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { NO_MODEL, auditParams, describeFilter, emptyFilter, filterActive, filterOptions, labelFacts, matches } from "../../../web/js/audit_filter.js";
import { promptSummary } from "../../../web/js/prompt_overlay.js";

const sam = labelFacts({ source: "sam", actor: "user:alice", model: "sam2.1-tiny" }, "mask");
const box = labelFacts({ source: "manual", actor: "user:bob", model: null }, "box");
const tracked = labelFacts({ source: "tracked", actor: "user:bob", model: "classical" }, "mask");

test("a label's facts: no model reads as NO_MODEL", () => {
  assert.deepEqual(box, { source: "manual", annotator: "user:bob", model: NO_MODEL, class: "box" });
  assert.equal(sam.model, "sam2.1-tiny");
});

test("filters combine with AND; an empty filter keeps everything", () => {
  const all = [sam, box, tracked];
  const keep = (filter) => all.filter((f) => matches(filter, f));
  assert.deepEqual(keep(emptyFilter()), all);
  assert.equal(filterActive(emptyFilter()), false);
  assert.deepEqual(keep({ ...emptyFilter(), annotator: "user:bob" }), [box, tracked]);
  assert.deepEqual(keep({ ...emptyFilter(), annotator: "user:bob", class: "mask" }), [tracked]);
  assert.deepEqual(keep({ ...emptyFilter(), source: "sam", annotator: "user:bob" }), []);
  assert.deepEqual(keep({ ...emptyFilter(), model: NO_MODEL }), [box]);
  assert.equal(filterActive({ ...emptyFilter(), model: NO_MODEL }), true);
});

test("options come from the labels present, with counts; a value in use stays offered", () => {
  const options = filterOptions([sam, box, tracked]);
  assert.deepEqual(options.annotator, [{ value: "user:alice", count: 1 }, { value: "user:bob", count: 2 }]);
  assert.deepEqual(options.source.map((o) => o.value), ["manual", "sam", "tracked"]);
  assert.deepEqual(options.class, [{ value: "box", count: 1 }, { value: "mask", count: 2 }]);
  const gone = filterOptions([box], { ...emptyFilter(), source: "sam" });
  assert.deepEqual(gone.source, [{ value: "manual", count: 1 }, { value: "sam", count: 0 }]);
});

test("the badge and the audit endpoint read the filter", () => {
  const filter = { ...emptyFilter(), source: "sam", annotator: "user:alice" };
  assert.equal(describeFilter(filter), "source SAM · annotator alice");
  assert.deepEqual(auditParams(filter), { source: "sam", annotator: "user:alice" });
  assert.deepEqual(auditParams({ ...emptyFilter(), model: NO_MODEL, class: "box" }), { model: "", class: "box" });
  assert.deepEqual(auditParams(emptyFilter()), {});
});

test("a prompt reads as its clicks and box", () => {
  const event = { body: { points: [{ x: 1, y: 2, include: true }, { x: 3, y: 4, include: false }], box: { x0: 0, y0: 0, x1: 5, y1: 5 } } };
  assert.equal(promptSummary(event), "prompt: 2 clicks (1 include, 1 exclude) + box, drawn on the frame");
  assert.equal(promptSummary({ body: { points: [{ x: 1, y: 2 }] } }), "prompt: 1 click (1 include, 0 exclude), drawn on the frame");
  assert.equal(promptSummary(undefined), "prompt: loading…");
});
