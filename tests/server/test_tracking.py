"""Tracking and SAM mode through a real server running its inference actor, seen by real
socket clients (T1-T9, S1-S6): every frame's result arrives live, in order, once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
import numpy as np
import pytest

from masklog.domain.events import Rle
from masklog.domain.geometry import polygon_to_mask, rle_decode, rle_encode, shape_to_mask
from masklog.domain.shapes import Polygon, Shape
from masklog.inference.classical.segmenter import ClassicalSegmenter
from masklog.inference.classical.tracker import ClassicalTracker, TrackerConfig
from masklog.inference.registry import Backends
from tests.inference.synthetic import iou
from tests.server.live import Client, LiveServer, seed, seeded_server, start_server, upload
from tests.server.rest import command
from tests.server.tracking_clips import LEAVING, LONG, THREE, Clip

ENDS = ("track_completed", "track_cancelled", "track_failed")


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveServer:
    root = tmp_path_factory.mktemp("tracking")
    with seeded_server(root, run_models=True) as server:
        files = root / "clips"
        with server.http("admin") as admin:
            for class_id, shape, extra in [
                ("rot", "rotated_bbox", {}),
                ("point", "keypoint", {}),
                ("skel", "skeleton", {"skeleton": {"points": ["a", "b", "c"], "edges": [[0, 1], [1, 2]]}}),
            ]:
                admin.post("/api/projects/p1/classes", json={"id": class_id, "name": class_id, "shape": shape, "color": "#123456", **extra}).raise_for_status()
            for media, clip, kind in [("three", THREE, "image_sequence"), ("leaving", LEAVING, "image_sequence"), ("long", LONG, "image_sequence")]:
                upload(admin, "p1", media, kind, clip.write_images(files / media)).raise_for_status()
            upload(admin, "p1", "three-video", "video", [THREE.write_video(files / "three.mp4")]).raise_for_status()
        yield server


@pytest.fixture
async def alice(live):
    client = Client(live, "alice", "three")
    await client.connect()
    yield client
    await client.close()


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def ok(client: Client, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    reply = await client.command(body, **kwargs)
    assert reply["type"] == "ack", reply
    return reply


async def labelled_object(client: Client, class_id: str, frame: int, shape: dict[str, Any], media: str | None = None) -> str:
    object_id = fresh(class_id)
    await ok(client, {"type": "object_created", "object": object_id, "media": media or client.media, "class_id": class_id})
    await ok(client, {"type": "label_saved", "object": object_id, "frame": frame, "shape": shape, "source": "manual"})
    return object_id


async def request(client: Client, objects: list[str], start: int, direction: str = "forward", range: int = 30, **extra: Any) -> str:
    track = str(uuid.uuid4())
    body = {"type": "track_requested", "media": client.media, "objects": objects, "start": start, "direction": direction, "range": range, **extra}
    await ok(client, body, command_id=track)
    return track


def ended(client: Client, track: str) -> dict[str, Any] | None:
    return next((e for e in client.events if e["body"]["type"] in ENDS and e["body"]["track"] == track), None)


async def wait_end(client: Client, track: str, timeout: float = 60) -> dict[str, Any]:
    await client.wait_for(lambda: ended(client, track) is not None, timeout)
    return ended(client, track)  # type: ignore[return-value]


def produced(client: Client, track: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["body"]["type"] == "track_frame_produced" and e["body"]["track"] == track]


def shape_of(body: dict[str, Any]) -> Shape:
    return msgspec.convert(body["shape"], Shape)  # type: ignore[arg-type]


def mask_of(body: dict[str, Any], clip: Clip) -> np.ndarray:
    return shape_to_mask(shape_of(body), clip.height, clip.width)


# ---- range, direction, streaming -----------------------------------------------------------------------


async def test_forwards_every_frame_streams_to_every_client_in_order(live, alice):
    bob = Client(live, "bob", "three")
    await bob.connect()
    disc = await labelled_object(alice, "mask", 2, THREE.bitmask(0, 2))
    track = await request(alice, [disc], start=2, range=6)
    end = await wait_end(alice, track)
    await bob.wait_for(lambda: ended(bob, track) is not None)

    frames = produced(alice, track)
    assert [e["body"]["frame"] for e in frames] == [3, 4, 5, 6, 7], "range counts the start frame, which is not re-sent"
    assert end["body"] == {"type": "track_completed", "track": track, "frames": 5}
    assert [e["id"] for e in produced(bob, track)] == [e["id"] for e in frames], "every client sees the same results"
    for event in frames:
        assert event["cause"] == track and event["actor"] == "model:classical/flowcolour@4"
        assert event["body"]["model"] == "classical/flowcolour@4"
        assert iou(mask_of(event["body"], THREE), THREE.discs[0].mask(event["body"]["frame"], THREE.height, THREE.width)) > 0.75
    # They are proposals until reviewed (T9).
    labels = (await asyncio.to_thread(_get, live, "alice", "/api/media/three/labels", {"frame": 5}))["labels"]
    assert disc not in {label["object"] for label in labels}
    await bob.close()


async def test_backwards_on_a_video_and_the_range_clipped_at_the_ends(live):
    client = Client(live, "alice", "three-video")
    await client.connect()
    disc = await labelled_object(client, "mask", 10, THREE.bitmask(1, 10))
    backwards = await request(client, [disc], start=10, direction="backward", range=4)
    assert (await wait_end(client, backwards))["body"]["frames"] == 3
    assert [e["body"]["frame"] for e in produced(client, backwards)] == [9, 8, 7]
    for event in produced(client, backwards):
        assert iou(mask_of(event["body"], THREE), THREE.discs[1].mask(event["body"]["frame"], THREE.height, THREE.width)) > 0.6

    await ok(client, {"type": "label_saved", "object": disc, "frame": 21, "shape": THREE.bitmask(1, 21), "source": "manual"})
    to_the_end = await request(client, [disc], start=21, range=30)
    assert (await wait_end(client, to_the_end))["body"]["frames"] == 2
    assert [e["body"]["frame"] for e in produced(client, to_the_end)] == [22, 23]
    await client.close()


async def test_three_objects_in_one_request(alice):
    objects = [await labelled_object(alice, "mask", 0, THREE.bitmask(i, 0)) for i in range(3)]
    track = await request(alice, objects, start=0, range=8)
    assert (await wait_end(alice, track))["body"]["frames"] == 7
    results = produced(alice, track)
    assert len(results) == 3 * 7
    for event in results:
        body = event["body"]
        index = objects.index(body["object"])
        assert iou(mask_of(body, THREE), THREE.discs[index].mask(body["frame"], THREE.height, THREE.width)) > 0.6, body["frame"]
    # One frame's results are committed together: all objects of a frame before the next frame.
    frames = [e["body"]["frame"] for e in results]
    assert frames == sorted(frames)


async def test_an_object_leaving_the_frame_stops_after_the_interval(live):
    client = Client(live, "alice", "leaving")
    await client.connect()
    disc = await labelled_object(client, "mask", 0, LEAVING.bitmask(0, 0))
    track = await request(client, [disc], start=0, range=16, interval=2)
    end = await wait_end(client, track)
    shapes = [(e["body"]["frame"], e["body"]["shape"] is not None) for e in produced(client, track)]
    # The disc (r=9, 8 px a frame from x=50) is fully out from frame 7 on: lost twice, then stopped.
    found = [frame for frame, present in shapes if present]
    lost = [frame for frame, present in shapes if not present]
    assert found and max(found) <= 6 and len(lost) == 2 and lost == [max(found) + 1, max(found) + 2], shapes
    assert end["body"]["type"] == "track_completed" and end["body"]["frames"] == max(lost) < 15
    await client.close()


async def test_refused_modalities(live):
    single = Client(live, "alice", "i1")
    await single.connect()
    object_id = await labelled_object(single, "box", 0, {"type": "bbox", "x": 1, "y": 1, "w": 5, "h": 5})
    reply = await single.command({"type": "track_requested", "media": "i1", "objects": [object_id], "start": 0, "direction": "forward"})
    assert reply["code"] == "modality_refused" and "single image" in reply["message"]
    await single.close()
    group = Client(live, "alice", "g1")
    await group.connect()
    object_id = await labelled_object(group, "box", 2, {"type": "bbox", "x": 1, "y": 1, "w": 5, "h": 5})
    reply = await group.command({"type": "track_requested", "media": "g1", "objects": [object_id], "start": 2, "direction": "backward"})
    assert reply["code"] == "modality_refused" and "forwards" in reply["message"]
    forwards = await request(group, [object_id], start=0 if False else 2, range=3)  # forwards is fine
    assert (await wait_end(group, forwards))["body"]["type"] == "track_completed"
    await group.close()


async def test_trackers_by_registry_name_and_alias_and_unknown_names_refused(alice):
    """A classical server: 'simple', 'advanced' and 'classical' all run the classical tracker;
    'sam2' (registered, not loaded here) and a made-up name are refused before anything is logged."""
    disc = await labelled_object(alice, "mask", 0, THREE.bitmask(0, 0))
    for name in ("simple", "advanced", "classical"):
        track = await request(alice, [disc], start=0, range=2, algorithm=name)
        assert (await wait_end(alice, track))["body"]["type"] == "track_completed"
        assert {e["body"]["model"] for e in produced(alice, track)} == {"classical/flowcolour@4"}
    for name in ("sam2", "sam3-tiny"):
        body = {"type": "track_requested", "media": "three", "objects": [disc], "start": 0, "direction": "forward", "algorithm": name}
        reply = await alice.command(body)
        assert reply["type"] == "error" and reply["code"] == "invalid", reply
        assert reply["message"] == f"tracker {name!r} does not run on this server: it offers advanced, classical, interpolation, simple"


async def test_a_track_naming_a_tracker_this_server_lacks_waits_for_one_that_has_it(tmp_path):
    """Requested on a server that offered the tracker, the track is taken up, after a restart,
    only by a server that loaded it: one without leaves it running, untouched, in the log."""
    lighter = Backends(ClassicalSegmenter(), {"classical": ClassicalTracker(), "lighter": ClassicalTracker(TrackerConfig(work_side=96))}, advanced="lighter")
    data = tmp_path / "data"
    first = start_server(data, backends=lighter)  # no models run: the request waits in the log
    try:
        seed(first)
        with first.http("admin") as admin:
            upload(admin, "p1", "three", "image_sequence", THREE.write_images(tmp_path / "three")[:4]).raise_for_status()
        client = Client(first, "alice", "three")
        await client.connect()
        disc = await labelled_object(client, "mask", 0, THREE.bitmask(0, 0))
        track = await request(client, [disc], start=0, range=3, algorithm="lighter")
        await client.close()
    finally:
        first.stop()
    for backends, ends in ((None, False), (lighter, True)):  # the classical backend, then one with 'lighter'
        server = start_server(data, run_models=True, backends=backends)
        try:
            client = Client(server, "alice", "three")
            await client.connect()
            if ends:
                # It may end before the client's snapshot (then the snapshot holds it): read the log.
                for _ in range(600):
                    history = (await asyncio.to_thread(_get, server, "alice", "/api/media/three/history"))["events"]
                    end = next((e for e in history if e["body"]["type"] in ENDS and e["body"]["track"] == track), None)
                    if end is not None:
                        break
                    await asyncio.sleep(0.1)
                assert end is not None and end["body"] == {"type": "track_completed", "track": track, "frames": 2}
            else:
                await asyncio.sleep(1.0)
                assert ended(client, track) is None and not produced(client, track)
                assert track in server.server.config.app.state.ctx.ledger.running  # still running
            await client.close()
        finally:
            server.stop()


# ---- cancel and fairness ----------------------------------------------------------------------------------


async def test_cancel_mid_way(live):
    alice = Client(live, "alice", "long")
    await alice.connect()
    disc = await labelled_object(alice, "mask", 0, LONG.bitmask(0, 0))
    track = await request(alice, [disc], start=0, range=LONG.frames)
    await alice.wait_for(lambda: len(produced(alice, track)) >= 2)
    reply = await ok(alice, {"type": "track_cancelled", "track": track})
    end = await wait_end(alice, track)
    assert end["body"]["type"] == "track_cancelled" and end["seq"] == reply["seq"]
    await asyncio.sleep(0.5)  # nothing may follow the cancel
    results = produced(alice, track)
    assert all(e["seq"] < reply["seq"] for e in results) and 2 <= len(results) < LONG.frames - 1
    assert not [e for e in alice.events if e["body"]["type"] == "track_completed" and e["body"]["track"] == track]
    # Bob may not cancel alice's track; she may not cancel it twice.
    again = await alice.command({"type": "track_cancelled", "track": track})
    assert again["code"] == "track_not_running"
    await alice.close()


async def test_two_users_requests_interleave_and_clicks_are_not_starved(live):
    alice, bob = Client(live, "alice", "long"), Client(live, "bob", "long")
    await alice.connect()
    await bob.connect()
    long_object = await labelled_object(alice, "mask", 0, LONG.bitmask(0, 0))
    short_object = await labelled_object(bob, "mask", 0, LONG.bitmask(0, 0))
    long_track = await request(alice, [long_object], start=0, range=LONG.frames)
    await alice.wait_for(lambda: len(produced(alice, long_track)) >= 1)
    short_track = await request(bob, [short_object], start=0, range=6)
    prompt = await ok(bob, {"type": "prompt_added", "object": short_object, "frame": 40, "points": [{"x": 80, "y": 120}]})
    short_end = await wait_end(bob, short_track)
    await bob.wait_for(lambda: any(e["body"]["type"] == "segment_proposed" for e in bob.events))
    answer = next(e for e in bob.events if e["body"]["type"] == "segment_proposed")
    long_end = await wait_end(alice, long_track)
    assert short_end["body"]["type"] == long_end["body"]["type"] == "track_completed"
    long_frames = [e["seq"] for e in produced(alice, long_track)]
    # Bob's five frames came in between alice's, not after her 149.
    assert short_end["seq"] < long_frames[len(long_frames) // 2]
    assert answer["cause"] == prompt["id"] and answer["seq"] < long_frames[len(long_frames) // 2]
    await alice.close()
    await bob.close()


# ---- every shape kind --------------------------------------------------------------------------------------


def _disc_shapes(clip: Clip, frame: int) -> dict[str, dict[str, Any]]:
    """A label of each kind on the discs of `clip` at `frame`: area kinds on disc 0, point kinds
    on disc 1's texture."""
    (x0, y0), (x1, y1) = clip.discs[0].centre(frame), clip.discs[1].centre(frame)
    r = clip.discs[0].r
    return {
        "mask": clip.bitmask(0, frame),
        "poly": {"type": "polygon", "parts": [{"outer": [x0 - 6, y0 - 6, x0 + 6, y0 - 6, x0 + 6, y0 + 6, x0 - 6, y0 + 6]}]},
        "box": {"type": "bbox", "x": x0 - r - 1, "y": y0 - r - 1, "w": 2 * r + 3, "h": 2 * r + 3},
        "rot": {"type": "rotated_bbox", "cx": x0, "cy": y0, "w": 14, "h": 10, "angle": 20},
        "point": {"type": "keypoint", "x": x1 + 3, "y": y1 - 2},
        "skel": {"type": "skeleton", "points": [{"x": x1 - 4, "y": y1}, {"x": x1, "y": y1 + 4}, {"x": x1 + 4, "y": y1 - 3}]},
        "line": {"type": "polyline", "points": [x1 - 5, y1 - 5, x1 + 1, y1, x1 + 5, y1 + 4]},
    }


