"""The point tracker (keypoints, skeletons, polylines) on clips with known motion.

Every clip is a real photo (scikit-image's astronaut) warped per frame by a known similarity
transform, so the true position of every point on every frame is known exactly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from masklog.domain.events import Direction
from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.points import POINT_TRACKER_MODEL, PointTracker, PointTrackerSession, TrackedPoints
from tests.inference.synthetic import CountingFrames

H, W = 240, 320
Motion = Callable[[int], np.ndarray]  # frame -> 2x3 transform taking frame-0 points to that frame


@functools.cache
def photo() -> np.ndarray:
    from skimage import data

    image = cv2.resize(np.asarray(data.astronaut()), (W, W), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image[(W - H) // 2 : (W - H) // 2 + H])


def similarity(t: int, shift: tuple[float, float], degrees: float = 0.0, zoom: float = 0.0) -> np.ndarray:
    """Frame t of a steady motion: `shift` px, `degrees` and `zoom` (relative) per frame."""
    model = cv2.getRotationMatrix2D((W / 2, H / 2), degrees * t, 1.0 + zoom * t)
    model[:, 2] += (shift[0] * t, shift[1] * t)
    return model


def smooth(t: int) -> np.ndarray:
    """Translation of a few px per frame with a slight rotation and zoom."""
    return similarity(t, (3.0, 1.5), degrees=0.4, zoom=0.003)


def sideways(t: int) -> np.ndarray:
    """Fast motion to the right: content leaves the frame."""
    return similarity(t, (8.0, 0.0))


def clip(motion: Motion, frames: int, changed: tuple[int, np.ndarray] | None = None) -> list[np.ndarray]:
    """The photo moved by `motion`; `changed` = (from frame, image): another image from then on."""

    def image(t: int) -> np.ndarray:
        return changed[1] if changed is not None and t >= changed[0] else photo()

    return [
        cv2.warpAffine(image(t), motion(t), (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        for t in range(frames)
    ]


def flattened(x_from: int) -> np.ndarray:
    """The photo with everything right of `x_from` flat grey: no texture for LK to hold on to.
    Warped like the photo, the flat part moves with the content."""
    image = photo().copy()
    image[:, x_from:] = 128
    return image


def truth(motion: Motion, points: np.ndarray, t: int) -> np.ndarray:
    model = motion(t)
    result: np.ndarray = points @ model[:, :2].T + model[:, 2]
    return result


def errors(result: TrackedPoints, expected: np.ndarray) -> np.ndarray:
    assert result.points is not None
    found: np.ndarray = np.hypot(*(result.points - expected).T)
    return found


# Points on frame 0, on textured parts of the photo and away from the edges.
SKELETON = np.array(
    [[160, 60], [150, 55], [170, 55], [130, 100], [190, 100], [115, 140], [205, 140], [140, 170], [180, 170]],
    dtype=np.float64,
)
POLYLINE = np.array([[80, 150], [110, 130], [140, 150], [170, 130], [200, 150], [230, 130]], dtype=np.float64)
KEYPOINTS = [np.array([[x, y]], dtype=np.float64) for x, y in [(100, 80), (220, 90), (160, 120), (120, 190)]]


def track(
    motion: Motion,
    objects: dict[str, np.ndarray],
    frames: int,
    start: int = 0,
    direction: Direction = Direction.FORWARD,
    estimate_missing: bool = True,
    content: list[np.ndarray] | None = None,
) -> list[list[TrackedPoints]]:
    """Condition every object on `start` with its true points and track to the clip's end."""
    session = PointTracker().open(ArrayFrames(content if content is not None else clip(motion, frames)))
    for name, points in objects.items():
        session.add_points(start, name, truth(motion, points, start), estimate_missing=estimate_missing)
    return list(session.propagate(start, direction, frames))


def test_model_is_named() -> None:
    assert PointTracker().model == POINT_TRACKER_MODEL == "classical/lkpoints@1"


def test_tracks_shapes_forwards_with_subpixel_error() -> None:
    objects = {"skeleton": SKELETON, "line": POLYLINE} | {f"k{i}": p for i, p in enumerate(KEYPOINTS)}
    results = track(smooth, objects, 20)
    assert [frame[0].frame for frame in results] == list(range(20))
    first = {r.object: r for r in results[0]}
    for name, points in objects.items():
        # The start frame gives back the conditioning points themselves.
        assert first[name].points is not None and np.array_equal(first[name].points, points)
        assert first[name].score == 1.0 and first[name].visible is not None and first[name].visible.all()
    measured: dict[str, list[float]] = {name: [] for name in objects}
    for frame in results[1:]:
        assert [r.object for r in frame] == list(objects)
        for r in frame:
            expected = truth(smooth, objects[r.object], r.frame)
            measured[r.object] += errors(r, expected).tolist()
            assert r.points is not None and r.points.dtype == np.float64 and r.points.shape == expected.shape
            assert r.visible is not None and r.visible.dtype == bool and 0.0 <= r.score <= 1.0
    # The motion reaches about 60 px and 8 degrees: an untracked point would be far off. Shapes
    # measure about 0.1 px mean; single keypoints about 0.2-0.5 (nothing to tell their window's
    # rotation from, see inference/points.py).
    for name, values in measured.items():
        mean_limit, max_limit = (0.4, 1.2) if name in ("skeleton", "line") else (1.0, 2.0)
        assert np.mean(values) < mean_limit, (name, np.mean(values))
        assert np.max(values) < max_limit, (name, np.max(values))
    skeleton = [r for frame in results for r in frame if r.object == "skeleton"]
    assert np.mean([r.visible.mean() for r in skeleton if r.visible is not None]) > 0.9


