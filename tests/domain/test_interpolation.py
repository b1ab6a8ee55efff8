"""Interpolation between keyframes (issue 14 point 2): linear for boxes and points, a signed
distance morph for polygons and masks; a request without a second keyframe is refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from masklog.domain import events as ev
from masklog.domain.decide import DomainError, decide
from masklog.domain.geometry import rle_decode, rle_encode, shape_to_mask, validate_shape
from masklog.domain.interpolation import (
    INTERPOLATION,
    LINEAR_MODEL,
    MORPH_MODEL,
    InterpolationError,
    interpolate,
    interpolation_model,
    keyframe_pair,
    morph_masks,
)
from masklog.domain.shapes import BBox, Bitmask, Keypoint, Polygon, PolygonPart, Polyline, RotatedBBox, Skeleton, SkeletonPoint
from tests.domain.builders import ALICE, BOB, TRACKER, MemoryLog, project_log

W, H = 200, 160


def disc(cx: float, cy: float, r: float, width: int = W, height: int = H) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r)), 1, thickness=-1)
    return mask.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_boxes_move_linearly_exactly():
    a, b = BBox(x=10, y=20, w=30, h=40), BBox(x=110, y=60, w=50, h=20)
    for step in range(1, 10):
        t = step / 10
        got = interpolate(a, b, t, W, H)
        assert isinstance(got, BBox)
        want = [(1 - t) * p + t * q for p, q in ((10, 110), (20, 60), (30, 50), (40, 20))]
        assert [got.x, got.y, got.w, got.h] == pytest.approx(want, abs=1e-9)
        validate_shape(got, W, H)
    assert interpolate(a, b, 0.0, W, H) == a and interpolate(a, b, 1.0, W, H) == b
    assert interpolation_model(a) == LINEAR_MODEL


def test_rotated_box_turns_the_short_way_round():
    a = RotatedBBox(cx=50, cy=50, w=40, h=10, angle=170)
    b = RotatedBBox(cx=70, cy=50, w=60, h=10, angle=-170)
    mid = interpolate(a, b, 0.5, W, H)
    assert isinstance(mid, RotatedBBox)
    assert (mid.cx, mid.cy, mid.w, mid.h) == pytest.approx((60, 50, 50, 10))
    assert abs(mid.angle) == pytest.approx(180)  # through 180, not through 0
    quarter = interpolate(a, b, 0.25, W, H)
    assert isinstance(quarter, RotatedBBox) and quarter.angle == pytest.approx(175)
    # A rectangle half a turn round is the same rectangle: 10 -> 175 turns by -15, not 165.
    c, d = RotatedBBox(cx=50, cy=50, w=40, h=10, angle=10), RotatedBBox(cx=50, cy=50, w=40, h=10, angle=175)
    turned = interpolate(c, d, 1 / 3, W, H)
    assert isinstance(turned, RotatedBBox) and turned.angle == pytest.approx(5)
    validate_shape(turned, W, H)


def test_keypoints_skeletons_and_polylines_move_linearly():
    assert interpolate(Keypoint(x=0, y=10), Keypoint(x=100, y=30), 0.25, W, H) == Keypoint(x=25, y=15)
    a = Skeleton(points=[SkeletonPoint(x=0, y=0), SkeletonPoint(x=10, y=10, visible=False), SkeletonPoint(x=20, y=20)])
    b = Skeleton(points=[SkeletonPoint(x=10, y=0), SkeletonPoint(x=20, y=10), SkeletonPoint(x=40, y=40)])
    mid = interpolate(a, b, 0.5, W, H)
    assert isinstance(mid, Skeleton)
    assert [(p.x, p.y, p.visible) for p in mid.points] == [(5, 0, True), (15, 10, False), (30, 30, True)]
    with pytest.raises(InterpolationError, match="skeletons of 3 and 2 points"):
        interpolate(a, Skeleton(points=b.points[:2]), 0.5, W, H)
    same = interpolate(Polyline(points=[0, 0, 10, 0]), Polyline(points=[0, 10, 20, 10]), 0.5, W, H)
    assert same == Polyline(points=[0, 5, 15, 5])


def test_polylines_of_different_lengths_are_resampled_by_arc_length():
    two = Polyline(points=[0, 0, 40, 0])  # a straight line
    three = Polyline(points=[0, 40, 20, 40, 40, 40])  # the same line 40 px lower, three points
    mid = interpolate(two, three, 0.5, W, H)
    assert isinstance(mid, Polyline)
    assert mid.points == pytest.approx([0, 20, 20, 20, 40, 20])
    # Uneven points: resampling puts the middle point half-way along the line, not at a vertex.
    bent = Polyline(points=[0, 0, 10, 0, 20, 0, 40, 0])
    other = Polyline(points=[0, 10, 40, 10])
    got = interpolate(bent, other, 1.0, W, H)
    assert isinstance(got, Polyline) and got.points == pytest.approx([0, 10, 40 / 3, 10, 80 / 3, 10, 40, 10])


def test_kinds_and_t_are_checked():
    with pytest.raises(InterpolationError, match="a bbox and a keypoint"):
        interpolate(BBox(x=0, y=0, w=1, h=1), Keypoint(x=0, y=0), 0.5, W, H)
    for t in (-0.1, 1.5, float("nan")):
        with pytest.raises(InterpolationError, match="t must be"):
            interpolate(Keypoint(x=0, y=0), Keypoint(x=1, y=1), t, W, H)


def test_a_disc_moving_and_growing_morphs_to_the_disc_in_between():
    a, b = disc(50, 60, 20), disc(130, 90, 40)
    for t in (0.25, 0.5, 0.75):
        got = interpolate(Bitmask(rle=rle_encode(a)), Bitmask(rle=rle_encode(b)), t, W, H)
        assert isinstance(got, Bitmask)
        want = disc(50 + 80 * t, 60 + 30 * t, 20 + 20 * t)
        assert iou(rle_decode(got.rle), want) > 0.9, t
    assert interpolation_model(Bitmask(rle=rle_encode(a))) == MORPH_MODEL


def test_polygons_morph_and_come_back_as_valid_polygons():
    def ring(cx: float, cy: float, r: float) -> Polygon:
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        outer = np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)]).ravel().tolist()
        return Polygon(parts=[PolygonPart(outer=outer)])

    a, b = ring(60, 60, 25), ring(120, 80, 35)
    got = interpolate(a, b, 0.5, W, H)
    assert isinstance(got, Polygon)
    validate_shape(got, W, H)
    assert iou(shape_to_mask(got, H, W), shape_to_mask(ring(90, 70, 30), H, W)) > 0.9


def test_a_square_becomes_a_disc_smoothly_and_a_vanishing_morph_is_none():
    square = np.zeros((H, W), dtype=bool)
    square[40:100, 40:100] = True
    round_ = disc(70, 70, 34)
    areas = [int(morph_masks(square, round_, t).sum()) for t in np.linspace(0, 1, 6)]
    assert areas[0] == square.sum() and areas[-1] == round_.sum()
    assert all(min(areas[0], areas[-1]) - 40 <= area <= max(areas[0], areas[-1]) + 40 for area in areas)
    # Two specks far apart turning into one: their centroid, where the one speck goes, is far
    # from both, and each of the two is far from the one: half-way nothing is left.
    speck_a, speck_b = np.zeros((H, W), dtype=bool), np.zeros((H, W), dtype=bool)
    speck_a[80, 10] = speck_a[80, 190] = speck_b[20, 100] = True
    assert interpolate(Bitmask(rle=rle_encode(speck_a)), Bitmask(rle=rle_encode(speck_b)), 0.5, W, H) is None


def test_keyframe_pair():
    keyframes = {0: "a", 10: "b", 14: "c"}
    assert keyframe_pair(keyframes, 5) == (0, 10)
    assert keyframe_pair(keyframes, 12) == (10, 14)
    assert keyframe_pair(keyframes, 10) is None and keyframe_pair(keyframes, 20) is None


# ---- the request ---------------------------------------------------------------------------------


def boxes(log: MemoryLog, second: int | None = 10) -> None:
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(ALICE, ev.LabelSaved(object="a", frame=0, shape=BBox(x=0, y=0, w=4, h=4), source=ev.Source.MANUAL))
    if second is not None:
        log.do(BOB, ev.LabelSaved(object="a", frame=second, shape=BBox(x=20, y=10, w=8, h=6), source=ev.Source.MANUAL))


def interpolation(start: int = 0, range_: int = 12, direction: ev.Direction = ev.Direction.FORWARD) -> ev.TrackRequested:
    return ev.TrackRequested(media="m1", objects=["a"], start=start, direction=direction, range=range_, algorithm=INTERPOLATION)


def test_every_server_accepts_interpolation_and_captures_the_keyframes():
    log = project_log()
    boxes(log)
    request = log.do(ALICE, interpolation())  # the default tracker names: no server lists it, all have it
    info = log.state.tracks[request.id]
    assert info.keyframes == {"a": {10: BBox(x=20, y=10, w=8, h=6)}} and info.conditioning == {"a": BBox(x=0, y=0, w=4, h=4)}


def test_interpolation_without_a_second_keyframe_is_refused():
    log = project_log()
    boxes(log, second=None)
    with pytest.raises(DomainError, match=r"interpolation needs a second keyframe of object 'a' within the range \(frames 0–11\)"):
        log.do(ALICE, interpolation())
    boxes_later = project_log()
    boxes(boxes_later, second=10)
    with pytest.raises(DomainError, match="second keyframe"):
        boxes_later.do(ALICE, interpolation(range_=10))  # frame 10 is outside 0-9
    # A tracked label is no keyframe.
    request = boxes_later.do(ALICE, ev.TrackRequested(media="m1", objects=["a"], start=0, direction=ev.Direction.FORWARD, range=6, algorithm="simple"))
    boxes_later.do(TRACKER, ev.TrackFrameProduced(track=request.id, object="a", frame=3, shape=BBox(x=1, y=1, w=4, h=4), score=1, model="m"))
    boxes_later.do(TRACKER, ev.TrackCompleted(track=request.id, frames=3))
    boxes_later.do(ALICE, ev.TrackedAccepted(track=request.id))
    with pytest.raises(DomainError, match="second keyframe"):
        boxes_later.do(ALICE, interpolation(range_=5))
    # Backwards from frame 10 to the keyframe on 0.
    backwards = boxes_later.do(ALICE, interpolation(start=10, range_=11, direction=ev.Direction.BACKWARD))
    assert boxes_later.state.tracks[backwards.id].keyframes == {"a": {0: BBox(x=0, y=0, w=4, h=4)}}


def test_an_unknown_tracker_is_still_refused():
    log = project_log()
    boxes(log)
    with pytest.raises(DomainError, match="tracker 'interpolate' does not run on this server"):
        decide(log.state, ALICE, ev.TrackRequested(media="m1", objects=["a"], start=0, direction=ev.Direction.FORWARD, algorithm="interpolate"))
