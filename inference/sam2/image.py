"""SAM 2 clicks -> masks on one frame (S1, S2, S7), with a bounded cache of image embeddings.

The math is `SAM2ImagePredictor`'s: the same preprocessing (sam2's own `SAM2Transforms`), the
same backbone features, prompt encoder and mask decoder calls. What differs is what is kept:
the predictor holds one image; here an LRU cache holds the embeddings of the last few
(frame source, frame index) pairs, so a second click on a frame costs only the prompt encoder
and the mask decoder. Feature map sizes are read off the backbone's output instead of being
fixed for 1024-pixel input, so a reduced `image_size` works.
"""

from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from masklog.inference.protocols import Candidate, FrameSource, Prompt
from masklog.inference.sam2.model import Sam2Model

DEFAULT_EMBEDDING_CACHE = 4  # at 1024 px an entry is about 16 MiB (float32)

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
        ref = self.source() if isinstance(self.source, weakref.ref) else self.source
        return ref is frames


class Sam2Segmenter:
    """`Segmenter` on SAM 2. Thread-safe: every model call holds the model's lock."""

    def __init__(self, sam: Sam2Model, cache_size: int = DEFAULT_EMBEDDING_CACHE) -> None:
        if cache_size < 1:
            raise ValueError("the embedding cache must hold at least one frame")
        from sam2.utils.transforms import SAM2Transforms

        self._sam = sam
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[int, int], _Embedding] = OrderedDict()
        with warnings.catch_warnings():
            # sam2 scripts its resize+normalise with torch.jit, which newer torch deprecates.
            warnings.simplefilter("ignore", FutureWarning)
            self._transforms = SAM2Transforms(resolution=sam.image_size, mask_threshold=0.0)
        self.embeddings_computed = 0  # observable: how often the image encoder ran

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

    # -- internals --------------------------------------------------------------------------

    def _embedding(self, frames: FrameSource, index: int) -> _Embedding:
        key = (id(frames), index)
        emb = self._cache.get(key)
        if emb is not None and emb.belongs_to(frames):
            self._cache.move_to_end(key)
            return emb
        image = frames.get(index)
        emb = self._embed(image, _ref(frames))
        self._cache[key] = emb
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return emb

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


def _ref(frames: FrameSource) -> Any:
    try:
        return weakref.ref(frames)
    except TypeError:  # slotted classes without __weakref__: hold it (the cache is bounded)
        return frames