def test_tracks_backwards() -> None:
    results = track(smooth, {"skeleton": SKELETON, "k": KEYPOINTS[0]}, 16, start=15, direction=Direction.BACKWARD)
    assert [frame[0].frame for frame in results] == list(range(15, -1, -1))
    for frame in results[1:]:
        for r in frame:
            points = SKELETON if r.object == "skeleton" else KEYPOINTS[0]
            assert errors(r, truth(smooth, points, r.frame)).max() < 2.0, r
    final = results[-1][0]
    assert np.mean(errors(final, SKELETON)) < 0.75


def test_count_counts_the_start_frame_and_stops_at_the_ends() -> None:
    session = PointTracker().open(ArrayFrames(clip(smooth, 6)))
    session.add_points(2, "k", truth(smooth, KEYPOINTS[0], 2))
    assert [f[0].frame for f in session.propagate(2, Direction.FORWARD, 1)] == [2]
    assert [f[0].frame for f in session.propagate(2, Direction.FORWARD, 3)] == [2, 3, 4]
    assert [f[0].frame for f in session.propagate(2, Direction.FORWARD, 100)] == [2, 3, 4, 5]
    assert [f[0].frame for f in session.propagate(2, Direction.BACKWARD, 100)] == [2, 1, 0]
    assert [f[0].frame for f in session.propagate(2, "backward", 2)] == [2, 1]


def test_work_happens_as_frames_are_pulled_and_close_stops_it() -> None:
    frames = CountingFrames(clip(smooth, 10))
    session = PointTracker().open(frames)
    session.add_points(0, "k", truth(smooth, KEYPOINTS[0], 0))
    frames.read.clear()
    results = session.propagate(0, Direction.FORWARD, 10)
    assert frames.read == []
    next(results)
    next(results)
    assert frames.read == [0, 1]
    session.close()
    assert list(results) == []


def test_object_conditioned_later_in_the_pass_starts_there() -> None:
    session = PointTracker().open(ArrayFrames(clip(smooth, 8)))
    given = truth(smooth, POLYLINE, 4)
    session.add_points(4, "line", given)
    results = [frame[0] for frame in session.propagate(0, Direction.FORWARD, 8)]
    assert all(r.points is None and r.visible is None and r.score == 0.0 for r in results[:4])
    assert results[4].points is not None and np.array_equal(results[4].points, given)
    assert all(errors(r, truth(smooth, POLYLINE, r.frame)).max() < 1.5 for r in results[5:])


def test_points_leaving_the_frame_are_clamped_and_hidden_until_the_shape_is_gone() -> None:
    # The right end of the line leaves the frame after a few frames, the left end much later.
    line = np.array([[150, 100], [190, 110], [230, 100], [270, 110], [300, 100]], dtype=np.float64)
    results = [frame[0] for frame in track(sideways, {"line": line}, 30)]
    clamped_seen = 0
    lost_at = None
    for r in results[1:]:
        if r.points is None:
            lost_at = lost_at if lost_at is not None else r.frame
            continue
        assert lost_at is None, "a lost object stays lost for the rest of the pass"
        assert r.visible is not None
        inside_frame = (r.points >= 0).all() and (r.points[:, 0] <= W - 1).all() and (r.points[:, 1] <= H - 1).all()
        assert inside_frame, r.points
        expected = truth(sideways, line, r.frame)
        out = expected[:, 0] > W - 0.5
        assert not r.visible[out].any()
        assert np.allclose(r.points[out, 0], W - 1)
        clamped_seen += int(out.sum())
        assert errors(r, expected)[~out].max() < 2.0
    assert clamped_seen > 0
    # At 8 px per frame the leftmost point leaves after about 21 frames: gone by then at the latest.
    assert lost_at is not None and lost_at <= 23


