"""Fidelity of the SAM 2 backend: our masks equal the raw `sam2` predictors' for the same model.

One real SAM 2.1 hiera-tiny network with random weights (fixed seed) at a reduced image size is
shared by every test. Each test runs the same prompts through our code and through sam2's own
`SAM2ImagePredictor` / `SAM2VideoPredictor` on that network, and compares masks exactly and
logits with a tight tolerance (they come out bit-identical on CPU; the tolerance only allows for
a BLAS that reorders sums between calls).

Several objects are tracked in batches (`Sam2Tracker(batch=True)`, the default): the tests with
two objects run both ways. Object by object (`batch=False`) is `propagate_in_video` bit for bit.
A batch differs from it by float rounding only: the mask decoder's small token matmuls (8 rows
an object) sum in another order when several objects' rows go through them at once (given the
same inputs, memory attention's output is bit-identical batched; the first difference is in the
decoder). Measured on CPU at 64 and 128 px with 6 and 10 objects over 8 frames: logits within
7.3e-7, object scores within 3e-7, not one mask pixel different at these frames' size (the
benchmark's 854x480 frames had 4 pixels of 10 objects x 8 frames differ, logits at 0 within
rounding); on CPU the batched comparisons with raw sam2 therefore keep ATOL, and
`test_batched_objects_equal_one_by_one_up_to_rounding` bounds the difference over a longer mixed
track. Under CUDA bf16 autocast a reordered sum can move a bf16 rounding, so there the batched
path is held to BATCH_IOU against the object-by-object one instead (what the benchmark's
`objects.fidelity` measures at full size).

Identical pixels for the video comparison: the raw predictor reads a folder of JPEG frames with
its own loader (`init_state`: PIL decode, PIL resize to the model's square, normalise). Our
FrameSource decodes the same JPEG files with the same decoder (PIL), and our tracker resizes and
normalises the way that loader does, so both feed the model the same tensor without patching
sam2. (Decoding with OpenCV instead could differ by a grey level here and there.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

# Imported, not skipped when missing: the test command installs torch and sam2, and a run
# without them must fail rather than pass without checking SAM 2.
import PIL.Image as PIL_Image
import pytest
import sam2  # noqa: F401
import torch

from masklog.domain.events import Direction
from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.protocols import ClickPoint, Prompt, Segmenter, Tracker, TrackerSession
from masklog.inference.sam2.image import Sam2Segmenter
from masklog.inference.sam2.model import Sam2LoadError, Sam2Model, load_sam2
from masklog.inference.sam2.video import DEFAULT_SHARED_FRAMES, Sam2Tracker, Sam2TrackerSession, default_history
from tests.inference.random_sam2 import DEVICE, IMAGE_SIZE, one_thread, random_sam2

# sam2's SAM2Transforms (inside the raw image predictor) uses torch.jit.script, deprecated in torch.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

# Where the fidelity tests run: "cpu" here and in CI; "cuda" on a GPU machine, where both our code
# and the raw predictors run under the same bf16 autocast (Sam2Model.running).
H, W, N = 96, 128, 6
ATOL = 1e-5
# Batched against object by object (see the module docstring): on CPU, logits and object scores
# within BATCH_ATOL (over 100x the measured 7e-7: float32 rounding of logits of magnitude ~10,
# carried through a few frames of memory), and masks equal except where a logit is within
# BATCH_ATOL of 0. On CUDA (bf16), every object's mask within BATCH_IOU of the other's and
# object score logits within BATCH_CUDA_SCORE_ATOL: provisional bounds, not yet measured on a GPU
# (device_check.sh's objects benchmark reports the measured difference at full size).
BATCH_ATOL = 1e-4
BATCH_IOU = 0.98
BATCH_CUDA_SCORE_ATOL = 0.1


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam() -> Iterator[Sam2Model]:
    with one_thread():
        # The exact preprocessing (PIL resize, as sam2's loader) also on CUDA, where resizing on the
        # device is the default: these tests compare bit for bit (test_sam2_pipeline: the other path).
        yield random_sam2(preprocess_on_device=False)


class PilFrames:
    """A FrameSource over image files decoded with PIL; records which frames were read."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = paths
        self._cache: dict[int, np.ndarray] = {}
        self.reads: list[int] = []
        first = self.get(0)
        self.height, self.width = first.shape[:2]

    def __len__(self) -> int:
        return len(self._paths)

    def get(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self._paths):
            raise IndexError(index)
        self.reads.append(index)
        if index not in self._cache:
            self._cache[index] = np.array(PIL_Image.open(self._paths[index]).convert("RGB"))
        return self._cache[index]


