"""Export and import through the real server and the `masklog` command (E1, E2): COCO out and
back in, YOLO, the event log out and into a fresh folder, and bad files refused whole."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import msgspec
import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from masklog.domain.geometry import rle_encode, shape_to_mask
from masklog.domain.shapes import Shape
from masklog.domain.state import LabelState
from masklog.server.sqlite_store import SQLiteEventStore
from tests.server.live import HEIGHT, WIDTH, LiveServer, seeded_server, upload
from tests.server.rest import command, head

ROOT = Path(__file__).resolve().parents[2]


def bitmask(x: int, y: int, w: int, h: int) -> dict:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[y : y + h, x : x + w] = 1
    mask[y + 2 : y + 4, x + 2 : x + 4] = 0  # a hole: RLE keeps it
    rle = rle_encode(mask)
    return {"type": "bitmask", "rle": {"size": list(rle.size), "counts": rle.counts}}


LABELS = {
    ("mask", 1): bitmask(5, 5, 12, 10),
    ("mask", 4): bitmask(9, 6, 12, 10),
    ("poly", 1): {"type": "polygon", "parts": [{"outer": [30, 5, 50, 8, 45, 30, 32, 25]}]},
    ("box", 2): {"type": "bbox", "x": 2, "y": 20, "w": 15, "h": 12},
}


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveServer:
    with seeded_server(tmp_path_factory.mktemp("exchange")) as server:
        with server.http("alice") as alice:
            for (class_id, frame), shape in LABELS.items():
                object_id = f"x-{class_id}"
                if frame == min(f for c, f in LABELS if c == class_id):
                    command(alice, {"type": "object_created", "object": object_id, "media": "m1", "class_id": class_id})
                command(alice, {"type": "label_saved", "object": object_id, "frame": frame, "shape": shape, "source": "manual"})
        yield server


def export(live: LiveServer, user: str = "alice", **params: str):  # type: ignore[no-untyped-def]
    with live.http(user) as http:
        return http.get("/api/projects/p1/export", params=params)


def labels_of(live: LiveServer, media: str) -> dict[tuple[str, int], dict]:
    with live.http("admin") as http:
        entries = http.get(f"/api/media/{media}/labels").json()["labels"]
    return {(e["object"], e["frame"]): e["label"] for e in entries}


def as_mask(shape: dict) -> np.ndarray:
    return shape_to_mask(msgspec.convert(shape, Shape), HEIGHT, WIDTH)  # type: ignore[arg-type]


def test_coco_export_loads_with_pycocotools(live, tmp_path):
    response = export(live, media="m1")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert "attachment" in response.headers["content-disposition"]
    path = tmp_path / "coco.json"
    path.write_bytes(response.content)
    api = COCO(str(path))
    saved = labels_of(live, "m1")
    for annotation in api.loadAnns(api.getAnnIds()):
        image = api.loadImgs(annotation["image_id"])[0]
        label = saved[(annotation["masklog"]["object"], image["masklog"]["frame"])]
        mask = api.annToMask(annotation).astype(bool)
        expected = as_mask(label["shape"])
        if label["shape"]["type"] in ("bitmask", "polygon"):
            assert (mask == expected).all(), "RLE masks decode to the saved ones"
        assert annotation["masklog"]["source"] == "manual" and annotation["masklog"]["actor"] == "user:alice"
    assert {c["name"] for c in api.loadCats(api.getCatIds())} == {"box", "mask", "poly", "line", "box2"} - {"box2"}


def test_coco_round_trip_into_a_fresh_project(live):
    with live.http("admin") as admin:
        admin.post("/api/projects", json={"id": "p3", "name": "Fresh"}).raise_for_status()
        upload(admin, "p3", "m3", "video", [live.settings.data.parent / "files" / "clip.mp4"]).raise_for_status()
        coco_file = export(live, user="admin", media="m1").content
        response = admin.post("/api/media/m3/import", files={"file": ("coco.json", coco_file, "application/json")})
        assert response.status_code == 201, response.text
        result = response.json()
        # Class ids are unique across projects: the new classes get ids of their own.
        assert len(result["classes"]) == 4 and result["labels"] == len(LABELS)
        project = admin.get("/api/projects/p3").json()
        source = {c["name"]: c for c in admin.get("/api/projects/p1").json()["classes"] if c["name"] != "box2"}
    copied = {c["name"]: c for c in project["classes"]}
    assert set(copied) == set(source)
    for name, cls in copied.items():
        assert (cls["shape"], cls["color"]) == (source[name]["shape"], source[name]["color"])
    before, after = labels_of(live, "m1"), labels_of(live, "m3")
    # Object ids are unique across projects too: x-mask comes back as x-mask-2, and so on.
    original_id = lambda object_id: object_id.removesuffix("-2")
    assert {(original_id(o), f) for o, f in after} == set(before)
    for (object_id, frame), label in after.items():
        original = before[(original_id(object_id), frame)]
        assert label["source"] == "imported" and label["actor"] == "user:admin"
        assert rle_encode(as_mask(label["shape"])) == rle_encode(as_mask(original["shape"])), "identical masks"


def test_yolo_export_with_images(live):
    response = export(live, format="yolo", media="m1", images="1")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = set(archive.namelist())
    assert "data.yaml" in names and "labels/m1/000001.txt" in names and "images/m1/000001.jpg" in names
    data_yaml = archive.read("data.yaml").decode()
    classes = [line.split(": ", 1)[1].strip('"') for line in data_yaml.splitlines() if line.startswith("  ")]
    saved = labels_of(live, "m1")
    for name in names:
        if not name.startswith("labels/"):
            continue
        frame = int(Path(name).stem)
        for line in archive.read(name).decode().splitlines():
            values = [float(v) for v in line.split()]
            class_name = classes[int(values[0])]
            polygon = (np.asarray(values[1:]).reshape(-1, 2) * [WIDTH, HEIGHT]).ravel().tolist()
            got = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([polygon], HEIGHT, WIDTH))).astype(bool)
            expected = as_mask(saved[(f"x-{class_name}", frame)]["shape"])
            expected_outer = cv2.morphologyEx(expected.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool)  # YOLO has no holes
            assert (got & expected_outer).sum() / (got | expected_outer).sum() >= 0.95, (name, class_name)
    image = cv2.imdecode(np.frombuffer(archive.read("images/m1/000001.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (HEIGHT, WIDTH, 3)


def test_export_options_and_errors(live):
    seq = head(live.http("alice"))
    with live.http("alice") as alice:
        command(alice, {"type": "object_created", "object": "late", "media": "m1", "class_id": "box"})
        command(alice, {"type": "label_saved", "object": "late", "frame": 7, "shape": {"type": "bbox", "x": 1, "y": 1, "w": 4, "h": 4}, "source": "manual"})
    objects = lambda response: {a["masklog"]["object"] for a in response.json()["annotations"]}
    assert "late" in objects(export(live))
    assert "late" not in objects(export(live, seq=str(seq))), "as of a position"
    assert objects(export(live, first="4", last="7")) == {"x-mask", "late"}
    polygons = export(live, masks="polygon").json()
    assert all(isinstance(a["segmentation"], list) for a in polygons["annotations"])
    assert export(live, format="pdf").json()["error"]["code"] == "invalid_request"
    assert export(live, media="nope").status_code == 404
    assert export(live, user="outsider").status_code == 404


def test_event_log_export_streams_the_projects_events(live):
    response = export(live, format="events")
    assert response.status_code == 200
    events = [json.loads(line) for line in response.text.splitlines()]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert {e["stream"] for e in events} <= {"project:p1", "media:m1", "media:g1", "media:i1"}
    assert any(e["body"]["type"] == "label_saved" for e in events)


def masklog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "masklog.server.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


async def states_by_position(database: Path) -> list[LabelState]:
    store = await SQLiteEventStore.open(database)
    try:
        states, state = [], LabelState()
        async for batch in store.iter_batches(0):
            for event in batch:
                state.apply(event)
                states.append(state.copy())
        return states
    finally:
        await store.close()


def test_the_whole_log_out_and_into_a_fresh_folder_gives_the_same_state_at_every_seq(live, tmp_path):
    out = tmp_path / "log.jsonl"
    done = masklog("export", "--data", str(live.settings.data), "--format", "events", "--out", str(out))
    assert done.returncode == 0, done.stderr
    fresh = tmp_path / "fresh"
    done = masklog("import-log", str(out), "--data", str(fresh))
    assert done.returncode == 0, done.stderr
    original = asyncio.run(states_by_position(live.settings.database))
    copied = asyncio.run(states_by_position(fresh / "events.sqlite3"))
    assert len(copied) == len(original) > 20
    assert all(a == b for a, b in zip(original, copied, strict=True))
    again = masklog("import-log", str(out), "--data", str(fresh))
    assert again.returncode == 2 and "empty data folder" in again.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text(out.read_text().splitlines()[0] + "\n{not json\n")
    refused = masklog("import-log", str(broken), "--data", str(tmp_path / "other"))
    assert refused.returncode == 2 and "line 2" in refused.stderr
    assert not (tmp_path / "other" / "events.sqlite3").exists() or asyncio.run(states_by_position(tmp_path / "other" / "events.sqlite3")) == []


def test_cli_coco_export_shows_progress(live, tmp_path):
    out = tmp_path / "p1.json"
    done = masklog("export", "--data", str(live.settings.data), "--project", "p1", "--media", "m1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "exporting:" in done.stderr and "frames" in done.stderr
    assert {a["masklog"]["object"] for a in json.loads(out.read_text())["annotations"]} >= {"x-mask", "x-poly", "x-box"}
    missing = masklog("export", "--data", str(live.settings.data), "--project", "nope", "--out", str(out))
    assert missing.returncode == 2 and "unknown project" in missing.stderr


def coco_document(**annotation: object) -> dict:
    base = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}
    return {
        "images": [{"id": 1, "file_name": "m1/000003.jpg", "width": WIDTH, "height": HEIGHT}],
        "categories": [{"id": 1, "name": "box"}],
        "annotations": [{**base, **annotation}],
    }


@pytest.mark.parametrize(
    "body, status, match",
    [
        (b'{"images": [{"id": 1', 422, "not a COCO file"),
        (json.dumps(coco_document(image_id=42)).encode(), 422, "names image 42"),
        (json.dumps({**coco_document(segmentation={"size": [HEIGHT, WIDTH], "counts": "oops\x7f"}), "categories": [{"id": 1, "name": "mask"}]}).encode(), 422, "annotation 1"),
        (json.dumps({**coco_document(), "categories": [{"id": 1, "name": "brand new"}]}).encode(), 403, "project admin"),
    ],
)
def test_bad_imports_change_nothing(live, body, status, match):
    with live.http("alice") as alice:
        before = head(alice)
        response = alice.post("/api/media/m1/import", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, response.text
        assert match in response.json()["error"]["message"]
        assert head(alice) == before, "nothing half-imported"


def test_an_annotator_imports_onto_existing_classes(live):
    with live.http("alice") as alice:
        response = alice.post("/api/media/m1/import", content=json.dumps(coco_document()).encode(), headers={"content-type": "application/json"})
        assert response.status_code == 201, response.text
        [label] = [value for (_, f), value in labels_of(live, "m1").items() if f == 3 and value["source"] == "imported"]
        assert label["shape"] == {"type": "bbox", "x": 1.0, "y": 1.0, "w": 5.0, "h": 5.0} and label["actor"] == "user:alice"
    with live.http("viewer") as viewer:
        assert viewer.post("/api/media/m1/import", content=json.dumps(coco_document()).encode()).status_code == 403
