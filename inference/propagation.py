"""What every tracker session's `propagate(start, direction, count)` checks, and the frames it
visits (the `TrackerSession` contract of `inference.protocols`; the point tracker's too).

One place for it, so every tracker refuses the same requests with the same errors and visits
the same frames: a new tracker calls `propagation_frames` and iterates.
"""

from __future__ import annotations

import numpy as np

from masklog.domain.events import Direction


class FrameOutOfRange(ValueError, IndexError):
    """A frame number outside the media. An IndexError (what a sequence raises) and a ValueError
    (a bad argument), so callers may catch either."""


class SessionClosed(ValueError, RuntimeError):
    """The session was closed. A RuntimeError (a call in the wrong state) and a ValueError."""


def check_frame(frame: int, length: int) -> None:
    """Raise unless `frame` is an integer frame number of a media item of `length` frames."""
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise ValueError(f"frame must be an integer, got {frame!r}")
    if not 0 <= frame < length:
        raise FrameOutOfRange(f"frame {frame} out of range 0..{length - 1}")


def propagation_frames(start: int, direction: Direction, count: int, length: int) -> range:
    """The frames `propagate(start, direction, count)` visits, in order: `count` frames counting
    `start`, clipped at the media's ends. Called when `propagate` is called, not when its first
    frame is pulled: a bad request fails where it is made."""
    check_frame(start, length)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise ValueError(f"count must be an integer, got {count!r}")
    if count < 1:
        raise ValueError("count must be at least 1 (it counts the start frame)")
    if Direction(direction) is Direction.FORWARD:
        return range(start, min(length, start + count))
    return range(start, max(-1, start - count), -1)
