"""Issue 14: importing the same COCO file twice is a no-op (point 11), and object names travel
through the REST routes, the COCO export (CVAT-style `attributes.name`) and back in (point 5)."""

from __future__ import annotations

import json

import pytest

from masklog.domain.events import is_derived_event_id
from tests.server.live import HEIGHT, WIDTH, LiveServer, seeded_server
from tests.server.rest import command, head, post_command


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveServer:
    with seeded_server(tmp_path_factory.mktemp("import-names")) as server:
        yield server


def coco_file(*names: str | None) -> bytes:
    """Two frames, one box per annotation; `names` gives each annotation's attributes.name."""
    annotations = []
    for number, name in enumerate(names, start=1):
        entry = {"id": number, "image_id": 1 + number % 2, "category_id": 1, "bbox": [number, 2, 5, 6], "iscrowd": 0}
        if name is not None:
            entry["attributes"] = {"name": name, "occluded": False}
        annotations.append(entry)
    return json.dumps({
        "images": [{"id": 1, "file_name": "frame_000003.jpg", "width": WIDTH, "height": HEIGHT},
                   {"id": 2, "file_name": "frame_000004.jpg", "width": WIDTH, "height": HEIGHT}],
        "categories": [{"id": 1, "name": "box"}],
        "annotations": annotations,
    }).encode()  # fmt: skip


def labels(http, media: str = "m1") -> dict[tuple[str, int], dict]:
    entries = http.get(f"/api/media/{media}/labels").json()["labels"]
    return {(e["object"], e["frame"]): e["label"] for e in entries}


def objects(http, media: str = "m1") -> dict[str, dict]:
    return http.get(f"/api/media/{media}/snapshot").json()["objects"]


def test_importing_the_same_file_twice_creates_nothing_the_second_time(live):
    data = coco_file("lead car", None, "truck")
    with live.http("alice") as alice:
        before = set(labels(alice))
        first = alice.post("/api/media/m1/import", files={"file": ("a.json", data, "application/json")})
        assert first.status_code == 201, first.text
        assert (first.json()["created"], first.json()["skipped"], first.json()["objects"]) == (3, 0, 3)
        after_first = labels(alice)
        seq = head(alice)
        # The same bytes under another file name, sent raw this time: still the same file.
        second = alice.post("/api/media/m1/import", content=data, headers={"content-type": "application/json"})
        assert second.status_code == 200, second.text
        assert (second.json()["created"], second.json()["skipped"], second.json()["objects"], second.json()["labels"]) == (0, 3, 0, 0)
        assert labels(alice) == after_first and head(alice) == seq, "nothing new in the log"
        new = {key: value for key, value in after_first.items() if key not in before}
        assert len(new) == 3 and all(value["source"] == "imported" for value in new.values())
        assert all(is_derived_event_id(value["written_by"]) for value in new.values()), "an import's events have derived ids"
        named = {info.get("name") for oid, info in objects(alice).items() if (oid, 3) in new or (oid, 4) in new}
        assert named == {"lead car", "truck", None}
        # Another file (one more annotation) is another import: all of it is created.
        third = alice.post("/api/media/m1/import", content=coco_file("lead car", None, "truck", None), headers={"content-type": "application/json"})
        assert third.status_code == 201 and (third.json()["created"], third.json()["skipped"]) == (4, 0)


def test_a_rename_is_seen_by_everyone_and_exported(live, tmp_path):
    from pycocotools.coco import COCO

    with live.http("alice") as alice, live.http("bob") as bob:
        command(alice, {"type": "object_created", "object": "named-1", "media": "m1", "class_id": "box", "name": "left cyclist"})
        command(alice, {"type": "label_saved", "object": "named-1", "frame": 7, "shape": {"type": "bbox", "x": 3, "y": 3, "w": 9, "h": 9}, "source": "manual"})
        # And an unnamed one, whose annotations must carry no name.
        command(alice, {"type": "object_created", "object": "x-unnamed-1", "media": "m1", "class_id": "box"})
        command(alice, {"type": "label_saved", "object": "x-unnamed-1", "frame": 8, "shape": {"type": "bbox", "x": 20, "y": 3, "w": 9, "h": 9}, "source": "manual"})
        assert objects(bob)["named-1"]["name"] == "left cyclist"
        command(bob, {"type": "object_renamed", "object": "named-1", "name": "right cyclist"})
        assert objects(alice)["named-1"]["name"] == "right cyclist"
        refused = post_command(bob, {"type": "object_renamed", "object": "no-such-object", "name": "x"})
        assert refused.status_code in (404, 422) and refused.json()["error"]["code"] == "unknown_id"
        too_long = post_command(bob, {"type": "object_renamed", "object": "named-1", "name": "x" * 201})
        assert too_long.status_code == 422
        export = alice.get("/api/projects/p1/export", params={"media": "m1"})
        assert export.status_code == 200
        path = tmp_path / "coco.json"
        path.write_bytes(export.content)
        api = COCO(str(path))
        [entry] = [a for a in api.loadAnns(api.getAnnIds()) if a["masklog"]["object"] == "named-1"]
        assert entry["attributes"] == {"name": "right cyclist"} and entry["masklog"]["name"] == "right cyclist"
        unnamed = [a for a in api.loadAnns(api.getAnnIds()) if a["masklog"]["object"] != "named-1"]
        assert unnamed and all("name" not in a.get("attributes", {}) for a in unnamed if a["masklog"]["object"].startswith("x-"))
        log = alice.get("/api/projects/p1/export", params={"media": "m1", "format": "events"})
        assert log.status_code == 200 and b'"object_renamed"' in log.content and b"right cyclist" in log.content
