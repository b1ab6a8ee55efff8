"""The two small protocols every model backend implements, and the values they exchange.

Masks here are numpy arrays (bool, height x width), not RLE: backends work on pixels, and the
conversion to the shapes of the log happens once, at the edge (`domain.geometry`). Frames are
RGB uint8 arrays (height x width x 3).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from masklog.domain.events import Direction


@dataclass(frozen=True, slots=True)
class ClickPoint:
    x: float
    y: float
    include: bool = True


@dataclass(frozen=True, slots=True)
class Prompt:
    """SAM-style prompt: clicks, a box (x0, y0, x1, y1) and/or a mask to refine (S2, S7)."""

    points: Sequence[ClickPoint] = ()
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = field(default=None, compare=False)

    def is_empty(self) -> bool:
        return not self.points and self.box is None and self.mask is None


@dataclass(frozen=True, slots=True)
class Candidate:
    mask: np.ndarray
    score: float


@runtime_checkable
class FrameSource(Protocol):
    """Random access to the frames of one media item, decoded on demand through a bounded cache."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def __len__(self) -> int: ...

    def get(self, index: int) -> np.ndarray: ...


@runtime_checkable
class Segmenter(Protocol):
    """Image + prompt -> candidate masks, best first (S1, S2, S7)."""

    @property
    def model(self) -> str:
        """Provenance id, `<backend>/<model>@<version>`, as written into labels."""
        ...

    def segment(self, frames: FrameSource, index: int, prompt: Prompt) -> list[Candidate]: ...


@dataclass(frozen=True, slots=True)
class EmbeddingStats:
    """What a segmenter's cache of image embeddings did: image encoder runs (`computed`, of which
    `warmed` ahead of a click), entries and bytes held, its budget, and frames still wanted."""

    computed: int
    warmed: int
    cached: int
    bytes: int
    budget_bytes: int
    wanted: int


@runtime_checkable
class EmbeddingWarmer(Protocol):
    """Optional, for a `Segmenter` whose clicks cost an image embedding first (SAM): frames can be
    embedded ahead of their first click, in the background (issue 19). A segmenter without it
    (the classical one) has nothing to warm; callers check with isinstance."""

    def want(self, frames: FrameSource, indices: Sequence[int]) -> None:
        """Frames worth embedding before they are clicked, the nearest first; quick."""
        ...

    def warm_one(self) -> bool:
        """Embed one wanted frame if the model is free, without ever waiting for it; True when
        there may be more to do now."""
        ...

    def embedding_stats(self) -> EmbeddingStats: ...


# The one presence threshold of the mask trackers (see TrackedMask). SAM 2's object score is a
# probability already (an object score logit > 0 is present, i.e. sigmoid > 0.5); the classical
# tracker's presence is calibrated to the same scale.
PRESENCE_THRESHOLD = 0.5
PRESENCE_DOUBT = 0.7  # present, but worth a reviewer's look below this


@dataclass(frozen=True, slots=True)
class TrackedMask:
    """One object on one frame: its mask, or None when the tracker considers it lost.

    `score` is the tracker's presence, 0..1: how sure it is that the object is there and the mask
    is it. Below PRESENCE_THRESHOLD the object is absent (covered, out of the frame, or the mask
    no longer trusted) and `mask` is None; such frames are what the annotation interval (T5)
    counts. Between the threshold and PRESENCE_DOUBT the mask is given but doubtful: review can
    point at those frames (the score is logged with every `track_frame_produced`)."""

    object: str
    frame: int
    mask: np.ndarray | None
    score: float


@runtime_checkable
class TrackerSession(Protocol):
    """Tracking over one media item; prompts and masks on a frame condition the model."""

    def add_mask(self, frame: int, object_id: str, mask: np.ndarray) -> None: ...

    def add_prompt(self, frame: int, object_id: str, prompt: Prompt) -> np.ndarray:
        """Condition on clicks/box and return the resulting mask on that frame."""
        ...

    def propagate(self, start: int, direction: Direction, count: int) -> Iterator[list[TrackedMask]]:
        """Yield, frame by frame, the masks of every added object for `count` frames counting
        `start` (whose masks are the conditioning ones). Stop iterating to cancel: work happens
        only as frames are pulled."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Tracker(Protocol):
    @property
    def model(self) -> str: ...

    def open(self, frames: FrameSource, media: str | None = None) -> TrackerSession:
        """A session over `frames`; `media` is the media item's id when the frames are one's
        (a tracker may share work, such as image features, between sessions on one media item)."""
        ...