def synthetic_frames(n: int, h: int = H, w: int = W, seed: int = 0) -> list[np.ndarray]:
    """A red disc moving right and a green bar moving right, on grey with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        img = np.full((h, w, 3), 40, np.int32)
        img[(xx - (w * 0.3 + 3 * (i % 20))) ** 2 + (yy - h / 2) ** 2 < (h * 0.2) ** 2] = (220, 60, 50)
        x0 = int(w * 0.62) + i % 20
        img[int(h * 0.1) : int(h * 0.3), x0 : x0 + int(w * 0.25)] = (40, 200, 90)
        img += rng.integers(-10, 10, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def write_jpegs(folder: Path, frames: list[np.ndarray]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = folder / f"{i:05d}.jpg"  # the names sam2's loader sorts numerically
        PIL_Image.fromarray(f).save(p, quality=95)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("video")
    write_jpegs(folder, synthetic_frames(N))
    return folder


def frames_of(folder: Path) -> PilFrames:
    return PilFrames(sorted(folder.glob("*.jpg")))


DISC = ClickPoint(40, 48)  # on the red disc of frame 0
BAR_BOX = (78.0, 8.0, 112.0, 30.0)  # around the green bar


def raw_state(sam: Sam2Model, folder: Path) -> dict:
    with sam.running():
        return sam.net.init_state(str(folder))


def raw_points(sam: Sam2Model, state: dict, frame: int, obj: str, prompt: Prompt) -> np.ndarray:
    """sam2's add_new_points_or_box; returns every object's logits on the frame (N, H, W)."""
    pts = lbl = None
    if prompt.points:
        pts = np.array([[p.x, p.y] for p in prompt.points], np.float32)
        lbl = np.array([int(p.include) for p in prompt.points], np.int32)
    box = np.array(prompt.box, np.float32) if prompt.box else None
    with sam.running():
        _, _, logits = sam.net.add_new_points_or_box(state, frame, obj, points=pts, labels=lbl, box=box)
        return logits[:, 0].float().cpu().numpy()


def raw_propagate(sam: Sam2Model, state: dict, start: int, count: int, reverse: bool) -> list[tuple[int, np.ndarray]]:
    with sam.running():
        steps = sam.net.propagate_in_video(state, start_frame_idx=start, max_frame_num_to_track=count - 1, reverse=reverse)
        return [(f, m[:, 0].float().cpu().numpy()) for f, _, m in steps]


def raw_object_score(state: dict, obj_idx: int, frame: int) -> float:
    outputs = state["output_dict_per_obj"][obj_idx]
    out = outputs["cond_frame_outputs"].get(frame) or outputs["non_cond_frame_outputs"][frame]
    return float(out["object_score_logits"])


def assert_same(ours: np.ndarray, raw: np.ndarray) -> None:
    assert ours.shape == raw.shape
    np.testing.assert_array_equal(ours > 0, raw > 0)
    np.testing.assert_allclose(ours, raw, rtol=0, atol=ATOL)


def assert_batched_same(ours: np.ndarray, raw: np.ndarray, batch: bool) -> None:
    """`assert_same`, except for a batch on CUDA (bf16), held to BATCH_IOU."""
    if batch and DEVICE == "cuda":
        assert_close_masks(ours, raw)
    else:
        assert_same(ours, raw)


def assert_close_masks(ours: np.ndarray, ref: np.ndarray) -> None:
    """Batched against object by object, per device (see BATCH_ATOL and BATCH_IOU)."""
    assert ours.shape == ref.shape
    if DEVICE == "cuda":
        for a, b in zip(ours > 0, ref > 0, strict=True):
            union = int((a | b).sum())
            assert union == 0 or (a & b).sum() / union >= BATCH_IOU
        return
    np.testing.assert_allclose(ours, ref, rtol=0, atol=BATCH_ATOL)
    differ = (ours > 0) != (ref > 0)
    assert np.all(np.abs(ref[differ]) <= BATCH_ATOL)


def assert_nontrivial(masks: list[np.ndarray]) -> None:
    # Guards the test itself: identical empty (or full) masks would prove little.
    fractions = [float(m.mean()) for m in masks]
    assert any(0.02 < f < 0.98 for f in fractions), f"degenerate masks, pick another SEED: {fractions}"


# ---- loading ---------------------------------------------------------------------------------


def test_model_id_names_config_version_and_random_weights(sam: Sam2Model) -> None:
    import importlib.metadata

    assert sam.model_id == f"sam2/sam2.1_hiera_t-random@{importlib.metadata.version('sam2')}"
    assert sam.image_size == IMAGE_SIZE


def test_no_checkpoint_is_refused_unless_random_weights_are_asked_for() -> None:
    with pytest.raises(Sam2LoadError, match="no checkpoint configured"):
        load_sam2("sam2.1_hiera_t", None, device="cpu")


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(Sam2LoadError) as err:
        load_sam2("sam2.1_hiera_t", path, device="cpu")
    assert err.value.what == str(path) and "not found" in err.value.reason


def test_garbage_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(Sam2LoadError, match="not a readable PyTorch checkpoint") as err:
        load_sam2("sam2.1_hiera_t", path, device="cpu")
    assert err.value.what == str(path)


def test_checkpoint_without_model_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"optimizer": {}}, path)
    with pytest.raises(Sam2LoadError, match="no 'model' state dict"):
        load_sam2("sam2.1_hiera_t", path, device="cpu")


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pt"
    torch.save({"model": {"some.layer.weight": torch.zeros(2)}}, path)
    with pytest.raises(Sam2LoadError, match="do not fit config sam2.1_hiera_t: missing .*unexpected some.layer.weight"):
        load_sam2("sam2.1_hiera_t", path, device="cpu", image_size=IMAGE_SIZE)


def test_unknown_config_and_bad_image_size(tmp_path: Path) -> None:
    with pytest.raises(Sam2LoadError, match="unknown config; available: .*sam2.1_hiera_t"):
        load_sam2("sam3_giant", None, device="cpu", random_weights=True)
    with pytest.raises(Sam2LoadError, match="multiple of 32"):
        load_sam2("sam2.1_hiera_t", None, device="cpu", image_size=100, random_weights=True)


def test_checkpoint_round_trip_gives_the_same_masks(sam: Sam2Model, video: Path, tmp_path: Path) -> None:
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": sam.net.state_dict()}, path)
    loaded = load_sam2("sam2.1_hiera_tiny", path, device=DEVICE, image_size=IMAGE_SIZE)  # checkpoint-style name
    assert loaded.config == "sam2.1_hiera_t" and not loaded.random_weights
    assert "-random" not in loaded.model_id
    frames = frames_of(video)
    prompt = Prompt(points=[DISC])
    ours = Sam2Segmenter(loaded).predict(frames, 0, prompt)
    ref = Sam2Segmenter(sam).predict(frames, 0, prompt)
    assert_same(ours.logits, ref.logits)


# ---- image segmentation ----------------------------------------------------------------------


def raw_image(sam: Sam2Model, image: np.ndarray):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(sam.net)
    # The one constant of the predictor that assumes 1024-pixel input: its feature map sizes.
    s = sam.image_size
    predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    predictor.set_image(image)
    return predictor


def compare_image(sam: Sam2Model, video: Path, prompt: Prompt, multimask: bool, **raw_kwargs) -> None:
    frames = frames_of(video)
    ours = Sam2Segmenter(sam).predict(frames, 0, prompt)
    pts = np.array([[p.x, p.y] for p in prompt.points], np.float32) if prompt.points else None
    lbl = np.array([int(p.include) for p in prompt.points], np.int32) if prompt.points else None
    box = np.array(prompt.box, np.float32) if prompt.box else None
    with sam.running():
        logits, scores, low_res = raw_image(sam, frames.get(0)).predict(
            pts, lbl, box, multimask_output=multimask, return_logits=True, **raw_kwargs
        )
    order = np.argsort(-scores, kind="stable")
    assert len(ours.masks) == (3 if multimask else 1)
    assert_same(ours.logits, logits[order])
    np.testing.assert_allclose(ours.scores, scores[order], rtol=0, atol=ATOL)
    np.testing.assert_allclose(ours.low_res_logits, low_res[order], rtol=0, atol=ATOL)
    assert list(ours.scores) == sorted(ours.scores, reverse=True)
    assert_nontrivial(list(ours.masks))


def test_single_click_gives_three_candidates_equal_to_the_image_predictor(sam: Sam2Model, video: Path) -> None:
    compare_image(sam, video, Prompt(points=[DISC]), multimask=True)


def test_clicks_and_box_equal_the_image_predictor(sam: Sam2Model, video: Path) -> None:
    prompt = Prompt(points=[DISC, ClickPoint(90, 20, include=False), ClickPoint(30, 60)], box=(10.0, 20.0, 80.0, 80.0))
    compare_image(sam, video, prompt, multimask=False)


def test_box_alone_equals_the_image_predictor(sam: Sam2Model, video: Path) -> None:
    compare_image(sam, video, Prompt(box=BAR_BOX), multimask=False)


def test_existing_mask_as_prompt_equals_the_image_predictor_with_that_mask_input(sam: Sam2Model, video: Path) -> None:
    mask = np.zeros((H, W), bool)
    mask[30:70, 20:60] = True
    seg = Sam2Segmenter(sam)
    low_res = seg.mask_prompt(mask)
    compare_image(sam, video, Prompt(points=[DISC], mask=mask), multimask=False, mask_input=low_res[0].cpu().numpy())


def test_mask_prompt_is_low_res_logits_of_the_mask(sam: Sam2Model) -> None:
    seg = Sam2Segmenter(sam)
    low = IMAGE_SIZE // 4
    full = seg.mask_prompt(np.ones((H, W), bool))
    assert full.shape == (1, 1, low, low)
    torch.testing.assert_close(full, torch.full_like(full, 10.0))
    assert torch.all(seg.mask_prompt(np.zeros((H, W), bool)) == -10.0)
    left = np.zeros((H, W), bool)
    left[:, : W // 2] = True
    half = seg.mask_prompt(left)[0, 0]
    assert torch.all(half[:, : low // 2 - 1] > 0) and torch.all(half[:, low // 2 + 1 :] < 0)


def test_second_click_on_a_frame_reuses_the_embedding(sam: Sam2Model, video: Path) -> None:
    frames = frames_of(video)
    seg = Sam2Segmenter(sam, cache_size=2)
    first = seg.segment(frames, 0, Prompt(points=[DISC]))
    again = seg.segment(frames, 0, Prompt(points=[DISC, ClickPoint(60, 50)]))
    assert seg.embeddings_computed == 1 and frames.reads.count(0) == 2  # the constructor read it too
    assert len(first) == 3 and len(again) == 1
    assert first[0].mask.shape == (H, W) and first[0].mask.dtype == bool
    seg.segment(frames, 1, Prompt(points=[DISC]))
    seg.segment(frames, 2, Prompt(points=[DISC]))  # evicts frame 0 (capacity 2)
    assert seg.embeddings_computed == 3
    assert not seg.cached(frames, 0) and seg.cached(frames, 1) and seg.cached(frames, 2)
    other = frames_of(video)  # another source: its frames are other frames
    assert not seg.cached(other, 2)
    seg.segment(frames, 0, Prompt(points=[DISC]))
    assert seg.embeddings_computed == 4


def test_the_click_protocol_runs_on_sam2(sam: Sam2Model, tmp_path: Path) -> None:
    """`masklog eval-clicks --segmenter sam2`'s path: the protocol over a DAVIS-format folder. With
    random weights the figures mean nothing; what counts is that every click is answered, scored
    and timed, and that a frame's image is embedded once for all its clicks."""
    from masklog.inference.click_eval import evaluate_clicks

    frames = synthetic_frames(3)
    seq = tmp_path / "clip"
    write_jpegs(seq / "JPEGImages", frames)
    (seq / "Annotations").mkdir()
    yy, xx = np.mgrid[0:H, 0:W]
    for i in range(3):
        disc = (xx - (W * 0.3 + 3 * i)) ** 2 + (yy - H / 2) ** 2 < (H * 0.2) ** 2
        ids = disc * 1 + ((yy >= H * 0.1) & (yy < H * 0.3) & (xx >= int(W * 0.62) + i) & (xx < int(W * 0.62) + i + int(W * 0.25))) * 2
        palette = PIL_Image.fromarray(ids.astype(np.uint8), "P")
        palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (253 * 3))
        palette.save(seq / "Annotations" / f"{i:05d}.png")
    seg = Sam2Segmenter(sam)
    result = evaluate_clicks(tmp_path, seg, every=2, max_clicks=4)
    overall = result["overall"]
    assert result["segmenter"] == sam.model_id
    assert overall["instances"] == 4 and overall["frames"] == 2  # frames 0 and 2, two objects each
    assert 4 <= overall["clicks"] <= 16 and 1 <= overall["NoC85"] <= 4 and overall["seconds_per_click"] > 0
    assert all(v is not None and 0.0 <= v <= 1.0 for v in (overall["IoU1"], overall["IoU3"]))
    assert overall["IoU5"] is None  # past max_clicks
    assert seg.embeddings_computed == 2


