"""DAVIS-style J and F on synthetic masks, and evaluate_vos over DAVIS-format folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from masklog.domain.events import Direction
from masklog.inference.evaluation import (
    boundary_map,
    boundary_tolerance,
    disk,
    evaluate_vos,
    f_measure,
    jaccard,
)
from masklog.inference.protocols import FrameSource, Prompt, TrackedMask


def square(shape: tuple[int, int], x: int, y: int, size: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


SHAPE = (480, 854)  # DAVIS 480p: the tolerance is ceil(0.008 * 979.8) = 8 px


def test_jaccard_known_values() -> None:
    a = square((100, 100), 10, 10, 20)
    assert jaccard(a, a) == 1.0
    assert jaccard(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert jaccard(a, np.zeros_like(a)) == 0.0
    assert jaccard(a, square((100, 100), 50, 50, 20)) == 0.0
    # Shifted by 5 columns: overlap 15x20, union 25x20.
    assert jaccard(a, square((100, 100), 15, 10, 20)) == pytest.approx(300 / 500)
    assert jaccard(a.astype(np.uint8) * 255, a) == 1.0


def test_jaccard_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        jaccard(np.zeros((3, 3), bool), np.zeros((3, 4), bool))


def test_boundary_map_is_one_pixel_thick() -> None:
    b = boundary_map(square((20, 20), 5, 5, 6))
    # Inner boundary on the top and left (the pixel differs from its lower/right neighbour
    # outside), outer boundary on the right and bottom: a closed ring with 4 * 6 pixels.
    assert b.sum() == 24
    assert not b[7:10, 7:10].any()
    # An object filling the image has no boundary: the image edge is not an object edge.
    assert not boundary_map(np.ones((10, 10), bool)).any()


def test_tolerance_and_disk() -> None:
    assert boundary_tolerance(SHAPE) == 8
    assert boundary_tolerance(SHAPE, 3) == 3
    d = disk(2)
    assert d.shape == (5, 5) and d.sum() == 13 and d[2, 2] == 1 and d[0, 0] == 0


def test_f_measure_identical_empty_and_one_sided() -> None:
    a = square(SHAPE, 100, 100, 80)
    empty = np.zeros(SHAPE, bool)
    assert f_measure(a, a) == 1.0
    assert f_measure(empty, empty) == 1.0
    assert f_measure(a, empty) == 0.0
    assert f_measure(empty, a) == 0.0


def test_f_measure_tolerates_shifts_below_the_tolerance() -> None:
    a = square(SHAPE, 100, 100, 80)
    assert f_measure(a, square(SHAPE, 106, 103, 80)) == 1.0
    assert f_measure(a, square(SHAPE, 100, 100, 80), bound_th=0.0) == 1.0


def test_f_measure_shift_beyond_tolerance() -> None:
    a = square(SHAPE, 100, 100, 80)
    shifted = square(SHAPE, 130, 100, 80)
    # The left/right edges are 30 px from anything of the other square. Of the top and bottom
    # edges (81 px each) the 59 px within 8 px of the other square's top/bottom edges match, and
    # so do the ~8 px at each end of the facing vertical edge that lie near those edges:
    # about (2 * 59 + 2 * 8) / 320 for precision and recall alike.
    assert f_measure(a, shifted) == pytest.approx(134 / 320, abs=0.01)
    assert jaccard(a, shifted) == pytest.approx(50 / 110)
    far = square(SHAPE, 400, 300, 80)
    assert f_measure(a, far) == 0.0


class CopyFirstTracker:
    """Reports the conditioning mask on every frame (the 'copy the first mask' baseline)."""

    model = "test/copy@1"

    def open(self, frames: FrameSource, media: str | None = None) -> CopySession:
        return CopySession(frames)


class CopySession:
    def __init__(self, frames: FrameSource) -> None:
        self.frames = frames
        self.masks: dict[str, np.ndarray] = {}
        self.closed = False

    def add_mask(self, frame: int, object_id: str, mask: np.ndarray) -> None:
        self.masks[object_id] = mask

    def add_prompt(self, frame: int, object_id: str, prompt: Prompt) -> np.ndarray:
        raise NotImplementedError

    def propagate(self, start: int, direction: Direction, count: int) -> Iterator[list[TrackedMask]]:
        for i in range(start, start + count):
            self.frames.get(i)
            yield [TrackedMask(o, i, m, 1.0) for o, m in self.masks.items()]

    def close(self) -> None:
        self.closed = True


def write_sequence(root: Path, name: str, masks: list[np.ndarray], value: int = 255) -> None:
    (root / name / "JPEGImages").mkdir(parents=True)
    (root / name / "Annotations").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, m in enumerate(masks):
        image = rng.integers(0, 255, (*m.shape, 3), dtype=np.uint8)
        cv2.imwrite(str(root / name / "JPEGImages" / f"{i:05d}.jpg"), image)
        cv2.imwrite(str(root / name / "Annotations" / f"{i:05d}.png"), m.astype(np.uint8) * value)


def test_evaluate_vos_structure_and_scores(tmp_path: Path) -> None:
    still = [square((40, 60), 10, 10, 12)] * 4
    moving = [square((40, 60), 5 + 10 * i, 10, 12) for i in range(3)]
    write_sequence(tmp_path, "still", still)
    write_sequence(tmp_path, "moving", moving, value=1)  # any value above zero is the object
    (tmp_path / "not-a-sequence").mkdir()
    calls: list[tuple[str, int, int]] = []
    result = evaluate_vos(tmp_path, CopyFirstTracker(), progress=lambda s, i, n: calls.append((s, i, n)))
    assert list(result["sequences"]) == ["moving", "still"]  # sorted
    still_score = result["sequences"]["still"]
    assert still_score["J"] == still_score["F"] == still_score["JF"] == 1.0
    assert still_score["frames"] == 4 and still_score["seconds_per_frame"] >= 0
    moving_score = result["sequences"]["moving"]
    assert moving_score["J"] == pytest.approx(np.mean([jaccard(moving[0], m) for m in moving[1:]]))
    assert moving_score["J"] < 0.5
    assert result["mean"]["JF"] == pytest.approx((still_score["JF"] + moving_score["JF"]) / 2)
    # Every frame but the first is scored and reported.
    assert calls == [("moving", 1, 3), ("moving", 2, 3), ("still", 1, 4), ("still", 2, 4), ("still", 3, 4)]


def test_evaluate_vos_without_sequences(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        evaluate_vos(tmp_path, CopyFirstTracker())
