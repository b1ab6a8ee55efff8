"""Media that costs more to decode than its size says (issue 12, item 8), against a real server:
decompression bombs refused from their headers at upload, media recognised by content rather
than by file name, and the frame cache held to its byte budget.

Every refused upload leaves nothing behind: no event, no media folder, no staged file, and the
server keeps serving frames.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from masklog.server.settings import Settings
from tests.inference.frames.test_dicom import dicom_slice, write_dicom
from tests.server.live import LiveServer, seeded_server, upload, write_video
from tests.server.rest import fresh

PIXEL_LIMIT = 20_000  # the module server's max_image_pixels: 141x141 passes, 200x150 does not
CACHE_BYTES = 40_000  # its frame_cache_bytes: four 64x48 RGB frames (9216 bytes each)
BIG = (160, 100)  # 16000 pixels, within the limit; 48000 bytes decoded, over the cache budget


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    with seeded_server(tmp_path_factory.mktemp("media-limits"), max_image_pixels=PIXEL_LIMIT, frame_cache_bytes=CACHE_BYTES) as live:
        yield live


@pytest.fixture(scope="module")
def admin(server) -> httpx.Client:
    with server.http("admin") as client:
        yield client


def encoded(extension: str, width: int, height: int, channels: int = 3) -> bytes:
    pixels = np.zeros((height, width, channels) if channels > 1 else (height, width), np.uint8)
    pixels[::7] = 200  # something to compress
    ok, data = cv2.imencode(extension, pixels)
    assert ok
    return data.tobytes()


def png_bomb(width: int, height: int) -> bytes:
    """A black RGB PNG of width x height (rows a multiple of 100), what cv2.imencode makes of
    np.zeros without the test holding the decoded image. Each block of 100 rows is compressed
    after a full flush, so all blocks compress to the same bytes: one is compressed, and
    repeated; the stream's checksum is computed over the whole image."""
    assert height % 100 == 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + bytes(3 * width)) * 100  # each row: filter byte "none", then its pixels
    compressor = zlib.compressobj(9)
    first = compressor.compress(rows) + compressor.flush(zlib.Z_FULL_FLUSH)  # with the zlib header
    block = compressor.compress(rows) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()[:-4]  # the final empty block, without the checksum of two blocks
    checksum = 1
    for _ in range(height // 100):
        checksum = zlib.adler32(rows, checksum)
    body = first + block * (height // 100 - 1) + end + struct.pack(">I", checksum)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def library(live: LiveServer):  # type: ignore[no-untyped-def]
    return live.server.config.app.state.ctx.library


def head_of(live: LiveServer) -> int:
    return live.server.config.app.state.ctx.ledger.head


def assert_refused(live: LiveServer, http: httpx.Client, response: httpx.Response, media_id: str, code: str, before: int) -> dict:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert head_of(live) == before, "nothing was appended"
    assert not (live.settings.media_dir / media_id).exists(), "no media folder"
    assert not list((live.settings.media_dir / ".staging").iterdir()), "no staged file left"
    assert http.get(f"/api/media/{media_id}").status_code == 404
    # Still serving.
    assert http.get("/api/media/m1/frames/3").status_code == 200
    return error


# ---- decompression bombs ----------------------------------------------------------------------------


def test_a_16000_square_png_is_refused_from_its_header(live, tmp_path):
    """The issue's bomb, against the default limit: under a megabyte on the wire, 768 MB decoded."""
    assert Settings(data=tmp_path).max_image_pixels == 40_000_000
    bomb = write(tmp_path / "bomb.png", png_bomb(16_000, 16_000))
    assert bomb.stat().st_size < 2 * 1024**2
    media_id = fresh("bomb")
    with live.http("admin") as admin:
        before = head_of(live)
        response = upload(admin, "p1", media_id, "image", [bomb])
        error = assert_refused(live, admin, response, media_id, "too_many_pixels", before)
        assert "16000x16000" in error["message"] and "40000000" in error["message"]
        # The same as one frame of an image group.
        small = write(tmp_path / "small.png", encoded(".png", 64, 48))
        response = upload(admin, "p1", media_id, "image_sequence", [small, bomb])
        assert_refused(live, admin, response, media_id, "too_many_pixels", before)


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".tif", ".webp"])
def test_each_image_format_is_measured_before_decoding(server, admin, tmp_path, extension):
    """Every accepted format's header is read: a 200x150 image is over the module's limit, a
    141x141 one is within it and stored with its size."""
    media_id = fresh("big")
    over = write(tmp_path / f"over{extension}", encoded(extension, 200, 150))
    error = assert_refused(server, admin, upload(admin, "p1", media_id, "image", [over]), media_id, "too_many_pixels", head_of(server))
    assert "200x150" in error["message"] and str(PIXEL_LIMIT) in error["message"]
    within = write(tmp_path / f"within{extension}", encoded(extension, 141, 141, channels=1))
    response = upload(admin, "p1", media_id, "image", [within])
    assert response.status_code == 201, response.text
    assert (response.json()["media"]["width"], response.json()["media"]["height"]) == (141, 141)