def test_empty_prompt_is_refused(sam: Sam2Model, video: Path) -> None:
    with pytest.raises(ValueError):
        Sam2Segmenter(sam).segment(frames_of(video), 0, Prompt())


def test_protocols_are_implemented(sam: Sam2Model, video: Path) -> None:
    assert isinstance(Sam2Segmenter(sam), Segmenter)
    tracker = Sam2Tracker(sam)
    assert isinstance(tracker, Tracker)
    session = tracker.open(frames_of(video))
    assert isinstance(session, TrackerSession)
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.add_prompt(0, "a", Prompt(points=[DISC]))


# ---- video tracking --------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [True, False], ids=["batched", "one-by-one"])
def test_two_objects_forwards_equal_the_video_predictor(sam: Sam2Model, video: Path, batch: bool) -> None:
    frames = frames_of(video)
    session = Sam2Tracker(sam, batch=batch).open(frames)
    state = raw_state(sam, video)
    a, b = Prompt(points=[DISC]), Prompt(box=BAR_BOX)
    assert_same(session.add_prompt_logits(0, "a", a), raw_points(sam, state, 0, "a", a)[0])
    assert_same(session.add_prompt_logits(0, "b", b), raw_points(sam, state, 0, "b", b)[1])

    ours = list(session.propagate_logits(0, Direction.FORWARD, N))
    raw = raw_propagate(sam, state, 0, N, reverse=False)
    assert [r.frame for r in ours] == [f for f, _ in raw] == list(range(N))
    for result, (frame, logits) in zip(ours, raw, strict=True):
        assert result.objects == ["a", "b"]
        assert_batched_same(result.logits, logits, batch)
        for i in range(2):
            score_atol = BATCH_CUDA_SCORE_ATOL if batch and DEVICE == "cuda" else ATOL
            assert result.object_scores[i] == pytest.approx(raw_object_score(state, i, frame), abs=score_atol)
    assert_nontrivial([r.logits[i] > 0 for r in ours for i in range(2)])
    assert session.batches == (N - 1 if batch else 0)  # every tracked frame: both objects in one call
    # Only the frames tracked were read (frame 0 twice: the session does not cache frames).
    assert set(frames.reads) == set(range(N))


