"""SAM 2 video tracking over a `FrameSource`, with memory that does not grow with the video.

sam2's `SAM2VideoPredictor.init_state` decodes every frame of a video into one tensor up front
(about 12 MiB a frame at 1024 px) and its inference state keeps every frame's output forever.
This session drives the same predictor with an inference state of its own:

- `images` is a stand-in that reads a frame from the FrameSource and preprocesses it as sam2's
  frame loader does (exactly, or on CUDA by default resized on the GPU: `_LazyVideo`), only
  for frames the model asks for; the next few frames of a track are decoded and prepared
  ahead in helper threads. Tracking 30 frames from the middle of a long video touches those
  30 frames and nothing else.
- After each tracked frame, non-conditioning outputs further than `history` frames from it
  are dropped. `history` defaults to the furthest the model reads back: the last
  `num_maskmem - 1` frames' memories (times the memory stride) and the last
  `max_obj_ptrs_in_encoder - 1` frames' object pointers. Conditioning frames (every frame
  that got a prompt or a mask) are all kept: the model attends to all of them.
- Image features are computed once per frame for all objects (the predictor's own one-frame
  cache), and a tracker keeps the last few frames' features for all its sessions of the same
  frames (`shared_frames`): several sessions stepping through the same frames (a track's
  keyframe sessions, or tracks of several users on one media item opened with the same
  `media` key) run the image encoder once per frame between them.
- Objects are stepped together (`batch`): objects whose memory banks have the same layout on a
  frame (the same conditioning frames, and the same non-conditioning frames within the model's
  reach) go through memory attention, the mask decoder and the memory encoder as one batch, by
  calling the predictor's `_run_single_frame_inference` with that batch size and a memory bank
  stacked from theirs, which is what its batch dimension is for. Objects with another layout
  (an object corrected on a frame, one added later) form batches of their own. A batch's result
  differs from the object-by-object one only by float rounding: the mask decoder's small token
  matmuls are summed in another order when more rows go through them (on CPU the logits differ
  by about 1e-7; the fidelity tests measure it). `batch=False` steps objects one by one, as
  `propagate_in_video` does, bit for bit.

Every output is computed by the predictor's own methods (`add_new_points_or_box`,
`add_new_mask`, `propagate_in_video_preflight`, `_run_single_frame_inference`,
`_get_orig_video_res_output`); the propagation loop is `propagate_in_video`'s, re-written so the
state can be pruned between frames and the object scores reported. So masks equal the raw
predictor's as long as what it would read was not pruned (always, when moving through the
video in one direction; see the fidelity tests) and the frames are preprocessed exactly (with
resizing on the GPU they are within the tolerance test_sam2_pipeline states).

The model is built with `add_all_frames_to_correct_as_cond`: a prompt on a frame that was
already tracked is a correction that conditions on memory (and the frame's previous mask) and
then becomes a conditioning frame, so propagating again from it carries the correction (T9).

An object is present on a frame when its object score logit is > 0; otherwise its mask is None
(lost). The score reported is sigmoid(logit), the model's probability that the object is there.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from masklog.domain.events import Direction
from masklog.inference.propagation import SessionClosed, check_frame, propagation_frames
from masklog.inference.protocols import FrameSource, Prompt, TrackedMask
from masklog.inference.sam2.model import Sam2Model

# sam2's frame loader normalisation (ImageNet mean and std).
_IMG_MEAN = (0.485, 0.456, 0.406)
_IMG_STD = (0.229, 0.224, 0.225)
# frames_tracked_per_obj values: shared, since only the direction is read.
_FORWARD = {"reverse": False}
_BACKWARD = {"reverse": True}
# Frames of image features a tracker keeps for its sessions to share, on top of the frame each
# session holds. At 1024 px a frame's features and input image are about 40 MiB (float32), and
# the position encodings, the same for every frame, 84 MiB kept once (`SharedFeatures.put`).
DEFAULT_SHARED_FRAMES = 4
# What `_prepare_memory_conditioned_features` reads of a memory-bank entry.
_MEMORY_KEYS = ("maskmem_features", "obj_ptr")


def default_history(sam: Sam2Model) -> int:
    """How many frames back (in tracking order) the model reads non-conditioning outputs."""
    net = sam.net
    stride = max(1, int(net.memory_temporal_stride_for_eval))
    back = (net.num_maskmem - 1) * stride + 1
    if net.use_obj_ptrs_in_encoder:
        back = max(back, int(net.max_obj_ptrs_in_encoder))
    return back


@dataclass(frozen=True, slots=True)
class Sam2Frame:
    """Every object's result on one frame, at frame resolution."""

    frame: int
    objects: list[str]
    logits: np.ndarray  # (N, H, W) float32; > 0 is the mask
    object_scores: np.ndarray  # (N,) float32 object score logits; > 0 is present


