"""Compiling a compiled SAM 2 before users need it.

With `torch.compile` (inference.sam2.model.CompileOptions) the first call of every input shape
compiles, and sam2's networks see several shapes before they settle: the image encoder and the
memory encoder once more after their position-encoding caches fill, memory attention for one
memory and for several, the mask decoder for one mask (tracking) and three (a first click).
`warm_up` runs each of these once on made-up frames at the model's size, so a server started
with compile on pays the compile (or, with a warm on-disk cache, the loading of it) at start-up,
not on its first user's click or track. It does not run for an uncompiled model: there the first
calls cost what any call does.
"""

from __future__ import annotations

import time

import numpy as np

from masklog.domain.events import Direction
from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.protocols import ClickPoint, Prompt
from masklog.inference.sam2.image import Sam2Segmenter
from masklog.inference.sam2.model import Sam2Model
from masklog.inference.sam2.video import Sam2Tracker

# Two tracks settle memory attention (one memory, then several, then inference-mode tensors);
# five frames each reach more memories than the first.
_TRACKS, _FRAMES = 2, 5


def warm_up(sam: Sam2Model) -> float:
    """Run a click (three candidates, then one) and two short tracks; returns the seconds taken."""
    start = time.perf_counter()
    size = sam.image_size
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    frames = ArrayFrames([np.stack([np.add.outer(ramp, ramp * 0.5 + 20 * i) % 256] * 3, axis=-1).astype(np.uint8) for i in range(_FRAMES + _TRACKS)])
    centre = ClickPoint(size / 2, size / 2)
    seg = Sam2Segmenter(sam, cache_size=1)  # its own: the made-up frames stay out of the server's cache
    seg.segment(frames, 0, Prompt(points=[centre]))
    seg.segment(frames, 0, Prompt(points=[centre, ClickPoint(size / 4, size / 4, include=False)]))
    for track in range(_TRACKS):
        session = Sam2Tracker(sam).open(frames)
        try:
            session.add_prompt(track, "warm-up", Prompt(points=[centre]))
            for _ in session.propagate(track, Direction.FORWARD, _FRAMES):
                pass
        finally:
            session.close()
    if sam.device.type == "cuda":
        import torch

        torch.cuda.synchronize(sam.device)
    return time.perf_counter() - start
