"""The shape families (domain/shapes.py): one place for what each kind of shape can do."""

from masklog.domain.shapes import AREA_KINDS, POINT_KINDS, SAM_KINDS, SHAPE_FAMILIES, ShapeKind


def test_every_kind_covers_an_area_or_is_made_of_points_never_both() -> None:
    assert AREA_KINDS | POINT_KINDS == set(ShapeKind)
    assert not AREA_KINDS & POINT_KINDS


def test_sam_makes_only_area_shapes_and_not_rotated_boxes() -> None:
    assert SAM_KINDS < AREA_KINDS
    assert ShapeKind.ROTATED_BBOX not in SAM_KINDS


def test_the_families_the_page_gets_are_the_sets_themselves() -> None:
    assert SHAPE_FAMILIES == {"area": AREA_KINDS, "point": POINT_KINDS, "sam": SAM_KINDS}

