"""Fit the classical segmenter's first-click ranking (`RANK_*` in inference/classical/segmenter.py).

For the protocol's first click (`click_eval.first_click`) on every Nth annotated frame of the
given DAVIS-format folders, every window's answer gives its rank features and its IoU with the
truth; a ridge least-squares fit of IoU on the features (standardised, the bias unpenalised)
gives the weights. Prints JSON: the weights, and the chosen answer's mean IoU three ways: ranked
by the fit, by a fit without the object's own sequence (leave one sequence out), and by the
best window each time (the ceiling). Train on training data only:

    python scripts/fit_click_ranking.py ../shared/data/davis16-train ../shared/data/vos --every 5
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from masklog.inference import click_eval
from masklog.inference.classical import segmenter
from masklog.inference.evaluation import find_sequences, jaccard, list_images
from masklog.inference.frames.images import ImageListFrames

# (sequence, [(features or None, IoU) per window]) per object
Sample = tuple[str, list[tuple[tuple[float, float, float] | None, float]]]


def sequence_samples(job: tuple[Path, int]) -> list[Sample]:
    seq_dir, every = job
    cfg = segmenter.SegmenterConfig()
    frames = ImageListFrames(list_images(seq_dir / "JPEGImages"))
    samples: list[Sample] = []
    try:
        for index, path in click_eval.annotated_frames(seq_dir, every):
            image = frames.get(index)
            for truth in click_eval.read_objects(path).values():
                answers = segmenter.first_click_answers(image, [click_eval.first_click(truth)], cfg)
                samples.append((seq_dir.name, [(features, jaccard(mask, truth)) for features, mask in answers]))
    finally:
        frames.close()
    return samples


def fit(samples: list[Sample], lam: float) -> tuple[np.ndarray, float]:
    rows = [(f, iou) for _, answers in samples for f, iou in answers if f is not None]
    x = np.array([f for f, _ in rows])
    y = np.array([iou for _, iou in rows])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    penalty = lam * np.diag([1.0] * x.shape[1] + [0.0])
    w = np.linalg.solve(z.T @ z + penalty, z.T @ y)
    weights = w[:-1] / std
    return weights, float(w[-1] - mean @ weights)


def chosen_iou(samples: list[Sample], weights: np.ndarray, bias: float) -> list[float]:
    chosen = []
    for _, answers in samples:
        scored = [(float(np.dot(f, weights)) + bias, iou) for f, iou in answers if f is not None]
        chosen.append(max(scored)[1] if scored else 0.0)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--lam", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(d, args.every) for folder in args.folders for d in find_sequences(folder)]
    with ProcessPoolExecutor(args.workers) as pool:
        samples = [s for batch in pool.map(sequence_samples, jobs) for s in batch]
    weights, bias = fit(samples, args.lam)
    held_out: list[float] = []
    for name in sorted({seq for seq, _ in samples}):
        w, b = fit([s for s in samples if s[0] != name], args.lam)
        held_out += chosen_iou([s for s in samples if s[0] == name], w, b)
    current = np.array([segmenter.RANK_BORDER, segmenter.RANK_AGREEMENT, segmenter.RANK_LOG_AREA])
    print(
        json.dumps(
            {
                "objects": len(samples),
                "windows": list(segmenter.SegmenterConfig().first_windows),
                "RANK_BORDER": round(float(weights[0]), 3),
                "RANK_AGREEMENT": round(float(weights[1]), 3),
                "RANK_LOG_AREA": round(float(weights[2]), 3),
                "RANK_BIAS": round(bias, 3),
                "iou_chosen_fit": float(np.mean(chosen_iou(samples, weights, bias))),
                "iou_chosen_leave_one_sequence_out": float(np.mean(held_out)),
                "iou_chosen_shipped_weights": float(np.mean(chosen_iou(samples, current, segmenter.RANK_BIAS))),
                "iou_best_window": float(np.mean([max(iou for _, iou in answers) for _, answers in samples])),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
