// Unit tests of the offline queue's pure parts (web/js/outbox.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { connectionText, decodeQueue, encodeQueue, queueKey, waitingLabels } from "../../../web/js/outbox.js";

test("the pill says how many commands wait while the socket is down", () => {
  assert.equal(connectionText("open", 0).text, "connected");
  assert.equal(connectionText("open", 2).text, "connected", "in flight while connected is not waiting");
  assert.equal(connectionText("reconnecting", 0).text, "reconnecting…");
  const down = connectionText("reconnecting", 3);
  assert.equal(down.text, "offline · 3 waiting");
  assert.equal(down.look, "offline");
  assert.match(down.title, /3 commands wait for the server/);
  assert.match(connectionText("connecting", 1).title, /1 command wait/);
  assert.match(connectionText("closed", 2).title, /will not be sent/);
});

test("a kept queue comes back in order, for the same user only", () => {
  const entries = [
    { id: "a", message: '{"type":"command","id":"a"}', resolve: () => {} },
    { id: "b", message: '{"type":"command","id":"b"}' },
  ];
  const text = encodeQueue("alice", entries);
  assert.deepEqual(decodeQueue(text, "alice"), [
    { id: "a", message: '{"type":"command","id":"a"}' },
    { id: "b", message: '{"type":"command","id":"b"}' },
  ]);
  assert.deepEqual(decodeQueue(text, "bob"), [], "another user's commands are not sent under this user");
  assert.equal(encodeQueue("alice", []), null, "nothing waiting: nothing kept");
});

test("unreadable storage is an empty queue", () => {
  assert.deepEqual(decodeQueue(null, "alice"), []);
  assert.deepEqual(decodeQueue("{not json", "alice"), []);
  assert.deepEqual(decodeQueue(JSON.stringify({ v: 2, user: "alice", commands: [] }), "alice"), []);
  assert.deepEqual(decodeQueue(JSON.stringify({ v: 1, user: "alice", commands: [{ id: 1, message: "x" }, { id: "c", message: "m" }] }), "alice"), [{ id: "c", message: "m" }]);
  assert.equal(queueKey("clip"), "masklog.outbox:clip");
});

test("waiting commands show the labels they will save or delete on a frame", () => {
  const message = (body) => ({ id: "x", message: JSON.stringify({ type: "command", id: "x", body }) });
  const box = (x) => ({ type: "bbox", x, y: 0, w: 5, h: 5 });
  const entries = [
    message({ type: "object_created", object: "a", media: "m", class_id: "box" }),
    message({ type: "label_saved", object: "a", frame: 3, shape: box(1), source: "manual" }),
    message({ type: "label_saved", object: "a", frame: 3, shape: box(2), source: "manual" }),
    message({ type: "label_saved", object: "b", frame: 4, shape: box(9), source: "manual" }),
    message({ type: "label_deleted", object: "c", frame: 3 }),
    { id: "y", message: "not json" },
  ];
  const shown = waitingLabels(entries, 3);
  assert.deepEqual([...shown.keys()], ["a", "c"]);
  assert.equal(shown.get("a").x, 2, "the latest save wins");
  assert.equal(shown.get("c"), null);
  assert.equal(waitingLabels(entries, 5).size, 0);
});
