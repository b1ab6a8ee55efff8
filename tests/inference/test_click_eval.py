"""The click protocol (NoC) on synthetic masks: where the simulated user clicks, how a session
runs and stops, how annotations are read, and the figures over DAVIS-format folders. The
segmenters here are scripted (no model): the protocol, not a model, is under test."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from masklog.inference.click_eval import (
    ClickTrace,
    annotated_frames,
    evaluate_clicks,
    farthest_from_boundary,
    first_click,
    largest_error_region,
    next_click,
    read_objects,
    simulate_clicks,
    summarise,
)
from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.protocols import Candidate, ClickPoint, FrameSource, Prompt

H, W = 40, 60


def rect(x0: int, y0: int, x1: int, y1: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """Columns x0..x1 and rows y0..y1, inclusive."""
    m = np.zeros(shape, bool)
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


# ---- click placement -----------------------------------------------------------------------------


def test_the_first_click_is_the_most_interior_pixel() -> None:
    # A 9 x 9 square has one centre.
    assert first_click(rect(20, 10, 28, 18)) == ClickPoint(24.0, 14.0, True)
    # A 9 x 5 rectangle: its middle row's pixels 3 or more from the ends are all 3 from the
    # boundary; the first of them.
    assert first_click(rect(20, 10, 28, 14)) == ClickPoint(22.0, 12.0, True)
    # A disc: its centre, although the bounding box is all that a naive centre would use.
    yy, xx = np.mgrid[0:H, 0:W]
    disc = (xx - 37) ** 2 + (yy - 19) ** 2 <= 81
    assert first_click(disc) == ClickPoint(37.0, 19.0, True)
    # An L: inside its thick arm (8 from the boundary from row 12 down), not at the bounding
    # box's centre, which is outside the object.
    ell = rect(5, 5, 20, 35) | rect(5, 30, 55, 35)
    assert not ell[20, 30] and farthest_from_boundary(ell) == (12, 12)


def test_ties_go_to_the_first_pixel_in_raster_order() -> None:
    # A 4 x 4 square (columns and rows 10..13): its four central pixels are equally far from the
    # boundary; the first of them row by row is (11, 11).
    assert farthest_from_boundary(rect(10, 10, 13, 13)) == (11, 11)
    # A 1-pixel-high bar: every pixel is 1 from the boundary, so its leftmost.
    assert farthest_from_boundary(rect(7, 3, 30, 3)) == (7, 3)


def test_the_image_border_counts_as_boundary() -> None:
    # An object along the left edge (columns 0..9): without padding the farthest pixel would lie
    # on the edge; padded, distances are min(column + 1, 10 - column, row + 1, 40 - row), 5 at best,
    # first reached at row 4, column 4.
    assert farthest_from_boundary(rect(0, 0, 9, H - 1)) == (4, 4)
    # A whole square image: its centre (ties: the first of the central four).
    assert farthest_from_boundary(np.ones((40, 40), bool)) == (19, 19)
    # One pixel in a corner is a region too.
    assert farthest_from_boundary(rect(0, 0, 0, 0)) == (0, 0)


def test_an_empty_region_has_no_click() -> None:
    with pytest.raises(ValueError, match="empty"):
        farthest_from_boundary(np.zeros((H, W), bool))
    with pytest.raises(ValueError, match="2-D"):
        farthest_from_boundary(np.zeros((2, 3, 4), bool))


def test_a_missed_region_gets_an_include_click_at_its_interior() -> None:
    truth = rect(10, 10, 49, 29)
    pred = rect(10, 10, 29, 29)  # the right half is missed: columns 30..49
    assert next_click(pred, truth) == ClickPoint(39.0, 19.0, True)  # 20 x 20: the first of the central four


def test_a_false_region_gets_an_exclude_click() -> None:
    truth = rect(10, 10, 29, 29)
    pred = rect(10, 10, 29, 29) | rect(35, 5, 55, 35)  # a false 21 x 31 block, nothing missed
    # 21 columns (11 from the sides at column 45) by 31 rows: rows 15..25 are as far; the first.
    assert next_click(pred, truth) == ClickPoint(45.0, 15.0, False)


def test_the_largest_region_wins_whatever_its_kind() -> None:
    truth = rect(0, 0, 29, 39)
    # Missed: a 10 x 10 block (100 px); false: an 8 x 20 block (160 px) elsewhere.
    pred = truth & ~rect(5, 5, 14, 14) | rect(40, 10, 47, 29)
    region, missed = largest_error_region(pred, truth) or (None, None)
    assert region is not None and not missed and region.sum() == 160
    assert next_click(pred, truth) == ClickPoint(43.0, 13.0, False)  # a column 3..4 from either side; ties: first
    # Make the missed block larger: the include click goes there.
    pred = truth & ~rect(5, 5, 20, 20) | rect(40, 10, 47, 29)
    assert next_click(pred, truth) == ClickPoint(12.0, 12.0, True)


def test_touching_missed_and_false_areas_are_separate_regions() -> None:
    # The answer is the truth shifted right by 10: a missed 10-column strip on the left and a
    # false one on the right, which touch the object but not each other; with the shift smaller
    # than the object they are equal (10 x 20): the tie goes to the first in raster order, and
    # both are 10 x 20 with the same top row, so the left (missed) one.
    truth = rect(10, 10, 29, 29)
    pred = rect(20, 10, 39, 29)
    region, missed = largest_error_region(pred, truth) or (None, None)
    assert region is not None and missed and region.sum() == 200
    # A missed area touching a false one diagonally is still two regions, one of each kind.
    truth = rect(0, 0, 9, 9)
    pred = rect(10, 10, 14, 14)
    region, missed = largest_error_region(pred, truth) or (None, None)
    assert region is not None and missed and region.sum() == 100


def test_no_click_when_the_answer_is_the_truth() -> None:
    truth = rect(3, 3, 12, 12)
    assert next_click(truth, truth) is None
    assert largest_error_region(truth.astype(np.uint8) * 255, truth) is None
    with pytest.raises(ValueError, match="shapes differ"):
        next_click(np.zeros((3, 3), bool), np.zeros((3, 4), bool))


# ---- one session ---------------------------------------------------------------------------------


class Scripted:
    """Answers the n-th prompt with the n-th mask given (the last one from then on); records prompts."""

    model = "test/scripted@1"

    def __init__(self, *masks: np.ndarray | None) -> None:
        self.masks = masks
        self.prompts: list[Prompt] = []

    def segment(self, frames: FrameSource, index: int, prompt: Prompt) -> list[Candidate]:
        self.prompts.append(prompt)
        mask = self.masks[min(len(self.prompts), len(self.masks)) - 1]
        if mask is None:
            return []
        # A worse second candidate: only the first (the segmenter's best) is scored.
        return [Candidate(mask, 0.9), Candidate(np.ones_like(mask), 0.1)]


FRAMES = ArrayFrames([np.zeros((H, W, 3), np.uint8)])


def test_a_session_follows_the_errors_and_scores_the_best_candidate() -> None:
    truth = rect(10, 10, 49, 29)  # 40 x 20 = 800 px
    left = rect(10, 10, 29, 29)
    with_false = left | rect(50, 0, 59, 39)  # adds a false 10 x 40 strip (400 px); 400 px still missed
    segmenter = Scripted(left, with_false, truth)
    trace = simulate_clicks(segmenter, FRAMES, 0, truth)
    # 1: the object's interior (10 from the top and bottom: the first such pixel); 2: the missed
    # right half's centre; 3: the false strip is as large as what is still missed (400 px each):
    # the tie goes to the first in raster order, the strip (row 0), and in it the first pixel 5
    # from its sides and from the image's top. Then the answer is the truth: the session ends.
    assert trace.clicks == (ClickPoint(19.0, 19.0, True), ClickPoint(39.0, 19.0, True), ClickPoint(54.0, 4.0, False))
    assert trace.ious == pytest.approx((0.5, 400 / 1200, 1.0))
    # Every prompt carries all the clicks so far and nothing else.
    assert [p.points for p in segmenter.prompts] == [trace.clicks[:1], trace.clicks[:2], trace.clicks]
    assert all(p.box is None and p.mask is None for p in segmenter.prompts)
    assert len(trace.seconds) == 3 and all(s >= 0 for s in trace.seconds)
    assert trace.clicks_to(0.85) == trace.clicks_to(0.90) == 3
    # Past the end the perfect answer stands; past max_clicks there is nothing.
    assert (trace.iou_after(1), trace.iou_after(3), trace.iou_after(5), trace.iou_after(20)) == pytest.approx((0.5, 1.0, 1.0, 1.0))
    assert trace.iou_after(21) is None and trace.iou_after(0) is None


def test_a_session_runs_to_max_clicks_when_never_good_enough() -> None:
    truth = rect(10, 10, 49, 29)
    segmenter = Scripted(rect(10, 10, 33, 29))  # IoU 0.6 forever
    trace = simulate_clicks(segmenter, FRAMES, 0, truth, max_clicks=7)
    assert len(trace.clicks) == len(trace.ious) == 7 and trace.ious == pytest.approx((0.6,) * 7)
    assert trace.clicks_to(0.85) == trace.clicks_to(0.90) == 7 and not trace.reached(0.85)
    # The same region stays the largest: the same click again (the protocol does not move it).
    assert set(trace.clicks[1:]) == {ClickPoint(41.0, 17.0, True)}
    # No answer at all is an empty mask.
    trace = simulate_clicks(Scripted(None), FRAMES, 0, truth, max_clicks=2)
    assert trace.ious == (0.0, 0.0) and trace.clicks_to(0.85) == 2


def test_a_session_stops_at_090_after_five_clicks_and_noc_is_the_first_crossing() -> None:
    truth = rect(10, 10, 49, 29)  # 800 px
    good = rect(10, 10, 45, 29)  # 720 / 800 = 0.90
    fair = rect(10, 10, 43, 29)  # 680 / 800 = 0.85
    bad = rect(10, 10, 29, 29)  # 0.5
    segmenter = Scripted(good, bad, fair, good, bad, good, good)
    trace = simulate_clicks(segmenter, FRAMES, 0, truth)
    # 0.90 on the first click does not stop the session before the fifth (IoU@5 is needed); the
    # fifth is bad, the sixth good again: it stops there.
    assert trace.ious == pytest.approx((0.9, 0.5, 0.85, 0.9, 0.5, 0.9))
    assert trace.clicks_to(0.85) == 1 and trace.clicks_to(0.90) == 1
    assert trace.iou_after(3) == pytest.approx(0.85) and trace.iou_after(5) == pytest.approx(0.5)


def test_a_session_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="empty"):
        simulate_clicks(Scripted(None), FRAMES, 0, np.zeros((H, W), bool))
    with pytest.raises(ValueError, match="frame"):
        simulate_clicks(Scripted(None), FRAMES, 0, rect(1, 1, 3, 3, (H + 1, W)))
    with pytest.raises(ValueError, match="max_clicks"):
        simulate_clicks(Scripted(None), FRAMES, 0, rect(1, 1, 3, 3), max_clicks=0)
    with pytest.raises(ValueError, match="max_clicks"):
        simulate_clicks(Scripted(None), FRAMES, 0, rect(1, 1, 3, 3), max_clicks=101)
    with pytest.raises(ValueError, match="answered"):
        simulate_clicks(Scripted(np.ones((5, 5), bool)), FRAMES, 0, rect(1, 1, 3, 3))


def test_summaries_average_over_instances() -> None:
    a = ClickTrace((ClickPoint(0, 0),) * 2, (0.5, 0.95), (0.1, 0.3), 20)
    b = ClickTrace((ClickPoint(0, 0),) * 20, (0.1,) * 19 + (0.86,), (0.2,) * 20, 20)
    s = summarise([a, b], frames=1)
    assert s["instances"] == 2 and s["frames"] == 1 and s["clicks"] == 22
    assert s["NoC85"] == pytest.approx((2 + 20) / 2) and s["NoC90"] == pytest.approx((2 + 20) / 2)
    assert (s["NoF85"], s["NoF90"]) == (0, 1)
    assert s["IoU1"] == pytest.approx(0.3) and s["IoU3"] == pytest.approx((0.95 + 0.1) / 2)
    assert s["seconds_per_click"] == pytest.approx((0.4 + 4.0) / 22)
    assert s["seconds_per_click_p50"] == pytest.approx(0.2)  # the median click, not the mean
    # max_clicks below 5: no IoU@5.
    short = summarise([ClickTrace((ClickPoint(0, 0),) * 3, (0.1, 0.2, 0.3), (0.0,) * 3, 3)], frames=1)
    assert short["IoU3"] == pytest.approx(0.3) and short["IoU5"] is None
    empty = summarise([], frames=0)
    assert empty["instances"] == 0 and empty["IoU1"] is None and empty["seconds_per_click"] == 0.0 and empty["seconds_per_click_p50"] == 0.0


# ---- annotations and folders ---------------------------------------------------------------------


def write_palette(path: Path, ids: np.ndarray) -> None:
    image = Image.fromarray(ids.astype(np.uint8), "P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (252 * 3))
    image.save(path)


def test_annotations_are_read_object_by_object(tmp_path: Path) -> None:
    ids = np.zeros((H, W), np.uint8)
    ids[rect(1, 1, 5, 5)] = 1
    ids[rect(10, 10, 20, 20)] = 2
    write_palette(tmp_path / "palette.png", ids)
    objects = read_objects(tmp_path / "palette.png")
    assert sorted(objects) == [1, 2]  # palette indices, not colours
    assert np.array_equal(objects[1], rect(1, 1, 5, 5)) and np.array_equal(objects[2], rect(10, 10, 20, 20))
    # DAVIS 2016: grey 0 / 255, one object.
    cv2.imwrite(str(tmp_path / "grey.png"), rect(3, 4, 9, 9).astype(np.uint8) * 255)
    grey = read_objects(tmp_path / "grey.png")
    assert list(grey) == [255] and np.array_equal(grey[255], rect(3, 4, 9, 9))
    # Colour label images: one object per colour.
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[rect(1, 1, 5, 5)] = (200, 0, 0)
    rgb[rect(30, 1, 40, 5)] = (0, 0, 200)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert sorted(read_objects(tmp_path / "rgb.png")) == [200, 200 << 16]
    # Background only: no objects.
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros((H, W), np.uint8))
    assert read_objects(tmp_path / "empty.png") == {}


def test_what_is_not_a_label_image_is_refused(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "photo.png")
    with pytest.raises(ValueError, match="not a label image"):
        read_objects(tmp_path / "photo.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read annotation"):
        read_objects(tmp_path / "broken.png")


class Reveal:
    """Knows the objects: after k clicks (the object named by the first click's pixel) it answers
    the first k / steps of the object's pixels in raster order, so IoU = k / steps exactly."""

    model = "test/reveal@1"

    def __init__(self, objects: list[tuple[np.ndarray, int]]) -> None:
        self.objects = objects

    def segment(self, frames: FrameSource, index: int, prompt: Prompt) -> list[Candidate]:
        first = prompt.points[0]
        truth, steps = next((m, s) for m, s in self.objects if m[int(first.y), int(first.x)])
        ys, xs = np.nonzero(truth)
        n = math.ceil(len(ys) * min(len(prompt.points), steps) / steps)
        out = np.zeros_like(truth)
        out[ys[:n], xs[:n]] = True
        return [Candidate(out, 1.0)]


def write_sequence(root: Path, name: str, frames: int) -> Path:
    (root / name / "JPEGImages").mkdir(parents=True)
    (root / name / "Annotations").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(frames):
        cv2.imwrite(str(root / name / "JPEGImages" / f"{i:05d}.jpg"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        cv2.imwrite(str(root / name / "Annotations" / f"{i:05d}.png"), np.zeros((H, W), np.uint8))
    return root / name


def test_evaluate_clicks_over_folders(tmp_path: Path) -> None:
    one, two = rect(4, 4, 11, 11), rect(30, 20, 37, 27)  # frame 0 of "a": two objects, 64 px each
    three = rect(40, 10, 47, 17)  # frame 5 of "a": one object (grey 255)
    four = rect(4, 30, 11, 37)  # "b": never good enough in 20 clicks
    a = write_sequence(tmp_path, "a", 12)
    write_palette(a / "Annotations" / "00000.png", one * 1 + two * 2)
    cv2.imwrite(str(a / "Annotations" / "00005.png"), three.astype(np.uint8) * 255)
    (a / "Annotations" / "00010.png").unlink()  # frame 10 has no annotation: not evaluated
    b = write_sequence(tmp_path, "b", 1)
    cv2.imwrite(str(b / "Annotations" / "00000.png"), four.astype(np.uint8) * 255)
    (tmp_path / "not-a-sequence").mkdir()
    assert [i for i, _ in annotated_frames(a, 5)] == [0, 5]

    calls: list[tuple[str, int, int]] = []
    segmenter = Reveal([(one, 4), (two, 2), (three, 1), (four, 100)])
    result = evaluate_clicks(tmp_path, segmenter, lambda s, d, n: calls.append((s, d, n)), every=5)
    assert calls == [("a", 1, 3), ("a", 2, 3), ("a", 3, 3), ("b", 1, 1)]
    assert (result["segmenter"], result["every"], result["max_clicks"]) == ("test/reveal@1", 5, 20)
    assert list(result["sequences"]) == ["a", "b"]
    sa = result["sequences"]["a"]
    # Objects one, two and three need 4, 2 and 1 clicks; IoU after 1: 1/4, 1/2, 1.
    assert (sa["instances"], sa["frames"], sa["clicks"]) == (3, 2, 7)
    assert sa["NoC85"] == sa["NoC90"] == pytest.approx(7 / 3) and sa["NoF90"] == 0
    assert sa["IoU1"] == pytest.approx((0.25 + 0.5 + 1) / 3) and sa["IoU3"] == pytest.approx((0.75 + 1 + 1) / 3) and sa["IoU5"] == 1.0
    sb = result["sequences"]["b"]
    assert (sb["instances"], sb["clicks"], sb["NoC85"], sb["NoF85"]) == (1, 20, 20, 1)
    assert sb["IoU5"] == pytest.approx(math.ceil(64 * 5 / 100) / 64)
    overall = result["overall"]
    assert (overall["instances"], overall["frames"], overall["clicks"]) == (4, 3, 27)
    assert overall["NoC85"] == pytest.approx((4 + 2 + 1 + 20) / 4) and overall["NoF85"] == overall["NoF90"] == 1
    assert overall["IoU1"] == pytest.approx((0.25 + 0.5 + 1 + 1 / 64) / 4)

    only_b = evaluate_clicks(tmp_path, segmenter, sequences=["b"], every=5, max_clicks=3)
    assert list(only_b["sequences"]) == ["b"] and only_b["overall"]["NoC90"] == 3 and only_b["overall"]["IoU5"] is None


def test_evaluate_clicks_refuses_bad_input(tmp_path: Path) -> None:
    segmenter = Reveal([])
    with pytest.raises(ValueError, match="no DAVIS-format sequences"):
        evaluate_clicks(tmp_path, segmenter)
    with pytest.raises(ValueError, match="not a folder"):
        evaluate_clicks(tmp_path / "nowhere", segmenter)
    write_sequence(tmp_path, "a", 3)
    (tmp_path / "a" / "Annotations" / "00000.png").unlink()
    with pytest.raises(ValueError, match="sequence named zz"):
        evaluate_clicks(tmp_path, segmenter, sequences=["a", "zz"])
    with pytest.raises(ValueError, match="no annotated frame"):
        evaluate_clicks(tmp_path, segmenter, every=5)
    with pytest.raises(ValueError, match="every"):
        evaluate_clicks(tmp_path, segmenter, every=0)
    with pytest.raises(ValueError, match="max_clicks"):
        evaluate_clicks(tmp_path, segmenter, max_clicks=0)
