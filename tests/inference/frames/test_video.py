"""Video files: random access against sequential decoding, backward walks, corrupt files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from masklog.inference.frames.errors import FrameError
from masklog.inference.frames.video import VideoFrames, VideoInfo, probe_video
from masklog.inference.protocols import FrameSource

DEMO = Path("demo")


def write_video(path: Path, frames: int = 40, gop: int = 10, size: tuple[int, int] = (64, 48), **options: str) -> None:
    """An H.264 video (B-frames on: display order differs from decode order) of noise frames."""
    width, height = size
    container = av.open(str(path), "w", options=options)
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt, stream.gop_size = width, height, "yuv420p", gop
    for i in range(frames):
        image = np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def decode_all(path: Path, limit: int | None = None) -> list[np.ndarray]:
    """Reference: plain sequential decoding with PyAV."""
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if limit is not None and len(out) == limit:
                break
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "noise.mp4"
    write_video(path)
    return path


def test_probe_video(video: Path) -> None:
    assert probe_video(video) == VideoInfo(width=64, height=48, frames=40, fps=25.0)


def test_video_random_access_matches_sequential_decoding(video: Path) -> None:
    reference = decode_all(video)
    frames = VideoFrames(video, cache_frames=4)
    assert isinstance(frames, FrameSource)
    assert len(frames) == len(reference) == 40
    order = [39, 0, 17, 18, 5, 30, 29, 12, 11, 10, 38, 1]
    for index in order + list(np.random.default_rng(3).integers(0, 40, 20)):
        assert np.array_equal(frames.get(int(index)), reference[index]), index
        assert frames.cached_frames <= 4


def test_video_sequential_reading_does_not_seek_per_frame(video: Path) -> None:
    reference = decode_all(video)
    frames = VideoFrames(video, cache_frames=3)
    for i in range(len(frames)):
        assert np.array_equal(frames.get(i), reference[i])
    assert frames.seeks == 1


def test_video_backward_walk_reuses_decoded_frames(video: Path) -> None:
    reference = decode_all(video)
    frames = VideoFrames(video, cache_frames=8)
    for i in reversed(range(len(frames))):
        assert np.array_equal(frames.get(i), reference[i])
    # One restart per keyframe group or per backfill window, not one per frame.
    assert frames.seeks <= 10


def test_video_out_of_range(video: Path) -> None:
    frames = VideoFrames(video)
    with pytest.raises(FrameError):
        frames.get(40)


@pytest.mark.parametrize("options", [{}, {"movflags": "faststart"}])
def test_truncated_video_is_a_frame_error(tmp_path: Path, options: dict[str, str]) -> None:
    path = tmp_path / "whole.mp4"
    write_video(path, **options)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    # Depending on where the index lives the damage shows when opening or when decoding.
    with pytest.raises(FrameError):
        frames = VideoFrames(cut)
        for i in range(len(frames)):
            frames.get(i)


def test_garbage_and_empty_files_are_frame_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 255, 4000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (garbage, empty, tmp_path / "missing.mp4"):
        with pytest.raises(FrameError):
            VideoFrames(path)
        with pytest.raises(FrameError):
            probe_video(path)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "info"),
    [
        ("sam2_bedroom.mp4", VideoInfo(960, 540, 200, 30.0)),
        ("sam2_05_default_juggle.mp4", VideoInfo(1280, 720, 247, 24.0)),
    ],
)
def test_demo_videos(shared_data: Path, name: str, info: VideoInfo) -> None:
    path = shared_data / DEMO / name
    assert probe_video(path) == info
    reference = decode_all(path, limit=40)
    frames = VideoFrames(path, cache_frames=6)
    assert (frames.width, frames.height, len(frames)) == (info.width, info.height, info.frames)
    for index in [39, 3, 20, 21, 22, 0, 38, 37, 36, 10]:
        frame = frames.get(index)
        assert frame.shape == (info.height, info.width, 3)
        assert np.array_equal(frame, reference[index]), index
    assert frames.get(info.frames - 1).shape == (info.height, info.width, 3)
    assert frames.cached_frames <= 6