@dataclass(frozen=True, slots=True)
class Retained:
    """What a session holds on to (tests and benchmarks check that it stays bounded)."""

    non_cond_frames: int  # non-conditioning outputs kept, summed over objects
    cond_frames: int  # conditioning outputs kept, summed over objects
    tensor_bytes: int  # bytes of every distinct tensor storage in the inference state
    frames_read: int  # frames fetched from the FrameSource so far


class Sam2Tracker:
    """`Tracker` on SAM 2; sessions share the model (and its lock) and recent image features."""

    def __init__(
        self,
        sam: Sam2Model,
        history: int | None = None,
        *,
        batch: bool = True,
        shared_frames: int = DEFAULT_SHARED_FRAMES,
    ) -> None:
        self._sam = sam
        least = default_history(sam)
        if history is not None and history < least:
            raise ValueError(f"history must cover what the model reads ({least} frames), got {history}")
        if shared_frames < 0:
            raise ValueError(f"shared_frames must be 0 or more, got {shared_frames}")
        self.history = history if history is not None else least
        # Batching mixes objects only where the model keeps them apart; with non-overlap
        # constraints on memory (not in the shipped configs) objects would constrain each other.
        self.batch = batch and not sam.net.non_overlap_masks_for_mem_enc
        self.features = SharedFeatures(shared_frames)

    @property
    def model(self) -> str:
        return self._sam.model_id

    def open(self, frames: FrameSource, media: str | None = None) -> Sam2TrackerSession:
        """A session over `frames`. Sessions share image features when they read the same
        source object, or sources opened on the same `media` (same id: the same pixels)."""
        return Sam2TrackerSession(self._sam, frames, self.history, batch=self.batch, features=self.features, media=media)


class _FeatureEntry(NamedTuple):
    owner: Any  # the media key, or a weak reference to the frame source (the source itself if it takes none)
    features: tuple[torch.Tensor, dict[str, Any]]  # sam2's cached_features value: (image, backbone_out)


class SharedFeatures:
    """The image features of the last `size` frames, for a tracker's sessions to share.

    Values are what sam2's `_get_image_feature` caches for a frame (the input image and the
    backbone's output), keyed by the frames' owner: a media key, or the frame source object
    (checked by identity through a weak reference, so a new source never gets another's
    features). Used under the model's lock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Any, int], _FeatureEntry] = OrderedDict()
        self._positions: dict[tuple[Any, ...], torch.Tensor] = {}  # one position encoding per shape
        self.hits = 0  # observable: frames whose image encoding another session had done

    def get(self, owner: Any, frame: int) -> tuple[torch.Tensor, dict[str, Any]] | None:
        entry = self._entries.get((_token(owner), frame))
        if entry is None or not _same_owner(entry.owner, owner):
            return None
        self._entries.move_to_end((_token(owner), frame))
        self.hits += 1
        return entry.features

    def __contains__(self, key: tuple[Any, int]) -> bool:
        entry = self._entries.get((_token(key[0]), key[1]))
        return entry is not None and _same_owner(entry.owner, key[0])

    def put(self, owner: Any, frame: int, features: tuple[torch.Tensor, dict[str, Any]]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Keep `features` for other sessions; returns them as kept, for the caller to hold
        instead: their position encodings are shared. sam2's position encoding is a function
        of the feature map's shape only (it caches it by shape itself, then copies it into
        every frame's output), and at 1024 px it is 84 of a frame's 112 MiB."""
        if self.size == 0:
            return features
        image, backbone = features
        kept = (image, {**backbone, "vision_pos_enc": [self._position(p) for p in backbone["vision_pos_enc"]]})
        key = (_token(owner), frame)
        self._entries[key] = _FeatureEntry(_reference(owner), kept)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return kept

    def _position(self, encoding: torch.Tensor) -> torch.Tensor:
        key = (tuple(encoding.shape), encoding.dtype, encoding.device)
        return self._positions.setdefault(key, encoding)

    def frames(self, owner: Any) -> list[int]:
        """The frames whose features are kept for `owner` (a media key or a frame source)."""
        return sorted(f for (token, f), entry in self._entries.items() if token == _token(owner) and _same_owner(entry.owner, owner))

    def forget(self, owner: Any) -> None:
        token = _token(owner)
        for key in [k for k in self._entries if k[0] == token]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def _token(owner: Any) -> Any:
    return owner if isinstance(owner, str) else ("source", id(owner))


