"""Bounded caches of decoded frames: one per source (`FrameCache`) or one byte budget shared by
every source of a process (`SharedFrameCache`, seen by each source through a `SharedCacheView`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

DEFAULT_CACHE_FRAMES = 32


class FrameCache:
    """A bounded least-recently-used map from frame index to decoded frame: at most `capacity`
    frames and, when `max_bytes` is set, at most that many bytes of them. A frame larger than
    `max_bytes` on its own is not kept (its caller still has it)."""

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("the cache must hold at least one frame")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, index: int) -> np.ndarray | None:
        frame = self._items.get(index)
        if frame is not None:
            self._items.move_to_end(index)
        return frame

    def put(self, index: int, frame: np.ndarray) -> None:
        self._drop(index)
        if self.max_bytes is not None and frame.nbytes > self.max_bytes:
            return
        self._items[index] = frame
        self.nbytes += frame.nbytes
        while len(self._items) > self.capacity or (self.max_bytes is not None and self.nbytes > self.max_bytes):
            self._drop(next(iter(self._items)))

    def _drop(self, index: int) -> None:
        frame = self._items.pop(index, None)
        if frame is not None:
            self.nbytes -= frame.nbytes

    def __contains__(self, index: int) -> bool:
        return index in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0


class SharedFrameCache:
    """One byte budget for the frames of many sources (a server's media items): least recently
    used frames go first, whichever source they belong to, so the process holds at most
    `max_bytes` of cached frames however many media items are open. Each source sees its own
    part through `view(owner, capacity)`, a `FrameCache` lookalike that also keeps at most
    `capacity` of that owner's frames. A frame larger than the whole budget is never kept.
    Safe to share between threads."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("the budget cannot be negative")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._owned: dict[str, OrderedDict[int, None]] = {}  # each owner's indices, least recent first
        self._lock = threading.Lock()

    def view(self, owner: str, capacity: int) -> SharedCacheView:
        if capacity < 1:
            raise ValueError("the cache must hold at least one frame")
        return SharedCacheView(self, owner, capacity)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, owner: str, index: int) -> np.ndarray | None:
        with self._lock:
            frame = self._items.get((owner, index))
            if frame is not None:
                self._items.move_to_end((owner, index))
                self._owned[owner].move_to_end(index)
            return frame

    def put(self, owner: str, index: int, frame: np.ndarray, capacity: int) -> None:
        with self._lock:
            self._drop(owner, index)
            if frame.nbytes > self.max_bytes:
                return
            self._items[(owner, index)] = frame
            self._owned.setdefault(owner, OrderedDict())[index] = None
            self.nbytes += frame.nbytes
            owned = self._owned[owner]
            while len(owned) > capacity:
                self._drop(owner, next(iter(owned)))
            while self.nbytes > self.max_bytes:
                self._drop(*next(iter(self._items)))

    def count(self, owner: str) -> int:
        with self._lock:
            return len(self._owned.get(owner, ()))

    def contains(self, owner: str, index: int) -> bool:
        with self._lock:
            return (owner, index) in self._items

    def drop_owner(self, owner: str) -> None:
        with self._lock:
            for index in list(self._owned.get(owner, ())):
                self._drop(owner, index)

    def _drop(self, owner: str, index: int) -> None:
        # Called with the lock held.
        frame = self._items.pop((owner, index), None)
        if frame is None:
            return
        self.nbytes -= frame.nbytes
        owned = self._owned[owner]
        del owned[index]
        if not owned:
            del self._owned[owner]


class SharedCacheView:
    """One owner's part of a `SharedFrameCache`, with `FrameCache`'s interface."""

    def __init__(self, shared: SharedFrameCache, owner: str, capacity: int) -> None:
        self.shared, self.owner, self.capacity = shared, owner, capacity

    def get(self, index: int) -> np.ndarray | None:
        return self.shared.get(self.owner, index)

    def put(self, index: int, frame: np.ndarray) -> None:
        self.shared.put(self.owner, index, frame, self.capacity)

    def __contains__(self, index: int) -> bool:
        return self.shared.contains(self.owner, index)

    def __len__(self) -> int:
        return self.shared.count(self.owner)

    def clear(self) -> None:
        self.shared.drop_owner(self.owner)


def readonly(frame: np.ndarray) -> np.ndarray:
    # Cached frames are shared by every caller: make accidental in-place edits fail loudly. A
    # view, so that arrays handed to ArrayFrames stay writable for their owner.
    view = frame.view()
    view.flags.writeable = False
    return view
