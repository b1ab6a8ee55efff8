"""REST behaviour on a real server: projects, ontology, members, uploads and their probed size,
frames as JPEG, labels now and as of an earlier position, history pages, audit counts, cell
history and commands (docs/api.md describes each route)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import cv2
import httpx
import msgspec
import numpy as np
import pytest

from masklog.domain.events import SegmentProposed, TrackFrameProduced
from masklog.domain.geometry import rle_decode, rle_encode
from masklog.domain.shapes import BBox, Rle
from masklog.server.protocol import CommandMessage, CommandRequest, ProtocolError, parse
from tests.server.live import FRAMES, HEIGHT, WIDTH, upload, write_image
from tests.server.rest import as_model, bbox, command, new_object, post_command, request_track, save_box


@pytest.fixture
def alice(live) -> httpx.Client:
    with live.http("alice") as client:
        yield client


@pytest.fixture
def admin(live) -> httpx.Client:
    with live.http("admin") as client:
        yield client


def decode_jpeg(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "a decodable JPEG"
    return image


# ---- projects, classes, members ---------------------------------------------------------------------------


def test_create_project_with_classes_and_members(live, admin):
    created = admin.post("/api/projects", json={"id": "p3", "name": "Three"})
    assert created.status_code == 201 and created.json()["id"] == "p3" and created.json()["seq"] > 0
    assert admin.post("/api/projects/p3/classes", json={"id": "road", "name": "Road", "shape": "polygon", "color": "#336699"}).status_code == 201
    skeleton = {"points": ["head", "tail"], "edges": [[0, 1]]}
    response = admin.post("/api/projects/p3/classes", json={"id": "fish", "name": "Fish", "shape": "skeleton", "color": "#aa0000", "skeleton": skeleton})
    assert response.status_code == 201, response.text

    project = admin.get("/api/projects/p3").json()
    assert (project["id"], project["name"], project["role"], project["media"]) == ("p3", "Three", "admin", [])
    classes = {c["class_id"]: c for c in project["classes"]}
    assert classes["road"] == {"type": "class_added", "project": "p3", "class_id": "road", "name": "Road", "shape": "polygon", "color": "#336699", "skeleton": None}
    assert classes["fish"]["skeleton"] == skeleton

    assert admin.put("/api/projects/p3/members/alice", json={"role": "annotator"}).json() == {"user": "alice", "role": "annotator"}
    assert admin.get("/api/projects/p3/members").json() == {"admin": "admin", "alice": "annotator"}
    with live.http("alice") as alice:
        assert {p["id"]: p["role"] for p in alice.get("/api/projects").json()} == {"p1": "annotator", "p3": "annotator"}
        assert admin.delete("/api/projects/p3/members/alice").json() == {"user": "alice", "role": None}
        assert alice.get("/api/projects/p3").status_code == 404
        assert alice.get("/api/me").json() == {
            "name": "alice",
            "role": "annotator",
            "actor": "user:alice",
            "shape_families": {
                "area": ["bbox", "bitmask", "polygon", "rotated_bbox"],
                "point": ["keypoint", "polyline", "skeleton"],
                "sam": ["bbox", "bitmask", "polygon"],
            },
            "shape_kinds": ["bitmask", "polygon", "bbox", "rotated_bbox", "polyline", "keypoint", "skeleton"],
        }


# ---- uploads -----------------------------------------------------------------------------------------------


def write_clip(path: Path, frames: int, size: tuple[int, int], fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for index in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 * index, np.uint8))
    writer.release()
    return path


def test_uploads_are_probed(live, admin, tmp_path):
    # The seeded uploads: a 20-frame video at 10 fps, an image group of 3, a single image.
    m1, g1, i1 = (admin.get(f"/api/media/{m}").json() for m in ("m1", "g1", "i1"))
    assert (m1["kind"], m1["width"], m1["height"], m1["frames"], m1["fps"]) == ("video", WIDTH, HEIGHT, FRAMES, 10.0)
    assert (g1["kind"], g1["width"], g1["height"], g1["frames"], g1["fps"]) == ("image_group", WIDTH, HEIGHT, 3, None)
    assert (i1["kind"], i1["frames"]) == ("image", 1)

    response = upload(admin, "p1", "v2", "video", [write_clip(tmp_path / "other.mp4", 7, (80, 60), 5.0)], name="Other clip")
    assert response.status_code == 201, response.text
    assert response.json()["media"] == {
        "type": "media_added", "project": "p1", "media": "v2", "name": "Other clip", "kind": "video",
        "width": 80, "height": 60, "frames": 7, "fps": 5.0,
    }  # fmt: skip
    images = [write_image(tmp_path / f"s{i}.jpg", size=(40, 30), value=60 * i) for i in range(4)]
    response = upload(admin, "p1", "s1", "image_sequence", images)
    assert response.status_code == 201, response.text
    assert {k: response.json()["media"][k] for k in ("kind", "width", "height", "frames")} == {"kind": "image_sequence", "width": 40, "height": 30, "frames": 4}
    assert {m["media"] for m in admin.get("/api/projects/p1").json()["media"]} == {"m1", "g1", "i1", "v2", "s1"}
    # Stored under the media id, with names the server chose.
    assert sorted(p.name for p in (live.settings.media_dir / "s1").iterdir()) == [f"00000{i}.jpg" for i in range(4)]


# ---- frames -------------------------------------------------------------------------------------------------


def test_frames_are_jpeg_of_the_right_frame(live, alice):
    source = cv2.VideoCapture(str(live.settings.data.parent / "files" / "clip.mp4"))
    originals = [source.read()[1] for _ in range(FRAMES)]
    source.release()
    for index in (0, 7, FRAMES - 1):
        frame = decode_jpeg(alice.get(f"/api/media/m1/frames/{index}"))
        assert frame.shape == (HEIGHT, WIDTH, 3)
        errors = [np.abs(frame.astype(int) - original.astype(int)).mean() for original in originals]
        assert int(np.argmin(errors)) == index, "the frame asked for, not a neighbour"
    # Image groups: frame i is the i-th file (values 0, 40, 80).
    for index in range(3):
        assert abs(decode_jpeg(alice.get(f"/api/media/g1/frames/{index}")).mean() - 40 * index) < 3


def test_frames_are_cached_by_etag(alice):
    first = alice.get("/api/media/m1/frames/3")
    etag = first.headers["etag"]
    assert "immutable" in first.headers["cache-control"]
    again = alice.get("/api/media/m1/frames/3", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = alice.get("/api/media/m1/frames/4", headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag
    assert alice.get("/api/media/g1/frames/3", headers={"If-None-Match": etag}).status_code == 404


def test_frame_out_of_range(alice):
    response = alice.get(f"/api/media/m1/frames/{FRAMES}")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "frame_out_of_range", "message": f"frame {FRAMES} is out of range: media 'm1' has frames 0..{FRAMES - 1}"}}


def test_token_in_the_query_works_for_get_only(live):
    token = live.tokens["alice"]
    with httpx.Client(base_url=live.url) as anonymous:
        assert decode_jpeg(anonymous.get("/api/media/m1/frames/0", params={"token": token})).shape == (HEIGHT, WIDTH, 3)
        assert anonymous.get("/api/media/m1/frames/0").status_code == 401
        assert anonymous.get("/api/media/m1/frames/0", params={"token": "wrong"}).status_code == 401
        # Writes need the header: a token in a URL ends up in logs and browser history.
        body = {"id": str(uuid.uuid4()), "body": {"type": "object_created", "object": "q", "media": "m1", "class_id": "box"}}
        response = anonymous.post("/api/media/m1/commands", params={"token": token}, json=body)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


# ---- labels, now and as they were ------------------------------------------------------------------------------


def test_labels_of_a_frame_now_and_as_of_an_earlier_seq(alice):
    object_id = new_object(alice)
    before = alice.get("/api/media/m1/labels").json()["seq"]
    first = save_box(alice, object_id, 2, x=1)["seq"]
    second = save_box(alice, object_id, 3, x=2)["seq"]
    save_box(alice, object_id, 2, x=9)
    last = command(alice, {"type": "label_deleted", "object": object_id, "frame": 3})["seq"]

    def labels(**params) -> tuple[int, dict[int, float]]:
        page = alice.get("/api/media/m1/labels", params=params).json()
        assert all(entry["object"] == object_id for entry in page["labels"])
        return page["seq"], {entry["frame"]: entry["label"]["shape"]["x"] for entry in page["labels"]}

    assert labels() == (last, {2: 9})
    assert labels(frame=2) == (last, {2: 9})
    assert labels(frame=3) == (last, {})
    assert labels(seq=second) == (second, {2: 1, 3: 2})
    assert labels(seq=second, frame=3) == (second, {3: 2})
    assert labels(seq=first) == (first, {2: 1})
    assert labels(seq=before) == (before, {})
    assert labels(seq=last + 100) == (last, {2: 9}), "a position past the head is the head"

    [entry] = alice.get("/api/media/m1/labels", params={"frame": 2}).json()["labels"]
    assert entry["label"]["source"] == "manual" and entry["label"]["actor"] == "user:alice"
    assert entry["label"]["shape"] == bbox(x=9)


def test_snapshot(alice):
    object_id = new_object(alice)
    save_box(alice, object_id, 5)
    snapshot = alice.get("/api/media/m1/snapshot").json()
    assert snapshot["type"] == "snapshot" and snapshot["media"]["media"] == "m1"
    assert {c["class_id"] for c in snapshot["classes"]} == {"box", "mask", "poly", "line"}
    assert snapshot["objects"][object_id] == {"media": "m1", "class_id": "box", "created_by": "user:alice"}
    assert [(e["object"], e["frame"]) for e in snapshot["labels"]] == [(object_id, 5)]
    assert (snapshot["undo"], snapshot["redo"]) == (2, 0)


# ---- history, audit, cells -----------------------------------------------------------------------------------------


def test_history_pages(alice):
    object_id = new_object(alice)
    written = [save_box(alice, object_id, frame)["seq"] for frame in range(5)]
    everything = alice.get("/api/media/m1/history").json()
    assert everything["next_after"] is None
    seqs = [e["seq"] for e in everything["events"]]
    assert seqs == sorted(seqs) and seqs[-5:] == written and len(seqs) == 6  # the object, then 5 labels
    assert all(e["stream"] == "media:m1" for e in everything["events"])

    pages, after = [], 0
    while after is not None:
        page = alice.get("/api/media/m1/history", params={"after": after, "limit": 2}).json()
        pages.append([e["seq"] for e in page["events"]])
        after = page["next_after"]
        assert after is None or after == pages[-1][-1]
    assert pages == [seqs[0:2], seqs[2:4], seqs[4:6], []], "a full last page is followed by an empty one"
    assert [e["seq"] for e in alice.get("/api/media/m1/history", params={"after": written[2]}).json()["events"]] == written[3:]


def test_audit_counts(live, alice):
    walker, dog = new_object(alice), new_object(alice)
    save_box(alice, walker, 0)
    save_box(alice, walker, 1)
    with live.http("bob") as bob:
        prompt = command(bob, {"type": "prompt_added", "object": dog, "frame": 0, "points": [{"x": 3, "y": 3}]})["id"]
        mask = rle_encode(np.pad(np.ones((5, 5), np.uint8), ((1, HEIGHT - 6), (1, WIDTH - 6))))
        as_model(live, SegmentProposed(prompt=prompt, object=dog, frame=0, mask=mask, score=0.9, model="sam2.1-tiny"))
        command(bob, {"type": "save_segment", "prompt": prompt})
    # A tracked label: the model proposes frame 2 of the dog's track, alice accepts it.
    track = request_track(alice, dog)
    as_model(live, TrackFrameProduced(track=track, object=dog, frame=2, shape=BBox(3, 3, 4, 4), score=0.8, model="classical"))
    command(alice, {"type": "tracked_accepted", "track": track})

    def audit(**params) -> dict:
        response = alice.get("/api/media/m1/audit", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    # request_track saved a manual label on the start frame (0) over bob's: last write wins.
    assert audit() == {"by": "object", "counts": {walker: {"manual": 2}, dog: {"manual": 1, "tracked": 1}}}
    assert audit(by="frame")["counts"] == {"0": {"manual": 2}, "1": {"manual": 1}, "2": {"tracked": 1}}
    assert audit(by="annotator")["counts"] == {"user:alice": {"manual": 3, "tracked": 1}}
    assert audit(by="class")["counts"] == {"box": {"manual": 3, "tracked": 1}}
    assert audit(annotator="bob")["counts"] == {}
    assert audit(annotator="alice", by="frame")["counts"]["2"] == {"tracked": 1}
    # Filters combine: source, model (empty: none), class, annotator (a name or an actor).
    assert audit(source="tracked")["counts"] == {dog: {"tracked": 1}}
    assert audit(model="classical", by="frame")["counts"] == {"2": {"tracked": 1}}
    assert audit(model="", by="frame")["counts"] == {"0": {"manual": 2}, "1": {"manual": 1}}
    assert audit(**{"class": "box", "source": "manual", "annotator": "user:alice"})["counts"] == {walker: {"manual": 2}, dog: {"manual": 1}}
    assert audit(**{"class": "mask"})["counts"] == {}
    refused = alice.get("/api/media/m1/audit", params={"source": "guessed"})
    assert refused.status_code == 422 and "source must be one of" in refused.json()["error"]["message"]
    # The prompt behind a SAM label is one GET away (the page draws its clicks on the frame).
    event = alice.get(f"/api/media/m1/events/{prompt}").json()["event"]
    assert event["body"]["type"] == "prompt_added" and event["body"]["points"][0]["x"] == 3
    assert alice.get("/api/media/m1/events/6d1f3c52-0000-4000-8000-000000000000").status_code == 404
    # Bob's SAM label is not counted any more, but the cell's history keeps it.
    history = alice.get(f"/api/media/m1/cells/{dog}/0").json()["history"]
    assert [(h["actor"], h["value"]["source"]) for h in history] == [("user:bob", "sam"), ("user:alice", "manual")]
    assert history[0]["value"]["model"] == "sam2.1-tiny" and history[1]["replaced"] == history[0]["value"]


def test_cell_history_shows_who_won_and_what_was_lost(live, alice):
    object_id = new_object(alice)
    save_box(alice, object_id, 5, x=1)
    with live.http("bob") as bob:
        save_box(bob, object_id, 5, x=7)
    command(alice, {"type": "label_deleted", "object": object_id, "frame": 5})
    command(alice, {"type": "undo", "media": "m1"})  # brings bob's value back
    save_box(alice, object_id, 6)  # another cell: not in this history

    history = alice.get(f"/api/media/m1/cells/{object_id}/5").json()["history"]
    x = lambda value: value and value["shape"]["x"]
    assert [(h["kind"], h["actor"], x(h["replaced"]), x(h["value"])) for h in history] == [
        ("label_saved", "user:alice", None, 1),
        ("label_saved", "user:bob", 1, 7),
        ("label_deleted", "user:alice", 7, None),
        ("undone", "user:alice", None, 7),
    ]
    assert [h["seq"] for h in history] == sorted(h["seq"] for h in history)
    assert alice.get(f"/api/media/m1/cells/{object_id}/7").json() == {"history": []}
    assert alice.get("/api/media/m1/cells/nobody/5").status_code == 404
    assert alice.get(f"/api/media/g1/cells/{object_id}/0").status_code == 404, "the object is on m1, not g1"


# ---- commands --------------------------------------------------------------------------------------------------


def test_post_command_and_its_retry(live, alice):
    command_id = str(uuid.uuid4())
    body = {"type": "object_created", "object": "kite", "media": "m1", "class_id": "box"}
    first = post_command(alice, body, command_id=command_id)
    assert first.status_code == 201 and first.json() == {"id": command_id, "seq": first.json()["seq"], "duplicate": False}
    again = post_command(alice, body, command_id=command_id)
    assert again.status_code == 200 and again.json() == {"id": command_id, "seq": first.json()["seq"], "duplicate": True}
    # Even a different body under the same id is the same, already applied command.
    assert post_command(alice, {"type": "undo", "media": "m1"}, command_id=command_id).json()["seq"] == first.json()["seq"]
    events = alice.get("/api/media/m1/history").json()["events"]
    assert [e["id"] for e in events].count(command_id) == 1
    with live.http("bob") as bob:
        stolen = post_command(bob, body, command_id=command_id)
    assert stolen.status_code == 409 and stolen.json()["error"]["code"] == "already_exists"


def test_panoptic_save_loses_the_pixels_of_other_masks(alice):
    def square(x0: int, y0: int) -> dict:
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        mask[y0 : y0 + 10, x0 : x0 + 10] = 1
        rle = rle_encode(mask)
        return {"type": "bitmask", "rle": {"size": list(rle.size), "counts": rle.counts}}

    first, second = new_object(alice, class_id="mask"), new_object(alice, class_id="mask")
    command(alice, {"type": "label_saved", "object": first, "frame": 0, "shape": square(0, 0), "source": "manual"})
    response = alice.post(
        "/api/media/m1/commands",
        json={"id": str(uuid.uuid4()), "body": {"type": "label_saved", "object": second, "frame": 0, "shape": square(5, 0), "source": "manual"}, "panoptic": True},
    )
    assert response.status_code == 201, response.text
    labels = {e["object"]: e["label"]["shape"]["rle"] for e in alice.get("/api/media/m1/labels", params={"frame": 0}).json()["labels"]}
    kept = rle_decode(Rle(size=tuple(labels[second]["size"]), counts=labels[second]["counts"]))
    assert kept.sum() == 50 and kept[:10, 5:10].sum() == 0, "the overlap stays with the first mask"


def test_unknown_routes_and_methods_are_answered_by_the_router(alice):
    """Before any handler runs, so in plain text without an error object (docs/api.md says so)."""
    for response, status in ((alice.get("/api/nothing-here"), 404), (alice.put("/api/media/m1"), 405)):
        assert response.status_code == status and response.headers["content-type"].startswith("text/plain")


def test_openapi_describes_every_route(live):
    from masklog.server import api
    from masklog.server.exchange.routes import routes as exchange_routes
    from masklog.server.work_routes import routes as work_routes

    with live.http() as anonymous:
        response = anonymous.get("/api/openapi.json")  # no token needed, like /api/health
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.1")
    described = {(path, method.upper()) for path, operations in spec["paths"].items() for method in operations}
    for route in [*api.routes, *exchange_routes, *work_routes]:
        for method in route.methods - {"HEAD"}:
            path = route.path.replace("{index:int}", "{index}").replace("{frame:int}", "{frame}")
            assert (path, method) in described, (path, method)
    operations = [operation for operations in spec["paths"].values() for operation in operations.values()]
    assert len({o["operationId"] for o in operations}) == len(operations), "operation ids are unique"
    assert spec["paths"]["/api/projects"]["post"]["operationId"] == "create_project_post", "named after the handler"
    command = spec["paths"]["/api/media/{media}/commands"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert command.endswith("/CommandRequest") and "LabelSaved" in spec["components"]["schemas"]
    assert spec["paths"]["/api/projects/{project}/media"]["post"]["requestBody"]["content"]["multipart/form-data"]


def test_a_command_has_one_definition_for_the_rest_route_and_the_socket():
    """POST /api/media/{media}/commands takes the fields as they are, the socket the same fields
    tagged "command"; each refuses the other's form."""
    fields = {"id": str(uuid.uuid4()), "body": {"type": "object_created", "object": "o", "media": "m1", "class_id": "box"}, "panoptic": True}
    rest = msgspec.json.decode(json.dumps(fields), type=CommandRequest)
    message = parse(json.dumps({"type": "command", **fields}), 10_000)
    assert isinstance(message, CommandMessage) and isinstance(message, CommandRequest)
    assert msgspec.structs.asdict(message) == msgspec.structs.asdict(rest)
    with pytest.raises(msgspec.ValidationError, match="unknown field `type`"):
        msgspec.json.decode(json.dumps({"type": "command", **fields}), type=CommandRequest)
    with pytest.raises(ProtocolError, match="missing required field `type`"):
        parse(json.dumps(fields), 10_000)