def _reference(owner: Any) -> Any:
    if isinstance(owner, str):
        return owner
    try:
        return weakref.ref(owner)
    except TypeError:
        return owner


def _same_owner(kept: Any, owner: Any) -> bool:
    if isinstance(owner, str):
        return kept == owner
    return (kept() if isinstance(kept, weakref.ref) else kept) is owner


class _LazyVideo:
    """Stands in for the tensor of all frames that `init_state` preloads: a frame is fetched and
    preprocessed when the model indexes it.

    Two ways to preprocess (`on_device`):

    - exact (the default off CUDA): the way sam2's JPEG loader does it: PIL resize to the model's
      square input (bicubic), scale to [0, 1] in float64, float32, normalise. Scaling and
      normalising happen on the model's device (float64 division is correctly rounded there
      too, so the values are the loader's bit for bit).
    - on the device (the default on CUDA): the decoded uint8 frame is copied into pinned memory
      by a helper thread and uploaded with a non-blocking copy when the model asks for it; the
      resize (bicubic with antialiasing, which is PIL's filter: a = -0.5 and the same support)
      then runs on the GPU, rounded and clamped to whole grey levels as PIL's uint8 result is.
      The CPU only decodes. Not bit-exact with PIL: resized values differ by at most one grey
      level (test_sam2_pipeline checks this, and on CUDA the masks against raw sam2's).

    Frames the tracker will read next (`plan`) are prepared ahead, at most `AHEAD` at a time:
    one reader thread does every read of the FrameSource, in the order planned (a source need
    not be safe to read from several threads, and a video decoder is fastest read in order);
    a small pool resizes (PIL releases the GIL) or pins them in parallel. A new plan (another
    track, the other direction) drops what the old one had queued; `close` cancels what has
    not started and waits for what has.
    """

    AHEAD = 4  # frames prepared or being prepared ahead of the model, at most
    WORKERS = 2  # threads resizing (exact) or pinning (on the device) decoded frames

    def __init__(self, frames: FrameSource, image_size: int, device: torch.device, *, on_device: bool | None = None) -> None:
        self._frames = frames
        self._size = image_size
        self._device = device
        self.on_device = device.type == "cuda" if on_device is None else on_device
        self._pin = self.on_device and device.type == "cuda"
        self._mean = torch.tensor(_IMG_MEAN, dtype=torch.float32, device=device)[:, None, None]
        self._std = torch.tensor(_IMG_STD, dtype=torch.float32, device=device)[:, None, None]
        self._reader: ThreadPoolExecutor | None = None
        self._workers: ThreadPoolExecutor | None = None
        # Frame -> the reader's future, whose result is the worker's future of the prepared frame.
        self._ahead: OrderedDict[int, Future[Future[Any]]] = OrderedDict()
        self._planned: deque[int] = deque()  # planned frames not submitted yet, in order
        self.reads = 0

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> torch.Tensor:
        future = self._ahead.pop(index, None)
        if future is None:  # not prepared ahead (a prompt's frame, or read out of the plan's order)
            if index in self._planned:
                self._planned.remove(index)
            future = self._submit(index)
        prepared = future.result().result()
        self._top_up()
        if self.on_device:
            return self._resize_on_device(prepared)
        x = torch.from_numpy(prepared).to(self._device).permute(2, 0, 1)
        x = (x.double() / 255.0).float()
        # Contiguous like init_state's frames (and the clicks' images): a compiled image encoder
        # would otherwise compile a second graph for the other memory layout.
        return ((x - self._mean) / self._std).contiguous()

    def plan(self, upcoming: list[int]) -> None:
        """The frames the model will ask for next, in order: prepare the first `AHEAD` now and
        the next ones as these are taken. Replaces the previous plan."""
        upcoming = [i for i in upcoming if 0 <= i < len(self._frames)]
        keep = set(upcoming[: self.AHEAD])
        for index in [i for i in self._ahead if i not in keep]:
            self._ahead.pop(index).cancel()  # started ones finish; their result is dropped
        self._planned = deque(i for i in upcoming if i not in self._ahead)
        self._top_up()

    def close(self) -> None:
        self._planned.clear()
        self._ahead.clear()
        # The reader first: a read it has started still hands its frame to a worker.
        for pool in (self._reader, self._workers):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._reader = self._workers = None

    def _top_up(self) -> None:
        while self._planned and len(self._ahead) < self.AHEAD:
            index = self._planned.popleft()
            if index not in self._ahead:
                self._ahead[index] = self._submit(index)

    def _submit(self, index: int) -> Future[Future[Any]]:
        if self._reader is None or self._workers is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam2-read")
            self._workers = ThreadPoolExecutor(max_workers=self.WORKERS, thread_name_prefix="sam2-prep")
        return self._reader.submit(self._read, index, self._workers)

    def _read(self, index: int, workers: ThreadPoolExecutor) -> Future[Any]:
        rgb = np.asarray(self._frames.get(index))
        self.reads += 1
        return workers.submit(self._pinned if self.on_device else self._resized, rgb)

    def _resized(self, rgb: np.ndarray) -> np.ndarray:
        return np.array(Image.fromarray(rgb).convert("RGB").resize((self._size, self._size)))

    def _pinned(self, rgb: np.ndarray) -> torch.Tensor:
        rgb = np.ascontiguousarray(rgb[..., :3] if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2))
        host = torch.empty(rgb.shape, dtype=torch.uint8, pin_memory=self._pin)
        host.numpy()[...] = rgb  # frames may be read-only arrays, which torch.from_numpy warns about
        return host

    def _resize_on_device(self, host: torch.Tensor) -> torch.Tensor:
        # Outside autocast: the resize and normalisation stay in float32 as the exact path's do.
        with torch.autocast(self._device.type, enabled=False):
            x = host.to(self._device, non_blocking=self._pin).permute(2, 0, 1)[None].float()
            if x.shape[-2:] != (self._size, self._size):
                x = F.interpolate(x, size=(self._size, self._size), mode="bicubic", align_corners=False, antialias=True)
                x = x.round_().clamp_(0.0, 255.0)
            return ((x[0] / 255.0 - self._mean) / self._std).contiguous()


