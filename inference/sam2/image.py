"""SAM 2 clicks -> masks on one frame (S1, S2, S7), with a bounded cache of image embeddings.

The math is `SAM2ImagePredictor`'s: the same preprocessing (sam2's own `SAM2Transforms`), the
same backbone features, prompt encoder and mask decoder calls. What differs is what is kept:
the predictor holds one image; here an LRU cache holds the embeddings of the last
(frame source, frame index) pairs, within a budget in bytes, so a second click on a frame costs
only the prompt encoder and the mask decoder. Feature map sizes are read off the backbone's
output instead of being fixed for 1024-pixel input, so a reduced `image_size` works.

No cold first click (issue 19): `want` names frames worth embedding before anyone clicks them
(the frames users are on, those around the last click), nearest first; `warm_one` embeds the
next of them — one frame per call, and only when nobody waits for the model (it never queues
on the lock: it tries it, and gives up when a click or a tracking step holds or wants it). The
caller calls it when it has nothing else to do, so a click waits for at most the one embedding
in progress. Warming evicts neither the frame clicked last nor a frame still wanted ahead of
it; when the budget is full of those, warming stops.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from masklog.inference.protocols import Candidate, EmbeddingStats, FrameSource, Prompt
from masklog.inference.registry import DEFAULT_EMBEDDING_CACHE_MB, MAX_EMBEDDING_CACHE_MB
from masklog.inference.sam2.model import Sam2Model

# The embeddings kept, in bytes (`ModelOptions.embedding_cache_bytes`, `--embedding-cache-mb`).
DEFAULT_EMBEDDING_CACHE_BYTES = DEFAULT_EMBEDDING_CACHE_MB * 1024**2
MAX_EMBEDDING_CACHE_BYTES = MAX_EMBEDDING_CACHE_MB * 1024**2
# Frames asked for in advance that are remembered (the nearest first); the budget bounds what
# is actually embedded.
MAX_WANTED = 256

# SAM 2 writes a binary mask as logits of +-10 when it takes a mask as given
# (`SAM2Base._use_mask_as_output`); a mask prompt uses the same scale.
MASK_PROMPT_LOGIT = 10.0
# SAM's own clamp of low-resolution logits before they are fed back as a mask prompt.
LOGIT_CLAMP = 32.0


@dataclass(frozen=True, slots=True)
class Sam2ImageResult:
    """Masks of one prediction, best first: full-resolution masks and logits, the model's
    IoU estimates, and the low-resolution logits (image_size / 4 square) SAM works in."""

    masks: np.ndarray  # (N, H, W) bool
    scores: np.ndarray  # (N,) float32
    logits: np.ndarray  # (N, H, W) float32
    low_res_logits: np.ndarray  # (N, S/4, S/4) float32, clamped to +-32 like SAM's


@dataclass(slots=True)
class _Embedding:
    image_embed: torch.Tensor  # (1, C, S/16, S/16)
    high_res_feats: list[torch.Tensor]  # [(1, C0, S/4, S/4), (1, C1, S/8, S/8)]
    orig_hw: tuple[int, int]
    source: Any  # weakref to the frame source (or the source, if it takes no weakrefs)

    def belongs_to(self, frames: FrameSource) -> bool:
        return _deref(self.source) is frames

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.image_embed, *self.high_res_feats))


class Sam2Segmenter:
    """`Segmenter` on SAM 2. Thread-safe: every model call holds the model's lock."""

    def __init__(self, sam: Sam2Model, cache_size: int | None = None, cache_bytes: int = DEFAULT_EMBEDDING_CACHE_BYTES) -> None:
        """`cache_bytes`: the embeddings' budget (one entry is always kept, whatever its size);
        `cache_size`: a cap on the number of entries as well (None: the budget alone)."""
        if cache_size is not None and cache_size < 1:
            raise ValueError("the embedding cache must hold at least one frame")
        if not 0 < cache_bytes <= MAX_EMBEDDING_CACHE_BYTES:
            raise ValueError(f"the embedding cache budget must be more than 0 and at most {MAX_EMBEDDING_CACHE_BYTES} bytes, got {cache_bytes}")
        from sam2.utils.transforms import SAM2Transforms

        self._sam = sam
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[int, int], _Embedding] = OrderedDict()
        self._held = 0  # bytes in the cache
        self._clicked: tuple[int, int] | None = None  # the frame clicked last: warming keeps it
        # Frames to embed before they are clicked, the nearest first: key -> (source ref, index).
        self._wanted: OrderedDict[tuple[int, int], tuple[Any, int]] = OrderedDict()
        self._wanted_lock = threading.Lock()  # `want` comes from any thread
        with warnings.catch_warnings():
            # sam2 scripts its resize+normalise with torch.jit, which newer torch deprecates.
            warnings.simplefilter("ignore", FutureWarning)
            self._transforms = SAM2Transforms(resolution=sam.image_size, mask_threshold=0.0)
        self.embeddings_computed = 0  # observable: how often the image encoder ran
        self.embeddings_warmed = 0  # of which ahead of a click
        # The last image encoder runs, oldest first: (run number, "click" or "warm", frame index).
        # Says in which order clicks and warming used the model.
        self.runs: deque[tuple[int, str, int]] = deque(maxlen=256)

    @property
    def model(self) -> str:
        return self._sam.model_id

    def segment(self, frames: FrameSource, index: int, prompt: Prompt) -> list[Candidate]:
        result = self.predict(frames, index, prompt)
        return [Candidate(mask=m, score=float(s)) for m, s in zip(result.masks, result.scores, strict=True)]

    def predict(self, frames: FrameSource, index: int, prompt: Prompt, multimask: bool | None = None) -> Sam2ImageResult:
        """Masks for `prompt` on frame `index`, best first.

        `multimask=None` asks for three candidates when the prompt is ambiguous (a single click
        and nothing else, as SAM recommends) and one otherwise.
        """
        if prompt.is_empty():
            raise ValueError("an empty prompt has no mask")
        if multimask is None:
            multimask = len(prompt.points) == 1 and prompt.box is None and prompt.mask is None
        with self._sam.running():
            self._clicked = (id(frames), index)
            emb = self._embedding(frames, index)
            masks, scores, low_res = self._decode(emb, prompt, multimask)
            order = torch.argsort(scores, descending=True, stable=True)
            masks, scores, low_res = masks[order], scores[order], low_res[order]
            return Sam2ImageResult(
                masks=(masks > 0).cpu().numpy(),
                scores=scores.float().cpu().numpy(),
                logits=masks.float().cpu().numpy(),
                low_res_logits=low_res.float().cpu().numpy(),
            )

    def mask_prompt(self, mask: np.ndarray) -> torch.Tensor:
        """A binary mask at frame resolution as SAM's mask prompt: low-resolution logits
        (1, 1, S/4, S/4). The mask is stretched to the model's square input like the image,
        binarised there (as sam2's video predictor does with input masks), downsampled with
        antialiasing, and mapped from [0, 1] to [-10, 10]."""
        if mask.ndim != 2:
            raise ValueError(f"a mask prompt is height x width, got shape {mask.shape}")
        size = self._sam.image_size
        m = torch.as_tensor(np.ascontiguousarray(mask, dtype=bool), device=self._sam.device)[None, None].float()
        if m.shape[-2:] != (size, size):
            m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            m = (m >= 0.5).float()
        low = size // 4
        m = F.interpolate(m, size=(low, low), mode="bilinear", align_corners=False, antialias=True)
        return m * (2 * MASK_PROMPT_LOGIT) - MASK_PROMPT_LOGIT

    def cached(self, frames: FrameSource, index: int) -> bool:
        emb = self._cache.get((id(frames), index))
        return emb is not None and emb.belongs_to(frames)

    def clear(self) -> None:
        with self._sam.lock:
            self._cache.clear()
            self._held = 0
            self._clicked = None
        with self._wanted_lock:
            self._wanted.clear()

    # -- warming ahead of clicks ---------------------------------------------------------------

    def want(self, frames: FrameSource, indices: Sequence[int]) -> None:
        """Frames of `frames` worth embedding before they are clicked, the nearest first. They go
        ahead of those wanted before (the newest request is the likeliest click); indices out of
        the source are ignored. Quick, from any thread: the work is `warm_one`'s."""
        n = len(frames)
        fresh = [(id(frames), i) for i in dict.fromkeys(indices) if 0 <= i < n]
        ref = _ref(frames)
        with self._wanted_lock:
            for key in reversed(fresh):
                self._wanted[key] = (ref, key[1])
                self._wanted.move_to_end(key, last=False)
            while len(self._wanted) > MAX_WANTED:
                self._wanted.popitem()

    def warm_one(self) -> bool:
        """Embed the first wanted frame that is not cached yet, if the model is free: never waits
        for the model's lock, and gives up at once when a click or a tracking step wants it
        (`Sam2Model.waiting`). True when it embedded one (call again); False when there is
        nothing to do now (everything wanted is embedded, the model is busy, or the budget is
        full of frames worth more: the frame clicked last and those wanted ahead)."""
        if self._sam.waiting:
            return False
        found = self._next_wanted()
        if found is None:
            return False
        key, ref, frames, index = found
        try:
            image = frames.get(index)  # decoded without the model: a click may take it meanwhile
        except Exception:  # an unreadable frame is not worth more than the others
            with self._wanted_lock:
                self._wanted.pop(key, None)
            return True
        if self._sam.waiting or not self._sam.lock.acquire(blocking=False):
            return False
        try:
            with self._sam.running():  # the lock is held already: this cannot wait
                cached = self._cache.get(key)
                if cached is not None and cached.belongs_to(frames):
                    return True  # a click embedded it meanwhile
                keep = self._kept_by_warming(key)
                if not self._room(keep):
                    return False
                emb = self._embed(image, ref)
                self.embeddings_warmed += 1
                self.runs.append((self.embeddings_computed, "warm", index))
                self._store(key, emb, keep)
        finally:
            self._sam.lock.release()
        return True

    def embedding_stats(self) -> EmbeddingStats:
        with self._wanted_lock:
            wanted = [key for key, (ref, _) in self._wanted.items() if _deref(ref) is not None]
        return EmbeddingStats(
            computed=self.embeddings_computed, warmed=self.embeddings_warmed, cached=len(self._cache),
            bytes=self._held, budget_bytes=self._cache_bytes, wanted=sum(1 for key in wanted if key not in self._cache),
        )  # fmt: skip

    def _next_wanted(self) -> tuple[tuple[int, int], Any, FrameSource, int] | None:
        """The first wanted frame not embedded yet; forgets those whose source is gone."""
        with self._wanted_lock:
            for key, (ref, index) in list(self._wanted.items()):
                frames = _deref(ref)
                if frames is None:
                    del self._wanted[key]
                    continue
                cached = self._cache.get(key)
                if cached is None or not cached.belongs_to(frames):
                    return key, ref, frames, index
        return None

    def _kept_by_warming(self, key: tuple[int, int]) -> set[tuple[int, int]]:
        """What warming `key` must not evict: the frame clicked last, and the frames wanted
        ahead of `key` (embedded already, they wait for their click)."""
        keep = {self._clicked} if self._clicked is not None else set()
        with self._wanted_lock:
            for wanted in self._wanted:
                if wanted == key:
                    break
                keep.add(wanted)
        return keep

    def _room(self, keep: set[tuple[int, int]]) -> bool:
        """Whether one more entry fits once everything not in `keep` were evicted."""
        if not self._cache:
            return True
        entry = next(iter(self._cache.values())).nbytes  # the entries of one model are one size
        kept = [emb for k, emb in self._cache.items() if k in keep]
        fits_bytes = sum(emb.nbytes for emb in kept) + entry <= self._cache_bytes
        return fits_bytes and (self._cache_size is None or len(kept) + 1 <= self._cache_size)

    # -- internals --------------------------------------------------------------------------

    def _embedding(self, frames: FrameSource, index: int) -> _Embedding:
        key = (id(frames), index)
        emb = self._cache.get(key)
        if emb is not None and emb.belongs_to(frames):
            self._cache.move_to_end(key)
            return emb
        image = frames.get(index)
        emb = self._embed(image, _ref(frames))
        self.runs.append((self.embeddings_computed, "click", index))
        self._store(key, emb, set())
        return emb

    def _store(self, key: tuple[int, int], emb: _Embedding, keep: set[tuple[int, int]]) -> None:
        """Add an entry, then evict the least recently used ones (never `key`, the frame clicked
        last, nor those in `keep`) until the cache is within its budget and count."""
        old = self._cache.pop(key, None)
        if old is not None:
            self._held -= old.nbytes
        self._cache[key] = emb
        self._held += emb.nbytes
        for victim in list(self._cache):
            if not self._over():
                break
            if victim == key or victim == self._clicked or victim in keep:
                continue
            self._held -= self._cache.pop(victim).nbytes

    def _over(self) -> bool:
        return self._held > self._cache_bytes or (self._cache_size is not None and len(self._cache) > self._cache_size)

    def _embed(self, image: np.ndarray, source: Any) -> _Embedding:
        # As SAM2ImagePredictor.set_image, with feature sizes taken from the backbone itself.
        net = self._sam.net
        x = self._transforms(np.asarray(image))[None].to(self._sam.device)
        backbone_out = net.forward_image(x)
        _, vision_feats, _, feat_sizes = net._prepare_backbone_features(backbone_out)
        if net.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + net.no_mem_embed
        feats = [f.permute(1, 2, 0).reshape(1, -1, h, w) for f, (h, w) in zip(vision_feats, feat_sizes, strict=True)]
        self.embeddings_computed += 1
        return _Embedding(
            image_embed=feats[-1], high_res_feats=feats[:-1], orig_hw=(image.shape[0], image.shape[1]), source=source
        )

    def _decode(self, emb: _Embedding, prompt: Prompt, multimask: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # As SAM2ImagePredictor._prep_prompts + _predict for one image and one prompt.
        net, device = self._sam.net, self._sam.device
        h, w = emb.orig_hw
        coords: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        if prompt.box is not None:
            # The box goes first, as two corner points labelled 2 and 3 (how SAM 2 is trained).
            corners = torch.tensor(prompt.box, dtype=torch.float32, device=device).reshape(1, 2, 2)
            coords.append(_scaled(corners, w, h, self._sam.image_size))
            labels.append(torch.tensor([[2, 3]], dtype=torch.int, device=device))
        if prompt.points:
            pts = torch.tensor([[p.x, p.y] for p in prompt.points], dtype=torch.float32, device=device)[None]
            coords.append(_scaled(pts, w, h, self._sam.image_size))
            labels.append(torch.tensor([[1 if p.include else 0 for p in prompt.points]], dtype=torch.int, device=device))
        points = (torch.cat(coords, dim=1), torch.cat(labels, dim=1)) if coords else None
        mask_input = self.mask_prompt(prompt.mask) if prompt.mask is not None else None

        sparse, dense = net.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
        low_res, iou, _, _ = net.sam_mask_decoder(
            image_embeddings=emb.image_embed,
            image_pe=net.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=emb.high_res_feats,
        )
        logits = F.interpolate(low_res.float(), (h, w), mode="bilinear", align_corners=False)
        low_res = torch.clamp(low_res, -LOGIT_CLAMP, LOGIT_CLAMP)
        return logits[0], iou[0], low_res[0]


def _scaled(xy: torch.Tensor, w: int, h: int, size: int) -> torch.Tensor:
    # SAM2Transforms.transform_coords: pixels -> [0, 1] -> model input pixels, in that order
    # (the same float operations, so the coordinates match the predictor's bit for bit).
    xy = xy.clone()
    xy[..., 0] = xy[..., 0] / w
    xy[..., 1] = xy[..., 1] / h
    return xy * size


def _deref(source: Any) -> Any:
    return source() if isinstance(source, weakref.ref) else source


def _ref(frames: FrameSource) -> Any:
    try:
        return weakref.ref(frames)
    except TypeError:  # slotted classes without __weakref__: hold it (the cache is bounded)
        return frames
