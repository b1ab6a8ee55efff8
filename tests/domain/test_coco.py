"""COCO export and import (domain.coco) and YOLO lines (domain.yolo), against pycocotools and
plain rasterisation: what goes out comes back the same."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest
from pycocotools.coco import COCO

from masklog.domain import coco, yolo
from masklog.domain import events as ev
from masklog.domain.geometry import rle_decode, rle_encode, shape_to_mask
from masklog.domain.shapes import BBox, Bitmask, Keypoint, Polygon, PolygonPart, Polyline, RotatedBBox, Skeleton, SkeletonPoint
from tests.domain.builders import ADMIN, ALICE, HEIGHT, TRACKER, WIDTH, MemoryLog, project_log


def disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


SHAPES = {
    "bitmask": Bitmask(rle=rle_encode(disc(20, 20, 8) | disc(50, 30, 4))),  # two parts
    "polygon": Polygon(parts=[PolygonPart(outer=[10, 10, 30, 12, 28, 30, 12, 26])]),
    "bbox": BBox(x=3, y=4, w=20, h=11),
    "rotated_bbox": RotatedBBox(cx=30, cy=24, w=16, h=8, angle=30),
    "keypoint": Keypoint(x=7, y=9),
    "skeleton": Skeleton(points=[SkeletonPoint(x=4, y=5), SkeletonPoint(x=9, y=12, visible=False)]),
    "polyline": Polyline(points=[1, 1, 20, 10, 40, 5]),
}


@pytest.fixture
def log() -> MemoryLog:
    log = project_log()
    for frame in (2, 5):
        for kind, shape in SHAPES.items():
            object_id = f"o-{kind}"
            if frame == 2:
                log.do(ALICE, ev.ObjectCreated(object=object_id, media="m1", class_id=kind))
            log.do(ALICE, ev.LabelSaved(object=object_id, frame=frame, shape=shape, source="manual"))
    return log


def export(log: MemoryLog, selection: coco.Selection | None = None) -> bytes:
    state = log.state
    media = [state.media["m1"]]
    classes = [c for c in state.classes.values() if c.project == "p1"]
    selection = selection or coco.Selection()
    return b"".join(coco.export_chunks(classes, coco.select(state, media, selection), selection, seq=state.seq))


def test_the_export_loads_with_pycocotools_and_its_masks_are_the_labels(log, tmp_path):
    path = tmp_path / "coco.json"
    path.write_bytes(export(log))
    api = COCO(str(path))
    assert {c["name"] for c in api.loadCats(api.getCatIds())} >= set(SHAPES)
    images = {img["masklog"]["frame"]: img for img in api.loadImgs(api.getImgIds())}
    assert set(images) == {2, 5} and images[2]["file_name"] == "m1/000002.jpg"
    for annotation in api.loadAnns(api.getAnnIds(imgIds=[images[5]["id"]])):
        kind = annotation["masklog"]["object"].removeprefix("o-")
        shape = SHAPES[kind]
        if kind in ("bitmask", "polygon", "rotated_bbox"):
            expected = shape_to_mask(shape, HEIGHT, WIDTH)
            got = api.annToMask(annotation).astype(bool)
            if kind == "bitmask":
                assert (got == expected).all(), "RLE masks are exact"
            else:
                assert (got & expected).sum() / (got | expected).sum() > 0.8, kind
        if kind == "bbox":
            assert annotation["bbox"] == [3, 4, 20, 11]
        if kind == "skeleton":
            assert annotation["keypoints"] == [4.5, 5.5, 2, 9.5, 12.5, 1] and annotation["num_keypoints"] == 2


def fresh_project() -> MemoryLog:
    """Another project with a media item of the same size (ids are global, so all differ)."""
    log = MemoryLog()
    log.do(ADMIN, ev.ProjectCreated(project="p2", name="Fresh"))
    log.do(ADMIN, ev.MediaAdded(project="p2", media="m2", name="clip", kind="video", width=WIDTH, height=HEIGHT, frames=12, fps=25.0))
    return log


def run_import(target: MemoryLog, data: bytes, actor: str = ADMIN) -> coco.ImportPlan:
    taken: set[str] = set()

    def new_id(hint: str) -> str:
        candidate, number = hint, 1
        while candidate in target.state.object_media or candidate in taken:
            number += 1
            candidate = f"{hint}-{number}"
        taken.add(candidate)
        return candidate

    plan = coco.plan_import(target.state, target.state.media["m2"], data, new_id)
    for command in plan.commands:
        target.do(actor, command)
    return plan


def test_a_masklog_export_reimports_exactly_into_a_fresh_project(log):
    target = fresh_project()
    plan = run_import(target, export(log))
    source_classes = {c.class_id: c for c in log.state.classes.values() if c.project == "p1"}
    for cls in plan.classes:
        original = source_classes[cls.class_id]
        assert (cls.name, cls.shape, cls.color, cls.skeleton) == (original.name, original.shape, original.color, original.skeleton)
    for object_id in (f"o-{kind}" for kind in SHAPES):
        for frame in (2, 5):
            got = target.state.label(object_id, frame)
            assert got.shape == log.state.label(object_id, frame).shape and got.source == ev.Source.IMPORTED and got.actor == ADMIN
    assert len(plan.objects) == len(SHAPES), "one object per instance, across frames"


def strip(data: bytes) -> bytes:
    """The file as another tool would write it: no masklog fields."""
    document = json.loads(data)
    for section in ("images", "annotations", "categories"):
        for entry in document[section]:
            entry.pop("masklog", None)
    return json.dumps(document).encode()


def test_a_standard_coco_file_imports_from_its_standard_fields(log):
    data = strip(export(log))
    target = fresh_project()
    # Without masklog's hints, classes are guessed from the categories: masks, points.
    plan = run_import(target, json.dumps(_only(json.loads(data), {"bitmask", "keypoint", "skeleton"})).encode())
    kinds = {c.name: c.shape for c in plan.classes}
    assert kinds == {"bitmask": "bitmask", "keypoint": "keypoint", "skeleton": "skeleton"}
    objects = {o.object: o.class_id for o in plan.objects}
    by_class = {}
    for label in plan.labels:
        by_class.setdefault(objects[label.object], []).append(label)
    for label in by_class["bitmask"]:
        assert label.shape.rle == SHAPES["bitmask"].rle, "RLE comes back identical"
    for label in by_class["skeleton"]:
        assert label.shape == SHAPES["skeleton"]
    assert len(plan.objects) == 6, "no instance ids: an object per annotation"
    # Into a project that has the classes, the other kinds convert to them as well.
    target = fresh_project()
    for cls in log.state.classes.values():
        if cls.project == "p1":
            target.do(ADMIN, msgspec.structs.replace(cls, project="p2", class_id=cls.class_id + "-2"))
    plan = run_import(target, json.dumps(_only(json.loads(data), set(SHAPES) - {"polyline"})).encode())  # COCO has no polylines
    assert not plan.classes
    shapes = {(target.state.objects[label.object].class_id, label.frame): label.shape for label in plan.labels}
    # Exported as RLE (the default), the polygon comes back as the same pixels.
    assert (shape_to_mask(shapes[("polygon-2", 2)], HEIGHT, WIDTH) == shape_to_mask(SHAPES["polygon"], HEIGHT, WIDTH)).all()
    assert shapes[("bbox-2", 2)] == SHAPES["bbox"]
    assert shapes[("bitmask-2", 5)] == SHAPES["bitmask"]


def _only(document: dict, names: set[str]) -> dict:
    keep = {c["id"] for c in document["categories"] if c["name"] in names}
    document["categories"] = [c for c in document["categories"] if c["id"] in keep]
    document["annotations"] = [a for a in document["annotations"] if a["category_id"] in keep]
    return document


def test_crowd_masks_with_uncompressed_counts(log):
    mask = disc(30, 20, 10)
    column_major = mask.T.ravel()
    changes = np.flatnonzero(np.diff(column_major.astype(np.int8))) + 1
    bounds = np.concatenate(([0], changes, [column_major.size]))
    counts = np.diff(bounds).tolist()
    if column_major[0]:
        counts = [0, *counts]
    document = {
        "images": [{"id": 7, "file_name": "frame_000003.png", "width": WIDTH, "height": HEIGHT}],
        "categories": [{"id": 1, "name": "crowd"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 1, "segmentation": {"size": [HEIGHT, WIDTH], "counts": counts}}],
    }
    target = fresh_project()
    plan = run_import(target, json.dumps(document).encode())
    [label] = plan.labels
    assert label.frame == 3 and (rle_decode(label.shape.rle) == mask).all()


@pytest.mark.parametrize(
    "document, match",
    [
        (b'{"images": [], "annotations": [', "not a COCO file"),
        (b'{"images": {}, "annotations": [], "categories": []}', "not a COCO instance file"),
        ({"annotations": [{"id": 1, "image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2]}]}, "names image 99"),
        ({"annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2]}]}, "names category 5"),
        ({"annotations": [{"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"size": [HEIGHT, WIDTH], "counts": "zz!"}}]}, "annotation 3"),
        ({"annotations": [{"id": 4, "image_id": 1, "category_id": 1, "segmentation": {"size": [10, 10], "counts": "0"}}]}, "not the frame's"),
        ({"images": [{"id": 1, "file_name": "x_000050.jpg"}]}, "not a frame of media"),
        ({"images": [{"id": 1, "file_name": "1.jpg", "width": 10, "height": 10}]}, "is 10x10"),
    ],
)
def test_bad_files_are_refused_with_a_reason(document, match):
    if isinstance(document, dict):
        base = {"images": [{"id": 1, "file_name": "f_000001.jpg"}], "categories": [{"id": 1, "name": "thing"}], "annotations": []}
        document = json.dumps({**base, **document}).encode()
    target = fresh_project()
    with pytest.raises(coco.CocoError, match=match):
        coco.plan_import(target.state, target.state.media["m2"], document, lambda hint: hint)


def test_export_selection_frames_proposals_and_polygons(log):
    track = log.do(ALICE, ev.TrackRequested(media="m1", objects=["o-bbox"], start=5, direction="forward", range=4))
    log.do(TRACKER, ev.TrackFrameProduced(track=track.id, object="o-bbox", frame=6, shape=BBox(x=5, y=4, w=20, h=11), score=0.8, model="m/x@1"))
    saved = json.loads(export(log))
    assert {i["masklog"]["frame"] for i in saved["images"]} == {2, 5}
    with_proposals = json.loads(export(log, coco.Selection(proposals=True, first=5)))
    assert {i["masklog"]["frame"] for i in with_proposals["images"]} == {5, 6}
    [proposal] = [a for a in with_proposals["annotations"] if a["masklog"]["proposal"]]
    assert proposal["bbox"] == [5, 4, 20, 11] and proposal["masklog"]["track"] == track.id
    polygons = json.loads(export(log, coco.Selection(polygons=True)))
    mask = next(a for a in polygons["annotations"] if a["masklog"]["object"] == "o-bitmask")
    assert isinstance(mask["segmentation"], list) and len(mask["segmentation"]) == 2, "one ring per part"


def rasterise(line: str, width: int, height: int) -> np.ndarray:
    """A YOLO segmentation line back to a mask, drawn by pycocotools (not by our code)."""
    from pycocotools import mask as coco_mask

    values = (np.asarray([float(v) for v in line.split()[1:]]).reshape(-1, 2) * [width, height]).ravel().tolist()
    return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([values], height, width))).astype(bool)


def test_yolo_lines_rasterise_back_to_the_labels(log):
    state = log.state
    classes = yolo.area_classes(state, "p1")
    assert [c.shape for c in classes] == ["bitmask", "polygon", "bbox", "rotated_bbox", "bbox"]
    files = dict(yolo.label_files(classes, coco.select(state, [state.media["m1"]], coco.Selection())))
    assert "names:\n  0: \"bitmask\"" in files["data.yaml"].decode()
    lines = files["labels/m1/000005.txt"].decode().splitlines()
    assert len(lines) == 4, "area kinds only"
    for line in lines:
        index = int(line.split()[0])
        kind = classes[index].class_id
        expected = shape_to_mask(SHAPES[kind], HEIGHT, WIDTH)
        got = rasterise(line, WIDTH, HEIGHT)
        assert (got & expected).sum() / (got | expected).sum() >= 0.95, kind