class Sam2TrackerSession:
    """One media item's tracking state. Not thread-safe: use a session from one thread at a time
    (different sessions may run in different threads; the model's lock serialises them)."""

    def __init__(
        self,
        sam: Sam2Model,
        frames: FrameSource,
        history: int,
        *,
        batch: bool = True,
        features: SharedFeatures | None = None,
        media: str | None = None,
    ) -> None:
        self._sam = sam
        self._frames = frames
        self.history = history
        self.batch = batch
        self._features = features if features is not None else SharedFeatures(0)
        self._owner: Any = media if media is not None else frames
        # How far from a frame the model reads memories and object pointers (the grouping key
        # of a batch looks that far).
        self._reach = default_history(sam)
        self._video = _LazyVideo(frames, sam.image_size, sam.device, on_device=sam.preprocess_on_device)
        self._state: dict[str, Any] | None = self._new_state()
        self.batches = 0  # observable: model calls that stepped several objects at once

    # -- TrackerSession ---------------------------------------------------------------------

    def add_mask(self, frame: int, object_id: str, mask: np.ndarray) -> None:
        state = self._live()
        self._check_frame(frame)
        mask = np.asarray(mask)
        if mask.shape != (self._frames.height, self._frames.width):
            raise ValueError(f"mask is {mask.shape}, frames are {(self._frames.height, self._frames.width)}")
        with self._sam.running(), self._sharing(frame):
            self._sam.net.add_new_mask(state, frame, object_id, torch.from_numpy(mask.astype(bool)))

    def add_prompt(self, frame: int, object_id: str, prompt: Prompt) -> np.ndarray:
        return self.add_prompt_logits(frame, object_id, prompt) > 0

    def propagate(self, start: int, direction: Direction, count: int) -> Iterator[list[TrackedMask]]:
        frames = self.propagate_logits(start, direction, count, as_masks=True)
        return (self._tracked(f) for f in frames)

    def close(self) -> None:
        self._video.close()
        if not isinstance(self._owner, str):
            with self._sam.lock:  # free its frames' features now (a track's sessions close together)
                self._features.forget(self._owner)
        if self._state is not None:
            self._state.clear()
        self._state = None

    # -- richer results (fidelity tests, benchmarks) -------------------------------------------

    def add_prompt_logits(self, frame: int, object_id: str, prompt: Prompt) -> np.ndarray:
        """Condition `object_id` on `prompt` at `frame` (the prompt replaces earlier clicks there;
        the frame's previous mask, if any, is fed back with it as SAM does) and return the
        object's logits on that frame (H, W). A mask in the prompt goes in first (S7): the
        clicks then refine it."""
        state = self._live()
        self._check_frame(frame)
        if prompt.is_empty():
            raise ValueError("an empty prompt has no mask")
        net = self._sam.net
        with self._sam.running(), self._sharing(frame):
            if prompt.mask is not None:
                if prompt.mask.shape != (self._frames.height, self._frames.width):
                    raise ValueError(f"mask is {prompt.mask.shape}, frames are {(self._frames.height, self._frames.width)}")
                _, _, logits = net.add_new_mask(state, frame, object_id, torch.from_numpy(np.asarray(prompt.mask, dtype=bool)))
            if prompt.points or prompt.box is not None:
                points = labels = None
                if prompt.points:
                    points = np.array([[p.x, p.y] for p in prompt.points], dtype=np.float32)
                    labels = np.array([1 if p.include else 0 for p in prompt.points], dtype=np.int32)
                box = np.array(prompt.box, dtype=np.float32) if prompt.box is not None else None
                _, _, logits = net.add_new_points_or_box(
                    state, frame, object_id, points=points, labels=labels, box=box, clear_old_points=True
                )
            idx = state["obj_id_to_idx"][object_id]
            return logits[idx, 0].float().cpu().numpy()

    def propagate_logits(
        self, start: int, direction: Direction, count: int, *, as_masks: bool = False
    ) -> Iterator[Sam2Frame]:
        """Like `propagate`, with every object's logits and object score logits. With `as_masks`
        the `logits` array holds the masks (bool) instead, which is cheaper to copy off a GPU."""
        state = self._live()
        order = propagation_frames(start, direction, count, len(self._frames))
        if not state["obj_ids"]:
            raise ValueError("no object has a prompt or a mask yet")
        return self._run(order, order.step < 0, as_masks)

    def retained(self) -> Retained:
        state = self._live()
        outputs = state["output_dict_per_obj"].values()
        seen: set[tuple[int, int]] = set()
        total = 0
        for t in _tensors(state):
            key = (t.untyped_storage().data_ptr(), t.device.index or 0)
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
        return Retained(
            non_cond_frames=sum(len(o["non_cond_frame_outputs"]) for o in outputs),
            cond_frames=sum(len(o["cond_frame_outputs"]) for o in outputs),
            tensor_bytes=total,
            frames_read=self._video.reads,
        )

    def non_cond_frames(self, object_id: str) -> list[int]:
        """Frames whose non-conditioning outputs are kept for an object (sorted)."""
        state = self._live()
        idx = state["obj_id_to_idx"][object_id]
        return sorted(state["output_dict_per_obj"][idx]["non_cond_frame_outputs"])

    # -- internals ------------------------------------------------------------------------------

    def _run(self, order: range, reverse: bool, as_masks: bool) -> Iterator[Sam2Frame]:
        net = self._sam.net
        with self._sam.running():
            # Encodes the prompted frames' memories and moves them into the output dicts.
            net.propagate_in_video_preflight(self._live())
        # The objects this track covers: one prompted while the track is under way (before
        # another propagate's preflight has encoded its memory) joins the next track instead.
        objects = len(self._live()["obj_ids"])
        outputs = [self._live()["output_dict_per_obj"][i] for i in range(objects)]
        # Prepare ahead only the frames the model will read: those some object has no mask for,
        # and whose features no other session has left in the shared cache (one evicted from it
        # meanwhile is read when the model asks for it).
        self._video.plan([f for f in order if any(f not in o["cond_frame_outputs"] for o in outputs) and (self._owner, f) not in self._features])
        for frame in order:
            # The model context is entered per frame, never across a yield: inference mode and
            # autocast are thread-local and must not leak into the consumer's code.
            with self._sam.running(), self._sharing(frame):
                result = self._step(frame, reverse, as_masks, objects)
            yield result

    @contextlib.contextmanager
    def _sharing(self, frame: int) -> Iterator[None]:
        """Around model calls on `frame` (under the model's lock): start from the features
        another session computed for it, and leave this session's for others."""
        state = self._live()
        if frame not in state["cached_features"]:
            shared = self._features.get(self._owner, frame)
            if shared is not None:
                state["cached_features"] = {frame: shared}  # sam2's one-frame cache
        yield
        if self._state is not None:
            mine = self._state["cached_features"].get(frame)
            if mine is not None:
                self._state["cached_features"][frame] = self._features.put(self._owner, frame, mine)

    def _step(self, frame: int, reverse: bool, as_masks: bool, objects: int) -> Sam2Frame:
        # One iteration of SAM2VideoPredictor.propagate_in_video (objects with the same memory
        # layout in one batch), plus pruning and scores.
        state = self._live()
        preds: list[torch.Tensor | None] = [None] * objects
        scores: list[torch.Tensor | None] = [None] * objects
        to_track: list[int] = []
        for obj_idx in range(objects):
            out = state["output_dict_per_obj"][obj_idx]["cond_frame_outputs"].get(frame)
            if out is not None:
                preds[obj_idx] = out["pred_masks"].to(state["device"], non_blocking=True)
                scores[obj_idx] = out["object_score_logits"].reshape(())
            else:
                to_track.append(obj_idx)
            state["frames_tracked_per_obj"][obj_idx][frame] = _BACKWARD if reverse else _FORWARD
        for group in self._batches(to_track, frame):
            for obj_idx, out, pred in self._track(group, frame, reverse):
                state["output_dict_per_obj"][obj_idx]["non_cond_frame_outputs"][frame] = out
                preds[obj_idx] = pred
                scores[obj_idx] = out["object_score_logits"].reshape(())
        _, video_res = self._sam.net._get_orig_video_res_output(state, torch.cat(_all(preds), dim=0))
        self._prune(frame)
        values = video_res[:, 0] > 0 if as_masks else video_res[:, 0].float()
        return Sam2Frame(
            frame=frame,
            objects=list(state["obj_ids"][:objects]),
            logits=values.cpu().numpy(),
            object_scores=torch.stack(_all(scores)).float().cpu().numpy(),
        )

    def _batches(self, objects: list[int], frame: int) -> list[list[int]]:
        """`objects` in batches whose memory banks have the same layout on `frame`: the model
        then builds the same memory sequence (lengths, positions, pointer count) for each."""
        if not self.batch:
            return [[i] for i in objects]
        groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
        for obj_idx in objects:
            outputs = self._live()["output_dict_per_obj"][obj_idx]
            near = tuple(sorted(t for t in outputs["non_cond_frame_outputs"] if abs(t - frame) <= self._reach))
            groups.setdefault((tuple(sorted(outputs["cond_frame_outputs"])), near), []).append(obj_idx)
        return list(groups.values())

    def _track(self, group: list[int], frame: int, reverse: bool) -> list[tuple[int, dict[str, Any], torch.Tensor]]:
        """Track `group`'s objects on `frame` in one call: their outputs and low-res masks."""
        state = self._live()
        banks = [state["output_dict_per_obj"][i] for i in group]
        bank = banks[0] if len(group) == 1 else _stacked_bank(banks, frame, self._reach)
        out, pred = self._sam.net._run_single_frame_inference(
            inference_state=state,
            output_dict=bank,
            frame_idx=frame,
            batch_size=len(group),
            is_init_cond_frame=False,
            point_inputs=None,
            mask_inputs=None,
            reverse=reverse,
            run_mem_encoder=True,
        )
        if len(group) == 1:
            return [(group[0], out, pred)]
        self.batches += 1
        # Each object keeps its slice (views: the batch's tensors are shared, not copied).
        return [(obj_idx, _slice(out, k), pred[k : k + 1]) for k, obj_idx in enumerate(group)]

    def _prune(self, frame: int) -> None:
        for outputs in self._live()["output_dict_per_obj"].values():
            kept = outputs["non_cond_frame_outputs"]
            for t in [t for t in kept if abs(t - frame) > self.history]:
                del kept[t]

    @staticmethod
    def _tracked(result: Sam2Frame) -> list[TrackedMask]:
        tracked = []
        for obj, mask, logit in zip(result.objects, result.logits, result.object_scores, strict=True):
            present = bool(logit > 0)
            prob = float(1.0 / (1.0 + np.exp(-float(logit))))
            tracked.append(TrackedMask(object=obj, frame=result.frame, mask=mask if present else None, score=prob))
        return tracked

    def _new_state(self) -> dict[str, Any]:
        # The keys of SAM2VideoPredictor.init_state, with `images` read on demand.
        device = self._sam.device
        return {
            "images": self._video,
            "num_frames": len(self._frames),
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": False,
            "video_height": self._frames.height,
            "video_width": self._frames.width,
            "device": device,
            "storage_device": device,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }

    def _live(self) -> dict[str, Any]:
        if self._state is None:
            raise SessionClosed("the tracking session is closed")
        return self._state

    def _check_frame(self, frame: int) -> None:
        check_frame(frame, len(self._frames))


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _all(items: list[torch.Tensor | None]) -> list[torch.Tensor]:
    assert all(t is not None for t in items)
    return [t for t in items if t is not None]


