"""What goes wrong when a frame is asked for."""

from __future__ import annotations


class FrameError(Exception):
    """A frame cannot be produced: unreadable, corrupt or truncated media, or an index out of range."""


class TooManyPixels(FrameError):
    """Media whose frames are larger than the caller allows (found from headers, before decoding)."""


def check_index(index: int, length: int) -> None:
    if not 0 <= index < length:
        raise FrameError(f"frame {index} out of range 0..{length - 1}")