def _centre(shape: Shape, clip: Clip) -> np.ndarray:
    from masklog.domain.geometry import shape_points

    if isinstance(shape, Polygon) or shape.__struct_config__.tag in ("bitmask", "bbox", "rotated_bbox"):
        mask = polygon_to_mask(shape, clip.height, clip.width) if isinstance(shape, Polygon) else shape_to_mask(shape, clip.height, clip.width)
        ys, xs = np.nonzero(mask)
        return np.array([xs.mean(), ys.mean()])
    return shape_points(shape).mean(axis=0)


async def test_every_shape_kind_tracks_and_comes_back_in_its_kind(alice):
    shapes = _disc_shapes(THREE, 0)
    objects = {class_id: await labelled_object(alice, class_id, 0, shape) for class_id, shape in shapes.items()}
    # The area kinds sit on the same disc: in one request the mask tracker would share its
    # pixels out among them, so each goes in a request of its own (running side by side).
    # The point kinds share one request.
    groups = [[objects[c]] for c in ("mask", "poly", "box", "rot")] + [[objects[c] for c in ("point", "skel", "line")]]
    tracks = [await request(alice, group, start=0, range=6) for group in groups]
    for track in tracks:
        assert (await wait_end(alice, track))["body"]["type"] == "track_completed"
    results = [event for track in tracks for event in produced(alice, track)]
    assert len(results) == len(objects) * 5
    start = {class_id: _centre(msgspec.convert(shape, Shape), THREE) for class_id, shape in shapes.items()}  # type: ignore[arg-type]
    for event in results:
        body = event["body"]
        class_id = next(c for c, o in objects.items() if o == body["object"])
        assert body["shape"] is not None, (class_id, body["frame"])
        assert body["shape"]["type"] == shapes[class_id]["type"], "each object comes back in its own kind"
        disc = THREE.discs[1 if class_id in ("point", "skel", "line") else 0]
        expected = start[class_id] + np.array([disc.dx, disc.dy]) * body["frame"]
        error = np.abs(_centre(shape_of(body), THREE) - expected).max()
        assert error < 2.5, (class_id, body["frame"], error)
        if class_id in ("point", "skel", "line"):
            assert body["model"] == "classical/lkpoints@1"


