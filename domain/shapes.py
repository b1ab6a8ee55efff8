"""The label shapes, as they travel in events: one msgspec tagged union.

Only the schema lives here; conversions and validation against a frame are in `geometry`.
Coordinates are in pixels of the frame, x to the right, y down; whole numbers are pixel centres,
so (0, 0) is the centre of the top-left pixel (OpenCV's convention).
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from masklog.domain.limits import MAX_POLYGON_RINGS, MAX_RLE_CHARS, MAX_SHAPE_POINTS, MAX_SIDE, MAX_SKELETON_POINTS

Coord = Annotated[float, msgspec.Meta(ge=-1e6, le=1e6)]
# A flat list of x, y pairs: one ring of a polygon, or a polyline. `geometry.validate_shape`
# also bounds a polygon's points all rings together.
Coords = Annotated[list[Coord], msgspec.Meta(max_length=2 * MAX_SHAPE_POINTS)]


class ShapeKind(enum.StrEnum):
    """What a class's labels look like (S3, T6)."""

    BITMASK = "bitmask"
    POLYGON = "polygon"
    BBOX = "bbox"
    ROTATED_BBOX = "rotated_bbox"
    POLYLINE = "polyline"
    KEYPOINT = "keypoint"
    SKELETON = "skeleton"


# The families of shape kinds, said here only: the domain, the trackers and the exports read
# them, and the page gets them from the server (`GET /api/me`, `shape_families`).
#
# Shapes that cover an area: a mask can be drawn from them and made into them, and the area
# formats (COCO segmentation, YOLO) export them.
AREA_KINDS = frozenset({ShapeKind.BITMASK, ShapeKind.POLYGON, ShapeKind.BBOX, ShapeKind.ROTATED_BBOX})
# Shapes made of points: tracking follows each point rather than a mask.
POINT_KINDS = frozenset({ShapeKind.KEYPOINT, ShapeKind.SKELETON, ShapeKind.POLYLINE})
# Shapes a SAM mask can be turned into (S3): the wand is disabled for the others.
SAM_KINDS = frozenset({ShapeKind.BITMASK, ShapeKind.POLYGON, ShapeKind.BBOX})
# The families by the names the page knows them by.
SHAPE_FAMILIES: dict[str, frozenset[ShapeKind]] = {"area": AREA_KINDS, "point": POINT_KINDS, "sam": SAM_KINDS}


# The shapes and the label values around them are `gc=False`: the garbage collector does not
# track them (a media item holds tens of thousands, and scanning them made loading one a third
# slower). Safe because they are immutable leaves: nothing they hold can refer back to them.


class Rle(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """A COCO run-length encoded mask: `size` is [height, width], `counts` the compressed string."""

    size: tuple[Annotated[int, msgspec.Meta(ge=1, le=MAX_SIDE)], Annotated[int, msgspec.Meta(ge=1, le=MAX_SIDE)]]
    counts: Annotated[str, msgspec.Meta(max_length=MAX_RLE_CHARS)]


class Bitmask(msgspec.Struct, frozen=True, gc=False, tag="bitmask", forbid_unknown_fields=True):
    rle: Rle


class PolygonPart(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """One connected part: an outer ring and the holes cut out of it; rings are flat [x0, y0, x1, y1, ...]."""

    outer: Coords
    holes: Annotated[list[Coords], msgspec.Meta(max_length=MAX_POLYGON_RINGS)] = []


class Polygon(msgspec.Struct, frozen=True, gc=False, tag="polygon", forbid_unknown_fields=True):
    parts: Annotated[list[PolygonPart], msgspec.Meta(max_length=MAX_POLYGON_RINGS)]


class BBox(msgspec.Struct, frozen=True, gc=False, tag="bbox", forbid_unknown_fields=True):
    """Axis-aligned box: top-left corner, width and height."""

    x: Coord
    y: Coord
    w: Coord
    h: Coord


class RotatedBBox(msgspec.Struct, frozen=True, gc=False, tag="rotated_bbox", forbid_unknown_fields=True):
    """Box rotated by `angle` degrees (clockwise on screen) around its centre."""

    cx: Coord
    cy: Coord
    w: Coord
    h: Coord
    angle: Annotated[float, msgspec.Meta(ge=-360, le=360)]


class Polyline(msgspec.Struct, frozen=True, gc=False, tag="polyline", forbid_unknown_fields=True):
    points: Coords


class Keypoint(msgspec.Struct, frozen=True, gc=False, tag="keypoint", forbid_unknown_fields=True):
    x: Coord
    y: Coord


class SkeletonPoint(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    x: Coord
    y: Coord
    visible: bool = True


class Skeleton(msgspec.Struct, frozen=True, gc=False, tag="skeleton", forbid_unknown_fields=True):
    """Points in the order of the class's skeleton template (names and edges live on the class)."""

    points: Annotated[list[SkeletonPoint], msgspec.Meta(max_length=MAX_SKELETON_POINTS)]


Shape = Bitmask | Polygon | BBox | RotatedBBox | Polyline | Keypoint | Skeleton

SHAPE_KIND_OF: dict[type, ShapeKind] = {
    Bitmask: ShapeKind.BITMASK,
    Polygon: ShapeKind.POLYGON,
    BBox: ShapeKind.BBOX,
    RotatedBBox: ShapeKind.ROTATED_BBOX,
    Polyline: ShapeKind.POLYLINE,
    Keypoint: ShapeKind.KEYPOINT,
    Skeleton: ShapeKind.SKELETON,
}


def kind_of(shape: Shape) -> ShapeKind:
    return SHAPE_KIND_OF[type(shape)]
