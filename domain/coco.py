"""COCO: writing the labels of a projection as a COCO instance file, and reading one back as
commands (import, E1).

Coordinates: masklog's shapes put whole numbers at pixel centres; COCO's at pixel corners (a
pixel spans [i, i + 1)). Boxes match as they are (a masklog box already covers whole pixels);
points and polygon vertices move by half a pixel either way.

Every exported annotation, image and category also carries a `masklog` field — the label's
exact shape and provenance, the frame it stands for, the class's id and shape kind — that COCO
readers ignore and that makes masklog's own exports re-import exactly. Files from elsewhere are
read from their standard fields alone. A named object's annotations carry its name as CVAT
does with per-annotation attributes, `attributes: {"name": ...}` (and `masklog.name`); an
import reads it back from either.

An import is idempotent per file: every event it logs has an id derived from the media item,
a hash of the file's bytes and the annotation that made it (`import_event_ids`), so importing
the same file again finds its objects in the log and skips them (`without_imported`).

Nothing here does I/O: the export is a generator of JSON chunks (the caller streams them), the
import returns the commands to run, or raises `CocoError` naming what is wrong.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from masklog.domain.decide import DomainError
from masklog.domain.events import (
    ID_PATTERN,
    ClassAdded,
    LabelSaved,
    MediaAdded,
    MediaKind,
    ObjectCreated,
    SchemaError,
    SkeletonTemplate,
    Source,
    check_limits,
    derived_event_id,
)
from masklog.domain.geometry import (
    GeometryError,
    polygon_to_mask,
    rle_area,
    rle_bbox,
    rle_decode,
    rle_encode,
    rle_from_counts,
    shape_from_mask,
    shape_points,
    shape_to_mask,
    validate_shape,
)
from masklog.domain.limits import MAX_JSON_DEPTH, MAX_NAME_CHARS, json_depth_over
from masklog.domain.precheck import check_points
from masklog.domain.shapes import (
    BBox,
    Bitmask,
    Keypoint,
    Polygon,
    PolygonPart,
    Rle,
    RotatedBBox,
    Shape,
    ShapeKind,
    Skeleton,
    SkeletonPoint,
)
from masklog.domain.state import LabelState


class CocoError(ValueError):
    """A COCO file that cannot be imported; nothing of it was."""


@dataclass(frozen=True)
class Selection:
    """What an export holds."""

    proposals: bool = False  # also unreviewed tracked results, on cells without a saved label
    first: int | None = None  # frame range, inclusive
    last: int | None = None
    polygons: bool = False  # area shapes as polygons rather than RLE

    def frames(self, media: MediaAdded) -> range:
        first = max(0, self.first or 0)
        last = min(media.frames - 1, self.last if self.last is not None else media.frames - 1)
        return range(first, last + 1)


@dataclass(frozen=True)
class Item:
    """One label to export."""

    object: str
    class_id: str
    shape: Shape
    provenance: dict[str, Any]
    name: str | None = None  # the object's name, if it has one


def frame_items(state: LabelState, media: MediaAdded, selection: Selection) -> dict[int, list[Item]]:
    """The labels of a media item to export, by frame (frames without any left out)."""
    wanted = selection.frames(media)
    out: dict[int, dict[str, Item]] = {}
    for object_id, info in state.objects_of(media.media).items():
        for frame, label in state.labels.get(object_id, {}).items():
            if frame in wanted:
                provenance = {"source": str(label.source), "actor": label.actor, "model": label.model, "proposal": False}
                out.setdefault(frame, {})[object_id] = Item(object_id, info.class_id, label.shape, provenance, info.name)
    if selection.proposals:
        for track_id, cells in state.proposals.items():
            info_track = state.tracks.get(track_id)
            if info_track is None or info_track.request.media != media.media:
                continue
            for (object_id, frame), proposal in cells.items():
                live = state.objects.get(object_id)
                if live is None or frame not in wanted or object_id in out.get(frame, {}):
                    continue
                provenance = {"source": Source.TRACKED.value, "actor": info_track.actor, "model": proposal.model, "proposal": True, "track": track_id}
                out.setdefault(frame, {})[object_id] = Item(object_id, live.class_id, proposal.shape, provenance, live.name)
    return {frame: sorted(items.values(), key=lambda i: i.object) for frame, items in sorted(out.items())}


# ---- export ------------------------------------------------------------------------------------


def category(number: int, cls: ClassAdded) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": number,
        "name": cls.name,
        "supercategory": "",
        "masklog": {"class_id": cls.class_id, "shape": str(cls.shape), "color": cls.color},
    }
    if cls.shape == ShapeKind.KEYPOINT:
        entry["keypoints"] = [cls.name]
        entry["skeleton"] = []
    elif cls.skeleton is not None:
        entry["keypoints"] = list(cls.skeleton.points)
        entry["skeleton"] = [[a + 1, b + 1] for a, b in cls.skeleton.edges]  # COCO counts from 1
        entry["masklog"]["skeleton"] = msgspec.to_builtins(cls.skeleton)
    return entry


def file_name(media: MediaAdded, frame: int) -> str:
    return f"{media.media}/{frame:06d}.jpg" if media.kind != MediaKind.IMAGE else f"{media.media}.jpg"


def annotation(number: int, image: int, category_id: int, item: Item, media: MediaAdded, polygons: bool) -> dict[str, Any]:
    shape, height, width = item.shape, media.height, media.width
    entry: dict[str, Any] = {"id": number, "image_id": image, "category_id": category_id, "iscrowd": 0}
    if isinstance(shape, (Bitmask, Polygon, BBox, RotatedBBox)):
        if isinstance(shape, Bitmask):
            rle = shape.rle
        else:
            rle = rle_encode(shape_to_mask(shape, height, width))
        box = rle_bbox(rle)
        entry["area"] = rle_area(rle)
        entry["bbox"] = [box.x, box.y, box.w, box.h] if box is not None else [0, 0, 0, 0]
        if isinstance(shape, BBox):
            x0, y0, x1, y1 = shape.x, shape.y, shape.x + shape.w, shape.y + shape.h
            entry["segmentation"] = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            entry["bbox"] = [shape.x, shape.y, shape.w, shape.h]
        elif isinstance(shape, RotatedBBox) or polygons:
            entry["segmentation"] = _coco_rings(shape, height, width)
        else:
            entry["segmentation"] = {"size": [height, width], "counts": rle.counts}
    else:
        points = shape_points(shape) + 0.5
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        entry["area"] = 0
        entry["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        entry["segmentation"] = []
        if isinstance(shape, (Keypoint, Skeleton)):
            visible = [p.visible for p in shape.points] if isinstance(shape, Skeleton) else [True]
            entry["keypoints"] = [v for (x, y), seen in zip(points.tolist(), visible, strict=True) for v in (x, y, 2 if seen else 1)]
            entry["num_keypoints"] = len(visible)
    entry["masklog"] = {"object": item.object, "shape": msgspec.to_builtins(shape), **item.provenance}
    if item.name is not None:
        entry["attributes"] = {"name": item.name}
        entry["masklog"]["name"] = item.name
    return entry


def _coco_rings(shape: Shape, height: int, width: int) -> list[list[float]]:
    """Outer rings in COCO's coordinates (holes cannot be written as COCO polygons)."""
    from masklog.domain.yolo import rings  # the same outlines as a YOLO export

    return [ring.ravel().tolist() for ring in rings(shape, height, width)]