def test_backwards_equals_the_video_predictor(sam: Sam2Model, video: Path) -> None:
    session = Sam2Tracker(sam).open(frames_of(video))
    state = raw_state(sam, video)
    last = N - 1
    prompt = Prompt(points=[ClickPoint(55, 48), ClickPoint(100, 20, include=False)])
    assert_same(session.add_prompt_logits(last, "a", prompt), raw_points(sam, state, last, "a", prompt)[0])
    ours = list(session.propagate_logits(last, Direction.BACKWARD, N))
    raw = raw_propagate(sam, state, last, N, reverse=True)
    assert [r.frame for r in ours] == [f for f, _ in raw] == list(range(last, -1, -1))
    for result, (_, logits) in zip(ours, raw, strict=True):
        assert_same(result.logits, logits)
    assert_nontrivial([r.logits[0] > 0 for r in ours])


def test_correction_on_a_tracked_frame_equals_the_video_predictor(sam: Sam2Model, video: Path) -> None:
    session = Sam2Tracker(sam).open(frames_of(video))
    state = raw_state(sam, video)
    first = Prompt(points=[DISC])
    session.add_prompt(0, "a", first)
    raw_points(sam, state, 0, "a", first)
    list(session.propagate(0, Direction.FORWARD, N))
    raw_propagate(sam, state, 0, N, reverse=False)

    # Frame 3 was tracked: the click is a correction that reads memory and the frame's mask...
    fix = Prompt(points=[ClickPoint(50, 48), ClickPoint(20, 80, include=False)])
    assert_same(session.add_prompt_logits(3, "a", fix), raw_points(sam, state, 3, "a", fix)[0])
    # ...and becomes a conditioning frame that re-propagation starts from.
    ours = list(session.propagate_logits(3, Direction.FORWARD, N - 3))
    raw = raw_propagate(sam, state, 3, N - 3, reverse=False)
    assert session.retained().cond_frames == 2
    for result, (frame, logits) in zip(ours, raw, strict=True):
        assert result.frame == frame
        assert_same(result.logits, logits)
    assert_nontrivial([r.logits[0] > 0 for r in ours])