def test_single_keypoint_leaving_the_frame_is_lost() -> None:
    point = np.array([[280.0, 120.0]])
    results = [frame[0] for frame in track(sideways, {"k": point}, 12)]
    lost = [r.points is None for r in results]
    assert True in lost
    first_lost = lost.index(True)
    assert all(lost[first_lost:])
    # Tracked correctly while in view (it leaves at frame 5), never reported outside the frame.
    for r in results[1:first_lost]:
        assert r.points is not None and 0 <= r.points[0, 0] <= W - 1
        assert errors(r, truth(sideways, point, r.frame)).max() < 1.5
    assert 3 <= first_lost <= 6


def test_blank_frames_lose_every_object() -> None:
    frames = clip(smooth, 10)
    for t in range(5, 10):
        frames[t] = np.full_like(frames[t], 128)
    objects = {"skeleton": SKELETON, "line": POLYLINE, "k": KEYPOINTS[2]}
    results = track(smooth, objects, 10, content=frames)
    for frame in results[:5]:
        assert all(r.points is not None for r in frame)
    for frame in results[5:]:
        assert all(r.points is None and r.visible is None and r.score == 0.0 for r in frame)


def test_a_cut_to_other_content_loses_every_object() -> None:
    # LK converges somewhere on any texture; going back to the previous frame exposes it.
    from skimage import data

    other = cv2.resize(np.asarray(data.chelsea()), (W, H), interpolation=cv2.INTER_AREA)
    frames = clip(smooth, 8, changed=(4, other))
    objects = {"skeleton": SKELETON, "line": POLYLINE} | {f"k{i}": p for i, p in enumerate(KEYPOINTS)}
    results = track(smooth, objects, 8, content=frames)
    for frame in results[:4]:
        assert all(r.points is not None for r in frame)
    for frame in results[4:]:
        assert all(r.points is None for r in frame), [r.object for r in frame if r.points is not None]


def test_points_that_cannot_be_found_are_estimated_from_the_others() -> None:
    # The last two points of the line lie well inside the part that turns flat on frame 4.
    frames = clip(smooth, 10, changed=(4, flattened(185)))
    results = [frame[0] for frame in track(smooth, {"line": POLYLINE}, 10, content=frames)]
    for r in results[4:]:
        assert r.visible is not None and r.points is not None
        assert r.visible.tolist() == [True, True, True, True, False, False]
        assert r.score == pytest.approx(4 / 6)
        assert errors(r, truth(smooth, POLYLINE, r.frame)).max() < 1.5
    # Without estimation nothing is invented: the line is lost as soon as a point is not found.
    strict = [frame[0] for frame in track(smooth, {"line": POLYLINE}, 10, estimate_missing=False, content=frames)]
    assert all(r.points is not None for r in strict[:4])
    assert all(r.points is None for r in strict[4:])


def test_too_few_points_found_loses_the_shape() -> None:
    # Five of the six points turn flat: one found point is below the quarter needed.
    frames = clip(smooth, 8, changed=(3, flattened(95)))
    results = [frame[0] for frame in track(smooth, {"line": POLYLINE}, 8, content=frames)]
    assert all(r.points is not None for r in results[:3])
    assert all(r.points is None for r in results[3:])


@pytest.fixture
def session() -> PointTrackerSession:
    return PointTracker().open(ArrayFrames(clip(smooth, 4)))


@pytest.mark.parametrize(
    "points",
    [
        np.zeros((0, 2)),
        np.array([10.0, 20.0]),
        np.zeros((3, 3)),
        np.zeros((2, 2, 1)),
        np.array([[10.0, math.nan]]),
        np.array([[W + 1.0, 10.0]]),
        np.array([[10.0, -1.0]]),
        [["a", "b"]],
    ],
)
def test_bad_points_are_refused(session: PointTrackerSession, points: np.ndarray) -> None:
    with pytest.raises(ValueError):
        session.add_points(0, "k", points)


def test_bad_requests_are_refused(session: PointTrackerSession) -> None:
    session.add_points(0, "k", np.array([[10.0, 10.0]]))
    session.add_points(0, "edge", np.array([[float(W), float(H)]]))  # the far edge is still in the frame
    for frame in (-1, 4):
        with pytest.raises(ValueError):
            session.add_points(frame, "k", np.array([[10.0, 10.0]]))
        with pytest.raises(ValueError):
            session.propagate(frame, Direction.FORWARD, 2)
        with pytest.raises(IndexError):  # what the mask trackers raise, too
            session.propagate(frame, Direction.FORWARD, 2)
    for count in (0, -3):
        with pytest.raises(ValueError):
            session.propagate(0, Direction.FORWARD, count)
    with pytest.raises(ValueError):
        session.propagate(0, "sideways", 2)  # type: ignore[arg-type]
    session.close()
    with pytest.raises(ValueError):
        session.add_points(0, "k", np.array([[10.0, 10.0]]))
    with pytest.raises(ValueError):
        session.propagate(0, Direction.FORWARD, 2)
    with pytest.raises(RuntimeError):  # what the mask trackers raise, too
        session.propagate(0, Direction.FORWARD, 2)
