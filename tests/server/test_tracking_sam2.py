"""The inference actor with the SAM 2 backend (the real architecture, random weights, a reduced
image size, on the CPU): prompts and 'advanced' tracks take the same path as with the classical
backend, and the results say which model made them."""

from __future__ import annotations

import msgspec
import pytest

from masklog.domain.events import Rle
from masklog.domain.geometry import rle_decode
from tests.inference.random_sam2 import one_thread, random_sam2, sam2_backends
from tests.server.live import Client, LiveServer, seeded_server, upload
from tests.server.test_tracking import labelled_object, ok, produced, request, wait_end
from tests.server.tracking_clips import THREE


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveServer:
    root = tmp_path_factory.mktemp("sam2")
    with one_thread(), seeded_server(root, run_models=True, backends=sam2_backends(random_sam2(device="cpu"))) as server:
        with server.http("admin") as admin:
            upload(admin, "p1", "three", "image_sequence", THREE.write_images(root / "three")[:8]).raise_for_status()
        yield server


async def test_prompts_and_advanced_tracks_run_on_sam2(live):
    client = Client(live, "alice", "three")
    await client.connect()
    model = live.server.config.app.state.ctx.backends.segmenter.model
    assert model.startswith("sam2/") and model.endswith("-random" + model[model.index("@") :])

    object_id = await labelled_object(client, "mask", 0, THREE.bitmask(0, 0))
    (x, y) = THREE.discs[0].centre(0)
    prompt = await ok(client, {"type": "prompt_added", "object": object_id, "frame": 0, "points": [{"x": x, "y": y}]})
    await client.wait_for(lambda: any(e["body"]["type"] == "segment_proposed" for e in client.events), 60)
    [answer] = [e for e in client.events if e["body"]["type"] == "segment_proposed"]
    assert (answer["cause"], answer["actor"], answer["body"]["model"]) == (prompt["id"], f"model:{model}", model)
    assert rle_decode(msgspec.convert(answer["body"]["mask"], Rle)).shape == (THREE.height, THREE.width)

    box = await labelled_object(client, "box", 0, {"type": "bbox", "x": 10, "y": 30, "w": 21, "h": 21})
    track = await request(client, [object_id, box], start=0, range=4, algorithm="advanced")
    end = await wait_end(client, track, timeout=120)
    assert end["body"] == {"type": "track_completed", "track": track, "frames": 3}
    results = produced(client, track)
    assert sorted((e["body"]["frame"], e["body"]["object"]) for e in results) == sorted((f, o) for f in (1, 2, 3) for o in (object_id, box))
    for event in results:
        assert event["actor"] == f"model:{model}" and event["body"]["model"] == model
        shape = event["body"]["shape"]
        assert shape is None or shape["type"] == ("bitmask" if event["body"]["object"] == object_id else "bbox")
    # 'simple' is the classical tracker on the same server.
    simple = await request(client, [object_id], start=0, range=3, algorithm="simple")
    await wait_end(client, simple)
    assert {e["body"]["model"] for e in produced(client, simple)} == {"classical/flowcolour@4"}
    # Registry names pick a tracker directly.
    for name, expected in (("sam2", model), ("classical", "classical/flowcolour@4")):
        named = await request(client, [object_id], start=0, range=2, algorithm=name)
        await wait_end(client, named, timeout=120)
        assert {e["body"]["model"] for e in produced(client, named)} == {expected}
    # Track sessions are opened with the media id: sessions of any track on "three" (several
    # users' tracks, say) share the image features of the frames they are on.
    tracker = live.server.config.app.state.ctx.backends.tracker("sam2")
    assert tracker.features.frames("three") == [0, 1, 2, 3]
    await client.close()