# ---- review, automated labelling, corrections ---------------------------------------------------------------


async def test_review_accept_part_and_discard_the_rest(alice, live):
    disc = await labelled_object(alice, "mask", 0, THREE.bitmask(0, 0))
    track = await request(alice, [disc], start=0, range=6)
    await wait_end(alice, track)
    await ok(alice, {"type": "tracked_accepted", "track": track, "frames": [1, 2]})
    await ok(alice, {"type": "tracked_discarded", "track": track})
    labels = _get(live, "alice", f"/api/media/three/cells/{disc}/2")["history"]
    assert labels[-1]["value"]["source"] == "tracked" and labels[-1]["value"]["track"] == track
    assert _get(live, "alice", f"/api/media/three/cells/{disc}/3")["history"] == []
    again = await alice.command({"type": "tracked_accepted", "track": track})
    assert again["code"] == "invalid", "nothing is left to review"


async def test_automated_labelling_saves_directly(alice, live):
    disc = await labelled_object(alice, "poly", 0, _disc_shapes(THREE, 0)["poly"])
    track = await request(alice, [disc], start=0, range=4, autosave=True)
    await wait_end(alice, track)
    for frame in (1, 2, 3):
        [value] = [label for label in _get(live, "alice", "/api/media/three/labels", {"frame": frame})["labels"] if label["object"] == disc]
        assert value["label"]["source"] == "tracked" and value["label"]["track"] == track


