"""Uploads are recognised by their content, never by their file name (issue 14, point 6): a PNG
named `x.mp4` is an image, a video named `.png` a video, a DICOM file named `.png` a slice, and an
upload without a `kind` gets the kind its files' content says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.inference.frames.test_dicom import dicom_slice, write_dicom
from tests.server.live import LiveServer, seeded_server, write_image, write_video


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with seeded_server(tmp_path_factory.mktemp("content")) as live:
        yield live


def post(server: LiveServer, files: list[tuple[str, Path]], kind: str | None = None) -> tuple[str, dict]:  # type: ignore[type-arg]
    media_id = f"up-{uuid.uuid4().hex[:8]}"
    data = {"id": media_id, "name": media_id, **({"kind": kind} if kind else {})}
    parts = [("file", (name, path.read_bytes(), "application/octet-stream")) for name, path in files]
    with server.http("admin") as admin:
        response = admin.post("/api/projects/p1/media", data=data, files=parts)
    return media_id, {"status": response.status_code, **response.json()}


def stored(server: LiveServer, media_id: str) -> list[str]:
    return sorted(p.name for p in (server.settings.media_dir / media_id).iterdir())


def test_a_png_named_mp4_is_an_image(server, tmp_path):
    png = write_image(tmp_path / "frame.png")
    for kind in (None, "image"):
        media_id, answer = post(server, [("x.mp4", png)], kind)
        assert answer["status"] == 201, answer
        assert answer["media"]["kind"] == "image"
        assert (answer["media"]["width"], answer["media"]["height"]) == (64, 48)
        assert stored(server, media_id) == ["000000.png"], "the stored suffix comes from the content"
    # Sent as a video, its content refuses it (with what to do instead), and nothing is kept.
    media_id, answer = post(server, [("x.mp4", png)], "video")
    assert answer["status"] == 422
    assert answer["error"]["message"] == "the file is a PNG image, not a video: upload it as an image"
    assert not (server.settings.media_dir / media_id).exists()


def test_a_video_named_png_is_a_video_and_several_images_a_group(server, tmp_path):
    video = write_video(tmp_path / "clip.mp4")
    media_id, answer = post(server, [("holiday.png", video)])
    assert answer["status"] == 201, answer
    assert (answer["media"]["kind"], answer["media"]["frames"]) == ("video", 20)
    assert stored(server, media_id) == ["video.mp4"]
    images = [write_image(tmp_path / f"{i}.png", value=40 * i) for i in range(3)]
    media_id, answer = post(server, [(f"shots/{i}.dat", path) for i, path in enumerate(images)])
    assert (answer["status"], answer["media"]["kind"], answer["media"]["frames"]) == (201, "image_group", 3)
    # An explicit kind still wins where the content allows it.
    _, answer = post(server, [(f"{i}.jpg", path) for i, path in enumerate(images)], "image_sequence")
    assert (answer["status"], answer["media"]["kind"]) == (201, "image_sequence")


def test_a_dicom_file_named_png_is_a_slice(server, tmp_path):
    slices = [write_dicom(tmp_path / f"s{i}", dicom_slice(np.full((48, 64), i * 100, np.int16), position=(0.0, 0.0, float(i)), instance=i + 1)) for i in range(2)]
    for kind in (None, "dicom_series"):
        _, answer = post(server, [("scan.png", slices[0]), ("scan2.jpg", slices[1])], kind)
        assert answer["status"] == 201, answer
        assert (answer["media"]["kind"], answer["media"]["frames"]) == ("dicom_series", 2)


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("garbage", "file 1 (bad.mp4) is not a supported image (PNG, JPEG, BMP, TIFF, WebP), video (MP4/MOV, Matroska/WebM, AVI) or DICOM file"),
        ("mixed", "the files are of different kinds (image, video): upload each kind as a media item of its own"),
        ("two videos", "a video is one file, not 2: upload the videos one at a time"),
    ],
)
def test_content_that_makes_no_media_item_is_refused(server, tmp_path, what, message):
    garbage = tmp_path / "bad.mp4"
    garbage.write_bytes(bytes(range(256)) * 40)
    video = write_video(tmp_path / "clip.mp4")
    files = {
        "garbage": [("bad.mp4", garbage)],
        "mixed": [("a.png", write_image(tmp_path / "a.png")), ("b.mp4", video)],
        "two videos": [("a.mp4", video), ("b.mp4", video)],
    }[what]
    media_id, answer = post(server, files)
    assert answer["status"] == 422
    assert answer["error"] == {"code": "invalid_media", "message": message}
    assert not (server.settings.media_dir / media_id).exists()
    # With a kind, garbage is refused by its content too.
    if what == "garbage":
        _, answer = post(server, files, "image")
        assert answer["error"]["message"] == "file 1 (bad.mp4) is not a supported image (PNG, JPEG, BMP, TIFF or WebP)"
