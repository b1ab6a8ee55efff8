"""Conversions between label shapes and masks, RLE set operations, and validation against a frame.

Coordinates follow `domain.shapes` (OpenCV's convention): x to the right, y down, and integer
coordinates at pixel centres, so pixel (col, row) covers [col - 0.5, col + 0.5] x
[row - 0.5, row + 0.5].

Which pixels a shape covers:

- polygon: a part covers the pixels whose centre lies inside or on its outer ring and not strictly
  inside one of its holes (a hole's ring belongs to the part: the region is closed); parts are
  OR-ed. Rings are drawn with OpenCV's `fillPoly`/`polylines` at 1/256 pixel precision. For rings
  through pixel centres with horizontal, vertical or diagonal edges (all that `mask_to_polygon`
  makes) that is exactly the rule above; along other edges OpenCV may add or drop pixels whose
  centre is within about one pixel of the edge.
- bbox: `x, y` is the top-left pixel and `w, h` count pixels, so the box covers the pixels whose
  centre lies in [x - 0.5, x + w - 0.5) x [y - 0.5, y + h - 0.5); a single pixel is w = h = 1.
- rotated bbox: the pixels whose centre lies inside or on the rectangle `rotated_bbox_corners`
  (computed exactly, to within 1e-6 pixel).

Masks are 2-D arrays, row-major (height, width); any non-zero value is set. Everything here is
pure and deterministic; bad input raises `GeometryError`.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray
from pycocotools import mask as coco_mask

from masklog.domain.limits import MAX_RLE_RUNS
from masklog.domain.shapes import (
    AREA_KINDS,
    SHAPE_KIND_OF,
    BBox,
    Bitmask,
    Keypoint,
    Polygon,
    PolygonPart,
    Polyline,
    Rle,
    RotatedBBox,
    Shape,
    ShapeKind,
    Skeleton,
    SkeletonPoint,
)

if TYPE_CHECKING:
    from cv2.typing import MatLike

__all__ = [
    "GeometryError",
    "bbox_to_mask",
    "mask_to_bbox",
    "mask_to_polygon",
    "mask_to_rotated_bbox",
    "panoptic_exclude",
    "polygon_to_mask",
    "rle_area",
    "rle_bbox",
    "rle_decode",
    "rle_difference",
    "rle_encode",
    "rle_intersection",
    "rle_iou",
    "rle_union",
    "rotated_bbox_corners",
    "rotated_bbox_to_mask",
    "shape_from_mask",
    "shape_points",
    "shape_to_mask",
    "shape_with_points",
    "validate_shape",
]

Mask = NDArray[np.bool_]
Points = NDArray[np.float64]

MAX_SIDE = 65535  # as `Rle.size` allows
MAX_COORD = 1e6  # as `shapes.Coord` allows; also keeps fixed-point coordinates inside int32
MAX_ANGLE = 360.0  # as `RotatedBBox.angle` allows

# cv2 draws at integer coordinates; 8 fractional bits keep sub-pixel vertices where they are.
_SUBPIXEL_BITS = 8
_SUBPIXEL_SCALE = 1 << _SUBPIXEL_BITS

# A COCO RLE value is stored in 5-bit groups, one character each. pycocotools' C reader shifts a
# 32-bit int, so a 7th group (shift 30 and up) overflows there: accept at most 6 (|delta| < 2**29).
_MAX_CHARS_PER_RLE_VALUE = 6

_PIXEL_CORNER_OFFSETS = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])

# Polygons made from model masks (SAM saves, tracked polygons) follow the mask's outline to
# within this many pixels: exact outlines of a model mask have a vertex per boundary pixel.
MASK_POLYGON_TOLERANCE = 1.0


class GeometryError(ValueError):
    """A shape, mask or RLE that is malformed or does not fit its frame."""


# ---------------------------------------------------------------------------------------------
# Input checks shared by the conversions.


def _check_frame(height: int, width: int, what: str = "frame") -> None:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise GeometryError(f"{what} {name} must be an integer, got {value!r}")
        if not 1 <= value <= MAX_SIDE:
            raise GeometryError(f"{what} {name} must be in 1..{MAX_SIDE}, got {value}")


def _binary(mask: NDArray[Any]) -> NDArray[np.uint8]:
    """The mask as a C-contiguous 0/1 uint8 array, the form cv2 and pycocotools take."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise GeometryError(f"a mask must be 2-D (height, width), got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise GeometryError(f"a mask must hold bool or numbers, got dtype {array.dtype}")
    _check_frame(array.shape[0], array.shape[1], "mask")
    return np.ascontiguousarray(array != 0).view(np.uint8)