async def test_a_correction_is_tracked_again_replacing_later_results(alice, live):
    disc = await labelled_object(alice, "mask", 0, THREE.bitmask(0, 0))
    first = await request(alice, [disc], start=0, range=10)
    await wait_end(alice, first)
    # The annotator fixes frame 5 and tracks again from there.
    await ok(alice, {"type": "label_saved", "object": disc, "frame": 5, "shape": THREE.bitmask(0, 5), "source": "manual"})
    second = await request(alice, [disc], start=5, range=5, replaces=first)
    assert (await wait_end(alice, second))["body"]["frames"] == 4
    snapshot = _get(live, "alice", "/api/media/three/snapshot")
    proposals = {(p["track"], p["frame"]) for p in snapshot["proposals"] if p["object"] == disc}
    assert proposals == {(first, f) for f in range(1, 5)} | {(second, f) for f in range(6, 10)}
    running = await alice.command({"type": "track_requested", "media": "three", "objects": [disc], "start": 5, "direction": "forward", "replaces": str(uuid.uuid4())})
    assert running["code"] == "unknown_id"


# ---- SAM mode ---------------------------------------------------------------------------------------------


async def test_sam_mode_preview_save_and_the_same_object_on_another_frame(alice, live):
    object_id = fresh("poly")
    await ok(alice, {"type": "object_created", "object": object_id, "media": "three", "class_id": "poly"})
    bob = Client(live, "bob", "three")
    await bob.connect()
    for frame in (0, 9):
        (x, y) = THREE.discs[0].centre(frame)
        prompt = await ok(alice, {"type": "prompt_added", "object": object_id, "frame": frame, "points": [{"x": x, "y": y}]})
        await alice.wait_for(lambda prompt=prompt: any(e["body"]["type"] == "segment_proposed" and e["body"]["prompt"] == prompt["id"] for e in alice.events))
        answer = next(e for e in alice.events if e["body"]["type"] == "segment_proposed" and e["body"]["prompt"] == prompt["id"])
        assert answer["cause"] == prompt["id"] and answer["actor"] == "model:classical/grabcut@3"
        preview = rle_decode(msgspec.convert(answer["body"]["mask"], Rle))
        assert iou(preview, THREE.discs[0].mask(frame, THREE.height, THREE.width)) > 0.7
        await ok(alice, {"type": "save_segment", "prompt": prompt["id"]})
    history = _get(live, "bob", f"/api/media/three/cells/{object_id}/9")["history"]
    saved = history[-1]["value"]
    assert (saved["source"], saved["shape"]["type"], saved["model"], saved["actor"]) == ("sam", "polygon", "classical/grabcut@3", "user:alice")
    assert iou(polygon_to_mask(msgspec.convert(saved["shape"], Polygon), THREE.height, THREE.width), THREE.discs[0].mask(9, THREE.height, THREE.width)) > 0.7
    assert _get(live, "bob", f"/api/media/three/cells/{object_id}/0")["history"], "the same object on both frames (S5)"
    await bob.wait_for(lambda: any(e["body"]["type"] == "segment_proposed" for e in bob.events))
    await bob.close()