@pytest.mark.parametrize("batch", [True, False], ids=["batched", "one-by-one"])
def test_mask_then_clicks_on_one_frame_and_a_mask_alone_equal_the_video_predictor(sam: Sam2Model, video: Path, batch: bool) -> None:
    session = Sam2Tracker(sam, batch=batch).open(frames_of(video))
    state = raw_state(sam, video)
    disc = np.zeros((H, W), bool)
    yy, xx = np.mgrid[0:H, 0:W]
    disc[(xx - 44) ** 2 + (yy - 48) ** 2 < 18**2] = True
    # S7: an existing mask refined by a click (raw: add_new_mask, then the clicks on top).
    ours_a = session.add_prompt_logits(2, "a", Prompt(points=[ClickPoint(30, 70, include=False)], mask=disc))
    with sam.running():
        sam.net.add_new_mask(state, 2, "a", torch.from_numpy(disc))
    assert_same(ours_a, raw_points(sam, state, 2, "a", Prompt(points=[ClickPoint(30, 70, include=False)]))[0])
    # A mask alone for a second object.
    bar = np.zeros((H, W), bool)
    bar[10:29, 80:110] = True
    session.add_mask(2, "b", bar)
    with sam.running():
        sam.net.add_new_mask(state, 2, "b", torch.from_numpy(bar))

    ours = list(session.propagate_logits(2, Direction.FORWARD, 3))
    raw = raw_propagate(sam, state, 2, 3, reverse=False)
    for result, (_, logits) in zip(ours, raw, strict=True):
        assert_batched_same(result.logits, logits, batch)
    assert_nontrivial([r.logits[i] > 0 for r in ours for i in range(2)])
    assert session.batches == (2 if batch else 0)