def _finite(value: float, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise GeometryError(f"{what} must be a finite number, got {value!r}")
    return number


def _point_array(flat: Sequence[float], what: str) -> Points:
    """Flat [x0, y0, x1, y1, ...] as an (N, 2) float array; odd length, NaN/inf, huge values refused."""
    try:
        values = np.asarray(flat, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise GeometryError(f"{what} must be a flat list of numbers: {error}") from None
    if values.ndim != 1:
        raise GeometryError(f"{what} must be a flat list [x0, y0, x1, y1, ...], got shape {values.shape}")
    if values.size % 2:
        raise GeometryError(f"{what} has an odd number of coordinates ({values.size}): x, y must come in pairs")
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise GeometryError(f"{what} holds a NaN or infinite coordinate at index {bad}: {values[bad]}")
    if values.size and np.abs(values).max() > MAX_COORD:
        raise GeometryError(f"{what} has a coordinate beyond +-{MAX_COORD:g}: {values[np.abs(values).argmax()]:g}")
    return values.reshape(-1, 2)


def _fixed_point(points: Points) -> NDArray[np.int32]:
    return np.round(points * _SUBPIXEL_SCALE).astype(np.int32)


def _shoelace_area(points: Points) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1)))


# ---------------------------------------------------------------------------------------------
# RLE


def _run_lengths(rle: Rle) -> NDArray[np.int64]:
    """Decode and check `rle.counts`; only strings that pass are ever handed to pycocotools.

    pycocotools reads the string without bounds checks: a trailing continuation character reads
    past its end, and counts that do not add up to h*w decode into uninitialised memory. This
    reader follows the same format (5 data bits a character, offset by 48, bit 0x20 = more
    characters follow, bit 0x10 of the last one = negative, values from the 4th on stored as the
    difference to the value two before) but refuses anything the C reader would misread.
    """
    if not isinstance(rle, Rle):
        raise GeometryError(f"expected an Rle, got {type(rle).__name__}")
    try:
        height, width = rle.size
    except (TypeError, ValueError):
        raise GeometryError(f"RLE size must be (height, width), got {rle.size!r}") from None
    _check_frame(height, width, "RLE")
    counts = rle.counts
    if not isinstance(counts, str):
        raise GeometryError(f"RLE counts must be a str, got {type(counts).__name__}")
    if not counts:
        raise GeometryError(f"RLE counts are empty; a {height}x{width} mask needs at least one run")
    if not counts.isascii():
        bad = next(index for index, char in enumerate(counts) if not char.isascii())
        raise GeometryError(f"RLE counts hold a non-ASCII character {counts[bad]!r} at index {bad}")
    codes = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    out_of_alphabet = (codes < 0) | (codes > 63)
    if out_of_alphabet.any():
        bad = int(np.flatnonzero(out_of_alphabet)[0])
        raise GeometryError(f"RLE counts hold {counts[bad]!r} at index {bad}; only characters '0'..'o' are allowed")
    continues = (codes & 0x20) != 0
    if continues[-1]:
        raise GeometryError(
            f"RLE counts end in the middle of a value (the last character {counts[-1]!r} says more follow)"
        )
    value_ends = np.flatnonzero(~continues)
    value_starts = np.concatenate(([0], value_ends[:-1] + 1))
    chars_per_value = value_ends - value_starts + 1
    if chars_per_value.max() > _MAX_CHARS_PER_RLE_VALUE:
        bad = int(np.argmax(chars_per_value))
        raise GeometryError(
            f"RLE value {bad} spans {int(chars_per_value[bad])} characters; at most "
            f"{_MAX_CHARS_PER_RLE_VALUE} are supported (run lengths must change by less than 2**29)"
        )
    position_in_value = np.arange(codes.size) - np.repeat(value_starts, chars_per_value)
    values = np.add.reduceat((codes & 0x1F) << (5 * position_in_value), value_starts)
    negative = (codes[value_ends] & 0x10) != 0
    values -= negative.astype(np.int64) << (5 * chars_per_value)
    run_lengths = values.copy()
    run_lengths[1::2] = np.cumsum(values[1::2])
    run_lengths[2::2] = np.cumsum(values[2::2])
    if (run_lengths < 0).any():
        bad = int(np.flatnonzero(run_lengths < 0)[0])
        raise GeometryError(f"RLE run {bad} has a negative length ({int(run_lengths[bad])})")
    if (run_lengths[1:] == 0).any():
        # Encoders never write an empty run after the first, and pycocotools' set operations
        # assume they do not: they merge such an RLE into counts that no longer add up.
        bad = int(np.flatnonzero(run_lengths[1:] == 0)[0]) + 1
        raise GeometryError(f"RLE run {bad} has length 0; only the first run may be empty")
    total = int(run_lengths.sum())
    if total != height * width:
        raise GeometryError(
            f"RLE runs cover {total} pixels but size {height}x{width} needs {height * width}"
        )
    return run_lengths


def _coco(rle: Rle) -> dict[str, Any]:
    return {"size": [int(rle.size[0]), int(rle.size[1])], "counts": rle.counts.encode("ascii")}


def _from_coco(encoded: dict[str, Any]) -> Rle:
    height, width = encoded["size"]
    return Rle(size=(int(height), int(width)), counts=encoded["counts"].decode("ascii"))


def _rle_from_run_lengths(run_lengths: NDArray[np.int64], size: Sequence[int]) -> Rle:
    height, width = size
    counts = np.asarray(run_lengths, dtype=np.uint64)
    encoded = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return _from_coco(encoded)