async def test_sam_save_with_panoptic_exclude(alice):
    # The first object holds the left half of the disc; the model will find the whole disc.
    disc = THREE.discs[0].mask(3, THREE.height, THREE.width)
    left = disc.copy()
    left[:, int(THREE.discs[0].centre(3)[0]) :] = False
    left_rle = rle_encode(left)
    await labelled_object(alice, "mask", 3, {"type": "bitmask", "rle": {"size": list(left_rle.size), "counts": left_rle.counts}})
    second = fresh("mask")
    await ok(alice, {"type": "object_created", "object": second, "media": "three", "class_id": "mask"})
    (x, y) = THREE.discs[0].centre(3)
    box = {"x0": x - 14, "y0": y - 14, "x1": x + 14, "y1": y + 14}
    prompt = await ok(alice, {"type": "prompt_added", "object": second, "frame": 3, "box": box})
    await alice.wait_for(lambda: any(e["body"]["type"] == "segment_proposed" and e["body"]["prompt"] == prompt["id"] for e in alice.events))
    saved = await ok(alice, {"type": "save_segment", "prompt": prompt["id"]}, panoptic=True)
    await alice.wait_for(lambda: any(e["seq"] == saved["seq"] for e in alice.events))
    event = next(e for e in alice.events if e["seq"] == saved["seq"])
    mine = rle_decode(msgspec.convert(event["body"]["shape"]["rle"], Rle))
    assert not (mine & left).any(), "no pixel of the other mask"
    assert iou(mine, disc & ~left) > 0.8, "the rest of the disc"


