// Unit tests of the project set-up's pure helpers (web/js/setup.js): node --test tests/web/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { dispositionName, freeId, kindLabel, parseSkeleton, pickedUpload, slug } from "../../../web/js/setup.js";

const ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/; // domain/events.py ID_PATTERN

test("ids made from names are ids the server accepts", () => {
  assert.equal(slug("Street scenes"), "street-scenes");
  assert.equal(slug("sam2_bedroom.mp4"), "sam2_bedroom");
  assert.equal(slug("Café crème 2024"), "cafe-creme-2024");
  assert.equal(slug("  ...!!  "), "item");
  assert.equal(slug("", "project"), "project");
  for (const name of ["Ünïcödé ✓", "-leading", "a".repeat(300), "x.mp4", "日本語", "frames/"]) assert.match(slug(name), ID, name);
});

test("a taken id gets the first free number", () => {
  assert.equal(freeId("car", new Set()), "car");
  assert.equal(freeId("car", new Set(["car", "car-2"])), "car-3");
});

test("a skeleton from point names and edges by name or number", () => {
  assert.deepEqual(parseSkeleton("head, hip , foot", "head-hip, 1-2"), { points: ["head", "hip", "foot"], edges: [[0, 1], [1, 2]] });
  assert.deepEqual(parseSkeleton("a", ""), { points: ["a"], edges: [] });
  assert.throws(() => parseSkeleton("", ""), /needs its points/);
  assert.throws(() => parseSkeleton("a, a", ""), /name of its own/);
  assert.throws(() => parseSkeleton("a, b", "a-c"), /'c' is none of the points/);
  assert.throws(() => parseSkeleton("a, b", "a"), /not two points/);
  assert.throws(() => parseSkeleton("a, b", "0-5"), /'5'/);
});

test("the download's name comes from Content-Disposition", () => {
  assert.equal(dispositionName('attachment; filename="p1-coco.json"'), "p1-coco.json");
  assert.equal(dispositionName("attachment; filename=p1-events.jsonl"), "p1-events.jsonl");
  assert.equal(dispositionName(null), null);
});

test("a picked folder is one upload, its files in name order, junk left out", () => {
  const file = (path) => ({ name: path.split("/").pop(), webkitRelativePath: path, size: 1 });
  const upload = pickedUpload([file("shots/frame10.png"), file("shots/.DS_Store"), file("shots/frame2.png"), file("shots/Thumbs.db")]);
  assert.equal(upload.name, "shots");
  assert.deepEqual(upload.files.map((f) => f.name), ["shots/frame2.png", "shots/frame10.png"]);
  const loose = pickedUpload([{ name: "a.mp4", webkitRelativePath: "", size: 1 }]);
  assert.equal(loose.name, "a.mp4");
  assert.equal(pickedUpload([]), null);
});

test("media kinds read as people say them", () => {
  assert.equal(kindLabel("dicom_series"), "DICOM series");
  assert.equal(kindLabel("image_group"), "image group");
  assert.equal(kindLabel("something_new"), "something new");
});
