"""Choosing and loading the model backends from settings (E4).

Classical (OpenCV) is the default and always there: it answers clicks when no SAM 2
checkpoint is configured and is the 'simple' tracker (T7). With a checkpoint, SAM 2 answers
clicks and is the 'advanced' tracker. A configured but missing or unreadable checkpoint is an
error at start-up, never a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from domain.events import Algorithm
from inference.classical import ClassicalSegmenter, ClassicalTracker
from inference.protocols import Segmenter, Tracker


@dataclass(frozen=True)
class Backends:
    segmenter: Segmenter
    trackers: dict[Algorithm, Tracker]  # 'simple' is always classical; 'advanced' is SAM 2 when loaded


def load_backends(backend: str = "classical", checkpoint: Path | None = None, config: str | None = None, device: str | None = None) -> Backends:
    """Raises `inference.sam2_backend.Sam2LoadError` when SAM 2 is asked for and cannot load."""
    simple = ClassicalTracker()
    if backend == "classical":
        return Backends(ClassicalSegmenter(), {Algorithm.SIMPLE: simple, Algorithm.ADVANCED: simple})
    if backend != "sam2":
        raise ValueError(f"unknown backend {backend!r}: use 'classical' or 'sam2'")
    # Imported here: torch is only loaded by servers that use SAM 2.
    from inference.sam2_backend import DEFAULT_CONFIG, load_sam2
    from inference.sam2_image import Sam2Segmenter
    from inference.sam2_video import Sam2Tracker

    model = load_sam2(config or DEFAULT_CONFIG, checkpoint, device)
    return Backends(Sam2Segmenter(model), {Algorithm.SIMPLE: simple, Algorithm.ADVANCED: Sam2Tracker(model)})
