// Unit tests of the page's view of the model work (web/js/work.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { Placements, Poller, THIS_SERVER, placementText, workerLine, workerName, workersView } from "../../../web/js/work.js";

const worker = (id, extra = {}) => ({
  id, host: id.split(":")[0], pid: Number(id.split(":")[1]), backend: "classical", trackers: ["classical", "simple"],
  segmenter: "classical/segmenter@1", device: null, tracks: 0, clicks: 0, resumed: [], started_at: 1, ...extra,
});

test("a worker's short name is host:pid", () => {
  assert.equal(workerName("gpu-3:4242:a1b2c3"), "gpu-3:4242");
  assert.equal(workerName(THIS_SERVER), THIS_SERVER);
  assert.equal(workerName("odd"), "odd");
});

test("a running track's row says where it is", () => {
  assert.equal(placementText(null), null);
  assert.equal(placementText({ track: "t", position: 2, worker: null, resumed: false }).text, "queued #2");
  assert.match(placementText({ track: "t", position: 2, worker: null, resumed: false }).title, /1 track ahead/);
  assert.match(placementText({ track: "t", position: 1, worker: null, resumed: false }).title, /next in the queue/);
  const on = placementText({ track: "t", position: null, worker: "h:12:abcdef", resumed: false });
  assert.deepEqual([on.text, on.look], ["on h:12", "working"]);
  assert.match(on.title, /h:12:abcdef/);
  const resumed = placementText({ track: "t", position: null, worker: "h:13:abcdef", resumed: true });
  assert.deepEqual([resumed.text, resumed.look], ["resumed on h:13", "resumed"]);
  // A server that runs the models itself says nothing worth a row's room.
  assert.equal(placementText({ track: "t", position: null, worker: THIS_SERVER, resumed: false }), null);
});

test("the workers indicator: hidden unless the work is shared, else the count and a line each", () => {
  assert.equal(workersView(null).hidden, true);
  assert.equal(workersView({ shared: false, workers: [worker(THIS_SERVER + ":0:x")] }).hidden, true);
  assert.equal(workersView({ shared: false, workers: [] }).hidden, true);
  const none = workersView({ shared: true, workers: [] });
  assert.deepEqual([none.hidden, none.text, none.look], [false, "no workers", "none"]);
  assert.match(none.title, /refused/);
  const one = workersView({ shared: true, workers: [worker("a:1:x")] });
  assert.equal(one.text, "1 worker");
  const two = workersView({ shared: true, workers: [worker("a:1:x", { tracks: 2, resumed: ["t1"] }), worker("b:2:y", { device: "cuda:1", segmenter: null })] });
  assert.equal(two.text, "2 workers");
  const lines = two.title.split("\n");
  assert.equal(lines.length, 3);
  assert.equal(lines[1], "a:1 · classical · trackers: classical, simple · clicks: classical/segmenter@1 · working 2 tracks, 0 clicks (1 taken over)");
  assert.equal(lines[2], workerLine(worker("b:2:y", { device: "cuda:1", segmenter: null })));
  assert.match(lines[2], /on cuda:1 .* no clicks · working 0 tracks, 0 clicks$/);
});

const tick = (ms = 0) => new Promise((done) => setTimeout(done, ms));

test("a poller never runs its task twice at once, and stops", async () => {
  let running = 0;
  let most = 0;
  let runs = 0;
  let release;
  const poller = new Poller(async () => {
    runs += 1;
    running += 1;
    most = Math.max(most, running);
    await new Promise((done) => (release = done));
    running -= 1;
  }, () => 1);
  poller.start();
  poller.start(); // already running: nothing more
  await tick();
  assert.equal(runs, 1);
  release();
  await tick(10);
  assert.equal(runs, 2, "the next turn comes after the delay");
  poller.stop();
  poller.start(); // while a run is in flight: it goes on from there, once
  release();
  await tick(10);
  assert.equal(most, 1);
  poller.stop();
  release?.();
  const after = runs;
  await tick(10);
  assert.equal(runs, after, "stopped");
});

test("a failing task is tried again; skip() passes turns", async () => {
  let calls = 0;
  let skip = true;
  const poller = new Poller(async () => {
    calls += 1;
    throw new Error("down");
  }, () => 1, { skip: () => skip });
  poller.start();
  await tick(10);
  assert.equal(calls, 0);
  skip = false;
  await tick(10);
  assert.ok(calls >= 2, `tried again after failing (${calls})`);
  poller.stop();
});

test("placements: polled while the open item has running tracks and the work is shared", async () => {
  const asked = [];
  let changed = 0;
  const page = {
    open: "m1", runs: true, sharedWork: null,
    media: () => page.open, running: () => page.runs, shared: () => page.sharedWork,
    tracks: async (media) => {
      asked.push(media);
      return { media, waiting: 1, tracks: [{ track: "t1", requester: "alice", position: null, worker: "h:1:x", resumed: false }, { track: "t2", requester: "alice", position: 1, worker: null, resumed: false }] };
    },
    changed: () => (changed += 1),
  };
  const placements = new Placements(page, { interval: 1 });
  placements.sync();
  await tick(5);
  assert.deepEqual(asked, [], "not known to be shared yet: not polled");
  page.sharedWork = true;
  placements.sync();
  await tick(5);
  assert.ok(asked.length >= 1);
  assert.equal(placements.of("t1").text, "on h:1");
  assert.equal(placements.of("t2").text, "queued #1");
  assert.ok(changed >= 1);
  page.runs = false;
  placements.sync();
  const count = asked.length;
  await tick(5);
  assert.equal(asked.length, count, "stopped when none runs");
  assert.equal(placements.of("t1"), null, "forgotten");
  page.runs = true;
  page.open = "m2";
  placements.sync();
  await tick(5);
  assert.equal(asked.at(-1), "m2");
  page.open = null;
  placements.sync();
});
