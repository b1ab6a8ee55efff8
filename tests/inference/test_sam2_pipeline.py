"""The SAM 2 tracker's frame pipeline and the compile option (issue 19, items 1 and 4).

- Frames are prepared ahead of the model, in tracking order, by one reader thread (every read of
  the FrameSource) and a small pool; at most `_LazyVideo.AHEAD` at a time; a new plan or closing
  the session drops what was queued.
- Resizing on the device (the CUDA default) is checked here on CPU against the exact PIL path,
  within one grey level; on CUDA (MASKLOG_TEST_DEVICE=cuda, scripts/device_check.sh) tracking with
  it is compared with raw sam2 within the tolerance stated below.
- The compile option is wired end to end: sam2's vos_optimized network, compiled, gives our masks.

Real SAM 2 (random weights, reduced image size) as in test_sam2_backend; no mocks.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from masklog.domain.events import Direction
from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.protocols import ClickPoint, Prompt
from masklog.inference.sam2.image import Sam2Segmenter
from masklog.inference.sam2.model import CompileOptions, Sam2Model, load_sam2
from masklog.inference.sam2.video import _IMG_STD, Sam2Tracker, _LazyVideo
from tests.inference.random_sam2 import DEVICE, IMAGE_SIZE, SEED, one_thread, random_sam2
from tests.inference.test_sam2_backend import (
    BAR_BOX,
    DISC,
    N,
    frames_of,
    raw_points,
    raw_propagate,
    raw_state,
    synthetic_frames,
    video,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

# One grey level after normalising: what resizing on the device may differ from PIL's by (its
# fixed-point arithmetic rounds differently from float32), plus float32 rounding.
ONE_GREY_LEVEL = 1 / 255 / min(_IMG_STD) + 1e-6
# On-device preprocessing against raw sam2 (PIL resize): the largest logit difference as a share
# of the largest logit, and the least mask IoU. Measured on CPU (float32, random weights, 64 px):
# 0.5 % and IoU >= 0.989 (random weights put most logits near 0, where a one-grey-level input
# change flips the most pixels; trained weights have sharper edges). On CUDA the model runs in
# bf16 (8 bits of mantissa: 0.4 % per rounding), so the bound leaves ten times the CPU figure.
LOGIT_SHARE = 0.05
MIN_IOU = 0.95


@pytest.fixture(scope="module")
def sam() -> Iterator[Sam2Model]:
    with one_thread():
        yield random_sam2(preprocess_on_device=False)


class SlowFrames:
    """A FrameSource that records which thread read which frame, and how many reads overlapped;
    each read takes `delay` seconds (a decoder)."""

    def __init__(self, n: int, delay: float = 0.01, h: int = 48, w: int = 64) -> None:
        self._frames = synthetic_frames(n, h, w)
        self.height, self.width = h, w
        self.delay = delay
        self.reads: list[int] = []
        self.threads: set[int] = set()
        self.busy = self.most_busy = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, index: int) -> np.ndarray:
        with self._lock:
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
            self.threads.add(threading.get_ident())
            self.reads.append(index)
        time.sleep(self.delay)
        with self._lock:
            self.busy -= 1
        return self._frames[index]


def wait_for(condition, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.005)


# ---- preparing frames ahead --------------------------------------------------------------------


def test_frames_are_read_ahead_in_order_by_one_thread_and_at_most_ahead_at_once() -> None:
    frames = SlowFrames(20)
    lazy = _LazyVideo(frames, 64, torch.device("cpu"), on_device=False)
    try:
        lazy.plan(list(range(3, 15)))
        wait_for(lambda: len(frames.reads) >= lazy.AHEAD)
        time.sleep(0.1)  # nothing more is read until the model takes a frame
        assert frames.reads == [3, 4, 5, 6][: lazy.AHEAD]
        for i in range(3, 15):
            assert lazy[i].shape == (3, 64, 64)
        assert frames.reads == list(range(3, 15))  # tracking order, nothing past the plan
        assert len(frames.threads) == 1 and frames.most_busy == 1 and lazy.reads == 12
    finally:
        lazy.close()


def test_a_new_plan_drops_the_old_ones_frames_and_backwards_reads_backwards() -> None:
    frames = SlowFrames(30, delay=0.02)
    lazy = _LazyVideo(frames, 64, torch.device("cpu"), on_device=False)
    try:
        lazy.plan(list(range(10, 30)))
        lazy[10]
        lazy.plan(list(range(9, -1, -1)))  # the user turned round: frames 11.. are not wanted
        for i in range(9, -1, -1):
            lazy[i]
        time.sleep(0.1)
        backwards = frames.reads[frames.reads.index(9) :]
        assert backwards == list(range(9, -1, -1))
        # Of the forward plan only what was already started or queued got read: at most AHEAD
        # frames past the one taken.
        assert set(frames.reads) - set(range(0, 11)) <= set(range(11, 11 + lazy.AHEAD))
    finally:
        lazy.close()


def test_a_frame_asked_for_out_of_the_plans_order_is_read_once() -> None:
    frames = SlowFrames(20, delay=0)
    lazy = _LazyVideo(frames, 64, torch.device("cpu"), on_device=False)
    try:
        lazy.plan(list(range(10)))
        lazy[8]  # planned, but not among the first AHEAD: read now, and not again later
        for i in range(10):
            if i != 8:
                lazy[i]
        assert sorted(frames.reads) == list(range(10))
    finally:
        lazy.close()


def test_closing_cancels_what_has_not_started_and_waits_for_the_read_under_way() -> None:
    frames = SlowFrames(30, delay=0.05)
    lazy = _LazyVideo(frames, 64, torch.device("cpu"), on_device=False)
    lazy.plan(list(range(30)))
    wait_for(lambda: frames.busy == 1)
    lazy.close()
    assert frames.busy == 0  # nothing reads the source after close
    read = len(frames.reads)
    time.sleep(0.15)
    assert len(frames.reads) == read == 1
    # A closed video can be indexed again (a session reopened): a fresh reader starts.
    assert lazy[0].shape == (3, 64, 64)
    lazy.close()


def test_a_read_error_reaches_the_model_and_the_next_frames_still_load() -> None:
    class Broken(SlowFrames):
        def get(self, index: int) -> np.ndarray:
            if index == 2:
                raise OSError("frame 2 is damaged")
            return super().get(index)

    lazy = _LazyVideo(Broken(6, delay=0), 64, torch.device("cpu"), on_device=False)
    try:
        lazy.plan([1, 2, 3])
        lazy[1]
        with pytest.raises(OSError, match="damaged"):
            lazy[2]
        assert lazy[3].shape == (3, 64, 64)
    finally:
        lazy.close()


# ---- resizing on the device ----------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w", "size"), [(96, 128, 64), (480, 854, 1024), (480, 854, 128), (64, 64, 64)])
def test_resizing_on_the_device_is_within_one_grey_level_of_pil(h: int, w: int, size: int) -> None:
    # Run on CPU here; on CUDA the same code runs with pinned memory and non-blocking copies.
    rgb = synthetic_frames(1, h, w, seed=3)[0]
    exact = _LazyVideo(ArrayFrames([rgb]), size, torch.device("cpu"), on_device=False)
    device = _LazyVideo(ArrayFrames([rgb]), size, torch.device("cpu"), on_device=True)
    try:
        a, b = exact[0], device[0]
    finally:
        exact.close()
        device.close()
    assert a.shape == b.shape == (3, size, size) and b.dtype == torch.float32
    diff = (a - b).abs()
    assert float(diff.max()) <= ONE_GREY_LEVEL
    assert float((diff > 1e-6).float().mean()) < 0.5  # most pixels equal, the rest one level off


def test_on_device_preprocessing_is_the_default_on_cuda_only() -> None:
    assert not _LazyVideo(ArrayFrames([np.zeros((8, 8, 3), np.uint8)]), 64, torch.device("cpu")).on_device
    assert _LazyVideo(ArrayFrames([np.zeros((8, 8, 3), np.uint8)]), 64, torch.device("cpu"), on_device=True).on_device


def compare_with_raw(sam: Sam2Model, folder: Path) -> list[dict[str, float]]:
    """Track two objects forwards with ours and with raw sam2; per frame and object, the mask IoU
    and the largest logit difference as a share of the largest raw logit."""
    session = Sam2Tracker(sam).open(frames_of(folder))
    state = raw_state(sam, folder)
    a, b = Prompt(points=[DISC]), Prompt(box=BAR_BOX)
    session.add_prompt_logits(0, "a", a)
    raw_points(sam, state, 0, "a", a)
    session.add_prompt_logits(0, "b", b)
    raw_points(sam, state, 0, "b", b)
    ours = list(session.propagate_logits(0, Direction.FORWARD, N))
    raw = raw_propagate(sam, state, 0, N, reverse=False)
    session.close()
    figures = []
    for result, (frame, logits) in zip(ours, raw, strict=True):
        assert result.frame == frame
        for i in range(2):
            o, r = result.logits[i] > 0, logits[i] > 0
            union = int((o | r).sum())
            figures.append(
                {
                    "iou": float((o & r).sum() / union) if union else 1.0,
                    "logit_share": float(np.abs(result.logits[i] - logits[i]).max() / max(np.abs(logits[i]).max(), 1e-6)),
                }
            )
    return figures


def test_tracking_with_on_device_preprocessing_stays_close_to_raw_sam2(sam: Sam2Model, video: Path) -> None:  # noqa: F811
    figures = compare_with_raw(dataclasses.replace(sam, preprocess_on_device=True), video)
    worst_iou = min(f["iou"] for f in figures)
    worst_share = max(f["logit_share"] for f in figures)
    print(f"on-device preprocessing vs raw sam2 on {DEVICE}: worst IoU {worst_iou:.4f}, worst logit share {worst_share:.4f}")
    assert worst_iou >= MIN_IOU and worst_share <= LOGIT_SHARE
    if DEVICE == "cpu":  # the figures the tolerance is based on (see LOGIT_SHARE)
        assert worst_share < LOGIT_SHARE / 5


@pytest.mark.skipif(DEVICE != "cuda", reason="the CUDA path: pinned memory, non-blocking copies, bf16")
def test_cuda_on_device_preprocessing_is_within_the_tolerance_of_raw_sam2(sam: Sam2Model, video: Path) -> None:  # noqa: F811
    figures = compare_with_raw(dataclasses.replace(sam, preprocess_on_device=True), video)
    out = os.environ.get("OUT")  # scripts/device_check.sh: recorded before it is judged
    if out:
        import json

        summary = {
            "min_iou": min(f["iou"] for f in figures),
            "max_logit_share": max(f["logit_share"] for f in figures),
            "tolerance": {"min_iou": MIN_IOU, "max_logit_share": LOGIT_SHARE},
        }
        Path(out, "cuda_preprocess_tolerance.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert min(f["iou"] for f in figures) >= MIN_IOU
    assert max(f["logit_share"] for f in figures) <= LOGIT_SHARE


# ---- compiled ---------------------------------------------------------------------------------------


def click_and_track(sam: Sam2Model) -> tuple[np.ndarray, list[np.ndarray]]:
    frames = ArrayFrames(synthetic_frames(4))
    click = Sam2Segmenter(sam).predict(frames, 0, Prompt(points=[DISC])).logits
    session = Sam2Tracker(sam).open(frames)
    session.add_prompt(0, "a", Prompt(points=[DISC, ClickPoint(90, 20, include=False)]))
    tracked = [r.logits for r in session.propagate_logits(0, Direction.FORWARD, 4)]
    session.close()
    return click, tracked


def compiled_model(backend: str, mode: str | None, cache: Path) -> Sam2Model:
    torch.manual_seed(SEED)  # the same random weights as the `sam` fixture
    return load_sam2(
        "sam2.1_hiera_t", None, device=DEVICE, image_size=IMAGE_SIZE, random_weights=True, preprocess_on_device=False,
        compile=CompileOptions(backend=backend, mode=mode, cache_dir=cache),
    )  # fmt: skip


@pytest.mark.slow  # about 25 s on one core: dynamo traces each of the network's shapes once
def test_the_compile_option_loads_sam2s_vos_network_warmed_up_with_equal_masks(sam: Sam2Model, tmp_path: Path) -> None:
    """The server's path (registry.load_backends with compile on): sam2's vos_optimized network
    (SAM2VideoPredictorVOS, its five functions compiled whole), warmed up so that a track
    compiles nothing more, answering a click and a short track with our masks. The "eager"
    backend runs what dynamo captured without generating code: masks equal bit for bit, and the
    test takes seconds where inductor takes minutes (the test below)."""
    from sam2.sam2_video_predictor import SAM2VideoPredictorVOS
    from torch._dynamo.utils import counters

    from masklog.inference.registry import ModelOptions, load_backends

    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": sam.net.state_dict()}, checkpoint)
    options = ModelOptions(
        checkpoint=checkpoint, device=DEVICE, image_size=IMAGE_SIZE, compile=True, compile_backend="eager", compile_mode=None, compile_cache=tmp_path / "cache"
    )
    compiled = dataclasses.replace(load_backends("sam2", options).segmenter._sam, preprocess_on_device=False)  # type: ignore[attr-defined]
    assert isinstance(compiled.net, SAM2VideoPredictorVOS) and compiled.compiled is not None
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()

    graphs = counters["frames"]["ok"]
    session = Sam2Tracker(compiled).open(ArrayFrames(synthetic_frames(6)))
    session.add_prompt(1, "a", Prompt(points=[DISC]))
    list(session.propagate(1, Direction.FORWARD, 5))
    session.close()
    assert counters["frames"]["ok"] == graphs, "the warm-up left shapes of a track to compile"

    click, tracked = click_and_track(compiled)
    ref_click, ref_tracked = click_and_track(sam)
    np.testing.assert_array_equal(click, ref_click)
    for ours, ref in zip(tracked, ref_tracked, strict=True):
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("MASKLOG_TEST_INDUCTOR") != "1",
    reason="inductor generates and builds C++ for every graph: 195 s measured on a 2-core machine (set MASKLOG_TEST_INDUCTOR=1)",
)
def test_the_compile_option_with_inductor_gives_the_same_masks(sam: Sam2Model, tmp_path: Path) -> None:
    """Generated code (inductor, default mode) reorders float sums: logits agree within 1e-5
    (measured: 3e-7), masks exactly. A second process would load the graphs from the cache."""
    compiled = compiled_model("inductor", "default", tmp_path / "cache")
    click, tracked = click_and_track(compiled)
    ref_click, ref_tracked = click_and_track(sam)
    np.testing.assert_allclose(click, ref_click, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(click > 0, ref_click > 0)
    for ours, ref in zip(tracked, ref_tracked, strict=True):
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(ours > 0, ref > 0)
    assert any((tmp_path / "cache").rglob("*")), "inductor wrote nothing to the compile cache"
