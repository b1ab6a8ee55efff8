"""The one argument check and frame order that every tracker's `propagate` uses."""

from __future__ import annotations

import numpy as np
import pytest

from masklog.domain.events import Direction
from masklog.inference.classical.tracker import ClassicalTracker
from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.points import PointTracker
from masklog.inference.propagation import FrameOutOfRange, SessionClosed, check_frame, propagation_frames


def test_frames_visited_count_the_start_and_stop_at_the_ends():
    assert list(propagation_frames(2, Direction.FORWARD, 3, 10)) == [2, 3, 4]
    assert list(propagation_frames(8, Direction.FORWARD, 5, 10)) == [8, 9]
    assert list(propagation_frames(2, Direction.BACKWARD, 5, 10)) == [2, 1, 0]
    assert list(propagation_frames(0, "backward", 1, 10)) == [0]  # type: ignore[arg-type]
    assert list(propagation_frames(np.int64(1), Direction.FORWARD, np.int64(2), 3)) == [1, 2]


@pytest.mark.parametrize(
    ("start", "direction", "count", "error"),
    [(10, "forward", 1, FrameOutOfRange), (-1, "forward", 1, IndexError), (1.0, "forward", 1, ValueError), (True, "forward", 1, ValueError),
     (0, "forward", 0, ValueError), (0, "forward", 2.0, ValueError), (0, "forward", True, ValueError), (0, "sideways", 1, ValueError)],
)  # fmt: skip
def test_bad_requests(start, direction, count, error):
    with pytest.raises(error):
        propagation_frames(start, direction, count, 10)
    assert issubclass(FrameOutOfRange, IndexError) and issubclass(SessionClosed, RuntimeError)


def test_every_tracker_refuses_the_same_requests_the_same_way():
    frames = ArrayFrames([np.zeros((16, 16, 3), np.uint8)] * 4)
    sessions = [ClassicalTracker().open(frames), PointTracker().open(frames)]
    for session in sessions:
        for start, count, error in ((4, 1, FrameOutOfRange), (0, 0, ValueError)):
            with pytest.raises(error) as caught:
                session.propagate(start, Direction.FORWARD, count)
            with pytest.raises(error) as expected:
                propagation_frames(start, Direction.FORWARD, count, len(frames))
            assert str(caught.value) == str(expected.value)
        session.close()
        with pytest.raises(SessionClosed):
            session.propagate(0, Direction.FORWARD, 1)
    check_frame(3, 4)
