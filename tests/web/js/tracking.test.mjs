// Unit tests of the page's tracking helpers (web/js/tracking.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { Tracking, directionStep, framesFrom, retrackable } from "../../../web/js/tracking.js";

const track = (id, status, request) => ({ id, status, request: { objects: ["a"], start: 10, range: 5, direction: "forward", ...request } });

test("a direction's step", () => {
  assert.equal(directionStep("forward"), 1);
  assert.equal(directionStep("backward"), -1);
});

test("the newest ended track covering the frame can be tracked again from it", () => {
  const older = track("t1", "completed", {});
  const newer = track("t2", "cancelled", {});
  assert.deepEqual(retrackable([older, newer], "a", 12), { track: newer, offset: 2 });
  assert.equal(retrackable([older, newer], "a", 15), null, "past the range");
  assert.equal(retrackable([older, newer], "a", 9), null, "before the start");
  assert.equal(retrackable([older, newer], "b", 12), null, "another object");
  assert.equal(retrackable([track("t3", "running", {})], "a", 12), null, "still running");
  const back = track("t4", "completed", { direction: "backward" });
  assert.deepEqual(retrackable([back], "a", 7), { track: back, offset: 3 });
  assert.equal(retrackable([back], "a", 11), null);
});

test("results from a frame on follow the track's direction", () => {
  const proposals = [{ object: "a", frame: 3 }, { object: "a", frame: 5 }, { object: "b", frame: 6 }, { object: "a", frame: 8 }];
  assert.deepEqual(framesFrom(proposals, "a", 5, 1), [5, 8]);
  assert.deepEqual(framesFrom(proposals, "a", 5, -1), [3, 5]);
});

test("a request carries the page's settings unless told otherwise", async () => {
  const sent = [];
  const page = {
    model: { media: { media: "m1" }, tracks: new Map(), objects: new Map([["a", {}]]) },
    state: { frame: 4, selected: new Set(["a", "gone"]) },
    settings: { range: 30, algorithm: "simple" },
    send: async (body) => sent.push(body),
    canEdit: () => true,
    toast: () => {},
    savePreview: async () => true,
  };
  const tracking = new Tracking(page);
  await tracking.trackSelection("backward");
  assert.deepEqual(sent, [
    { type: "track_requested", media: "m1", objects: ["a"], start: 4, direction: "backward", range: 30, interval: 0, algorithm: "simple", autosave: false },
  ]);
  await tracking.request(["a"], "forward", { start: 0, range: 9, autosave: true, replaces: "t1" });
  assert.equal(sent[1].replaces, "t1");
  assert.equal(sent[1].range, 9);
});

test("nothing is requested when the preview could not be saved or nothing is selected", async () => {
  const sent = [];
  const toasts = [];
  const page = {
    model: { media: { media: "m1" }, tracks: new Map(), objects: new Map() },
    state: { frame: 0, selected: new Set() },
    settings: { range: 30, algorithm: "simple" },
    send: async (body) => sent.push(body),
    canEdit: () => true,
    toast: (message) => toasts.push(message),
    savePreview: async () => false,
  };
  await new Tracking(page).trackSelection("forward");
  page.savePreview = async () => true;
  await new Tracking(page).trackSelection("forward");
  assert.deepEqual(sent, []);
  assert.equal(toasts.length, 1);
});