def test_propagate_yields_masks_and_presence_per_object(sam: Sam2Model, video: Path) -> None:
    session = Sam2Tracker(sam).open(frames_of(video))
    state = raw_state(sam, video)
    prompt = Prompt(points=[DISC])
    session.add_prompt(1, "a", prompt)
    raw_points(sam, state, 1, "a", prompt)
    ours = list(session.propagate(1, Direction.FORWARD, 4))
    raw = raw_propagate(sam, state, 1, 4, reverse=False)
    assert [[t.frame for t in step] for step in ours] == [[1], [2], [3], [4]]
    for step, (frame, logits) in zip(ours, raw, strict=True):
        (tracked,) = step
        logit = raw_object_score(state, 0, frame)
        assert tracked.object == "a"
        assert tracked.score == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-6)
        assert tracked.mask is not None and logit > 0
        np.testing.assert_array_equal(tracked.mask, logits[0] > 0)


def test_object_with_a_negative_object_score_is_lost(sam: Sam2Model, video: Path) -> None:
    session = Sam2Tracker(sam).open(frames_of(video))
    session.add_prompt(0, "a", Prompt(points=[DISC]))
    head = sam.net.sam_mask_decoder.pred_obj_score_head.layers[-1]
    original = head.bias.detach().clone()
    try:
        with torch.no_grad():
            head.bias -= 100.0  # the model now says "not here" on every tracked frame
        steps = list(session.propagate(0, Direction.FORWARD, 3))
    finally:
        with torch.no_grad():
            head.bias.copy_(original)
    start, *tracked = (step[0] for step in steps)
    assert start.mask is not None  # the prompted frame was decoded before the change
    for t in tracked:
        assert t.mask is None and t.score < 0.5


def test_ranges_stop_at_the_ends_and_bad_arguments_are_refused(sam: Sam2Model, video: Path) -> None:
    session = Sam2Tracker(sam).open(frames_of(video))
    with pytest.raises(ValueError, match="no object"):
        session.propagate(0, Direction.FORWARD, 3)
    session.add_mask(1, "a", np.pad(np.ones((20, 20), bool), ((30, H - 50), (30, W - 50))))
    assert [s[0].frame for s in session.propagate(1, Direction.BACKWARD, 30)] == [1, 0]
    assert [s[0].frame for s in session.propagate(N - 2, Direction.FORWARD, 30)] == [N - 2, N - 1]
    with pytest.raises(IndexError):
        session.propagate(N, Direction.FORWARD, 1)
    with pytest.raises(ValueError):
        session.propagate(0, Direction.FORWARD, 0)
    with pytest.raises(ValueError):
        session.add_mask(0, "a", np.ones((10, 10), bool))


