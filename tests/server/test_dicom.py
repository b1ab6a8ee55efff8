"""A DICOM series as a media item on a real server running its models: upload (stored in slice
order), frames as JPEG, SAM mode and forward tracking through the socket, backward tracking
refused, and uploads that are not a series refused with nothing kept."""

from __future__ import annotations

import cv2
import msgspec
import numpy as np
import pytest

from masklog.domain.events import MediaAdded, Rle
from masklog.domain.geometry import rle_decode, shape_to_mask
from masklog.domain.shapes import Shape
from masklog.server.media import MediaLibrary
from tests.inference.frames.test_dicom import dicom_slice, write_dicom, write_disc_series
from tests.inference.synthetic import iou
from tests.server.live import Client, LiveServer, seeded_server, upload, write_image
from tests.server.test_tracking import fresh, ok, produced, request, wait_end

FRAMES, WIDTH, HEIGHT, RADIUS = 8, 64, 48, 8


def disc(index: int) -> np.ndarray:
    """Where the disc of slice `index` (in position order) is: see `write_disc_series`."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    return (xx - (12 + 5 * index)) ** 2 + (yy - HEIGHT // 2) ** 2 <= RADIUS**2


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveServer:
    root = tmp_path_factory.mktemp("dicom")
    with seeded_server(root, run_models=True) as server:
        paths, _ = write_disc_series(root / "series", FRAMES, (WIDTH, HEIGHT))
        with server.http("admin") as admin:
            response = upload(admin, "p1", "ct", "dicom_series", paths, name="CT chest")
            assert response.status_code == 201, response.text
            server.uploaded = response.json()  # type: ignore[attr-defined]
        yield server


def test_upload_is_probed_and_stored_in_slice_order(live):
    assert live.uploaded["media"] == {
        "type": "media_added", "project": "p1", "media": "ct", "name": "CT chest", "kind": "dicom_series",
        "width": WIDTH, "height": HEIGHT, "frames": FRAMES, "fps": None,
    }  # fmt: skip
    stored = sorted(p.name for p in (live.settings.media_dir / "ct").iterdir())
    assert stored == [f"{i:06d}.dcm" for i in range(FRAMES)]
    with live.http("viewer") as http:
        for index in range(FRAMES):
            response = http.get(f"/api/media/ct/frames/{index}")
            assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
            image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_GRAYSCALE)
            assert image.shape == (HEIGHT, WIDTH)
            assert iou(image > 100, disc(index)) > 0.85, f"frame {index} is the slice at position {index}"
        assert http.get(f"/api/media/ct/frames/{FRAMES}").status_code == 404


async def test_sam_mode_then_tracking_forwards_only(live):
    client = Client(live, "alice", "ct")
    await client.connect()
    object_id = fresh("mask")
    await ok(client, {"type": "object_created", "object": object_id, "media": "ct", "class_id": "mask"})
    prompt = await ok(client, {"type": "prompt_added", "object": object_id, "frame": 2, "points": [{"x": 22, "y": HEIGHT // 2}]})

    def answer():
        return next((e for e in client.events if e["body"]["type"] == "segment_proposed" and e["body"]["prompt"] == prompt["id"]), None)

    await client.wait_for(lambda: answer() is not None, timeout=20)
    assert iou(rle_decode(msgspec.convert(answer()["body"]["mask"], Rle)), disc(2)) > 0.7
    await ok(client, {"type": "save_segment", "prompt": prompt["id"]})

    track = await request(client, [object_id], start=2, range=4)
    end = await wait_end(client, track, timeout=30)
    assert end["body"] == {"type": "track_completed", "track": track, "frames": 3}
    results = produced(client, track)
    assert [e["body"]["frame"] for e in results] == [3, 4, 5]
    for event in results:
        shape = msgspec.convert(event["body"]["shape"], Shape)  # type: ignore[arg-type]
        assert iou(shape_to_mask(shape, HEIGHT, WIDTH), disc(event["body"]["frame"])) > 0.6, event["body"]["frame"]

    backwards = await client.command({"type": "track_requested", "media": "ct", "objects": [object_id], "start": 5, "direction": "backward", "range": 4})
    assert backwards["code"] == "modality_refused" and "forwards" in backwards["message"]
    await client.close()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not dicom", "not a readable DICOM series: file 2 (scan.dcm) is not a DICOM file (it lacks the DICOM file header: a 128-byte preamble and 'DICM')"),
        ("mixed sizes", "not a readable DICOM series: file 2 (small.dcm) is 32x32, file 1 (IM0000) is 64x48: all slices of a series must have one size"),
        # Its content, not its name, refuses it (a DICOM file named .png would be taken).
        ("image", "not a readable DICOM series: file 2 (photo.png) is not a DICOM file (it lacks the DICOM file header: a 128-byte preamble and 'DICM')"),
    ],
)
def test_refused_uploads_keep_nothing(live, tmp_path, name, message):
    good = write_dicom(tmp_path / "IM0000", dicom_slice(np.zeros((HEIGHT, WIDTH), np.int16)))
    if name == "not dicom":
        second = write_image(tmp_path / "scan.png").rename(tmp_path / "scan.dcm")  # a PNG under a DICOM name
    elif name == "mixed sizes":
        second = write_dicom(tmp_path / "small.dcm", dicom_slice(np.zeros((32, 32), np.int16)))
    else:
        second = write_image(tmp_path / "photo.png")
    media_id = fresh("ct")
    with live.http("admin") as admin:
        response = upload(admin, "p1", media_id, "dicom_series", [good, second])
        assert response.status_code == 422, response.text
        assert response.json()["error"] == {"code": "invalid_media", "message": message}
        assert admin.get(f"/api/media/{media_id}").status_code == 404
    assert not (live.settings.media_dir / media_id).exists()
    assert not list((live.settings.media_dir / ".staging").iterdir()), "the staged files are gone"


def test_series_named_by_uid_without_suffix(live, tmp_path):
    uid_named = [write_dicom(tmp_path / f"1.2.826.0.1.3680043.8.498.{i}", dicom_slice(np.full((HEIGHT, WIDTH), i, np.int16), instance=i)) for i in (2, 1)]
    with live.http("admin") as admin:
        response = upload(admin, "p1", fresh("uid"), "dicom_series", uid_named)
        assert response.status_code == 201, response.text
        assert response.json()["media"]["frames"] == 2


def test_a_fresh_library_reopens_the_stored_series(live):
    """The stored files alone make the series again, in slice order."""
    media = msgspec.convert(live.uploaded["media"], MediaAdded)
    source = MediaLibrary(live.settings.media_dir, frame_cache=2, open_media=1).open_frames(media)
    assert (source.width, source.height, len(source)) == (WIDTH, HEIGHT, FRAMES)
    assert iou(source.get(FRAMES - 1)[..., 0] > 100, disc(FRAMES - 1)) > 0.85