Selected = list[tuple[MediaAdded, dict[int, list[Item]]]]


def select(state: LabelState, media_items: list[MediaAdded], selection: Selection) -> Selected:
    """What an export of these media items holds, taken from the state in one go (the state
    may move on while the export is written)."""
    return [(media, frame_items(state, media, selection)) for media in media_items]


def export_chunks(
    classes: list[ClassAdded],
    selected: Selected,
    selection: Selection,
    *,
    seq: int,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[bytes]:
    """A COCO instance file, in pieces: images first, then annotations, one frame at a time, so
    the file never sits whole in memory."""
    encode = msgspec.json.encode
    project = classes[0].project if classes else ""
    category_ids = {cls.class_id: number for number, cls in enumerate(classes, start=1)}
    info = {"description": f"masklog export of project {project}", "version": "1", "date_created": _now(), "masklog": {"seq": seq}}
    yield b'{"info":' + encode(info) + b',"licenses":[],"categories":' + encode([category(category_ids[c.class_id], c) for c in classes])
    total = sum(len(items) for _, items in selected)
    yield b',"images":['
    number = 0
    for media, items in selected:
        for frame in items:
            number += 1
            image = {"id": number, "file_name": file_name(media, frame), "width": media.width, "height": media.height, "masklog": {"media": media.media, "frame": frame}}
            yield (b"," if number > 1 else b"") + encode(image)
    yield b'],"annotations":['
    image_number = annotation_number = done = 0
    for media, items in selected:
        for frame_labels in items.values():
            image_number += 1
            for item in frame_labels:
                annotation_number += 1
                entry = annotation(annotation_number, image_number, category_ids[item.class_id], item, media, selection.polygons)
                yield (b"," if annotation_number > 1 else b"") + encode(entry)
            done += 1
            if progress is not None:
                progress(done, total)
    yield b"]}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# ---- import ------------------------------------------------------------------------------------


class _Image(msgspec.Struct):
    id: int | str
    file_name: str = ""
    width: int | None = None
    height: int | None = None
    masklog: dict[str, Any] | None = None


class _Category(msgspec.Struct):
    id: int | str
    name: str
    keypoints: list[str] | None = None
    skeleton: list[list[int]] | None = None
    masklog: dict[str, Any] | None = None


class _Annotation(msgspec.Struct):
    id: int | str
    image_id: int | str
    category_id: int | str
    segmentation: Any = None
    bbox: list[float] | None = None
    keypoints: list[float] | None = None
    iscrowd: int = 0
    track_id: int | str | None = None
    attributes: dict[str, Any] | None = None
    masklog: dict[str, Any] | None = None


class _File(msgspec.Struct):
    images: list[_Image]
    annotations: list[_Annotation]
    categories: list[_Category]


@dataclass
class ImportPlan:
    """The commands an import runs, in order: classes, objects, labels."""

    classes: list[ClassAdded] = field(default_factory=list)
    objects: list[ObjectCreated] = field(default_factory=list)
    labels: list[LabelSaved] = field(default_factory=list)
    # Object id -> where in the file it comes from ("<position>:<annotation id>" of the
    # annotation that made it): the same for the same file, whatever ids the objects get.
    origins: dict[str, str] = field(default_factory=dict)

    @property
    def commands(self) -> list[ClassAdded | ObjectCreated | LabelSaved]:
        return [*self.classes, *self.objects, *self.labels]


def parse(data: bytes | bytearray) -> _File:
    if json_depth_over(data):
        raise CocoError(f"not a COCO file: JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return msgspec.json.decode(data, type=_File)
    except msgspec.ValidationError as error:  # (a kind of DecodeError: first)
        raise CocoError(f"not a COCO instance file: {error}") from None
    except msgspec.DecodeError as error:
        raise CocoError(f"not a COCO file: {error}") from None
    except RecursionError:  # not past the depth check, but the stack may be deeper here
        raise CocoError("not a COCO file: JSON nested too deep") from None


def plan_import(state: LabelState, media: MediaAdded, data: bytes | bytearray, new_id: Callable[[str], str]) -> ImportPlan:
    """The commands that bring a COCO file's annotations onto `media`: its images map to the
    media's frames (masklog's own `masklog.frame`, else the last number in the file name, else
    frame 0 of a single image); categories to the project's classes (by class id, then name),
    or new classes; annotations of one instance (`masklog.object`, `track_id` or
    `attributes.track_id`) to one new object, others to an object each. `new_id(hint)` makes
    an unused object id. Raises CocoError for anything that cannot be imported."""
    coco = parse(data)
    frames = _image_frames(coco.images, media)
    classes = _category_classes(state, media, coco.categories)
    plan = ImportPlan(classes=[c for c in classes.values() if c.class_id not in state.classes])
    plan.classes = list({c.class_id: c for c in plan.classes}.values())
    objects: dict[str, str] = {}
    taken: set[tuple[str, int]] = set()
    for position, entry in enumerate(coco.annotations):
        where = f"annotation {entry.id!r}"
        if entry.image_id not in frames:
            raise CocoError(f"{where} names image {entry.image_id!r}, which the file does not have")
        cls = classes.get(entry.category_id)
        if cls is None:
            raise CocoError(f"{where} names category {entry.category_id!r}, which the file does not have")
        frame = frames[entry.image_id]
        try:
            shape = _shape(entry, cls, media)
        except GeometryError as error:
            raise CocoError(f"{where}: {error}") from None
        instance = _instance(entry)
        key = f"{cls.class_id}/{instance}" if instance is not None else f"annotation/{entry.id}"
        if key not in objects or (objects[key], frame) in taken:
            objects[key] = new_id(instance if instance is not None else cls.class_id)
            plan.objects.append(ObjectCreated(object=objects[key], media=media.media, class_id=cls.class_id, name=_name(entry)))
            plan.origins[objects[key]] = f"{position}:{entry.id}"
        taken.add((objects[key], frame))
        plan.labels.append(LabelSaved(object=objects[key], frame=frame, shape=shape, source=Source.IMPORTED))
    _check_limits(plan)
    return plan


def import_digest(data: bytes | bytearray) -> str:
    """What identifies an imported file: a hash of its bytes."""
    return hashlib.sha256(data).hexdigest()


def origin_event_id(media: str, digest: str, origin: str) -> str:
    """The id of the event that creates the object a file's annotation at `origin` made."""
    return derived_event_id("coco-import", media, digest, "object", origin)


def import_event_ids(plan: ImportPlan, media: str, digest: str) -> list[str]:
    """The event ids of `plan.commands`, in order, derived from what they come from (the media
    item, the file's digest, the annotation): an import of the same file logs the same ids."""
    ids = [derived_event_id("coco-import", media, digest, "class", cls.class_id) for cls in plan.classes]
    ids += [origin_event_id(media, digest, plan.origins[o.object]) for o in plan.objects]
    ids += [derived_event_id("coco-import", media, digest, "label", plan.origins[s.object], str(s.frame)) for s in plan.labels]
    return ids


def without_imported(plan: ImportPlan, imported: set[str]) -> ImportPlan:
    """`plan` less the objects whose origin is in `imported` (an earlier import of the same
    file made them) and their labels. Classes stay: a class the file needs is matched by id or
    name, so one an earlier import added is not in the plan any more."""
    keep = {o.object for o in plan.objects if plan.origins[o.object] not in imported}
    return ImportPlan(
        classes=plan.classes,
        objects=[o for o in plan.objects if o.object in keep],
        labels=[s for s in plan.labels if s.object in keep],
        origins={o: origin for o, origin in plan.origins.items() if o in keep},
    )


def _name(entry: _Annotation) -> str | None:
    """An annotation's object name: masklog's own, else a CVAT-style attribute; trimmed and cut
    to the length of a name."""
    for source in (entry.masklog, entry.attributes):
        value = source.get("name") if source else None
        if isinstance(value, str) and value.strip():
            return value.strip()[:MAX_NAME_CHARS].strip()
    return None


def _check_limits(plan: ImportPlan) -> None:
    """Hold the commands made from the file to the limits a client's commands meet."""
    for added in plan.classes:
        try:
            check_limits(added)
        except SchemaError as error:
            raise CocoError(f"category {added.name[:50]!r}: {error}") from None
    for saved in plan.labels:
        try:
            check_limits(saved)
            check_points(saved.shape)
        except (SchemaError, DomainError) as error:
            raise CocoError(f"the label of object {saved.object!r} on frame {saved.frame}: {error}") from None


def _image_frames(images: list[_Image], media: MediaAdded) -> dict[int | str, int]:
    frames: dict[int | str, int] = {}
    for image in images:
        frame = None
        if image.masklog is not None and isinstance(image.masklog.get("frame"), int):
            frame = image.masklog["frame"]
        elif media.frames == 1:
            frame = 0
        else:
            numbers = re.findall(r"\d+", image.file_name.rsplit("/", 1)[-1])
            frame = int(numbers[-1]) if numbers and len(numbers[-1]) <= 12 else None  # longer: no frame
        if frame is None or not 0 <= frame < media.frames:
            raise CocoError(f"image {image.id!r} ({image.file_name!r}) is not a frame of media {media.media!r} (frames 0..{media.frames - 1})")
        if image.width is not None and image.height is not None and (image.width, image.height) != (media.width, media.height):
            raise CocoError(f"image {image.id!r} is {image.width}x{image.height}; media {media.media!r} is {media.width}x{media.height}")
        frames[image.id] = frame
    return frames


def _category_classes(state: LabelState, media: MediaAdded, categories: list[_Category]) -> dict[int | str, ClassAdded]:
    existing = [c for c in state.classes.values() if c.project == media.project]
    by_id = {c.class_id: c for c in existing}
    by_name = {c.name: c for c in existing}
    out: dict[int | str, ClassAdded] = {}
    for entry in categories:
        extra = entry.masklog or {}
        cls = by_id.get(extra.get("class_id", "")) or by_name.get(entry.name)
        if cls is None:
            cls = _new_class(media.project, entry, extra, set(by_id) | set(state.classes))
            by_id[cls.class_id] = cls
            by_name[cls.name] = cls
        out[entry.id] = cls
    return out


def _new_class(project: str, entry: _Category, extra: dict[str, Any], taken: set[str]) -> ClassAdded:
    wanted = extra.get("class_id") if isinstance(extra.get("class_id"), str) else None
    base = wanted if wanted and ID_PATTERN.match(wanted) else re.sub(r"[^A-Za-z0-9_.:-]", "-", entry.name).strip("-")[:50] or "class"
    if not ID_PATTERN.match(base):
        base = f"c-{base}"[:50]
    class_id, number = base, 1
    while class_id in taken:
        number += 1
        class_id = f"{base}-{number}"
    skeleton = None
    shape = extra.get("shape")
    if shape not in {k.value for k in ShapeKind}:
        if entry.keypoints and len(entry.keypoints) > 1:
            shape = ShapeKind.SKELETON
        elif entry.keypoints:
            shape = ShapeKind.KEYPOINT
        else:
            shape = ShapeKind.BITMASK
    if shape == ShapeKind.SKELETON:
        if isinstance(extra.get("skeleton"), dict):
            skeleton = msgspec.convert(extra["skeleton"], SkeletonTemplate)
        else:
            edges = [(a - 1, b - 1) for a, b in (entry.skeleton or [])]
            skeleton = SkeletonTemplate(points=list(entry.keypoints or ["point"]), edges=edges)
    color = extra.get("color")
    if not (isinstance(color, str) and re.match(r"^#[0-9a-fA-F]{6}$", color)):
        color = "#ff8800"
    return ClassAdded(project=project, class_id=class_id, name=entry.name[:200] or class_id, shape=ShapeKind(shape), color=color, skeleton=skeleton)


def _instance(entry: _Annotation) -> str | None:
    instance = entry.masklog.get("object") if entry.masklog is not None else None
    if isinstance(instance, str):
        return instance
    if entry.track_id is not None:
        return f"track-{entry.track_id}"
    if entry.attributes and entry.attributes.get("track_id") is not None:
        return f"track-{entry.attributes['track_id']}"
    return None


def _shape(entry: _Annotation, cls: ClassAdded, media: MediaAdded) -> Shape:
    """The annotation as a shape of the class's kind, checked against the frame."""
    height, width = media.height, media.width
    exact = entry.masklog.get("shape") if entry.masklog else None
    shape: Shape | None = None
    if exact is not None:
        try:
            shape = msgspec.convert(exact, Shape)
        except msgspec.ValidationError as error:
            raise GeometryError(f"its masklog shape is not valid: {error}") from None
        if shape.__struct_config__.tag != cls.shape.value:
            shape = None  # the class changed kind: convert from the standard fields
    if shape is None:
        shape = _standard_shape(entry, cls, height, width)
    skeleton = len(cls.skeleton.points) if cls.skeleton is not None else None
    validate_shape(shape, width, height, skeleton)
    return shape


def _standard_shape(entry: _Annotation, cls: ClassAdded, height: int, width: int) -> Shape:
    kind = cls.shape
    if kind == ShapeKind.BBOX and entry.bbox is not None:
        return _clipped_box(entry.bbox, height, width)
    if kind in (ShapeKind.KEYPOINT, ShapeKind.SKELETON):
        values = entry.keypoints or []
        if len(values) % 3 or not values:
            raise GeometryError("keypoints must be x, y, v triples")
        triples = np.asarray(values, dtype=np.float64).reshape(-1, 3)
        xy = np.clip(triples[:, :2] - 0.5, 0, [width, height])
        if kind == ShapeKind.KEYPOINT:
            return Keypoint(x=float(xy[0, 0]), y=float(xy[0, 1]))
        return Skeleton(points=[SkeletonPoint(x=float(x), y=float(y), visible=bool(v == 2)) for (x, y), v in zip(xy.tolist(), triples[:, 2], strict=True)])
    if kind == ShapeKind.POLYLINE:
        raise GeometryError("COCO has no polylines: only masklog's own exports carry them")
    mask = _segmentation_mask(entry.segmentation, height, width)
    if mask is None:
        if entry.bbox is None:
            raise GeometryError("it has neither a segmentation nor a box")
        mask = shape_to_mask(_clipped_box(entry.bbox, height, width), height, width)
    if kind == ShapeKind.POLYGON and isinstance(entry.segmentation, list):
        return _polygon(entry.segmentation, height, width)
    return shape_from_mask(kind, mask)


def _segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    if segmentation is None or segmentation == []:
        return None
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not isinstance(size, list) or _whole_numbers(size) != [height, width]:
            raise GeometryError(f"its RLE size {size!r} is not the frame's [{height}, {width}]")
        if isinstance(counts, str):
            rle = Rle(size=(height, width), counts=counts)
            return rle_decode(rle)  # checks the string
        if isinstance(counts, list):
            return rle_decode(rle_from_counts(counts, (height, width)))
        raise GeometryError("its RLE counts are neither a string nor a list of numbers")
    if isinstance(segmentation, list):
        return polygon_to_mask(_polygon(segmentation, height, width), height, width)
    raise GeometryError("its segmentation is neither polygons nor an RLE")


def _whole_numbers(values: list[Any]) -> list[int] | None:
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError, OverflowError):
        return None


def _polygon(rings: list[Any], height: int, width: int) -> Polygon:
    parts = []
    for ring in rings:
        if not isinstance(ring, list) or len(ring) < 6 or len(ring) % 2 or not all(isinstance(v, (int, float)) for v in ring):
            raise GeometryError("a polygon must be a list of at least 3 x, y pairs")
        points = np.clip(np.asarray(ring, dtype=np.float64).reshape(-1, 2) - 0.5, 0, [width, height])
        parts.append(PolygonPart(outer=points.ravel().tolist()))
    return Polygon(parts=parts)


def _clipped_box(bbox: list[float], height: int, width: int) -> BBox:
    if len(bbox) != 4:
        raise GeometryError("a box is [x, y, width, height]")
    x, y, w, h = (float(v) for v in bbox)
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    return BBox(x=x0, y=y0, w=x1 - x0, h=y1 - y0)