def test_an_object_prompted_during_a_track_joins_the_next_one(sam: Sam2Model, video: Path) -> None:
    session = Sam2Tracker(sam).open(frames_of(video))
    session.add_prompt(0, "a", Prompt(points=[DISC]))
    steps = session.propagate(0, Direction.FORWARD, 4)
    assert [t.object for t in next(steps)] == ["a"]
    session.add_prompt(1, "b", Prompt(box=BAR_BOX))
    assert [[t.object for t in step] for step in steps] == [["a"], ["a"], ["a"]]
    again = list(session.propagate(1, Direction.FORWARD, 2))
    assert [[t.object for t in step] for step in again] == [["a", "b"], ["a", "b"]]


# ---- many objects, several sessions ---------------------------------------------------------


def mixed_track(session: TrackerSession) -> tuple[list, list[np.ndarray]]:
    """Seven objects with three memory layouts: six prompted on frame 0 and tracked, one added
    on frame 2 and the track run on from there, then one of the six corrected on a tracked
    frame (T9) and the track run again from it, then backwards. Returns every step's results
    and the correction's logits."""
    assert isinstance(session, Sam2TrackerSession)
    for k in range(5):
        session.add_prompt(0, f"o{k}", Prompt(points=[ClickPoint(8 + (k * 23) % 112, 10 + (k * 37) % 80)]))
    session.add_prompt(0, "bar", Prompt(box=BAR_BOX))
    steps = list(session.propagate_logits(0, Direction.FORWARD, 2))
    session.add_prompt(2, "late", Prompt(points=[ClickPoint(60, 50)]))
    steps += list(session.propagate_logits(2, Direction.FORWARD, 6))
    fix = session.add_prompt_logits(4, "o1", Prompt(points=[ClickPoint(50, 48), ClickPoint(20, 80, include=False)]))
    steps += list(session.propagate_logits(4, Direction.FORWARD, 6))
    steps += list(session.propagate_logits(6, Direction.BACKWARD, 4))
    return steps, [fix]


def test_batched_objects_equal_one_by_one_up_to_rounding(sam: Sam2Model) -> None:
    source = synthetic_frames(10)
    batched = Sam2Tracker(sam).open(ArrayFrames(source))
    single = Sam2Tracker(sam, batch=False).open(ArrayFrames(source))
    ours, our_fix = mixed_track(batched)
    ref, ref_fix = mixed_track(single)
    assert_close_masks(our_fix[0][None], ref_fix[0][None])
    assert [r.frame for r in ours] == [r.frame for r in ref]
    for a, b in zip(ours, ref, strict=True):
        assert a.objects == b.objects
        assert_close_masks(a.logits, b.logits)
        np.testing.assert_allclose(a.object_scores, b.object_scores, rtol=0, atol=BATCH_ATOL if DEVICE == "cpu" else BATCH_CUDA_SCORE_ATOL)
    assert_nontrivial([r.logits[i] > 0 for r in ref for i in range(len(r.objects))])
    # Batches follow the layouts (one call a frame for each batch of several): frame 1, the
    # six; frames 2-7, the six ("late", conditioned on frame 2, alone from frame 3 on); frames
    # 4-9 again, the five uncorrected ("o1", now also conditioned on 4, alone); backwards over
    # frames 6-3, the five.
    assert batched.batches == 1 + 6 + 6 + 4 and single.batches == 0
    assert batched.retained().non_cond_frames == single.retained().non_cond_frames
    for obj in ("o0", "o1", "late"):
        assert batched.non_cond_frames(obj) == single.non_cond_frames(obj)


