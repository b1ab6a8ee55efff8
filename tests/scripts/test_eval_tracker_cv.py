"""scripts/eval_tracker_cv.py on tiny synthetic DAVIS-format folders: the leave-one-out choice
and every figure are there and add up; no quality is checked."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from tests.inference.synthetic import disc_mask, draw_disc, textured_background
from tests.scripts.running import run_script

H, W = 90, 120


def write_sequence(folder: Path, seed: int, frames: int = 4) -> None:
    (folder / "JPEGImages").mkdir(parents=True)
    (folder / "Annotations").mkdir()
    background = textured_background(H, W, seed=seed)
    for i in range(frames):
        mask = disc_mask(H, W, 40 + 4 * i, 45, 15)
        image = draw_disc(background, mask, (220, 40, 40))
        cv2.imwrite(str(folder / "JPEGImages" / f"{i:05d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "Annotations" / f"{i:05d}.png"), mask.astype("uint8") * 255)


def test_leave_one_out_figures_on_synthetic_sequences(tmp_path: Path) -> None:
    for k, name in enumerate(["a", "b", "c"]):
        write_sequence(tmp_path / "train" / name, seed=k)
    write_sequence(tmp_path / "unseen" / "d", seed=7)
    args = ["--train", str(tmp_path / "train"), "--holdout", str(tmp_path / "unseen"), "--candidates", "default", "prior_blur=3", "--before", "HEAD", "--json"]
    done = run_script("eval_tracker_cv.py", args, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert set(result["candidates"]) == {"default", "prior_blur=3"}
    for figures in result["candidates"].values():
        assert set(figures["per_sequence"]) == {"a", "b", "c"}
        assert all(0.0 <= s["JF"] <= 1.0 and s["seconds_per_frame"] >= 0 for s in figures["per_sequence"].values())
    loo = result["leave_one_out"]
    assert set(loo["per_sequence"]) == {"a", "b", "c"}
    for held, pick in loo["per_sequence"].items():
        assert pick["JF"] == result["candidates"][pick["picked"]]["per_sequence"][held]["JF"]
    assert result["chosen_on_all_training"] in result["candidates"]
    unseen = result["holdout"]["unseen"]
    assert result["chosen_on_all_training"] in unseen and "before@HEAD" in unseen
    assert set(unseen["before@HEAD"]["per_sequence"]) == {"d"}
    assert result["before"]["revision"] == "HEAD" and 0.0 <= result["before"]["mean_JF"] <= 1.0


def test_unknown_candidate_is_refused(tmp_path: Path) -> None:
    write_sequence(tmp_path / "train" / "a", seed=0)
    args = ["--train", str(tmp_path / "train"), "--holdout", "--candidates", "no-such"]
    done = run_script("eval_tracker_cv.py", args, timeout=120)
    assert done.returncode != 0 and "unknown candidates" in done.stderr
