// Unit tests of the offline queue's pure parts (web/js/outbox.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { connectionText, decodeQueue, encodeQueue, queueKey } from "../../../web/js/outbox.js";

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
