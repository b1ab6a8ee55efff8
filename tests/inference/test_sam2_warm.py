"""No cold first click (issue 19) on the segmenter: frames embedded ahead of their clicks, within a
budget in bytes, never while a click waits for the model, and a click on a warmed frame costs
no embedding. SAM 2's real architecture, random weights, reduced image size, CPU."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from masklog.inference.classical.segmenter import ClassicalSegmenter
from masklog.inference.protocols import EmbeddingWarmer, Prompt, Segmenter
from masklog.inference.sam2.image import MAX_EMBEDDING_CACHE_BYTES, Sam2Segmenter
from masklog.inference.sam2.model import Sam2Model
from tests.inference.test_sam2_backend import DEVICE, DISC, PilFrames, sam, video  # noqa: F401 (fixtures)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


def frames_of(video: Path) -> PilFrames:  # noqa: F811
    return PilFrames(sorted(video.glob("*.jpg")))


def warm_all(seg: Sam2Segmenter) -> int:
    done = 0
    while seg.warm_one():
        done += 1
    return done


def entry_bytes(sam: Sam2Model, video: Path) -> int:  # noqa: F811
    probe = Sam2Segmenter(sam)
    probe.segment(frames_of(video), 0, Prompt(points=[DISC]))
    return probe.embedding_stats().bytes


def test_a_click_on_a_warmed_frame_computes_no_embedding_and_gives_the_cold_masks(sam: Sam2Model, video: Path) -> None:  # noqa: F811
    frames = frames_of(video)
    seg = Sam2Segmenter(sam)
    seg.want(frames, [2, 3, 99, -1])  # out of the source: ignored
    assert seg.embedding_stats().wanted == 2
    assert warm_all(seg) == 2
    stats = seg.embedding_stats()
    assert (stats.computed, stats.warmed, stats.cached, stats.wanted) == (2, 2, 2, 0)
    warm = seg.segment(frames, 3, Prompt(points=[DISC]))
    assert seg.embeddings_computed == 2  # the point of warming: only the decoder ran
    cold = Sam2Segmenter(sam).segment(frames_of(video), 3, Prompt(points=[DISC]))
    if DEVICE == "cpu":  # the same computation: the same masks (on CUDA, up to kernel choices)
        assert [c.score for c in warm] == [c.score for c in cold]
        assert all(np.array_equal(a.mask, b.mask) for a, b in zip(warm, cold, strict=True))
    else:
        assert [c.score for c in warm] == pytest.approx([c.score for c in cold], abs=1e-2)
        assert all(np.mean(a.mask != b.mask) < 1e-3 for a, b in zip(warm, cold, strict=True))
    assert not seg.warm_one()  # nothing left


def test_warming_keeps_to_the_budget_and_never_evicts_the_clicked_frame(sam: Sam2Model, video: Path) -> None:  # noqa: F811
    size = entry_bytes(sam, video)
    frames = frames_of(video)
    seg = Sam2Segmenter(sam, cache_bytes=3 * size)
    seg.segment(frames, 0, Prompt(points=[DISC]))
    seg.want(frames, [1, 2, 3, 4])
    assert warm_all(seg) == 2  # 0 (clicked), 1 and 2 fill the budget; 3 would evict one of them
    stats = seg.embedding_stats()
    assert (stats.cached, stats.bytes, stats.wanted) == (3, 3 * size, 2)
    assert seg.cached(frames, 0) and seg.cached(frames, 1) and seg.cached(frames, 2)
    # The user moved on: frames near 4 go first, and may evict the older wanted ones, not 0.
    seg.want(frames, [4, 5])
    assert warm_all(seg) == 2  # 4 and 5 evict 1 and 2 (the least recently used); 1 would evict 4, 5 or 0
    assert seg.cached(frames, 0) and seg.cached(frames, 4) and seg.cached(frames, 5)
    assert not seg.cached(frames, 1) and not seg.cached(frames, 2) and seg.embedding_stats().wanted == 3
    assert seg.embedding_stats().bytes <= 3 * size
    # A click is not held to the wanted frames: it evicts the least recently used.
    seg.segment(frames, 3, Prompt(points=[DISC]))
    assert seg.cached(frames, 3) and not seg.cached(frames, 0) and seg.embedding_stats().bytes <= 3 * size


def test_the_budget_is_checked(sam: Sam2Model) -> None:  # noqa: F811
    for bad in (0, -1, MAX_EMBEDDING_CACHE_BYTES + 1):
        with pytest.raises(ValueError, match="budget"):
            Sam2Segmenter(sam, cache_bytes=bad)
    with pytest.raises(ValueError):
        Sam2Segmenter(sam, cache_size=0)


def test_warming_never_waits_for_the_model(sam: Sam2Model, video: Path) -> None:  # noqa: F811
    frames = frames_of(video)
    seg = Sam2Segmenter(sam)
    seg.want(frames, [1])
    # Another thread runs the model (a tracking step): warming gives up at once.
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with sam.running():
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(30)
    try:
        assert not seg.warm_one() and seg.embeddings_computed == 0
    finally:
        release.set()
        holder.join()
    # A click waits for the model (this thread holds it): warming gives way even where it could
    # take the lock (the lock is reentrant for its holder).
    sam.lock.acquire()
    clicker = threading.Thread(target=lambda: seg.segment(frames, 5, Prompt(points=[DISC])))
    try:
        clicker.start()
        while not sam.waiting:
            threading.Event().wait(0.001)
        assert not seg.warm_one() and seg.embeddings_computed == 0
    finally:
        sam.lock.release()
        clicker.join()
    assert seg.embeddings_computed == 1 and seg.warm_one() and seg.embeddings_warmed == 1


def test_a_click_during_warm_up_waits_for_at_most_one_embedding(sam: Sam2Model, video: Path) -> None:  # noqa: F811
    frames = frames_of(video)
    seg = Sam2Segmenter(sam)
    seg.want(frames, [1, 2, 3, 4, 5])
    clicking = threading.Event()
    seen: dict[str, int] = {}

    class Clicked(PilFrames):
        """The clicked frame's source: notes how many warm embeddings were done when the click
        got the model (the frame is read with the lock held)."""

        def get(self, index: int) -> np.ndarray:
            if clicking.is_set() and "at_click" not in seen:
                seen["at_click"] = seg.embeddings_warmed
            return super().get(index)

    clicked = Clicked(sorted(video.glob("*.jpg")))
    stop = threading.Event()

    def warm_loop() -> None:  # the actor's idle loop, on a thread of its own
        while not stop.is_set():
            if not seg.warm_one():
                stop.wait(0.001)

    warmer = threading.Thread(target=warm_loop)
    warmer.start()
    try:
        while seg.embeddings_warmed < 1:
            threading.Event().wait(0.001)
        seen["before"] = seg.embeddings_warmed
        clicking.set()
        seg.segment(clicked, 0, Prompt(points=[DISC]))
        while seg.embedding_stats().wanted:
            threading.Event().wait(0.005)
    finally:
        stop.set()
        warmer.join()
    assert seen["at_click"] - seen["before"] <= 1  # at most the embedding in progress
    assert seg.embeddings_warmed == 5 and seg.embeddings_computed == 6  # warming went on after it


def test_only_the_model_backends_warm(sam: Sam2Model) -> None:  # noqa: F811
    assert isinstance(Sam2Segmenter(sam), EmbeddingWarmer) and isinstance(Sam2Segmenter(sam), Segmenter)
    assert not isinstance(ClassicalSegmenter(), EmbeddingWarmer)