def rle_from_counts(counts: Sequence[int], size: Sequence[int]) -> Rle:
    """The compressed RLE of uncompressed COCO counts (run lengths, the first one of unset
    pixels, column-major), as COCO files store crowd masks; checked like a compressed one."""
    height, width = _checked_size(size)
    if len(counts) > MAX_RLE_RUNS:
        raise GeometryError(f"RLE has {len(counts)} counts; at most {MAX_RLE_RUNS} are allowed")
    try:
        # A count past the frame's pixels is refused below; bounding it first keeps it in int64.
        run_lengths = np.asarray([max(-1, min(int(c), height * width + 1)) for c in counts], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise GeometryError("RLE counts must be whole numbers") from None
    if run_lengths.size == 0:
        raise GeometryError(f"RLE counts are empty; a {height}x{width} mask needs at least one run")
    if (run_lengths < 0).any():
        raise GeometryError("RLE counts must not be negative")
    if run_lengths.sum() != height * width:
        raise GeometryError(f"RLE runs cover {int(run_lengths.sum())} pixels but size {height}x{width} needs {height * width}")
    # Empty runs after the first merge into their neighbours: the same mask, in canonical form.
    mask = np.repeat(np.arange(run_lengths.size) % 2 == 1, run_lengths).reshape(width, height).T
    return rle_encode(mask)


def _checked_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = size
    except (TypeError, ValueError):
        raise GeometryError(f"size must be (height, width), got {size!r}") from None
    _check_frame(height, width)
    return int(height), int(width)


def _same_size(rles: Sequence[Rle], size: tuple[int, ...]) -> None:
    for index, rle in enumerate(rles):
        if tuple(rle.size) != size:
            raise GeometryError(f"masks differ in size: RLE {index} is {tuple(rle.size)}, expected {size}")


def rle_encode(mask: NDArray[Any]) -> Rle:
    """COCO compressed RLE of a 2-D mask (any non-zero pixel is set)."""
    binary = _binary(mask)
    return _from_coco(coco_mask.encode(np.asfortranarray(binary)))


def rle_decode(rle: Rle) -> Mask:
    """The (height, width) bool mask of a valid RLE."""
    run_lengths = _run_lengths(rle)
    height, width = rle.size
    run_is_set = np.arange(run_lengths.size) % 2 == 1
    column_major = np.repeat(run_is_set, run_lengths)
    return np.ascontiguousarray(column_major.reshape(width, height).T)


def rle_area(rle: Rle) -> int:
    """Number of set pixels; raises GeometryError for an invalid RLE.

    Checking a long RLE string takes a while (about 0.2 s for a 2 MiB one), too long for an
    event loop: a server calls this first on a worker thread, and the answer (or the error)
    waits here for the same call on the loop, which then costs a look-up.
    """
    if len(rle.counts) < _REMEMBERED_RLE_MIN_CHARS:
        return int(_run_lengths(rle)[1::2].sum())
    key = (tuple(rle.size), rle.counts)
    with _remembered_lock:
        known = _remembered_areas.get(key)
    if known is None:
        try:
            known = int(_run_lengths(rle)[1::2].sum())
        except GeometryError as error:
            known = error
        _remember(key, known)
    if isinstance(known, GeometryError):
        raise GeometryError(str(known))
    return known


_REMEMBERED_RLE_MIN_CHARS = 16 * 1024
_REMEMBERED_RLE_MAX_CHARS = 64 * 1024**2  # all remembered strings together
_remembered_areas: OrderedDict[tuple[tuple[int, ...], str], int | GeometryError] = OrderedDict()
_remembered_chars = 0
_remembered_lock = threading.Lock()


def _remember(key: tuple[tuple[int, ...], str], area: int | GeometryError) -> None:
    global _remembered_chars
    with _remembered_lock:
        if key in _remembered_areas:
            return
        _remembered_areas[key] = area
        _remembered_chars += len(key[1])
        while _remembered_chars > _REMEMBERED_RLE_MAX_CHARS:
            (_, counts), _ = _remembered_areas.popitem(last=False)
            _remembered_chars -= len(counts)


def rle_iou(a: Rle, b: Rle) -> float:
    """Intersection over union. Two empty masks are identical, so their IoU is 1.0."""
    area_a, area_b = rle_area(a), rle_area(b)
    _same_size([a, b], tuple(a.size))
    if area_a == 0 and area_b == 0:
        return 1.0
    if area_a == 0 or area_b == 0:
        return 0.0
    return float(coco_mask.iou([_coco(a)], [_coco(b)], [0])[0][0])


def rle_union(rles: Sequence[Rle], size: Sequence[int]) -> Rle:
    """Pixels set in any of `rles`; `size` (height, width) makes the union of none an empty mask."""
    frame = _checked_size(size)
    for rle in rles:
        _run_lengths(rle)
    _same_size(rles, frame)
    if not rles:
        return _rle_from_run_lengths(np.array([frame[0] * frame[1]]), frame)
    if len(rles) == 1:
        return rles[0]
    return _from_coco(coco_mask.merge([_coco(rle) for rle in rles], intersect=False))


def rle_intersection(a: Rle, b: Rle) -> Rle:
    """Pixels set in both."""
    _run_lengths(a)
    _run_lengths(b)
    _same_size([a, b], tuple(a.size))
    return _from_coco(coco_mask.merge([_coco(a), _coco(b)], intersect=True))


def _complement(rle: Rle) -> Rle:
    run_lengths = _run_lengths(rle)
    # Runs alternate unset/set starting with unset: a leading zero run shifts which is which.
    flipped = run_lengths[1:] if run_lengths[0] == 0 else np.concatenate(([0], run_lengths))
    return _rle_from_run_lengths(flipped, tuple(rle.size))


def rle_difference(a: Rle, b: Rle) -> Rle:
    """Pixels set in `a` and not in `b`."""
    _run_lengths(a)
    not_b = _complement(b)
    _same_size([a, b], tuple(a.size))
    return _from_coco(coco_mask.merge([_coco(a), _coco(not_b)], intersect=True))


def rle_bbox(rle: Rle) -> BBox | None:
    """Tight box of the set pixels (see `mask_to_bbox`), None for an empty mask."""
    if rle_area(rle) == 0:
        return None
    x, y, w, h = coco_mask.toBbox(_coco(rle))
    return BBox(x=float(x), y=float(y), w=float(w), h=float(h))


def panoptic_exclude(new: Rle, others: Sequence[Rle]) -> Rle:
    """`new` without every pixel any of `others` covers (S6); the result may be empty."""
    size = tuple(new.size)
    _run_lengths(new)
    if not others:
        return new
    return rle_difference(new, rle_union(others, size))


# ---------------------------------------------------------------------------------------------
# Polygons


def _ring_from_contour(contour: MatLike, tolerance: float) -> list[float]:
    points: NDArray[np.integer[Any] | np.floating[Any]] = contour.reshape(-1, 2)
    if tolerance > 0:
        simplified = cv2.approxPolyDP(contour, tolerance, True).reshape(-1, 2)
        # A ring simplified down to a line would stop being a pixel chain (see validate_shape),
        # and would lose the part's pixels: keep thin rings as they are.
        if len(simplified) >= 3 and _shoelace_area(simplified.astype(np.float64)) > 0:
            points = simplified
    # Contour points are whole pixels: kept as ints, they print shorter in the log and decode
    # faster than "412.0" (a Polygon's coordinates accept ints; they read back as floats).
    whole: NDArray[np.int64] = points.astype(np.int64).ravel()
    ring: list[float] = whole.tolist()  # ints, which a list of coordinates takes
    return ring


def mask_to_polygon(mask: NDArray[Any], tolerance: float = 0.0) -> Polygon:
    """Polygon of a mask: one part per 8-connected component, holes and islands included.

    Each part's outer ring runs through the centres of the component's boundary pixels; each
    hole ring runs through the centres of the component's pixels that border that hole (so a
    hole's ring belongs to the part, see the module docstring). An island inside a hole is a part
    of its own. With `tolerance` 0 only collinear points are dropped and
    `polygon_to_mask(mask_to_polygon(m), *m.shape)` equals `m` exactly. A component one pixel
    thin (a single pixel, a 1-px line) gives a degenerate outer ring: fewer than 3 points or zero
    area, integer vertices, horizontal/vertical/diagonal edges; `validate_shape` accepts those.
    With `tolerance` > 0 each ring is simplified with Douglas-Peucker (`cv2.approxPolyDP`, max
    deviation `tolerance` pixels), except rings that would collapse to a line, kept as they are.
    Raises GeometryError for an empty mask.
    """
    tolerance = _finite(tolerance, "tolerance")
    if tolerance < 0:
        raise GeometryError(f"tolerance must be >= 0, got {tolerance}")
    binary = _binary(mask)
    # RETR_CCOMP: top level = outer rings of components (islands in holes too), level 2 = holes.
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        raise GeometryError(f"mask {binary.shape} is empty: no polygon to make")
    links = hierarchy[0].tolist()  # per contour: next sibling, previous sibling, first child, parent
    parts: list[PolygonPart] = []
    for index, contour in enumerate(contours):
        if links[index][3] != -1:
            continue
        holes: list[list[float]] = []
        child = links[index][2]
        while child != -1:
            holes.append(_ring_from_contour(contours[child], tolerance))
            child = links[child][0]
        parts.append(PolygonPart(outer=_ring_from_contour(contour, tolerance), holes=holes))
    return Polygon(parts=parts)


RingRows = slice  # rows of one ring in the polygon's stacked (N, 2) point array


def _polygon_rings(polygon: Polygon) -> tuple[Points, list[tuple[RingRows, list[RingRows]]]]:
    """All ring points stacked in one (N, 2) array, and each part's (outer, holes) rows in it.

    Converted in one go rather than ring by ring: a noisy mask's polygon can have 10^4 rings.
    """
    rings = [ring for part in polygon.parts for ring in (part.outer, *part.holes)]
    lengths = np.zeros(0, dtype=np.int64)
    try:
        lengths = np.array([len(ring) for ring in rings], dtype=np.int64)
        flat = np.fromiter(chain.from_iterable(rings), dtype=np.float64, count=int(lengths.sum()))
    except (TypeError, ValueError):
        flat = None
    if (
        flat is None
        or (lengths % 2).any()
        or (lengths == 0).any()
        or not np.isfinite(flat).all()
        or (flat.size and np.abs(flat).max() > MAX_COORD)
    ):
        _raise_first_ring_error(polygon)
    assert flat is not None
    ends = np.cumsum(lengths // 2).tolist()
    rows = [slice(end - length // 2, end) for end, length in zip(ends, lengths.tolist(), strict=True)]
    parts: list[tuple[RingRows, list[RingRows]]] = []
    next_ring = 0
    for part in polygon.parts:
        parts.append((rows[next_ring], rows[next_ring + 1 : next_ring + 1 + len(part.holes)]))
        next_ring += 1 + len(part.holes)
    return flat.reshape(-1, 2), parts


def _raise_first_ring_error(polygon: Polygon) -> None:
    """Find the ring the batch conversion choked on, to name it in the error."""
    for part_index, part in enumerate(polygon.parts):
        named_rings = [(f"polygon part {part_index} outer ring", part.outer)]
        named_rings += [(f"polygon part {part_index} hole {index}", hole) for index, hole in enumerate(part.holes)]
        for name, ring in named_rings:
            if not len(_point_array(ring, name)):
                raise GeometryError(f"{name} has no points")
    raise GeometryError("polygon coordinates are malformed")  # not reached: some ring failed above


def polygon_to_mask(polygon: Polygon, height: int, width: int) -> Mask:
    """The pixels a polygon covers (see the module docstring); a polygon without parts covers none."""
    _check_frame(height, width)
    points, parts = _polygon_rings(polygon)
    fixed = _fixed_point(points)
    canvas = np.zeros((height, width), dtype=np.uint8)
    for outer_rows, holes_rows in parts:
        if not holes_rows:
            cv2.fillPoly(canvas, [fixed[outer_rows]], 1, shift=_SUBPIXEL_BITS)
            continue
        # A hole cuts only its own part (another part may be an island inside it), so a part with
        # holes is drawn on its own, within the outer ring's bounding box, and OR-ed in.
        outer = points[outer_rows]
        left = max(0, math.floor(outer[:, 0].min()))
        top = max(0, math.floor(outer[:, 1].min()))
        right = min(width, math.ceil(outer[:, 0].max()) + 1)
        bottom = min(height, math.ceil(outer[:, 1].max()) + 1)
        if left >= right or top >= bottom:
            continue
        origin = np.array([left, top], dtype=np.int32) * _SUBPIXEL_SCALE
        part_pixels = np.zeros((bottom - top, right - left), dtype=np.uint8)
        cv2.fillPoly(part_pixels, [fixed[outer_rows] - origin], 1, shift=_SUBPIXEL_BITS)
        holes = [fixed[rows] - origin for rows in holes_rows]
        cut = np.zeros_like(part_pixels)
        for hole in holes:  # one at a time: overlapping holes must not cancel out
            cv2.fillPoly(cut, [hole], 1, shift=_SUBPIXEL_BITS)
        cv2.polylines(cut, holes, True, 0, shift=_SUBPIXEL_BITS)  # the ring stays in the part
        part_pixels &= 1 - cut
        canvas[top:bottom, left:right] |= part_pixels
    return canvas.view(np.bool_)


# ---------------------------------------------------------------------------------------------
# Boxes


def mask_to_bbox(mask: NDArray[Any]) -> BBox:
    """Tight box of the set pixels: x, y = top-left set pixel, w, h in pixels (one pixel: 1 x 1)."""
    binary = _binary(mask)
    x, y, w, h = cv2.boundingRect(binary)
    if w == 0:
        raise GeometryError(f"mask {binary.shape} is empty: no box to make")
    return BBox(x=float(x), y=float(y), w=float(w), h=float(h))


def bbox_to_mask(bbox: BBox, height: int, width: int) -> Mask:
    """Pixels whose centre lies in [x - 0.5, x + w - 0.5) x [y - 0.5, y + h - 0.5), clipped to the frame."""
    _check_frame(height, width)
    x, y = _finite(bbox.x, "bbox x"), _finite(bbox.y, "bbox y")
    w, h = _finite(bbox.w, "bbox w"), _finite(bbox.h, "bbox h")
    mask = np.zeros((height, width), dtype=np.bool_)
    first_col, end_col = max(0, math.ceil(x - 0.5)), min(width, math.ceil(x + w - 0.5))
    first_row, end_row = max(0, math.ceil(y - 0.5)), min(height, math.ceil(y + h - 0.5))
    if first_col < end_col and first_row < end_row:
        mask[first_row:end_row, first_col:end_col] = True
    return mask


def _normalised_rotated_bbox(cx: float, cy: float, w: float, h: float, angle: float) -> RotatedBBox:
    # A box at angle a is the same box at a -+ 90 with w and h swapped: pick the one in [-45, 45).
    while angle >= 45:
        angle -= 90
        w, h = h, w
    while angle < -45:
        angle += 90
        w, h = h, w
    # minAreaRect works in float32: round off its noise so equal masks give equal events.
    return RotatedBBox(
        cx=round(cx, 4), cy=round(cy, 4), w=round(w, 4), h=round(h, 4), angle=round(angle, 4) + 0.0
    )


def mask_to_rotated_bbox(mask: NDArray[Any]) -> RotatedBBox:
    """Smallest rotated rectangle (cv2.minAreaRect) holding every set pixel's whole square.

    Angle convention (as `RotatedBBox` and OpenCV's RotatedRect): the box's width axis points
    along (cos a, sin a) in image coordinates, so a positive angle turns it clockwise on screen.
    The result is normalised to -45 <= angle < 45 (w and h swap as needed), so an axis-aligned
    mask gives angle 0 with w along x. Values are rounded to 1e-4.
    """
    binary = _binary(mask)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        raise GeometryError(f"mask {binary.shape} is empty: no box to make")
    hull = cv2.convexHull(np.concatenate(contours)).reshape(-1, 2)
    # The hull runs through pixel centres; the box must hold the pixels' squares, i.e. their corners.
    corners = (hull[:, None, :] + _PIXEL_CORNER_OFFSETS[None, :, :]).reshape(-1, 2).astype(np.float32)
    (cx, cy), (w, h), angle = cv2.minAreaRect(corners)
    return _normalised_rotated_bbox(float(cx), float(cy), float(w), float(h), float(angle))


def rotated_bbox_corners(rotated_bbox: RotatedBBox) -> Points:
    """The 4 corners (4, 2): top-left, top-right, bottom-right, bottom-left of the unrotated box."""
    cx, cy = _finite(rotated_bbox.cx, "rotated bbox cx"), _finite(rotated_bbox.cy, "rotated bbox cy")
    w, h = _finite(rotated_bbox.w, "rotated bbox w"), _finite(rotated_bbox.h, "rotated bbox h")
    radians = math.radians(_finite(rotated_bbox.angle, "rotated bbox angle"))
    along_w = np.array([math.cos(radians), math.sin(radians)]) * (w / 2)
    along_h = np.array([-math.sin(radians), math.cos(radians)]) * (h / 2)
    centre = np.array([cx, cy])
    top_left, top_right = centre - along_w - along_h, centre + along_w - along_h
    return np.stack([top_left, top_right, 2 * centre - top_left, 2 * centre - top_right])


def rotated_bbox_to_mask(rotated_bbox: RotatedBBox, height: int, width: int) -> Mask:
    """Pixels whose centre lies inside or on the rotated rectangle (to within 1e-6 pixel)."""
    _check_frame(height, width)
    return _convex_polygon_mask(rotated_bbox_corners(rotated_bbox), height, width)


def _convex_polygon_mask(corners: Points, height: int, width: int) -> Mask:
    """Exact centre-inside test for a convex polygon, one column span per row.

    cv2.fillPoly is not used here: it also draws pixels up to about one pixel outside the edges.
    """
    mask = np.zeros((height, width), dtype=np.bool_)
    top = max(0, math.ceil(corners[:, 1].min() - 1e-6))
    bottom = min(height - 1, math.floor(corners[:, 1].max() + 1e-6))
    if top > bottom:
        return mask
    row_y = np.arange(top, bottom + 1, dtype=np.float64)
    lowest_x = np.full(row_y.shape, -np.inf)
    highest_x = np.full(row_y.shape, np.inf)
    x, y = corners[:, 0], corners[:, 1]
    orientation = 1.0 if float(x @ np.roll(y, -1) - y @ np.roll(x, -1)) >= 0 else -1.0
    for start, end in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        dx, dy = float(end[0] - start[0]), float(end[1] - start[1])
        slack = 1e-6 * math.hypot(dx, dy)  # the tolerance as a distance to the edge's line
        # Inside the edge: orientation * cross(edge, point - start) >= -slack, i.e. coefficient * x >= bound.
        coefficient = -orientation * dy
        bound = -slack - orientation * (dx * (row_y - start[1]) + dy * start[0])
        if coefficient > 0:
            lowest_x = np.maximum(lowest_x, bound / coefficient)
        elif coefficient < 0:
            highest_x = np.minimum(highest_x, bound / coefficient)
        else:
            lowest_x[bound > 0] = np.inf  # a horizontal edge: the rows beyond it are outside
    first_col = np.ceil(np.clip(lowest_x, -1, width)).astype(np.int64)
    last_col = np.floor(np.clip(highest_x, -1, width)).astype(np.int64)
    left, right = max(0, int(first_col.min())), min(width - 1, int(last_col.max()))
    if left > right:
        return mask
    columns = np.arange(left, right + 1)
    mask[top : bottom + 1, left : right + 1] = (columns >= first_col[:, None]) & (columns <= last_col[:, None])
    return mask


# ---------------------------------------------------------------------------------------------
# Dispatch over shape kinds


def shape_to_mask(shape: Shape, height: int, width: int) -> Mask:
    """The pixels an area shape covers; GeometryError for polylines, keypoints and skeletons."""
    _check_frame(height, width)
    match shape:
        case Bitmask(rle=rle):
            if tuple(rle.size) != (height, width):
                raise GeometryError(f"bitmask size {tuple(rle.size)} does not match the frame ({height}, {width})")
            return rle_decode(rle)
        case Polygon():
            return polygon_to_mask(shape, height, width)
        case BBox():
            return bbox_to_mask(shape, height, width)
        case RotatedBBox():
            return rotated_bbox_to_mask(shape, height, width)
    raise GeometryError(f"a {_kind_name(shape)} has no area: it cannot be turned into a mask")


def shape_from_mask(kind: ShapeKind, mask: NDArray[Any], tolerance: float = 0.0) -> Shape:
    """The `kind` of shape for a non-empty mask; `tolerance` is for polygons (see mask_to_polygon)."""
    binary = _binary(mask)
    if kind not in AREA_KINDS:
        allowed = ", ".join(sorted(str(area_kind) for area_kind in AREA_KINDS))
        raise GeometryError(f"a {kind!s} cannot be made from a mask; only {allowed} can")
    if not binary.any():
        raise GeometryError(f"mask {binary.shape} is empty: no {kind!s} to make")
    if kind == ShapeKind.BITMASK:
        return Bitmask(rle=rle_encode(binary))
    if kind == ShapeKind.POLYGON:
        return mask_to_polygon(binary, tolerance)
    if kind == ShapeKind.BBOX:
        return mask_to_bbox(binary)
    return mask_to_rotated_bbox(binary)


def shape_points(shape: Shape) -> Points:
    """The shape's points as (N, 2) [x, y].

    Polyline: its points; keypoint: one; skeleton: its points in template order (visibility is
    not included); polygon: the outer-ring vertices of every part, part after part (holes left
    out); bbox: the 4 corners of the covered area, clockwise from top-left; rotated bbox:
    `rotated_bbox_corners`; bitmask: the outer-ring vertices of `mask_to_polygon` of it.
    """
    match shape:
        case Polyline(points=points):
            return _point_array(points, "polyline points")
        case Keypoint(x=x, y=y):
            return _point_array([x, y], "keypoint")
        case Skeleton(points=points):
            return _point_array([c for point in points for c in (point.x, point.y)], "skeleton points")
        case Polygon():
            ring_points, parts = _polygon_rings(shape)
            return np.concatenate([ring_points[outer_rows] for outer_rows, _ in parts]) if parts else np.zeros((0, 2))
        case BBox(x=x, y=y, w=w, h=h):
            left, top = _finite(x, "bbox x") - 0.5, _finite(y, "bbox y") - 0.5
            right, bottom = left + _finite(w, "bbox w"), top + _finite(h, "bbox h")
            return np.array([[left, top], [right, top], [right, bottom], [left, bottom]])
        case RotatedBBox():
            return rotated_bbox_corners(shape)
        case Bitmask(rle=rle):
            mask = rle_decode(rle)
            if not mask.any():
                return np.zeros((0, 2))
            return shape_points(mask_to_polygon(mask))
    raise GeometryError(f"unknown shape type {type(shape).__name__}")


def shape_with_points(shape: Shape, points: NDArray[Any]) -> Shape:
    """The same polyline, keypoint or skeleton with its points moved to `points` (N, 2).

    N must equal the shape's point count; a skeleton keeps each point's visibility.
    """
    moved = np.asarray(points, dtype=np.float64)
    if moved.ndim != 2 or moved.shape[1] != 2:
        raise GeometryError(f"points must have shape (N, 2), got {moved.shape}")
    if not np.isfinite(moved).all():
        raise GeometryError("points hold a NaN or infinite coordinate")
    match shape:
        case Polyline(points=old):
            _expect_count(len(old) // 2, len(moved), "polyline")
            return Polyline(points=moved.ravel().tolist())
        case Keypoint():
            _expect_count(1, len(moved), "keypoint")
            return Keypoint(x=float(moved[0, 0]), y=float(moved[0, 1]))
        case Skeleton(points=old):
            _expect_count(len(old), len(moved), "skeleton")
            return Skeleton(
                points=[
                    SkeletonPoint(x=float(x), y=float(y), visible=point.visible) for point, (x, y) in zip(old, moved, strict=True)
                ]
            )
    raise GeometryError(
        f"only polylines, keypoints and skeletons can have their points moved, not a {_kind_name(shape)}"
    )


def _expect_count(expected: int, got: int, what: str) -> None:
    if expected != got:
        raise GeometryError(f"a {what} with {_count(expected, 'point')} cannot take {_count(got, 'point')}")


def _kind_name(shape: object) -> str:
    kind = SHAPE_KIND_OF.get(type(shape))
    return str(kind) if kind is not None else type(shape).__name__


# ---------------------------------------------------------------------------------------------
# Validation against a frame


def _outside_frame(points: Points, width: int, height: int) -> NDArray[np.bool_]:
    return (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)


def _check_in_frame(points: Points, width: int, height: int, what: str) -> None:
    outside = _outside_frame(points, width, height)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        x, y = points[index]
        where = f"{what} point {index}" if len(points) > 1 else what
        raise GeometryError(
            f"{where} ({x:g}, {y:g}) is outside the frame: 0 <= x <= {width}, 0 <= y <= {height}"
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _validate_polygon(polygon: Polygon, width: int, height: int) -> None:
    if not polygon.parts:
        raise GeometryError("polygon has no parts")
    points, parts = _polygon_rings(polygon)
    rings: list[tuple[RingRows, str, bool]] = []  # rows, name, may be a thin pixel chain
    for part_index, (outer_rows, holes_rows) in enumerate(parts):
        rings.append((outer_rows, f"polygon part {part_index} outer ring", True))
        rings += [(rows, f"polygon part {part_index} hole {index}", False) for index, rows in enumerate(holes_rows)]
    if _outside_frame(points, width, height).any():
        for rows, name, _ in rings:
            _check_in_frame(points[rows], width, height, name)
    starts = np.array([rows.start for rows, _, _ in rings])
    stops = np.array([rows.stop for rows, _, _ in rings])
    # Shoelace area of every ring at once: each point times the next one of its own ring.
    following = np.arange(1, len(points) + 1)
    following[stops - 1] = starts
    x, y = points[:, 0], points[:, 1]
    areas = 0.5 * np.abs(np.add.reduceat(x * y[following] - y * x[following], starts))
    # A thin pixel chain: integer vertices, each edge horizontal, vertical or diagonal.
    step = np.abs(points[following] - points)
    chain_like = (points == np.round(points)).all(axis=1) & (
        (step[:, 0] == 0) | (step[:, 1] == 0) | (step[:, 0] == step[:, 1])
    )
    pixel_chains = np.logical_and.reduceat(chain_like, starts)
    for index in np.flatnonzero((stops - starts < 3) | (areas <= 1e-9)).tolist():
        rows, name, may_be_thin = rings[index]
        if may_be_thin and pixel_chains[index]:
            continue
        count = rows.stop - rows.start
        problem = f"only {_count(count, 'point')}" if count < 3 else "zero area"
        exception = (
            " (only a chain of pixel centres with horizontal, vertical or diagonal edges may be thin)"
            if may_be_thin
            else ""
        )
        raise GeometryError(f"{name} has {problem}: a ring needs at least 3 points and a non-zero area{exception}")


def _check_positive_size(w: float, h: float, what: str) -> None:
    if w <= 0 or h <= 0:
        raise GeometryError(f"{what} must have w > 0 and h > 0, got w={w:g}, h={h:g}")


def validate_shape(shape: Shape, width: int, height: int, skeleton_points: int | None = None) -> None:
    """Raise GeometryError unless `shape` is well formed and lies in a width x height frame.

    Coordinates must be finite and within 0 <= x <= width, 0 <= y <= height (a bbox: x, y >= 0,
    x + w <= width, y + h <= height, i.e. it covers frame pixels only; a rotated bbox: its centre
    in that range, its corners may stick out). Bitmask: valid RLE of size (height, width), not
    empty. Polygon: at least one part; rings of x, y pairs with at least 3 points and a non-zero
    area, except that an outer ring may be a thin pixel chain (integer vertices, horizontal,
    vertical or diagonal edges), as `mask_to_polygon` makes for 1-px parts. Boxes: w, h > 0.
    Polyline: at least 2 points. Skeleton: at least 1 point, and exactly `skeleton_points` when
    given; invisible points must lie in the frame too.
    """
    _check_frame(height, width)
    match shape:
        case Bitmask(rle=rle):
            if tuple(rle.size) != (height, width):
                raise GeometryError(
                    f"bitmask size {tuple(rle.size)} does not match the frame (height, width) = ({height}, {width})"
                )
            if rle_area(rle) == 0:
                raise GeometryError(f"bitmask of size {tuple(rle.size)} is empty")
        case Polygon():
            _validate_polygon(shape, width, height)
        case BBox(x=x, y=y, w=w, h=h):
            x, y, w, h = (_finite(value, f"bbox {name}") for name, value in zip("xywh", (x, y, w, h), strict=True))
            _check_positive_size(w, h, "bbox")
            if x < 0 or y < 0 or x + w > width or y + h > height:
                raise GeometryError(
                    f"bbox x={x:g}, y={y:g}, w={w:g}, h={h:g} sticks out of the {width}x{height} frame "
                    f"(needs x, y >= 0, x + w <= {width}, y + h <= {height})"
                )
        case RotatedBBox(cx=cx, cy=cy, w=w, h=h, angle=angle):
            cx, cy = _finite(cx, "rotated bbox cx"), _finite(cy, "rotated bbox cy")
            w, h = _finite(w, "rotated bbox w"), _finite(h, "rotated bbox h")
            angle = _finite(angle, "rotated bbox angle")
            _check_positive_size(w, h, "rotated bbox")
            if abs(angle) > MAX_ANGLE:
                raise GeometryError(f"rotated bbox angle must be within +-{MAX_ANGLE:g} degrees, got {angle:g}")
            _check_in_frame(np.array([[cx, cy]]), width, height, "rotated bbox centre")
        case Polyline(points=flat):
            points = _point_array(flat, "polyline")
            if len(points) < 2:
                raise GeometryError(f"polyline has {_count(len(points), 'point')}, needs at least 2")
            _check_in_frame(points, width, height, "polyline")
        case Keypoint(x=x, y=y):
            _check_in_frame(_point_array([x, y], "keypoint"), width, height, "keypoint")
        case Skeleton(points=skeleton):
            if not skeleton:
                raise GeometryError("skeleton has no points")
            if skeleton_points is not None and len(skeleton) != skeleton_points:
                raise GeometryError(
                    f"skeleton has {_count(len(skeleton), 'point')}, its class's template has {skeleton_points}"
                )
            points = _point_array([c for point in skeleton for c in (point.x, point.y)], "skeleton")
            _check_in_frame(points, width, height, "skeleton")
        case _:
            raise GeometryError(f"unknown shape type {type(shape).__name__}")
