"""YOLO segmentation: one text file of normalised polygons per frame, and `data.yaml`.

A line is `<class index> x1 y1 x2 y2 ...`, coordinates divided by the frame's width and height,
(0, 0) the top-left corner of the image. Classes are the project's area classes (bitmask,
polygon, box, rotated box) in ontology order; keypoints, skeletons and polylines are not
segmentation and are left out. An object in several parts is one line: the parts are joined by
a path that goes out and comes back the same way, so it adds no area; holes cannot be written.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from masklog.domain.coco import Selected
from masklog.domain.events import ClassAdded, MediaAdded
from masklog.domain.geometry import rotated_bbox_corners, shape_to_mask
from masklog.domain.shapes import AREA_KINDS, BBox, RotatedBBox, Shape
from masklog.domain.state import LabelState


def area_classes(state: LabelState, project: str) -> list[ClassAdded]:
    return [c for c in state.classes.values() if c.project == project and c.shape in AREA_KINDS]


def data_yaml(classes: list[ClassAdded]) -> str:
    names = "\n".join(f"  {index}: {_quoted(cls.name)}" for index, cls in enumerate(classes))
    return f"# masklog export: YOLO segmentation\npath: .\ntrain: images\nval: images\nnames:\n{names}\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rings(shape: Shape, height: int, width: int) -> list[np.ndarray]:
    """The outer rings of an area shape, (N, 2) in image coordinates (pixel corners)."""
    if isinstance(shape, BBox):
        x0, y0, x1, y1 = shape.x, shape.y, shape.x + shape.w, shape.y + shape.h
        return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)]
    if isinstance(shape, RotatedBBox):
        return [rotated_bbox_corners(shape) + 0.5]
    return outline(shape_to_mask(shape, height, width))


def outline(mask: np.ndarray) -> list[np.ndarray]:
    """Outer rings around a mask's pixels (not through their centres), in image coordinates:
    drawn back with the usual rule — a pixel is in when its centre is — they give the mask's
    pixels again. Traced on the mask at twice the size, so each ring runs a quarter pixel
    inside the pixels' outer edges."""
    pixels = mask.astype(np.uint8)
    doubled = np.kron(pixels, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(doubled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [(c.reshape(-1, 2).astype(np.float64) + 0.5) / 2.0 for c in contours if len(c) >= 3]


def joined(parts: list[np.ndarray]) -> np.ndarray:
    """One ring through every part: each part is entered and left at the same vertex, and the
    paths between parts are walked out and back, adding no area."""
    if len(parts) == 1:
        return parts[0]
    path = []
    for part in parts:
        path.append(np.vstack([part, part[:1]]))  # around the part and back to where it began
    forward = np.vstack(path)
    back = np.array([part[0] for part in reversed(parts[:-1])])
    return np.vstack([forward, back])


def label_line(index: int, shape: Shape, media: MediaAdded) -> str | None:
    parts = rings(shape, media.height, media.width)
    if not parts:
        return None
    points = joined(parts) / np.array([media.width, media.height], dtype=np.float64)
    points = np.clip(points, 0.0, 1.0)
    return f"{index} " + " ".join(f"{v:.6f}" for v in points.ravel())


def label_files(classes: list[ClassAdded], selected: Selected) -> Iterator[tuple[str, bytes]]:
    """(path, content) of every file of the export: data.yaml, then labels/<media>/<frame>.txt
    for every frame with an area label. `classes`: the project's (see `area_classes`)."""
    index = {cls.class_id: number for number, cls in enumerate(classes)}
    yield "data.yaml", data_yaml(classes).encode()
    for media, items_by_frame in selected:
        for frame, items in items_by_frame.items():
            lines = [label_line(index[item.class_id], item.shape, media) for item in items if item.class_id in index]
            text = "\n".join(line for line in lines if line is not None)
            if text:
                yield f"labels/{media.media}/{frame:06d}.txt", (text + "\n").encode()


