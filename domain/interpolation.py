"""Interpolation between keyframes (issue 14): the shape an object has between two of its labels.

Automated labelling has two methods: tracking (a model follows the object through the frames)
and interpolation (this module: the frames are not looked at). Between two keyframes of an
object, on a frame a fraction `t` of the way from the first to the second:

- boxes, keypoints, skeletons and polylines move linearly: each coordinate is
  `(1 - t) * a + t * b`. A rotated box turns the short way round (a rotated box looks the same
  turned half a turn, so it never turns by more than 90 degrees). A skeleton point is visible
  only where it is visible on both keyframes. Polylines with the same number of points move
  point by point; with different numbers, both are first resampled by arc length to the larger
  number.
- polygons and bitmasks morph: each keyframe's pixels become a signed distance field (negative
  inside, positive outside, OpenCV's exact Euclidean distance transform), both fields are moved
  onto the centroid in between (the centre moves linearly), blended linearly, and the pixels
  below zero are the result. A disc moving and growing becomes the disc in between; one shape
  turning into another passes smoothly through the shapes in between. A polygon is traced back from the morphed pixels like a model's mask
  (`MASK_POLYGON_TOLERANCE`). A morph that leaves no pixel (or no valid shape) is None.

Pure and deterministic: the same keyframes give the same shapes, so a resumed interpolation
produces what the first run did. Bad input raises `InterpolationError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np
from numpy.typing import NDArray

from masklog.domain.geometry import (
    MASK_POLYGON_TOLERANCE,
    GeometryError,
    rle_encode,
    shape_from_mask,
    shape_to_mask,
    validate_shape,
)
from masklog.domain.shapes import (
    BBox,
    Bitmask,
    Keypoint,
    Polygon,
    Polyline,
    RotatedBBox,
    Shape,
    ShapeKind,
    Skeleton,
    SkeletonPoint,
    kind_of,
)

__all__ = [
    "INTERPOLATION",
    "LINEAR_MODEL",
    "MORPH_MODEL",
    "InterpolationError",
    "interpolate",
    "interpolation_model",
    "keyframe_pair",
    "morph_masks",
]

# The method's name in a track request (`TrackRequested.algorithm`): every server offers it, it
# needs no model and no frames.
INTERPOLATION = "interpolation"
# What its results record as their model (`TrackFrameProduced.model`), by shape family.
LINEAR_MODEL = "interpolation/linear@1"
MORPH_MODEL = "interpolation/sdf@1"

MORPHED_KINDS = frozenset({ShapeKind.POLYGON, ShapeKind.BITMASK})


class InterpolationError(ValueError):
    """Two shapes that cannot be interpolated (different kinds, skeletons of different sizes), or a bad `t`."""


def interpolation_model(shape: Shape) -> str:
    """The model name results interpolated between shapes like `shape` record."""
    return MORPH_MODEL if kind_of(shape) in MORPHED_KINDS else LINEAR_MODEL


def keyframe_pair(keyframes: Mapping[int, object], frame: int) -> tuple[int, int] | None:
    """The two consecutive keyframes `frame` lies strictly between, or None (on a keyframe,
    before the first or after the last). Works for either order of frames."""
    if frame in keyframes:
        return None
    before = [k for k in keyframes if k < frame]
    after = [k for k in keyframes if k > frame]
    if not before or not after:
        return None
    return max(before), min(after)


def interpolate(a: Shape, b: Shape, t: float, width: int, height: int) -> Shape | None:
    """The shape a fraction `t` (0..1) of the way from `a` to `b` in a width x height frame.

    None when a morph leaves nothing (no pixel, or no valid shape). The result is valid for the
    frame (`validate_shape`) whenever `a` and `b` are."""
    if not (isinstance(t, (int, float)) and math.isfinite(t) and 0.0 <= t <= 1.0):
        raise InterpolationError(f"t must be a number from 0 to 1, got {t!r}")
    kind_a, kind_b = kind_of(a), kind_of(b)
    if kind_a != kind_b:
        raise InterpolationError(f"a {kind_a!s} and a {kind_b!s} cannot be interpolated: keyframes must be of one kind")
    match a, b:
        case BBox(), BBox():
            return BBox(x=_mix(a.x, b.x, t), y=_mix(a.y, b.y, t), w=_mix(a.w, b.w, t), h=_mix(a.h, b.h, t))
        case RotatedBBox(), RotatedBBox():
            return _rotated(a, b, t)
        case Keypoint(), Keypoint():
            return Keypoint(x=_mix(a.x, b.x, t), y=_mix(a.y, b.y, t))
        case Skeleton(), Skeleton():
            return _skeleton(a, b, t)
        case Polyline(), Polyline():
            return _polyline(a, b, t)
        case Polygon(), Polygon():
            return _morph(a, b, t, width, height)
        case Bitmask(), Bitmask():
            return _morph(a, b, t, width, height)
    raise InterpolationError(f"unknown shape type {type(a).__name__}")


def _mix(a: float, b: float, t: float) -> float:
    return (1.0 - t) * a + t * b


def _rotated(a: RotatedBBox, b: RotatedBBox, t: float) -> RotatedBBox:
    # A rectangle turned by half a turn is the same rectangle: turn by the smaller way, never
    # more than a quarter turn, so 170 and -170 degrees are 20 degrees apart.
    turn = (b.angle - a.angle + 90.0) % 180.0 - 90.0
    angle = (a.angle + t * turn + 180.0) % 360.0 - 180.0
    return RotatedBBox(cx=_mix(a.cx, b.cx, t), cy=_mix(a.cy, b.cy, t), w=_mix(a.w, b.w, t), h=_mix(a.h, b.h, t), angle=angle)


def _skeleton(a: Skeleton, b: Skeleton, t: float) -> Skeleton:
    if len(a.points) != len(b.points):
        raise InterpolationError(f"skeletons of {len(a.points)} and {len(b.points)} points cannot be interpolated")
    return Skeleton(
        points=[
            SkeletonPoint(x=_mix(p.x, q.x, t), y=_mix(p.y, q.y, t), visible=p.visible and q.visible)
            for p, q in zip(a.points, b.points, strict=True)
        ]
    )


def _polyline(a: Polyline, b: Polyline, t: float) -> Polyline:
    pa = np.asarray(a.points, dtype=np.float64).reshape(-1, 2)
    pb = np.asarray(b.points, dtype=np.float64).reshape(-1, 2)
    if len(pa) < 2 or len(pb) < 2:
        raise InterpolationError("a polyline needs at least 2 points to be interpolated")
    if len(pa) != len(pb):
        count = max(len(pa), len(pb))
        pa, pb = _resample(pa, count), _resample(pb, count)
    mixed = (1.0 - t) * pa + t * pb
    return Polyline(points=[float(c) for c in mixed.ravel()])


def _resample(points: NDArray[np.float64], count: int) -> NDArray[np.float64]:
    """`count` points evenly spaced by arc length along the polyline, first and last kept."""
    steps = np.hypot(*np.diff(points, axis=0).T)
    along = np.concatenate(([0.0], np.cumsum(steps)))
    if along[-1] <= 0.0:
        return np.repeat(points[:1], count, axis=0)
    targets = np.linspace(0.0, float(along[-1]), count)
    resampled = np.column_stack([np.interp(targets, along, points[:, 0]), np.interp(targets, along, points[:, 1])])
    resampled[0], resampled[-1] = points[0], points[-1]
    return resampled


def _morph(a: Polygon | Bitmask, b: Polygon | Bitmask, t: float, width: int, height: int) -> Shape | None:
    try:
        mask_a, mask_b = shape_to_mask(a, height, width), shape_to_mask(b, height, width)
    except GeometryError as error:
        raise InterpolationError(f"a keyframe does not fit the {width}x{height} frame: {error}") from None
    mask = morph_masks(mask_a, mask_b, t)
    if not mask.any():
        return None
    try:
        if isinstance(a, Bitmask):
            return Bitmask(rle=rle_encode(mask))
        shape = shape_from_mask(ShapeKind.POLYGON, mask, MASK_POLYGON_TOLERANCE)
        validate_shape(shape, width, height)
    except GeometryError:
        return None
    return shape


def morph_masks(a: NDArray[np.bool_], b: NDArray[np.bool_], t: float) -> NDArray[np.bool_]:
    """The morph a fraction `t` of the way from mask `a` to mask `b` (same size, not empty).

    A blend of signed distance fields in place only morphs shapes that overlap (two discs apart
    blend into a small lens, not into the disc in between), so both fields are first moved onto
    the centroid in between, `(1 - t) * centroid(a) + t * centroid(b)`: the centre moves
    linearly and the outline morphs around it. The result is the pixels where
    `(1 - t) * sdf(a) + t * sdf(b)` is below zero (beyond the frame counts as background).
    Fields are moved with sub-pixel (bilinear) shifts."""
    if a.shape != b.shape:
        raise InterpolationError(f"masks of sizes {a.shape} and {b.shape} cannot be morphed")
    if not a.any() or not b.any():
        raise InterpolationError("an empty mask cannot be morphed")
    if t <= 0.0:
        return a.copy()
    if t >= 1.0:
        return b.copy()
    height, width = a.shape
    boxes = [_box(a), _box(b)]
    centroids = [_centroid(a), _centroid(b)]
    cx, cy = _mix(centroids[0][0], centroids[1][0], t), _mix(centroids[0][1], centroids[1][1], t)
    shifts = [(cx - x, cy - y) for x, y in centroids]
    # The result lies inside either mask moved onto the centroid in between.
    left = max(0, math.floor(min(box[0] + dx for box, (dx, _) in zip(boxes, shifts, strict=True))) - 1)
    top = max(0, math.floor(min(box[1] + dy for box, (_, dy) in zip(boxes, shifts, strict=True))) - 1)
    right = min(width, math.ceil(max(box[2] + dx for box, (dx, _) in zip(boxes, shifts, strict=True))) + 1)
    bottom = min(height, math.ceil(max(box[3] + dy for box, (_, dy) in zip(boxes, shifts, strict=True))) + 1)
    out = np.zeros(a.shape, dtype=np.bool_)
    if left >= right or top >= bottom:
        return out
    region = (left, top, right, bottom)
    blend = (1.0 - t) * _moved_field(a, boxes[0], shifts[0], region) + t * _moved_field(b, boxes[1], shifts[1], region)
    out[top:bottom, left:right] = blend < 0.0
    return out


Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), in pixels


def _box(mask: NDArray[np.bool_]) -> Box:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _centroid(mask: NDArray[np.bool_]) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return float(cols.mean()), float(rows.mean())


def _moved_field(mask: NDArray[np.bool_], box: Box, shift: tuple[float, float], region: Box) -> NDArray[np.float64]:
    """`mask`'s signed distance field moved by `shift`, on the frame's `region`.

    The field is computed on the part of the plane the region reads (the region moved back,
    plus a pixel for the bilinear reads) together with the mask's box and a margin of
    background: distances there are exact, as every pixel of the mask lies inside it."""
    dx, dy = shift
    left, top, right, bottom = region
    src_left = min(box[0], math.floor(left - dx)) - 2
    src_top = min(box[1], math.floor(top - dy)) - 2
    src_right = max(box[2], math.ceil(right - dx)) + 2
    src_bottom = max(box[3], math.ceil(bottom - dy)) + 2
    field = _signed_distance(_window(mask, src_left, src_top, src_right, src_bottom))
    # Region pixel (u, v) is frame pixel (left + u, top + v) and reads the field at that point
    # minus the shift: at (left + u - dx - src_left, top + v - dy - src_top) in the window.
    matrix = np.array([[1.0, 0.0, dx + src_left - left], [0.0, 1.0, dy + src_top - top]])
    warped = cv2.warpAffine(field, matrix, (right - left, bottom - top), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(warped, dtype=np.float64)


def _window(mask: NDArray[np.bool_], left: int, top: int, right: int, bottom: int) -> NDArray[np.bool_]:
    """mask[top:bottom, left:right], background where that reaches beyond the frame."""
    height, width = mask.shape
    out = np.zeros((bottom - top, right - left), dtype=np.bool_)
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if x0 < x1 and y0 < y1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = mask[y0:y1, x0:x1]
    return out


def _signed_distance(mask: NDArray[np.bool_]) -> NDArray[np.float32]:
    """Per pixel: minus the distance to the nearest pixel outside inside the mask, the distance
    to the nearest pixel inside outside it (Euclidean, between pixel centres), less half a pixel
    so the zero level runs along the mask's edge. `mask` must have background and foreground."""
    binary = np.ascontiguousarray(mask, dtype=np.uint8)
    inside = cv2.distanceTransform(binary, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(np.ascontiguousarray(1 - binary), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    field = np.where(binary != 0, 0.5 - np.asarray(inside), np.asarray(outside) - 0.5)
    return np.asarray(field, dtype=np.float32)