def test_sessions_on_the_same_frames_share_image_features(sam: Sam2Model, video: Path) -> None:
    def track(session: TrackerSession, obj: str, prompt: Prompt) -> Iterator:
        assert isinstance(session, Sam2TrackerSession)
        session.add_prompt(0, obj, prompt)
        return session.propagate_logits(0, Direction.FORWARD, N)

    lone = Sam2Tracker(sam, shared_frames=0)
    alone_a = list(track(lone.open(frames_of(video)), "a", Prompt(points=[DISC])))
    alone_b = list(track(lone.open(frames_of(video)), "b", Prompt(box=BAR_BOX)))
    assert lone.features.hits == 0 and len(lone.features) == 0

    # Two sessions on one source (a track's keyframe sessions), stepping in turn: the second
    # finds every frame's features left by the first, and its masks are the same bit for bit.
    tracker = Sam2Tracker(sam)
    frames = frames_of(video)
    first, second = tracker.open(frames), tracker.open(frames)
    steps_a = track(first, "a", Prompt(points=[DISC]))
    steps_b = track(second, "b", Prompt(box=BAR_BOX))  # its prompt on frame 0: one hit
    for a, b, ref_a, ref_b in zip(steps_a, steps_b, alone_a, alone_b, strict=True):
        np.testing.assert_array_equal(a.logits, ref_a.logits)
        np.testing.assert_array_equal(b.logits, ref_b.logits)
    assert tracker.features.hits == N
    assert len(tracker.features) == DEFAULT_SHARED_FRAMES  # the last frames only
    # Position encodings (a function of the feature map's shape) are held once for all frames.
    kept = [tracker.features.get(frames, f) for f in tracker.features.frames(frames)]
    assert all(k is not None and k[1]["vision_pos_enc"][0] is kept[0][1]["vision_pos_enc"][0] for k in kept)

    # Closing a session frees its source's features.
    first.close()
    assert len(tracker.features) == 0
    second.close()

    # Another source object shares nothing, unless both were opened for the same media key.
    hits = tracker.features.hits
    list(track(tracker.open(frames_of(video)), "c", Prompt(points=[DISC])))
    assert tracker.features.hits == hits
    # (Two users' tracks on one media item, say, each with its own source.)
    steps_d = track(tracker.open(frames_of(video), media="m1"), "d", Prompt(points=[DISC]))
    steps_e = track(tracker.open(frames_of(video), media="m1"), "e", Prompt(box=BAR_BOX))
    steps_f = track(tracker.open(frames_of(video), media="m2"), "f", Prompt(points=[DISC]))
    for d, e, f, ref_a, ref_b in zip(steps_d, steps_e, steps_f, alone_a, alone_b, strict=True):
        np.testing.assert_array_equal(d.logits, ref_a.logits)
        np.testing.assert_array_equal(e.logits, ref_b.logits)
        np.testing.assert_array_equal(f.logits, ref_a.logits)
    assert tracker.features.hits == hits + N  # e's frames, all found; f's, none


def test_bad_tracker_settings_are_refused(sam: Sam2Model) -> None:
    with pytest.raises(ValueError, match="shared_frames"):
        Sam2Tracker(sam, shared_frames=-1)
    with pytest.raises(ValueError, match="history must cover"):
        Sam2Tracker(sam, history=2)


# ---- memory ----------------------------------------------------------------------------------


def test_long_track_keeps_bounded_state_and_reads_only_its_frames(sam: Sam2Model, tmp_path: Path) -> None:
    length, start, count = 320, 150, 48
    frames = PilFrames(write_jpegs(tmp_path / "long", synthetic_frames(length, 48, 64)))
    frames.reads.clear()
    tracker = Sam2Tracker(sam)
    history = tracker.history
    assert history == default_history(sam) == 16  # 15 object pointers back, 6 memories back
    session = tracker.open(frames)
    session.add_prompt(start, "a", Prompt(points=[ClickPoint(20, 24)]))
    session.add_prompt(start, "b", Prompt(box=(40.0, 4.0, 56.0, 15.0)))

    sizes = []
    for step in session.propagate(start, Direction.FORWARD, count):
        frame = step[0].frame
        kept = session.non_cond_frames("a")
        # Only the window the model reads from is kept, never anything older.
        assert kept == list(range(max(start + 1, frame - history), frame + 1))
        assert session.non_cond_frames("b") == kept
        sizes.append(session.retained().tensor_bytes)
    retained = session.retained()
    assert retained.non_cond_frames == 2 * (history + 1) and retained.cond_frames == 2
    # Once the window is full, the state stops growing: equal size from then on.
    full = sizes[history + 1 :]
    assert len(full) > 20 and max(full) == min(full)
    # 48 frames tracked from the middle of 320: exactly those frames were decoded.
    assert set(frames.reads) == set(range(start, start + count))
    assert retained.frames_read == count  # the prompted frame once, for both prompts

    # Backwards from the start: the forward window is dropped as the track moves away from it.
    for _ in session.propagate(start, Direction.BACKWARD, 30):
        pass
    assert session.non_cond_frames("a") == list(range(start - 29, start - 29 + history + 1))
    assert session.retained().tensor_bytes == max(full)
    assert min(frames.reads) == start - 29
