"""Tests for domain.geometry: RLE, polygons, boxes, dispatch, validation and panoptic exclusion."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from pycocotools import mask as coco_mask

from masklog.domain.geometry import (
    GeometryError,
    bbox_to_mask,
    mask_to_bbox,
    mask_to_polygon,
    mask_to_rotated_bbox,
    panoptic_exclude,
    polygon_to_mask,
    rle_area,
    rle_bbox,
    rle_decode,
    rle_difference,
    rle_encode,
    rle_intersection,
    rle_iou,
    rle_union,
    rotated_bbox_corners,
    rotated_bbox_to_mask,
    shape_from_mask,
    shape_points,
    shape_to_mask,
    shape_with_points,
    validate_shape,
)
from masklog.domain.shapes import (
    AREA_KINDS,
    POINT_KINDS,
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

Mask = NDArray[np.bool_]

# pycocotools' own decode, used here to cross-check, warns under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# Sized to keep the file within ~20 s on a small shared machine.
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
THOROUGH = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# Mask strategies


@st.composite
def noise_masks(draw: st.DrawFn, max_side: int = 20, height: int | None = None, width: int | None = None) -> Mask:
    """Pixel noise of any density: the worst case for contours (diagonal links, pinches, spurs)."""
    height = height or draw(st.integers(1, max_side))
    width = width or draw(st.integers(1, max_side))
    noise = draw(st.binary(min_size=height * width, max_size=height * width))
    threshold = draw(st.integers(0, 256))
    return np.frombuffer(noise, dtype=np.uint8).reshape(height, width) < threshold


@st.composite
def drawn_masks(draw: st.DrawFn, max_side: int = 48, height: int | None = None, width: int | None = None) -> Mask:
    """Rectangles, ellipses and noise patches OR-ed, XOR-ed and cut into each other: holes, islands in holes."""
    height = height or draw(st.integers(1, max_side))
    width = width or draw(st.integers(1, max_side))
    mask = np.zeros((height, width), dtype=np.uint8)
    for _ in range(draw(st.integers(1, 6))):
        stroke = np.zeros_like(mask)
        x, y = draw(st.integers(-2, width + 1)), draw(st.integers(-2, height + 1))
        sx, sy = draw(st.integers(0, max(width, 1))), draw(st.integers(0, max(height, 1)))
        form = draw(st.sampled_from(["rectangle", "ellipse", "noise"]))
        if form == "rectangle":
            cv2.rectangle(stroke, (x, y), (x + sx, y + sy), 1, thickness=-1)
        elif form == "ellipse":
            angle = draw(st.integers(0, 179))
            cv2.ellipse(stroke, (x, y), (sx // 2, sy // 2), angle, 0, 360, 1, thickness=-1)
        else:
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            density = draw(st.floats(0.05, 0.95))
            rows, cols = slice(max(0, y), max(0, y + sy)), slice(max(0, x), max(0, x + sx))
            patch = stroke[rows, cols]
            patch[...] = rng.random(patch.shape) < density
        combine = draw(st.sampled_from(["or", "xor", "cut"]))
        if combine == "or":
            mask |= stroke
        elif combine == "xor":
            mask ^= stroke
        else:
            mask &= 1 - stroke
    return mask.astype(bool)


any_masks = st.one_of(noise_masks(), drawn_masks())


@st.composite
def mask_pairs(draw: st.DrawFn) -> tuple[Mask, Mask]:
    height, width = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    pick = st.one_of(noise_masks(height=height, width=width), drawn_masks(height=height, width=width))
    return draw(pick), draw(pick)


@st.composite
def mask_groups(draw: st.DrawFn) -> list[Mask]:
    height, width = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    pick = st.one_of(noise_masks(height=height, width=width), drawn_masks(height=height, width=width))
    return draw(st.lists(pick, min_size=1, max_size=4))


def non_empty(mask: Mask) -> Mask:
    if not mask.any():
        mask = mask.copy()
        mask[mask.shape[0] // 2, mask.shape[1] // 2] = True
    return mask


def mask_of(rows: list[str]) -> Mask:
    """A mask from a picture: '#' set, '.' unset."""
    return np.array([[char == "#" for char in row] for row in rows], dtype=bool)


# ---------------------------------------------------------------------------------------------
# RLE


@THOROUGH
@given(any_masks)
def test_rle_round_trip_is_exact(mask: Mask) -> None:
    rle = rle_encode(mask)
    assert rle.size == mask.shape
    decoded = rle_decode(rle)
    assert decoded.dtype == np.bool_ and decoded.shape == mask.shape
    assert np.array_equal(decoded, mask)


@FAST
@given(any_masks)
def test_rle_is_standard_coco_in_both_directions(mask: Mask) -> None:
    ours = rle_encode(mask)
    assert np.array_equal(coco_mask.decode({"size": list(ours.size), "counts": ours.counts}), mask)
    theirs = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert np.array_equal(rle_decode(Rle(size=tuple(theirs["size"]), counts=theirs["counts"].decode())), mask)


def test_rle_encode_takes_any_non_zero_value_as_set() -> None:
    mask = np.array([[0, 2, -1], [0.5, 0, 255]])
    assert np.array_equal(rle_decode(rle_encode(mask)), mask != 0)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 2, 2)), np.zeros((0, 4)), np.array([["a"]])])
def test_rle_encode_refuses_what_is_not_a_2d_mask(bad: NDArray[np.generic]) -> None:
    with pytest.raises(GeometryError, match="mask"):
        rle_encode(bad)


@THOROUGH
@given(mask_pairs())
def test_rle_set_operations_equal_numpy(pair: tuple[Mask, Mask]) -> None:
    a, b = pair
    rle_a, rle_b = rle_encode(a), rle_encode(b)
    assert rle_area(rle_a) == a.sum()
    assert np.array_equal(rle_decode(rle_union([rle_a, rle_b], a.shape)), a | b)
    assert np.array_equal(rle_decode(rle_intersection(rle_a, rle_b)), a & b)
    assert np.array_equal(rle_decode(rle_difference(rle_a, rle_b)), a & ~b)
    assert np.array_equal(rle_decode(rle_difference(rle_b, rle_a)), b & ~a)
    union = (a | b).sum()
    expected_iou = (a & b).sum() / union if union else 1.0
    assert rle_iou(rle_a, rle_b) == pytest.approx(expected_iou, abs=1e-12)


@FAST
@given(mask_groups())
def test_rle_union_of_many_equals_numpy(masks: list[Mask]) -> None:
    expected = np.logical_or.reduce(masks)
    assert np.array_equal(rle_decode(rle_union([rle_encode(m) for m in masks], masks[0].shape)), expected)


def test_rle_union_of_nothing_is_an_empty_mask_of_the_size() -> None:
    empty = rle_union([], (3, 5))
    assert empty.size == (3, 5) and rle_area(empty) == 0


def test_rle_iou_of_empty_masks() -> None:
    empty, full = rle_encode(np.zeros((4, 4))), rle_encode(np.ones((4, 4)))
    assert rle_iou(empty, empty) == 1.0  # documented: two empty masks are identical
    assert rle_iou(empty, full) == 0.0
    assert rle_iou(full, empty) == 0.0
    assert rle_iou(full, full) == 1.0


def test_rle_operations_refuse_different_sizes() -> None:
    small, large = rle_encode(np.ones((3, 4))), rle_encode(np.ones((4, 3)))
    for operation in (rle_iou, rle_intersection, rle_difference, lambda a, b: rle_union([a, b], (3, 4))):
        with pytest.raises(GeometryError, match=r"differ in size.*\(4, 3\)"):
            operation(small, large)
    with pytest.raises(GeometryError, match="differ in size"):
        panoptic_exclude(small, [large])


@FAST
@given(any_masks)
def test_rle_bbox_is_the_tight_box(mask: Mask) -> None:
    box = rle_bbox(rle_encode(mask))
    if not mask.any():
        assert box is None
        return
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert box == BBox(x=cols[0], y=rows[0], w=cols[-1] - cols[0] + 1, h=rows[-1] - rows[0] + 1)
    assert box == mask_to_bbox(mask)


@pytest.mark.parametrize(
    ("counts", "size", "message"),
    [
        ("", (2, 2), "empty"),
        ("4\x00", (2, 2), "only characters"),
        ("4 ", (2, 2), "only characters"),
        ("4p", (2, 2), "only characters"),
        ("4é", (2, 2), "non-ASCII"),
        ("0P", (2, 2), "middle of a value"),  # 'P' = 48 + 0x20: a continuation with nothing after
        ("3", (2, 2), "cover 3 pixels but size 2x2 needs 4"),
        ("5", (2, 2), "cover 5 pixels"),
        ("4O", (2, 2), "negative length"),  # 'O' = 48 + 31: sign bit set, so -1
        ("PPPPPP0", (2, 2), "spans 7 characters"),
        ("12", (0, 2), "height must be in 1..65535"),
    ],
)
def test_invalid_rle_counts_raise_geometry_error(counts: str, size: tuple[int, int], message: str) -> None:
    rle = Rle(size=size, counts=counts)
    for operation in (rle_decode, rle_area, rle_bbox, lambda r: rle_iou(r, r), lambda r: panoptic_exclude(r, [])):
        with pytest.raises(GeometryError, match=message):
            operation(rle)
    with pytest.raises(GeometryError, match=message):
        validate_shape(Bitmask(rle=rle), size[1], size[0])


def _survives(counts: str, size: tuple[int, int]) -> None:
    """Every RLE function either works or raises GeometryError; what is accepted decodes as pycocotools does."""
    rle = Rle(size=size, counts=counts)
    try:
        decoded = rle_decode(rle)
    except GeometryError:
        for operation in (rle_area, rle_bbox, lambda r: rle_difference(r, r), lambda r: rle_union([r], size)):
            with pytest.raises(GeometryError):
                operation(rle)
        return
    # Only strings that passed our check reach pycocotools' unchecked C reader.
    assert np.array_equal(coco_mask.decode({"size": list(size), "counts": counts.encode()}), decoded)
    assert rle_area(rle) == decoded.sum()
    assert np.array_equal(rle_decode(rle_difference(rle, rle)), np.zeros(size, dtype=bool))
    assert np.array_equal(rle_decode(rle_union([rle, rle_encode(~decoded)], size)), np.ones(size, dtype=bool))


sizes = st.tuples(st.integers(1, 12), st.integers(1, 12))


@THOROUGH
@given(st.text(max_size=30), sizes)
@example("0P", (2, 2))
def test_garbage_rle_text_never_crashes(counts: str, size: tuple[int, int]) -> None:
    _survives(counts, size)


@THOROUGH
@given(st.text(alphabet=[chr(code) for code in range(48, 112)], min_size=1, max_size=12), sizes)
def test_garbage_in_the_rle_alphabet_never_crashes(counts: str, size: tuple[int, int]) -> None:
    _survives(counts, size)


@THOROUGH
@given(noise_masks(max_side=10), st.data())
def test_corrupted_valid_rle_never_crashes(mask: Mask, data: st.DataObject) -> None:
    counts = rle_encode(mask).counts
    index = data.draw(st.integers(0, len(counts) - 1))
    replacement = data.draw(st.characters(min_codepoint=40, max_codepoint=120))
    corrupted = counts[:index] + replacement + counts[index + 1 :]
    _survives(corrupted, mask.shape)
    _survives(counts[:index], mask.shape)


def test_an_empty_run_after_the_first_is_refused() -> None:
    # Runs 3, 0, 5 decode to a plausible mask, but pycocotools' merges mangle them (found by
    # test_corrupted_valid_rle_never_crashes): such counts are invalid, as no encoder writes them.
    with pytest.raises(GeometryError, match="run 1 has length 0"):
        rle_decode(Rle(size=(2, 4), counts="305"))
    assert rle_area(Rle(size=(2, 4), counts="08")) == 8  # an empty first run is how masks starting with 1 look


def test_rle_counts_round_trip_through_large_runs() -> None:
    # Run lengths over 2**15 take several characters, and their deltas go negative.
    mask = np.zeros((400, 500), dtype=bool)
    mask[:, 200:201] = True
    mask[100:300, 400:] = True
    assert np.array_equal(rle_decode(rle_encode(mask)), mask)


# ---------------------------------------------------------------------------------------------
# Panoptic exclusion


@THOROUGH
@given(mask_groups())
def test_panoptic_exclusion_keeps_only_uncovered_pixels_of_new(masks: list[Mask]) -> None:
    new, others = masks[0], masks[1:]
    result = rle_decode(panoptic_exclude(rle_encode(new), [rle_encode(m) for m in others]))
    assert not (result & ~new).any()  # a subset of new
    for other in others:
        assert not (result & other).any()  # never overlaps another mask
    assert np.array_equal(result, new & ~np.logical_or.reduce([np.zeros_like(new), *others]))


def test_panoptic_exclusion_without_others_is_new() -> None:
    new = rle_encode(np.eye(4))
    assert panoptic_exclude(new, []) == new


# ---------------------------------------------------------------------------------------------
# Polygons


def assert_polygon_round_trip(mask: Mask, tolerance: float = 0.0) -> Polygon:
    polygon = mask_to_polygon(mask, tolerance)
    validate_shape(polygon, mask.shape[1], mask.shape[0])  # what mask_to_polygon makes is valid
    if tolerance == 0:
        assert np.array_equal(polygon_to_mask(polygon, *mask.shape), mask)
    return polygon


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noise_masks())
def test_polygon_round_trip_is_exact_for_noise(mask: Mask) -> None:
    assert_polygon_round_trip(non_empty(mask))


@THOROUGH
@given(drawn_masks())
def test_polygon_round_trip_is_exact_for_drawn_shapes(mask: Mask) -> None:
    assert_polygon_round_trip(non_empty(mask))


@pytest.mark.parametrize("shape", [(3, 4), (4, 3)])
def test_polygon_round_trip_is_exact_for_every_small_mask(shape: tuple[int, int]) -> None:
    pixels = shape[0] * shape[1]
    for bits in range(1, 1 << pixels):
        mask = ((bits >> np.arange(pixels)) & 1).astype(bool).reshape(shape)
        assert np.array_equal(polygon_to_mask(mask_to_polygon(mask), *shape), mask), mask.astype(int)


SPECIAL_MASKS = {
    "single pixel": ["...", ".#.", "..."],
    "corner pixel": ["#.", ".."],
    "horizontal line": ["......", ".####.", "......"],
    "vertical line": [".#.", ".#.", ".#."],
    "diagonal": ["#...", ".#..", "..#.", "...#"],
    "plus": [".#.", "###", ".#."],
    "ring with island in the hole": [
        "#######",
        "#.....#",
        "#.###.#",
        "#.#.#.#",
        "#.###.#",
        "#.....#",
        "#######",
    ],
    # The hole wraps around a spur that hangs from the ring by a diagonal link: tracing the hole's
    # own pixels would close around the spur and cut it away.
    "spur into a hole": [
        "#######",
        "#.....#",
        "#..#..#",
        "#..#..#",
        "#.#...#",
        "##....#",
        "#######",
    ],
    "holes touching diagonally": ["#####", "#.#.#", "##.##", "#####"],
    "full frame": ["###", "###"],
}


@pytest.mark.parametrize("name", list(SPECIAL_MASKS))
def test_polygon_round_trip_of_special_masks(name: str) -> None:
    assert_polygon_round_trip(mask_of(SPECIAL_MASKS[name]))


def test_polygon_parts_and_holes() -> None:
    polygon = assert_polygon_round_trip(mask_of(SPECIAL_MASKS["ring with island in the hole"]))
    assert len(polygon.parts) == 2
    ring, island = sorted(polygon.parts, key=lambda part: max(part.outer), reverse=True)
    assert len(ring.holes) == 1 and len(island.holes) == 1
    assert sorted(zip(island.outer[::2], island.outer[1::2])) == [(2, 2), (2, 4), (4, 2), (4, 4)]
    assert sorted(zip(ring.outer[::2], ring.outer[1::2])) == [(0, 0), (0, 6), (6, 0), (6, 6)]


def test_thin_parts_become_pixel_chains() -> None:
    single = assert_polygon_round_trip(mask_of(SPECIAL_MASKS["single pixel"]))
    assert single.parts == [PolygonPart(outer=[1.0, 1.0], holes=[])]
    line = assert_polygon_round_trip(mask_of(SPECIAL_MASKS["horizontal line"]))
    assert set(zip(line.parts[0].outer[::2], line.parts[0].outer[1::2])) == {(1.0, 1.0), (4.0, 1.0)}


def test_islands_survive_whatever_the_part_order() -> None:
    mask = mask_of(SPECIAL_MASKS["ring with island in the hole"])
    polygon = mask_to_polygon(mask)
    for parts in itertools.permutations(polygon.parts):
        assert np.array_equal(polygon_to_mask(Polygon(parts=list(parts)), *mask.shape), mask)


@st.composite
def blobs(draw: st.DrawFn) -> Mask:
    mask = np.zeros((72, 72), dtype=np.uint8)
    axes = (draw(st.integers(10, 32)), draw(st.integers(10, 32)))
    centre = (draw(st.integers(34, 37)), draw(st.integers(34, 37)))
    cv2.ellipse(mask, centre, axes, draw(st.integers(0, 179)), 0, 360, 1, thickness=-1)
    return mask.astype(bool)


@FAST
@given(blobs(), st.floats(0.25, 1.0))
def test_simplified_polygon_of_a_blob_keeps_iou_above_0_9(mask: Mask, tolerance: float) -> None:
    # Stated bound: ellipses with semi-axes >= 10 px, tolerance <= 1 px give IoU >= 0.9 (seen: >= 0.94).
    exact, simplified = mask_to_polygon(mask), assert_polygon_round_trip(mask, tolerance)
    assert len(simplified.parts[0].outer) <= len(exact.parts[0].outer)
    result = polygon_to_mask(simplified, *mask.shape)
    assert (result & mask).sum() / (result | mask).sum() >= 0.9


@FAST
@given(any_masks, st.sampled_from([0.5, 1.0, 2.0, 4.0]))
def test_simplified_polygon_differs_only_near_the_boundary(mask: Mask, tolerance: float) -> None:
    """Every pixel that changes lies within tolerance + 1.5 px of a pixel of the other value (seen: + 0.25)."""
    mask = non_empty(mask)
    result = polygon_to_mask(assert_polygon_round_trip(mask, tolerance), *mask.shape)

    def distance_to_zeros(pixels: Mask, outside: bool) -> NDArray[np.float32]:
        padded = np.pad(pixels, 1, constant_values=outside).astype(np.uint8)
        return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]

    to_mask = distance_to_zeros(~mask, outside=True)  # beyond the frame is not mask
    to_background = distance_to_zeros(mask, outside=False)  # beyond the frame is background
    assert (to_mask[result & ~mask] <= tolerance + 1.5).all()
    assert (to_background[mask & ~result] <= tolerance + 1.5).all()


def test_simplification_drops_vertices() -> None:
    mask = np.zeros((100, 100), dtype=np.uint8)
    cv2.circle(mask, (50, 50), 40, 1, thickness=-1)
    exact, simplified = mask_to_polygon(mask), mask_to_polygon(mask, tolerance=1.0)
    assert len(simplified.parts[0].outer) < len(exact.parts[0].outer) / 2


def test_simplification_keeps_thin_parts() -> None:
    for name in ("single pixel", "horizontal line", "diagonal", "plus"):
        mask = mask_of(SPECIAL_MASKS[name])
        polygon = assert_polygon_round_trip(mask, tolerance=3.0)
        assert np.array_equal(polygon_to_mask(polygon, *mask.shape), mask), name


def test_mask_to_polygon_refuses_empty_masks_and_bad_tolerances() -> None:
    with pytest.raises(GeometryError, match="empty"):
        mask_to_polygon(np.zeros((3, 3)))
    for tolerance in (-0.5, math.nan, math.inf):
        with pytest.raises(GeometryError, match="tolerance"):
            mask_to_polygon(np.ones((3, 3)), tolerance)


def test_polygon_to_mask_of_a_drawn_polygon() -> None:
    triangle = Polygon(parts=[PolygonPart(outer=[0, 0, 4, 0, 0, 4])])
    expected = np.array([[col + row <= 4 for col in range(6)] for row in range(5)])
    assert np.array_equal(polygon_to_mask(triangle, 5, 6), expected)
    square_with_hole = Polygon(parts=[PolygonPart(outer=[0, 0, 4, 0, 4, 4, 0, 4], holes=[[1, 1, 3, 1, 3, 3, 1, 3]])])
    result = polygon_to_mask(square_with_hole, 5, 5)
    assert result.sum() == 25 - 1 and not result[2, 2]  # the hole's ring stays; only (2, 2) is cut


@pytest.mark.parametrize(
    ("outer", "message"),
    [
        ([0, 0, 1], "part 1 outer ring has an odd number"),
        ([0, 0, math.nan, 1, 2, 2], "part 1 outer ring holds a NaN"),
        ([], "part 1 outer ring has no points"),
        ([0, 0, 2e6, 0, 0, 1], "beyond"),
    ],
)
def test_polygon_to_mask_refuses_malformed_rings(outer: list[float], message: str) -> None:
    with pytest.raises(GeometryError, match=message):
        polygon_to_mask(Polygon(parts=[PolygonPart(outer=[0, 0, 3, 0, 3, 3]), PolygonPart(outer=outer)]), 5, 5)


# ---------------------------------------------------------------------------------------------
# Boxes


@THOROUGH
@given(any_masks)
def test_bbox_of_a_mask_is_tight_and_rasterises_to_its_rectangle(mask: Mask) -> None:
    mask = non_empty(mask)
    box = mask_to_bbox(mask)
    covered = bbox_to_mask(box, *mask.shape)
    assert not (mask & ~covered).any()
    x, y, w, h = int(box.x), int(box.y), int(box.w), int(box.h)
    assert covered.sum() == w * h
    # Tight: each side of the box touches a set pixel.
    assert mask[y, :].any() and mask[y + h - 1, :].any() and mask[:, x].any() and mask[:, x + w - 1].any()
    validate_shape(box, mask.shape[1], mask.shape[0])


def test_bbox_of_a_single_pixel() -> None:
    mask = np.zeros((4, 5), dtype=bool)
    mask[2, 3] = True
    assert mask_to_bbox(mask) == BBox(x=3, y=2, w=1, h=1)
    assert np.array_equal(bbox_to_mask(BBox(x=3, y=2, w=1, h=1), 4, 5), mask)


def test_bbox_to_mask_with_fractional_edges_and_clipping() -> None:
    # Pixel centres in [x - 0.5, x + w - 0.5): x = 0.4 starts at column 0, x = 0.6 at column 1.
    assert np.flatnonzero(bbox_to_mask(BBox(x=0.4, y=0, w=2, h=1), 1, 5)[0]).tolist() == [0, 1]
    assert np.flatnonzero(bbox_to_mask(BBox(x=0.6, y=0, w=2, h=1), 1, 5)[0]).tolist() == [1, 2]
    assert bbox_to_mask(BBox(x=3, y=-2, w=10, h=3), 4, 5).sum() == 2  # clipped to columns 3-4, row 0
    assert not bbox_to_mask(BBox(x=1, y=1, w=0, h=2), 4, 5).any()


@THOROUGH
@given(any_masks)
def test_rotated_bbox_of_a_mask_contains_it(mask: Mask) -> None:
    mask = non_empty(mask)
    rotated = mask_to_rotated_bbox(mask)
    assert -45 <= rotated.angle < 45
    assert not (mask & ~rotated_bbox_to_mask(rotated, *mask.shape)).any()
    box = mask_to_bbox(mask)
    assert rotated.w * rotated.h <= box.w * box.h + 1e-3  # never worse than the axis-aligned box
    validate_shape(rotated, mask.shape[1], mask.shape[0])


def test_rotated_bbox_of_an_upright_rectangle_is_exact() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:10] = True
    rotated = mask_to_rotated_bbox(mask)
    assert rotated == RotatedBBox(cx=6, cy=3, w=7, h=3, angle=0)
    assert np.array_equal(rotated_bbox_to_mask(rotated, 10, 12), mask)
    tall = mask_to_rotated_bbox(mask.T)  # w stays along x after normalising the angle
    assert (tall.w, tall.h, tall.angle) == (3, 7, 0)


def test_rotated_bbox_angle_is_clockwise_on_screen() -> None:
    mask = np.zeros((40, 60), dtype=np.uint8)
    cv2.line(mask, (5, 5), (45, 25), 1, thickness=3)  # going right and down: clockwise on screen
    rotated = mask_to_rotated_bbox(mask)
    assert rotated.angle == pytest.approx(math.degrees(math.atan2(20, 40)), abs=3)
    assert rotated.w > 3 * rotated.h


def test_rotated_bbox_to_mask_takes_either_corner_order() -> None:
    # A negative width lists the corners the other way round; it is still the same rectangle.
    upright = RotatedBBox(cx=6, cy=5, w=5, h=3, angle=20)
    mirrored = RotatedBBox(cx=6, cy=5, w=-5, h=3, angle=20)
    assert rotated_bbox_to_mask(upright, 12, 12).sum() > 10
    assert np.array_equal(rotated_bbox_to_mask(mirrored, 12, 12), rotated_bbox_to_mask(upright, 12, 12))


def test_rotated_bbox_corners() -> None:
    upright = rotated_bbox_corners(RotatedBBox(cx=5, cy=4, w=4, h=2, angle=0))
    assert np.allclose(upright, [[3, 3], [7, 3], [7, 5], [3, 5]])
    turned = rotated_bbox_corners(RotatedBBox(cx=5, cy=4, w=4, h=2, angle=90))
    assert np.allclose(turned, [[6, 2], [6, 6], [4, 6], [4, 2]])  # top-left went to the top-right


@FAST
@given(
    st.floats(-3, 23),
    st.floats(-3, 23),
    st.floats(0.1, 15),
    st.floats(0.1, 15),
    st.floats(-360, 360),
)
def test_rotated_bbox_to_mask_is_the_pixel_centres_inside(
    cx: float, cy: float, w: float, h: float, angle: float
) -> None:
    result = rotated_bbox_to_mask(RotatedBBox(cx=cx, cy=cy, w=w, h=h, angle=angle), 20, 22)
    rows, cols = np.mgrid[0:20, 0:22]
    radians = math.radians(angle)
    along_w = (cols - cx) * math.cos(radians) + (rows - cy) * math.sin(radians)
    along_h = -(cols - cx) * math.sin(radians) + (rows - cy) * math.cos(radians)
    margin = np.maximum(np.abs(along_w) - w / 2, np.abs(along_h) - h / 2)
    decided = np.abs(margin) > 1e-5  # leave out centres right on an edge
    assert np.array_equal(result[decided], (margin <= 0)[decided])


# ---------------------------------------------------------------------------------------------
# Dispatch


POINT_SHAPES: list[Shape] = [
    Polyline(points=[1, 1, 4, 2, 6, 6]),
    Keypoint(x=2.5, y=3),
    Skeleton(points=[SkeletonPoint(x=1, y=1), SkeletonPoint(x=3, y=2, visible=False)]),
]


@FAST
@given(any_masks, st.sampled_from(sorted(AREA_KINDS)))
def test_shape_from_mask_and_back(mask: Mask, kind: ShapeKind) -> None:
    mask = non_empty(mask)
    shape = shape_from_mask(kind, mask)
    validate_shape(shape, mask.shape[1], mask.shape[0])
    covered = shape_to_mask(shape, *mask.shape)
    if kind in (ShapeKind.BITMASK, ShapeKind.POLYGON):
        assert np.array_equal(covered, mask)
    else:
        assert not (mask & ~covered).any()


def test_shape_from_mask_refuses_point_kinds_and_empty_masks() -> None:
    for kind in POINT_KINDS:
        with pytest.raises(GeometryError, match=f"a {kind} cannot be made from a mask"):
            shape_from_mask(kind, np.ones((3, 3)))
    for kind in AREA_KINDS:
        with pytest.raises(GeometryError, match="empty"):
            shape_from_mask(kind, np.zeros((3, 3)))


def test_shape_to_mask_refuses_shapes_without_area_and_wrong_sizes() -> None:
    for shape in POINT_SHAPES:
        with pytest.raises(GeometryError, match="has no area"):
            shape_to_mask(shape, 8, 8)
    with pytest.raises(GeometryError, match=r"size \(3, 4\) does not match the frame \(4, 3\)"):
        shape_to_mask(Bitmask(rle=rle_encode(np.ones((3, 4)))), 4, 3)


def test_shape_points_of_every_kind() -> None:
    assert shape_points(Polyline(points=[1, 2, 3, 4])).tolist() == [[1, 2], [3, 4]]
    assert shape_points(Keypoint(x=2, y=3)).tolist() == [[2, 3]]
    assert shape_points(POINT_SHAPES[2]).tolist() == [[1, 1], [3, 2]]
    assert shape_points(BBox(x=1, y=2, w=3, h=1)).tolist() == [[0.5, 1.5], [3.5, 1.5], [3.5, 2.5], [0.5, 2.5]]
    rotated = RotatedBBox(cx=5, cy=4, w=4, h=2, angle=30)
    assert np.array_equal(shape_points(rotated), rotated_bbox_corners(rotated))
    two_parts = Polygon(
        parts=[PolygonPart(outer=[0, 0, 2, 0, 0, 2], holes=[[9, 9, 9, 9]]), PolygonPart(outer=[5, 5])]
    )
    assert shape_points(two_parts).tolist() == [[0, 0], [2, 0], [0, 2], [5, 5]]
    square = np.zeros((6, 6), dtype=bool)
    square[1:4, 2:5] = True
    corners = shape_points(Bitmask(rle=rle_encode(square)))
    assert sorted(map(tuple, corners.tolist())) == [(2, 1), (2, 3), (4, 1), (4, 3)]


def test_shape_with_points_moves_points_and_keeps_visibility() -> None:
    for shape in POINT_SHAPES:
        moved = shape_points(shape) + [1.5, -0.5]
        result = shape_with_points(shape, moved)
        assert type(result) is type(shape)
        assert np.array_equal(shape_points(result), moved)
    skeleton = shape_with_points(POINT_SHAPES[2], np.zeros((2, 2)))
    assert isinstance(skeleton, Skeleton) and [p.visible for p in skeleton.points] == [True, False]


def test_shape_with_points_refuses_bad_points_and_kinds() -> None:
    with pytest.raises(GeometryError, match="with 3 points cannot take 2"):
        shape_with_points(POINT_SHAPES[0], np.zeros((2, 2)))
    with pytest.raises(GeometryError, match=r"shape \(N, 2\)"):
        shape_with_points(POINT_SHAPES[1], np.zeros(2))
    with pytest.raises(GeometryError, match="NaN"):
        shape_with_points(POINT_SHAPES[1], np.array([[math.nan, 1.0]]))
    with pytest.raises(GeometryError, match="not a bbox"):
        shape_with_points(BBox(x=0, y=0, w=1, h=1), np.zeros((4, 2)))


# ---------------------------------------------------------------------------------------------
# Validation

WIDTH, HEIGHT = 20, 10


def ring_part(*outer: float, holes: tuple[list[float], ...] = ()) -> Polygon:
    return Polygon(parts=[PolygonPart(outer=list(outer), holes=list(holes))])


VALID_SHAPES: list[Shape] = [
    Bitmask(rle=rle_encode(np.eye(HEIGHT, WIDTH))),
    ring_part(0, 0, 20, 0, 20, 10, 0, 10, holes=([5, 5, 6, 5, 6, 6],)),
    ring_part(3, 3),  # one pixel, as mask_to_polygon writes it
    ring_part(1, 1, 4, 1, 4, 4),
    BBox(x=0, y=0, w=20, h=10),
    RotatedBBox(cx=20, cy=0, w=50, h=3, angle=-30),  # the centre is in the frame; corners may stick out
    Polyline(points=[0, 0, 20, 10]),
    Keypoint(x=20, y=10),
    Skeleton(points=[SkeletonPoint(x=0, y=0), SkeletonPoint(x=5, y=5, visible=False)]),
]


@pytest.mark.parametrize("shape", VALID_SHAPES, ids=lambda shape: type(shape).__name__)
def test_valid_shapes_pass(shape: Shape) -> None:
    validate_shape(shape, WIDTH, HEIGHT, skeleton_points=2)


INVALID_SHAPES: list[tuple[str, Shape, str]] = [
    ("rle of another size", Bitmask(rle=rle_encode(np.ones((WIDTH, HEIGHT)))), r"size \(20, 10\) does not match"),
    ("invalid rle", Bitmask(rle=Rle(size=(HEIGHT, WIDTH), counts="garbage!")), "only characters"),
    ("empty bitmask", Bitmask(rle=rle_encode(np.zeros((HEIGHT, WIDTH)))), "empty"),
    ("polygon without parts", Polygon(parts=[]), "no parts"),
    ("odd ring", ring_part(1, 1, 4, 1, 4), "odd number of coordinates"),
    ("two-point ring", ring_part(1, 1, 4, 2), "only 2 points"),
    ("flat ring", ring_part(1, 1, 2, 1.5, 3, 2), "zero area"),
    ("fractional one-point ring", ring_part(1.5, 1), "only 1 point:"),
    ("empty ring", ring_part(), "no points"),
    ("thin hole", ring_part(0, 0, 9, 0, 9, 9, holes=([1, 1, 2, 1],)), "hole 0 has only 2 points"),
    ("polygon outside", ring_part(1, 1, 21, 1, 4, 4), r"point 1 \(21, 1\) is outside the frame"),
    ("negative polygon", ring_part(-1, 1, 3, 1, 4, 4), "outside the frame"),
    ("NaN polygon", ring_part(1, 1, math.nan, 1, 4, 4), "NaN"),
    ("infinite polygon", ring_part(1, 1, 3, math.inf, 4, 4), "NaN or infinite"),
    ("flat bbox", BBox(x=1, y=1, w=0, h=3), "w > 0 and h > 0"),
    ("negative bbox", BBox(x=1, y=1, w=3, h=-1), "w > 0 and h > 0"),
    ("bbox sticking out", BBox(x=15, y=1, w=6, h=3), "sticks out"),
    ("bbox left of the frame", BBox(x=-1, y=1, w=2, h=3), "sticks out"),
    ("NaN bbox", BBox(x=1, y=math.nan, w=2, h=3), "bbox y must be a finite number"),
    ("flat rotated bbox", RotatedBBox(cx=5, cy=5, w=2, h=0, angle=0), "w > 0 and h > 0"),
    ("rotated bbox centre outside", RotatedBBox(cx=5, cy=11, w=2, h=2, angle=0), r"centre \(5, 11\) is outside"),
    ("infinite rotated bbox", RotatedBBox(cx=5, cy=5, w=math.inf, h=2, angle=0), "w must be a finite"),
    ("NaN angle", RotatedBBox(cx=5, cy=5, w=2, h=2, angle=math.nan), "angle must be a finite"),
    ("angle out of range", RotatedBBox(cx=5, cy=5, w=2, h=2, angle=400), "within"),
    ("one-point polyline", Polyline(points=[1, 1]), "1 point, needs at least 2"),
    ("odd polyline", Polyline(points=[1, 1, 2]), "odd number"),
    ("polyline outside", Polyline(points=[1, 1, 2, 30]), "outside the frame"),
    ("NaN polyline", Polyline(points=[1, 1, 2, math.nan]), "NaN"),
    ("keypoint outside", Keypoint(x=20.5, y=1), r"keypoint \(20.5, 1\) is outside the frame: 0 <= x <= 20"),
    ("infinite keypoint", Keypoint(x=1, y=-math.inf), "NaN or infinite"),
    ("skeleton of the wrong size", Skeleton(points=[SkeletonPoint(x=1, y=1)]), "1 point, its class's template has 2"),
    ("empty skeleton", Skeleton(points=[]), "no points"),
    (
        "skeleton outside",
        Skeleton(points=[SkeletonPoint(x=1, y=1), SkeletonPoint(x=1, y=11, visible=False)]),
        r"skeleton point 1 \(1, 11\) is outside",
    ),
    ("NaN skeleton", Skeleton(points=[SkeletonPoint(x=1, y=1), SkeletonPoint(x=math.nan, y=1)]), "NaN"),
]


@pytest.mark.parametrize(
    ("shape", "message"), [case[1:] for case in INVALID_SHAPES], ids=[case[0] for case in INVALID_SHAPES]
)
def test_invalid_shapes_raise_geometry_error(shape: Shape, message: str) -> None:
    with pytest.raises(GeometryError, match=message):
        validate_shape(shape, WIDTH, HEIGHT, skeleton_points=2)


def test_skeleton_point_count_is_only_checked_when_given() -> None:
    validate_shape(Skeleton(points=[SkeletonPoint(x=1, y=1)]), WIDTH, HEIGHT)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, -1), (10.0, 10), (70000, 10)])
def test_validation_refuses_bad_frames(width: int, height: int) -> None:
    with pytest.raises(GeometryError, match="frame"):
        validate_shape(Keypoint(x=1, y=1), width, height)