def _stacked_bank(banks: list[dict[str, Any]], frame: int, reach: int) -> dict[str, Any]:
    """One memory bank for a batch of objects: each entry the model may read on `frame`, with
    the objects' tensors stacked along the batch dimension in the batch's order. The layouts
    are the same (`_batches`), so every object has every entry."""

    def stacked(outs: list[dict[str, Any]]) -> dict[str, Any]:
        entry: dict[str, Any] = {key: _stack([o[key] for o in outs]) for key in _MEMORY_KEYS}
        # The spatial encoding is the state's constant, the same for every object.
        entry["maskmem_pos_enc"] = [x.expand(len(outs), *x.shape[1:]) for x in outs[0]["maskmem_pos_enc"]]
        return entry

    first = banks[0]
    return {
        "cond_frame_outputs": {t: stacked([b["cond_frame_outputs"][t] for b in banks]) for t in first["cond_frame_outputs"]},
        "non_cond_frame_outputs": {
            t: stacked([b["non_cond_frame_outputs"][t] for b in banks])
            for t in first["non_cond_frame_outputs"]
            if abs(t - frame) <= reach
        },
    }


def _stack(parts: list[torch.Tensor]) -> torch.Tensor:
    """`torch.cat(parts)`, without the copy when the parts are the consecutive one-row slices
    of one tensor (the same batch stepped together on the frame they come from)."""
    base = parts[0]._base
    if (
        base is not None
        and base.shape[0] == len(parts)
        and all(
            p._base is base
            and p.shape == (1, *base.shape[1:])
            and p.stride() == base.stride()
            and p.storage_offset() == base.storage_offset() + k * base.stride(0)
            for k, p in enumerate(parts)
        )
    ):
        return base
    return torch.cat(parts, dim=0)


def _slice(out: dict[str, Any], k: int) -> dict[str, Any]:
    """Object `k`'s part of a batch's compact output (`_run_single_frame_inference`'s)."""
    return {
        key: (
            None
            if value is None
            else [x[k : k + 1] for x in value]
            if isinstance(value, list)
            else value[k : k + 1]
        )
        for key, value in out.items()
    }
