"""Frame caches budgeted in bytes: one source's, and one shared by many sources."""

from __future__ import annotations

import numpy as np

from masklog.inference.frames.cache import FrameCache, SharedFrameCache
from masklog.inference.frames.images import ImageListFrames


def frame(side: int, value: int = 0) -> np.ndarray:
    return np.full((side, side, 3), value, np.uint8)


def test_a_cache_keeps_to_its_bytes_and_skips_a_frame_over_them():
    cache = FrameCache(capacity=10, max_bytes=3 * 300)  # three 10x10 frames
    for index in range(5):
        cache.put(index, frame(10))
        assert cache.nbytes <= 900
    assert list(range(2, 5)) == [i for i in range(5) if i in cache]
    cache.put(9, frame(20))  # 1200 bytes: larger than the whole budget
    assert 9 not in cache and len(cache) == 3 and cache.nbytes == 900
    cache.put(3, frame(10))  # replacing a frame does not count it twice
    assert cache.nbytes == 900


def test_a_shared_cache_evicts_the_least_recent_frame_of_any_owner():
    shared = SharedFrameCache(max_bytes=4 * 300)
    a, b = shared.view("a", capacity=3), shared.view("b", capacity=3)
    a.put(0, frame(10))
    a.put(1, frame(10))
    b.put(0, frame(10))
    a.get(0)  # now b's frame is older than a's frame 0; a's frame 1 is the oldest
    b.put(1, frame(10))
    b.put(2, frame(10))  # five frames: the least recent (a:1) goes
    assert shared.nbytes == 1200 and len(shared) == 4
    assert 1 not in a and 0 in a and len(b) == 3
    b.put(3, frame(10))  # b holds at most 3 of its own: its oldest goes, a keeps its frame
    assert 0 not in b and 0 in a and len(b) == 3
    b.put(4, frame(30))  # over the whole budget: served by its caller, never kept
    assert 4 not in b and shared.nbytes <= 1200
    b.clear()
    assert len(b) == 0 and len(a) == 1 and shared.nbytes == 300


def test_sources_share_one_budget(tmp_path):
    import cv2

    paths = []
    for index in range(6):
        path = tmp_path / f"{index}.png"
        cv2.imwrite(str(path), frame(10, index * 20))
        paths.append(path)
    shared = SharedFrameCache(max_bytes=3 * 300)
    one = ImageListFrames(paths[:3], cache=shared.view("one", capacity=8))
    two = ImageListFrames(paths[3:], cache=shared.view("two", capacity=8))
    for index in range(3):
        assert one.get(index)[0, 0, 0] == index * 20
        assert two.get(index)[0, 0, 0] == (index + 3) * 20
        assert shared.nbytes <= 900
    # The three most recent of the six reads: two's frame 1, one's frame 2, two's frame 2.
    assert (one.cached_frames, two.cached_frames) == (1, 2)
    two.close()
    assert shared.nbytes == 300 and one.cached_frames == 1
