"""A demo project made on the spot from photos that scikit-image ships: no download.

It has a short video (a camera panning over a photo while a cut-out of another photo moves
across it) and an image group, an ontology with one class per common shape kind, and three
users. Everything goes through the same paths as real work: commands into the ledger, files
through the media library.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import cv2
import numpy as np

from masklog.domain.events import ClassAdded, MediaAdded, MediaKind, ProjectCreated
from masklog.domain.shapes import ShapeKind
from masklog.server.accounts import Role
from masklog.server.context import Context
from masklog.server.media import Probed

PROJECT = "demo"
USERS = {"admin": Role.ADMIN, "alice": Role.ANNOTATOR, "bob": Role.ANNOTATOR, "viewer": Role.VIEWER}
CLASSES = [
    ("cat", "Cat", ShapeKind.BITMASK, "#e6194b"),
    ("cup", "Cup", ShapeKind.POLYGON, "#3cb44b"),
    ("person", "Person", ShapeKind.BBOX, "#4363d8"),
    ("rocket", "Rocket", ShapeKind.ROTATED_BBOX, "#f58231"),
    ("edge", "Edge", ShapeKind.POLYLINE, "#911eb4"),
    ("eye", "Eye", ShapeKind.KEYPOINT, "#42d4f4"),
]


def _photo(name: str) -> np.ndarray:
    """An RGB photo bundled with scikit-image (read from its package folder, not fetched)."""
    import skimage

    path = Path(skimage.__file__).parent / "data" / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise RuntimeError(f"scikit-image does not ship {name} in this version")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_demo_video(path: Path, frames: int = 90, size: tuple[int, int] = (640, 360), fps: float = 25.0) -> None:
    """A pan across the coffee photo with the cat photo, cut into an ellipse, sliding over it."""
    width, height = size
    background = cv2.resize(_photo("coffee.png"), (width * 2, height * 2), interpolation=cv2.INTER_CUBIC)
    cat = cv2.resize(_photo("chelsea.png"), (180, 120), interpolation=cv2.INTER_AREA)
    cat_mask = np.zeros(cat.shape[:2], np.uint8)
    cv2.ellipse(cat_mask, (90, 60), (86, 56), 0, 0, 360, 255, -1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4 here")
    try:
        for index in range(frames):
            t = index / max(frames - 1, 1)
            x0, y0 = int(t * width * 0.8), int(t * height * 0.5)
            frame = background[y0 : y0 + height, x0 : x0 + width].copy()
            cx, cy = int(40 + t * (width - 260)), int(height / 2 - 60 + 40 * np.sin(t * np.pi * 2))
            region = frame[cy : cy + 120, cx : cx + 180]
            region[cat_mask > 0] = cat[cat_mask > 0]
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def write_demo_images(folder: Path, size: tuple[int, int] = (512, 384)) -> list[Path]:
    paths = []
    for index, name in enumerate(["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png"]):
        image = cv2.resize(_photo(name), size, interpolation=cv2.INTER_AREA)
        path = folder / f"{index:02d}-{Path(name).stem}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


async def ensure_demo(ctx: Context) -> dict[str, str]:
    """Create the demo project unless it exists; returns fresh tokens for the demo users (tokens
    are stored hashed, so each run hands out new ones; earlier ones stay valid)."""
    tokens = {name: await ctx.accounts.add_user(name, role) for name, role in USERS.items()}
    if PROJECT in ctx.ledger.base.projects:
        return tokens
    admin = "user:admin"
    await ctx.ledger.execute(admin, ProjectCreated(project=PROJECT, name="Demo project"), str(uuid.uuid4()))
    for name, role in USERS.items():
        await ctx.accounts.set_member(PROJECT, name, role)
    for class_id, name, shape, color in CLASSES:
        await ctx.ledger.execute(admin, ClassAdded(project=PROJECT, class_id=class_id, name=name, shape=shape, color=color), str(uuid.uuid4()))

    library = ctx.library

    def make_files() -> list[tuple[str, str, MediaKind, Probed]]:
        made: list[tuple[str, str, MediaKind, Probed]] = []
        staging = library.staging()
        try:
            video = staging / "pan.mp4"
            write_demo_video(video)
            made.append(("pan", "Camera pan (demo video)", MediaKind.VIDEO, library.ingest("pan", MediaKind.VIDEO, [(video.name, video)])))
            images = write_demo_images(staging)
            made.append(("photos", "Photos (demo image group)", MediaKind.IMAGE_GROUP, library.ingest("photos", MediaKind.IMAGE_GROUP, [(p.name, p) for p in images])))
        finally:
            library.discard(staging)
        return made

    for media_id, name, kind, probed in await asyncio.to_thread(make_files):
        command = MediaAdded(
            project=PROJECT, media=media_id, name=name, kind=kind,
            width=probed.width, height=probed.height, frames=probed.frames, fps=probed.fps,
        )
        await ctx.ledger.execute(admin, command, str(uuid.uuid4()))
    return tokens
