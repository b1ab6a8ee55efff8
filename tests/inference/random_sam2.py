"""The SAM 2 the tests run: sam2's real hiera-tiny network with random weights (a fixed seed) at a
reduced image size, on one CPU thread (MASKLOG_TEST_DEVICE=cuda on a GPU machine).

One thread: on a small shared machine OpenMP threads spinning against other processes make every
call many times slower, and the results are identical either way."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from masklog.inference.classical.tracker import ClassicalTracker
from masklog.inference.registry import Backends
from masklog.inference.sam2.image import Sam2Segmenter
from masklog.inference.sam2.model import Sam2Model, load_sam2
from masklog.inference.sam2.video import Sam2Tracker

DEVICE = os.environ.get("MASKLOG_TEST_DEVICE", "cpu")
IMAGE_SIZE = 64  # the real architecture at 1/16 of the pixels: about 0.1 s a frame on one core
SEED = 14  # random weights whose masks are neither empty nor full on the test clips


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def random_sam2(device: str = DEVICE, image_size: int = IMAGE_SIZE, seed: int = SEED, **options: Any) -> Sam2Model:
    """The network, built with the seed's random weights (call it under `one_thread`)."""
    torch.manual_seed(seed)
    return load_sam2("sam2.1_hiera_t", None, device=device, image_size=image_size, random_weights=True, **options)


def sam2_backends(model: Sam2Model) -> Backends:
    """A server's backends with SAM 2 for clicks and 'advanced' tracks (classical for 'simple')."""
    return Backends(Sam2Segmenter(model), {"classical": ClassicalTracker(), "sam2": Sam2Tracker(model)}, advanced="sam2")