def _get(live: LiveServer, user: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    with live.http(user) as http:
        response = http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


def test_rest_command_route_also_starts_tracks(live):
    """A track requested over REST is worked off the same way (the actor follows the log)."""
    with live.http("alice") as http:
        object_id = fresh("box")
        command(http, {"type": "object_created", "object": object_id, "media": "three", "class_id": "box"}, "three")
        command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": _disc_shapes(THREE, 0)["box"], "source": "manual"}, "three")
        track = command(http, {"type": "track_requested", "media": "three", "objects": [object_id], "start": 0, "direction": "forward", "range": 3}, "three")["id"]
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            history = http.get("/api/media/three/history", params={"after": 0, "limit": 1000}).json()["events"]
            if any(e["body"]["type"] == "track_completed" and e["body"]["track"] == track for e in history):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the track did not complete")


async def test_every_derived_id_squatted_by_a_user_leaves_the_models_work_alone(live, alice):
    """The ids of the model's events (each frame of a track, its end, a prompt's answer) are
    derived from what they answer. A user who sends commands with those ids first is refused,
    and the model's work goes on as if nobody had tried."""
    from masklog.inference.actor import end_event_id, frame_event_id, segment_event_id

    disc = await labelled_object(alice, "mask", 0, THREE.bitmask(0, 0))
    track, prompt = str(uuid.uuid4()), str(uuid.uuid4())
    squats = [frame_event_id(track, disc, frame) for frame in range(1, 6)] + [end_event_id(track), segment_event_id(prompt)]
    head = alice.snapshot["seq"]
    for squat in squats:
        reply = await alice.command({"type": "object_created", "object": fresh("squat"), "media": "three", "class_id": "mask"}, squat)
        assert reply["type"] == "error" and reply["code"] == "invalid_id", reply
    await ok(alice, {"type": "track_requested", "media": "three", "objects": [disc], "start": 0, "direction": "forward", "range": 6}, command_id=track)
    (x, y) = THREE.discs[0].centre(3)
    await ok(alice, {"type": "prompt_added", "object": disc, "frame": 3, "points": [{"x": x, "y": y}]}, command_id=prompt)
    end = await wait_end(alice, track)
    assert end["body"] == {"type": "track_completed", "track": track, "frames": 5} and end["id"] == end_event_id(track)
    assert [(e["id"], e["body"]["frame"]) for e in produced(alice, track)] == [(frame_event_id(track, disc, f), f) for f in range(1, 6)]
    await alice.wait_for(lambda: any(e["body"]["type"] == "segment_proposed" and e["body"]["prompt"] == prompt for e in alice.events))
    answer = next(e for e in alice.events if e["body"]["type"] == "segment_proposed")
    assert answer["id"] == segment_event_id(prompt)
    assert not any(e["id"] in squats and e["actor"] == "user:alice" for e in alice.events if e["seq"] > head)
