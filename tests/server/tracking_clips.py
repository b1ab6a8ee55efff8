"""Clips with known motion for the tracking tests: textured discs moving over a textured
background, written as lossless image sequences (or a video), with the truth of every frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from masklog.domain.geometry import rle_encode
from tests.inference.synthetic import disc_mask, draw_disc, textured_background


@dataclass(frozen=True)
class Disc:
    colour: tuple[int, int, int]
    x: float
    y: float
    dx: float
    dy: float
    r: float = 9.0

    def centre(self, frame: int) -> tuple[float, float]:
        return self.x + self.dx * frame, self.y + self.dy * frame

    def mask(self, frame: int, height: int, width: int) -> np.ndarray:
        cx, cy = self.centre(frame)
        return disc_mask(height, width, cx, cy, self.r)


@dataclass(frozen=True)
class Clip:
    width: int
    height: int
    frames: int
    discs: tuple[Disc, ...]

    def images(self) -> list[np.ndarray]:
        background = textured_background(self.height, self.width, seed=3)
        out = []
        for index in range(self.frames):
            image = background
            for number, disc in enumerate(self.discs):
                # Integer motion with the same seed: the disc's texture moves with it.
                image = draw_disc(image, disc.mask(index, self.height, self.width), disc.colour, seed=10 + number)
            out.append(image)
        return out

    def write_images(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, image in enumerate(self.images()):
            path = folder / f"{index:04d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            paths.append(path)
        return paths

    def write_video(self, path: Path) -> Path:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (self.width, self.height))
        for image in self.images():
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        writer.release()
        return path

    def bitmask(self, disc: int, frame: int) -> dict:
        rle = rle_encode(self.discs[disc].mask(frame, self.height, self.width))
        return {"type": "bitmask", "rle": {"size": list(rle.size), "counts": rle.counts}}


# Three discs moving different ways, all inside the frame for its 24 frames.
THREE = Clip(
    112,
    84,
    24,
    (
        Disc((220, 40, 40), 20, 40, 2, 0),
        Disc((40, 60, 230), 80, 20, -1, 1),
        Disc((235, 220, 30), 56, 66, 1, -1),
    ),
)
# One disc that leaves the frame on the right after a few frames.
LEAVING = Clip(96, 72, 16, (Disc((220, 40, 40), 50, 36, 8, 0),))
# Larger and longer: long enough to cancel, or to interleave with, while it runs.
LONG = Clip(320, 240, 150, (Disc((220, 40, 40), 40, 120, 1, 0, r=20),))
# LONG's disc, and a second one that leaves the frame on the right within a dozen frames: lost
# from then on (what a track with interval 0 keeps producing, as lost frames, to the end).
LONG_LEAVING = Clip(320, 240, 150, (Disc((220, 40, 40), 40, 120, 1, 0, r=20), Disc((40, 60, 230), 250, 60, 7, 0, r=12)))