def test_a_video_with_frames_over_the_limit_is_refused(server, admin, tmp_path):
    video = write_video(tmp_path / "large.mp4", frames=3, size=(200, 150))
    media_id = fresh("vid")
    error = assert_refused(server, admin, upload(admin, "p1", media_id, "video", [video]), media_id, "too_many_pixels", head_of(server))
    assert "200x150" in error["message"]


def test_a_dicom_series_with_slices_over_the_limit_is_refused(server, admin, tmp_path):
    slices = [write_dicom(tmp_path / f"IM{i:04d}", dicom_slice(np.zeros((150, 200), np.int16), instance=i)) for i in range(2)]
    media_id = fresh("ct")
    error = assert_refused(server, admin, upload(admin, "p1", media_id, "dicom_series", slices), media_id, "too_many_pixels", head_of(server))
    assert "200x150" in error["message"]


# ---- media recognised by content ---------------------------------------------------------------------


@pytest.mark.parametrize("name, extension", [("photo.mp4", ".png"), ("photo.mkv", ".jpg"), ("photo.avi", ".bmp")])
def test_an_image_named_as_a_video_is_refused_as_a_video(server, admin, tmp_path, name, extension):
    """FFmpeg opens a PNG as a one-frame 'video' (its image demuxers): the content decides."""
    disguised = write(tmp_path / name, encoded(extension, 64, 48))
    media_id = fresh("fake")
    error = assert_refused(server, admin, upload(admin, "p1", media_id, "video", [disguised]), media_id, "invalid_media", head_of(server))
    assert "image, not a video" in error["message"], error


def test_a_corrupt_image_is_refused(server, admin, tmp_path):
    whole = encoded(".png", 120, 80)
    cut = write(tmp_path / "cut.png", whole[: len(whole) // 2])
    media_id = fresh("cut")
    error = assert_refused(server, admin, upload(admin, "p1", media_id, "image", [cut]), media_id, "invalid_media", head_of(server))
    assert "not a readable image" in error["message"]


# ---- the frame cache's byte budget -------------------------------------------------------------------


def test_the_frame_cache_stays_within_its_byte_budget(server, admin, tmp_path):
    cache = library(server).cache
    for media_id, frames in (("m1", 20), ("g1", 3), ("m2", 20)):
        for index in range(frames):
            assert admin.get(f"/api/media/{media_id}/frames/{index}").status_code == 200
            assert cache.nbytes <= CACHE_BYTES
    assert len(cache) > 0, "frames within the budget are cached"

    # A frame larger than the whole budget is served, and not cached.
    big = write(tmp_path / "big.png", encoded(".png", *BIG))
    media_id = fresh("big")
    assert upload(admin, "p1", media_id, "image", [big]).status_code == 201
    response = admin.get(f"/api/media/{media_id}/frames/0")
    assert response.status_code == 200
    frame = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert (frame.shape[1], frame.shape[0]) == BIG
    assert cache.nbytes <= CACHE_BYTES
    assert not cache.contains(media_id, 0)
    # Smaller frames are still cached after it.
    assert admin.get("/api/media/m1/frames/5").status_code == 200
    assert cache.contains("m1", 5) and cache.nbytes <= CACHE_BYTES
