"""Commands to events: every rule a command must pass before it may enter the log.

`decide(state, actor, command)` returns the body to append or raises `DomainError` with a stable
code and a readable message; it never changes `state`. Most commands are the event body itself
(a client asks for `label_saved` and, if valid, that is what gets logged); undo and redo are
commands of their own because their events carry the compensation computed here, against the
state at undo time (C2).

Who may send what (roles, model actors only for frame results) is the server's business; the
rules here are about the labels themselves.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection

import msgspec

from masklog.domain.events import (
    ID_PATTERN,
    Body,
    Change,
    ClassAdded,
    Direction,
    EventId,
    FirstLabel,
    Id,
    LabelChange,
    LabelDeleted,
    LabelSaved,
    MediaAdded,
    MediaKind,
    ObjectChange,
    ObjectCreated,
    ObjectDeleted,
    ObjectReclassed,
    ObjectRenamed,
    ProjectCreated,
    PromptAdded,
    Redone,
    SegmentProposed,
    Source,
    TrackCancelled,
    TrackCompleted,
    TrackedAccepted,
    TrackedDiscarded,
    TrackerAlias,
    TrackFailed,
    TrackFrameProduced,
    TrackRequested,
    Undone,
    is_event_id,
    media_stream,
    project_stream,
)
from masklog.domain.geometry import MASK_POLYGON_TOLERANCE, GeometryError, panoptic_exclude, rle_area, rle_decode, shape_from_mask, validate_shape
from masklog.domain.interpolation import INTERPOLATION
from masklog.domain.shapes import SAM_KINDS, Bitmask, Shape, ShapeKind, kind_of
from masklog.domain.state import LabelState, TrackStatus, is_persons, object_name


class Undo(msgspec.Struct, frozen=True, tag="undo", forbid_unknown_fields=True, kw_only=True):
    media: Id


class Redo(msgspec.Struct, frozen=True, tag="redo", forbid_unknown_fields=True, kw_only=True):
    media: Id


class SaveSegment(msgspec.Struct, frozen=True, tag="save_segment", forbid_unknown_fields=True, kw_only=True):
    """Save the model's answer to a prompt as a label in the object's class shape (S3)."""

    prompt: EventId


Command = Body | Undo | Redo | SaveSegment


class ErrorCode(enum.StrEnum):
    UNKNOWN = "unknown_id"
    EXISTS = "already_exists"
    INVALID_ID = "invalid_id"
    FRAME_OUT_OF_RANGE = "frame_out_of_range"
    WRONG_SHAPE = "wrong_shape_kind"
    BAD_GEOMETRY = "bad_geometry"
    MODALITY = "modality_refused"
    INVALID = "invalid"
    NOT_ALLOWED = "not_allowed"
    TRACK_NOT_RUNNING = "track_not_running"
    TRACK_RUNNING = "track_running"
    NOTHING_TO_UNDO = "nothing_to_undo"
    NOTHING_TO_REDO = "nothing_to_redo"


class DomainError(ValueError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# What each kind of media allows for tracking (T2).
TRACK_DIRECTIONS: dict[MediaKind, frozenset[Direction]] = {
    MediaKind.VIDEO: frozenset({Direction.FORWARD, Direction.BACKWARD}),
    MediaKind.IMAGE_GROUP: frozenset({Direction.FORWARD}),
    MediaKind.IMAGE_SEQUENCE: frozenset({Direction.FORWARD}),
    MediaKind.DICOM_SERIES: frozenset({Direction.FORWARD}),
    MediaKind.IMAGE: frozenset(),
}


# The tracker names every server accepts (T7); a server adds the names of the trackers it loads.
FIRST_TRACKERS: frozenset[str] = frozenset(TrackerAlias)


def decide(state: LabelState, actor: str, command: Command, *, panoptic: bool = False, trackers: Collection[str] = FIRST_TRACKERS) -> Body:
    """Validate `command` by `actor` against `state`; return the event body to append.

    `panoptic` is the S6 exclude mode: a saved bitmask loses the pixels of the frame's other bitmasks.
    `trackers` are the tracker names a track request may give (the server's registry names).
    """
    match command:
        case ProjectCreated():
            return _project_created(state, actor, command)
        case ClassAdded():
            return _class_added(state, actor, command)
        case MediaAdded():
            return _media_added(state, actor, command)
        case ObjectCreated():
            return _object_created(state, actor, command, panoptic)
        case ObjectDeleted():
            return _object_deleted(state, actor, command)
        case ObjectReclassed():
            return _object_reclassed(state, actor, command)
        case ObjectRenamed():
            return _object_renamed(state, actor, command)
        case PromptAdded():
            return _prompt_added(state, actor, command)
        case SegmentProposed():
            return _segment_proposed(state, actor, command)
        case LabelSaved():
            return _label_saved(state, actor, command, panoptic)
        case LabelDeleted():
            return _label_deleted(state, actor, command)
        case TrackRequested():
            return _track_requested(state, actor, command, trackers)
        case TrackFrameProduced():
            return _track_frame_produced(state, actor, command)
        case TrackCompleted() | TrackCancelled() | TrackFailed():
            return _track_ended(state, actor, command)
        case TrackedAccepted() | TrackedDiscarded():
            return _tracked_reviewed(state, actor, command)
        case Undone() | Redone():
            return _refused(state, actor, command)
        case Undo():
            return _undo(state, actor, command)
        case Redo():
            return _redo(state, actor, command)
        case SaveSegment():
            return _save_segment(state, actor, command, panoptic)
    raise DomainError(ErrorCode.NOT_ALLOWED, f"'{type(command).__struct_config__.tag}' cannot be sent as a command")


# ---- lookups that fail with a clear message -----------------------------------------------------


def check_new_id(value: str, what: str) -> None:
    """Refuse an id that a command creates unless it matches `ID_PATTERN` (the rule for every
    project, class, media and object id; `what` names the kind in the message)."""
    if not ID_PATTERN.match(value):
        raise DomainError(
            ErrorCode.INVALID_ID,
            f"{what} id {value!r} is not valid: use 1-64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit",
        )


def _media(state: LabelState, media_id: str) -> MediaAdded:
    media = state.media.get(media_id)
    if media is None:
        raise DomainError(ErrorCode.UNKNOWN, f"unknown media {media_id!r}")
    return media


def _object(state: LabelState, object_id: str) -> tuple[MediaAdded, ClassAdded]:
    info = state.objects.get(object_id)
    if info is None:
        raise DomainError(ErrorCode.UNKNOWN, f"unknown object {object_id!r}")
    return state.media[info.media], state.classes[info.class_id]


def _object_or_pending(state: LabelState, object_id: str) -> tuple[MediaAdded, ClassAdded]:
    """An object, or one prompted for but not created yet (SAM on a new object): the media
    item and class a prompt's answer is about."""
    if object_id not in state.objects and object_id in state.pending_objects:
        media_id, class_id = state.pending_objects[object_id]
        return state.media[media_id], state.classes[class_id]
    return _object(state, object_id)


# Ids of another project are answered exactly like missing ones (same code, same text), so a
# command never tells what exists outside the project it is about.


def _class_in(state: LabelState, class_id: str, project: str) -> ClassAdded:
    cls = state.classes.get(class_id)
    if cls is None or cls.project != project:
        raise DomainError(ErrorCode.UNKNOWN, f"unknown class {class_id!r}")
    return cls


def _object_in(state: LabelState, object_id: str, project: str) -> MediaAdded:
    info = state.objects.get(object_id)
    if info is None or state.media[info.media].project != project:
        raise DomainError(ErrorCode.UNKNOWN, f"unknown object {object_id!r}")
    return state.media[info.media]


def hidden_id_error(command: Command) -> DomainError:
    """The error `scope_of` raises for `command` when the id that places it does not exist: what
    a caller gets for a command placed in a project it cannot see."""
    try:
        scope_of(LabelState(), command)
    except DomainError as error:
        return error
    raise ValueError(f"'{type(command).__struct_config__.tag}' is placed by no id")  # projects, classes, media


def _frame(media: MediaAdded, frame: int) -> None:
    if not 0 <= frame < media.frames:
        raise DomainError(
            ErrorCode.FRAME_OUT_OF_RANGE,
            f"frame {frame} is out of range: media {media.media!r} has frames 0..{media.frames - 1}",
        )


def _track(state: LabelState, track_id: str, running: bool = False) -> TrackRequested:
    track = state.tracks.get(track_id)
    if track is None:
        raise DomainError(ErrorCode.UNKNOWN, f"unknown track {track_id}")
    if running and track.status != TrackStatus.RUNNING:
        raise DomainError(ErrorCode.TRACK_NOT_RUNNING, f"track {track_id} is {track.status}")
    return track.request


def _geometry(shape: Shape, media: MediaAdded, cls: ClassAdded) -> None:
    skeleton_points = len(cls.skeleton.points) if cls.skeleton is not None else None
    try:
        validate_shape(shape, media.width, media.height, skeleton_points)
    except GeometryError as error:
        raise DomainError(ErrorCode.BAD_GEOMETRY, str(error)) from None


def _shape_kind(shape: Shape, cls: ClassAdded) -> None:
    got = kind_of(shape)
    if got != cls.shape:
        raise DomainError(ErrorCode.WRONG_SHAPE, f"class {cls.class_id!r} takes {cls.shape} labels, not {got}")


def _finite(*values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise DomainError(ErrorCode.BAD_GEOMETRY, "coordinates must be finite numbers")


# ---- project, ontology, media ----------------------------------------------------------------


def _project_created(state: LabelState, actor: str, body: ProjectCreated) -> Body:
    check_new_id(body.project, "project")
    if body.project in state.projects:
        raise DomainError(ErrorCode.EXISTS, f"project {body.project!r} already exists")
    return body


def _class_added(state: LabelState, actor: str, body: ClassAdded) -> Body:
    check_new_id(body.class_id, "class")
    if body.project not in state.projects:
        raise DomainError(ErrorCode.UNKNOWN, f"unknown project {body.project!r}")
    if body.class_id in state.classes:
        raise DomainError(ErrorCode.EXISTS, f"class {body.class_id!r} already exists")
    if (body.shape == ShapeKind.SKELETON) != (body.skeleton is not None):
        raise DomainError(ErrorCode.INVALID, "a skeleton template is required for skeleton classes and only for them")
    if body.skeleton is not None:
        count = len(body.skeleton.points)
        if count == 0:
            raise DomainError(ErrorCode.INVALID, "a skeleton template needs at least one point")
        for a, b in body.skeleton.edges:
            if not (0 <= a < count and 0 <= b < count) or a == b:
                raise DomainError(ErrorCode.INVALID, f"skeleton edge ({a}, {b}) must join two different points of 0..{count - 1}")
    return body


def _media_added(state: LabelState, actor: str, body: MediaAdded) -> Body:
    check_new_id(body.media, "media")
    if body.project not in state.projects:
        raise DomainError(ErrorCode.UNKNOWN, f"unknown project {body.project!r}")
    if body.media in state.media:
        raise DomainError(ErrorCode.EXISTS, f"media {body.media!r} already exists")
    if body.kind == MediaKind.IMAGE and body.frames != 1:
        raise DomainError(ErrorCode.INVALID, f"a single image has exactly one frame, not {body.frames}")
    return body


# ---- objects ----------------------------------------------------------------------------------


def _object_created(state: LabelState, actor: str, body: ObjectCreated, panoptic: bool = False) -> Body:
    check_new_id(body.object, "object")
    if body.object in state.object_media:
        raise DomainError(ErrorCode.EXISTS, f"object {body.object!r} already exists (ids are never reused)")
    # A SAM prompt for a new object reserves its id on its media item (the store's object index
    # claims it there): creating it on another one would make that item's projection differ.
    pending = state.pending_objects.get(body.object)
    if pending is not None and pending[0] != body.media:
        raise DomainError(ErrorCode.EXISTS, f"object id {body.object!r} is reserved by a prompt on media {pending[0]!r}")
    media = _media(state, body.media)
    cls = _class_in(state, body.class_id, media.project)
    if body.name is not None:
        name = object_name(body.name)
        if name is None:
            raise DomainError(ErrorCode.INVALID, "an object's name needs a visible character (leave the name out for none)")
        if name != body.name:
            body = msgspec.structs.replace(body, name=name)
    if body.label is not None:
        first = _first_label(state, actor, body.object, media, cls, body.label, panoptic)
        if first is not body.label:
            body = msgspec.structs.replace(body, label=first)
    return body


def _first_label(state: LabelState, actor: str, object_id: str, media: MediaAdded, cls: ClassAdded, first: FirstLabel, panoptic: bool) -> FirstLabel:
    """The first label of a new object, checked exactly like a `label_saved` on it (frame,
    shape kind, provenance, geometry, the panoptic rule); returned with its mask trimmed when
    the panoptic rule applies."""
    shape = _checked_label(
        state, actor, object_id, media, cls, first.frame, first.shape, first.source, first.model, first.prompt, panoptic
    )
    return first if shape is first.shape else msgspec.structs.replace(first, shape=shape)


def _object_deleted(state: LabelState, actor: str, body: ObjectDeleted) -> Body:
    _object(state, body.object)
    return body


def _object_reclassed(state: LabelState, actor: str, body: ObjectReclassed) -> Body:
    media, old = _object(state, body.object)
    new = _class_in(state, body.class_id, media.project)
    if new.shape != old.shape and state.labels.get(body.object):
        raise DomainError(
            ErrorCode.WRONG_SHAPE,
            f"object {body.object!r} has {old.shape} labels; class {new.class_id!r} takes {new.shape}",
        )
    return body


def _object_renamed(state: LabelState, actor: str, body: ObjectRenamed) -> Body:
    """A new name for an object; an empty (or blank) name clears it. The name is stored trimmed."""
    _object(state, body.object)
    name = object_name(body.name)
    if name == state.objects[body.object].name:
        raise DomainError(ErrorCode.INVALID, f"object {body.object!r} is already {'named ' + repr(name) if name else 'unnamed'}")
    return body if body.name == (name or "") else msgspec.structs.replace(body, name=name or "")


# ---- SAM mode -----------------------------------------------------------------------------------


def _prompt_added(state: LabelState, actor: str, body: PromptAdded) -> Body:
    if (body.class_id is None) != (body.media is None):
        raise DomainError(ErrorCode.INVALID, "a prompt for a new object names both its class and its media item")
    if body.media is not None and body.class_id is not None:
        media, cls = _new_object_target(state, body.object, body.media, body.class_id)
    else:
        media, cls = _object(state, body.object)
    _frame(media, body.frame)
    if cls.shape not in SAM_KINDS:
        raise DomainError(ErrorCode.WRONG_SHAPE, f"SAM cannot create {cls.shape} labels (class {cls.class_id!r})")
    if not body.points and body.box is None and body.mask is None:
        raise DomainError(ErrorCode.INVALID, "a prompt needs at least one point, a box or a mask")
    for point in body.points:
        _finite(point.x, point.y)
        if not (0 <= point.x <= media.width and 0 <= point.y <= media.height):
            raise DomainError(ErrorCode.BAD_GEOMETRY, f"point ({point.x}, {point.y}) is outside the {media.width}x{media.height} frame")
    if body.box is not None:
        box = body.box
        _finite(box.x0, box.y0, box.x1, box.y1)
        inside = 0 <= box.x0 < box.x1 <= media.width and 0 <= box.y0 < box.y1 <= media.height
        if not inside:
            raise DomainError(ErrorCode.BAD_GEOMETRY, f"box ({box.x0}, {box.y0})-({box.x1}, {box.y1}) must be non-empty and inside the frame")
    if body.mask is not None:
        _geometry(Bitmask(rle=body.mask), media, _bitmask_class(cls))
    return body


def _new_object_target(state: LabelState, object_id: str, media_id: str, class_id: str) -> tuple[MediaAdded, ClassAdded]:
    """The media item and class of a prompt for a new object: the id must be free (a prompt on
    an existing object names no class or media), the class one of the media item's project."""
    check_new_id(object_id, "object")
    if object_id in state.object_media:
        raise DomainError(
            ErrorCode.EXISTS,
            f"object {object_id!r} already exists (ids are never reused); a prompt on an existing object names no class or media",
        )
    media = _media(state, media_id)
    cls = _class_in(state, class_id, media.project)
    pending = state.pending_objects.get(object_id)
    if pending is not None and pending != (media_id, class_id):
        raise DomainError(ErrorCode.EXISTS, f"new object {object_id!r} was prompted for as class {pending[1]!r} on media {pending[0]!r}")
    return media, cls


def _bitmask_class(cls: ClassAdded) -> ClassAdded:
    return msgspec.structs.replace(cls, shape=ShapeKind.BITMASK, skeleton=None)


def _segment_proposed(state: LabelState, actor: str, body: SegmentProposed) -> Body:
    if actor.startswith("user:"):
        raise DomainError(ErrorCode.NOT_ALLOWED, "proposed segments come from the model, not from users")
    media, cls = _object_or_pending(state, body.object)
    _frame(media, body.frame)
    # "Nothing found" is an answer too: an empty mask of the frame's size is logged, so the
    # requester sees it; it cannot be saved.
    try:
        empty = rle_area(body.mask) == 0
    except GeometryError as error:
        raise DomainError(ErrorCode.BAD_GEOMETRY, str(error)) from None
    if empty and tuple(body.mask.size) == (media.height, media.width):
        return body
    _geometry(Bitmask(rle=body.mask), media, _bitmask_class(cls))
    return body


# ---- labels ---------------------------------------------------------------------------------------


def _label_saved(state: LabelState, actor: str, body: LabelSaved, panoptic: bool = False) -> Body:
    media, cls = _object(state, body.object)
    if body.edited is not None:
        if body.source != Source.MANUAL:
            raise DomainError(ErrorCode.INVALID, "only a manual label is a hand edit: 'edited' goes with source 'manual'")
        if not is_event_id(body.edited):
            raise DomainError(ErrorCode.INVALID, "'edited' names the event id of the label the edit started from")
    shape = _checked_label(state, actor, body.object, media, cls, body.frame, body.shape, body.source, body.model, body.prompt, panoptic)
    return body if shape is body.shape else msgspec.structs.replace(body, shape=shape)


def _checked_label(
    state: LabelState,
    actor: str,
    object_id: str,
    media: MediaAdded,
    cls: ClassAdded,
    frame: int,
    shape: Shape,
    source: Source,
    model: str | None,
    prompt: str | None,
    panoptic: bool,
) -> Shape:
    """The rules of a label on `object_id` (of class `cls` on `media`, existing or being
    created): the shape to store, which is `shape` itself unless the panoptic rule trims it."""
    _frame(media, frame)
    _shape_kind(shape, cls)
    if source == Source.SAM and cls.shape not in SAM_KINDS:
        raise DomainError(ErrorCode.WRONG_SHAPE, f"SAM cannot create {cls.shape} labels")
    if source == Source.TRACKED and actor.startswith("user:"):
        raise DomainError(ErrorCode.NOT_ALLOWED, "tracked labels come from a track; accept its results instead")
    if source == Source.SAM:
        _check_sam_provenance(state, object_id, frame, model, prompt)
    _geometry(shape, media, cls)
    if panoptic and isinstance(shape, Bitmask):
        others = [
            value.shape.rle
            for oid, value in state.frame_labels(media.media, frame).items()
            if oid != object_id and isinstance(value.shape, Bitmask)
        ]
        if others:
            remaining = panoptic_exclude(shape.rle, others)
            if rle_area(remaining) == 0:
                raise DomainError(ErrorCode.BAD_GEOMETRY, "nothing is left of the mask once other objects' pixels are excluded")
            return Bitmask(rle=remaining)
    return shape


def _check_sam_provenance(state: LabelState, object_id: str, frame: int, model: str | None, prompt: str | None) -> None:
    """A label that says it came from SAM names the prompt whose answer it is (C4), on the same
    object and frame; the shape may have been edited since."""
    segment = state.segments.get(prompt) if prompt is not None else None
    if segment is None or (segment.object, segment.frame) != (object_id, frame):
        raise DomainError(
            ErrorCode.INVALID,
            "a SAM label must name the prompt whose proposed segment it is, on the same object and frame "
            "(or send save_segment with the prompt id)",
        )
    if model is not None and model != segment.model:
        raise DomainError(ErrorCode.INVALID, f"the prompt was answered by {segment.model!r}, not {model!r}")


def _save_segment(state: LabelState, actor: str, command: SaveSegment, panoptic: bool = False) -> Body:
    """The label a prompt's answer makes; for a prompt on a new object (one not created yet),
    the object and that label in one `object_created`: one event, one undo step."""
    segment = _segment(state, command.prompt)
    media, cls = _object_or_pending(state, segment.object)
    if cls.shape not in SAM_KINDS:
        raise DomainError(ErrorCode.WRONG_SHAPE, f"SAM cannot create {cls.shape} labels (class {cls.class_id!r})")
    if rle_area(segment.mask) == 0:
        raise DomainError(ErrorCode.BAD_GEOMETRY, "the proposed segment is empty: add a click on the object")
    shape = shape_from_mask(cls.shape, rle_decode(segment.mask), MASK_POLYGON_TOLERANCE)
    if segment.object not in state.objects:
        first = FirstLabel(frame=segment.frame, shape=shape, source=Source.SAM, model=segment.model, prompt=command.prompt, score=segment.score)
        created = ObjectCreated(object=segment.object, media=media.media, class_id=cls.class_id, label=first)
        return _object_created(state, actor, created, panoptic)
    label = LabelSaved(
        object=segment.object,
        frame=segment.frame,
        shape=shape,
        source=Source.SAM,
        model=segment.model,
        prompt=command.prompt,
        score=segment.score,
    )
    return _label_saved(state, actor, label, panoptic)


def _segment(state: LabelState, prompt: str) -> SegmentProposed:
    segment = state.segments.get(prompt)
    if segment is None:
        raise DomainError(
            ErrorCode.UNKNOWN,
            f"no proposed segment for prompt {prompt}: it is not answered yet, or a newer prompt on that object and frame replaced it",
        )
    return segment


def _label_deleted(state: LabelState, actor: str, body: LabelDeleted) -> Body:
    media, _ = _object(state, body.object)
    _frame(media, body.frame)
    if state.label(body.object, body.frame) is None:
        raise DomainError(ErrorCode.UNKNOWN, f"object {body.object!r} has no label on frame {body.frame}")
    return body


# ---- tracking -------------------------------------------------------------------------------------


def _track_requested(state: LabelState, actor: str, body: TrackRequested, trackers: Collection[str] = FIRST_TRACKERS) -> Body:
    if body.algorithm not in trackers and body.algorithm != INTERPOLATION:  # interpolation needs no model: every server has it
        raise DomainError(ErrorCode.INVALID, f"tracker {body.algorithm!r} does not run on this server: it offers {', '.join(sorted(trackers))}")
    media = _media(state, body.media)
    allowed = TRACK_DIRECTIONS[media.kind]
    if not allowed:
        raise DomainError(ErrorCode.MODALITY, "a single image cannot be tracked: there are no other frames")
    if body.direction not in allowed:
        raise DomainError(ErrorCode.MODALITY, f"{media.kind.replace('_', ' ')} media can only be tracked forwards")
    _frame(media, body.start)
    if len(set(body.objects)) != len(body.objects):
        raise DomainError(ErrorCode.INVALID, "an object is named twice")
    for object_id in body.objects:
        object_media = _object_in(state, object_id, media.project)
        if object_media.media != media.media:
            raise DomainError(ErrorCode.INVALID, f"object {object_id!r} is not on media {media.media!r}")
        if state.label(object_id, body.start) is None:
            raise DomainError(ErrorCode.INVALID, f"object {object_id!r} has no label on the start frame {body.start} to track from")
    if body.algorithm == INTERPOLATION:
        _check_second_keyframe(state, body)
    if body.replaces is not None:
        _check_replaced(state, body, body.replaces)
    # Every new track keeps people's labels (issue 14); the flag is in the event so that logs
    # from before fold as they did.
    return body if body.keep_people is True else msgspec.structs.replace(body, keep_people=True)


def _check_second_keyframe(state: LabelState, body: TrackRequested) -> None:
    """Interpolation (issue 14) fills the frames between an object's keyframes: each object
    needs a person's label on a frame of the range after the start frame."""
    step = Direction(body.direction).step
    last = min(max(body.start + (body.range - 1) * step, 0), state.media[body.media].frames - 1)
    for object_id in body.objects:
        frames = state.labels.get(object_id, {})
        if not any(0 < (frame - body.start) * step < body.range and is_persons(label) for frame, label in frames.items()):
            raise DomainError(
                ErrorCode.INVALID,
                f"interpolation needs a second keyframe of object {object_id!r} within the range (frames {min(body.start, last)}–{max(body.start, last)}): "
                "label it by hand further on in the range, or choose a longer range",
            )


def _check_replaced(state: LabelState, body: TrackRequested, replaces: EventId) -> None:
    """A re-track from a corrected frame (T9) continues an earlier track of the same media
    item, the same way, from a frame inside its range."""
    old = state.tracks.get(replaces)
    if old is None or state.media[old.request.media].project != state.media[body.media].project:
        raise DomainError(ErrorCode.UNKNOWN, f"unknown track {replaces}")
    if old.status == TrackStatus.RUNNING:
        raise DomainError(ErrorCode.TRACK_RUNNING, f"track {replaces} is still running: cancel it or let it finish before re-tracking")
    request = old.request
    if request.media != body.media or request.direction != body.direction:
        raise DomainError(ErrorCode.INVALID, f"a re-track continues track {replaces}: same media item and direction")
    missing = [o for o in body.objects if o not in request.objects]
    if missing:
        raise DomainError(ErrorCode.INVALID, f"object {missing[0]!r} is not part of track {replaces}")
    step = Direction(request.direction).step
    if not 0 <= (body.start - request.start) * step < request.range:
        raise DomainError(ErrorCode.FRAME_OUT_OF_RANGE, f"frame {body.start} is outside the range of track {replaces}")


def _track_frame_produced(state: LabelState, actor: str, body: TrackFrameProduced) -> Body:
    if actor.startswith("user:"):
        raise DomainError(ErrorCode.NOT_ALLOWED, "frame results come from the tracker, not from users")
    request = _track(state, body.track, running=True)
    if body.object not in request.objects:
        raise DomainError(ErrorCode.INVALID, f"object {body.object!r} is not part of track {body.track}")
    media = _media(state, request.media)
    _frame(media, body.frame)
    step = Direction(request.direction).step
    offset = (body.frame - request.start) * step
    if not 0 <= offset < request.range:
        raise DomainError(ErrorCode.FRAME_OUT_OF_RANGE, f"frame {body.frame} is outside the track's range")
    last = state.tracks[body.track].last_frame.get(body.object)
    if last is not None and (body.frame - last) * step <= 0:
        # Results come frame after frame: one for a frame already passed is a re-run (C5).
        raise DomainError(ErrorCode.EXISTS, f"track {body.track} already produced frame {body.frame} of object {body.object!r}")
    if body.shape is not None:
        _, cls = _object(state, body.object)
        _shape_kind(body.shape, cls)
        _geometry(body.shape, media, cls)
    return body


def _track_ended(state: LabelState, actor: str, body: TrackCompleted | TrackCancelled | TrackFailed) -> Body:
    _track(state, body.track, running=True)
    return body


def _tracked_reviewed(state: LabelState, actor: str, body: TrackedAccepted | TrackedDiscarded) -> Body:
    _track(state, body.track)
    if not state.selected_proposals(body.track, body.objects, body.frames):
        raise DomainError(ErrorCode.INVALID, f"track {body.track} has no unreviewed results in that selection")
    return body


# ---- undo / redo ----------------------------------------------------------------------------------


def _compensate(state: LabelState, changes: list[Change]) -> tuple[list[Change], int]:
    """The changes that revert `changes`, cell by cell, where the cell still holds what the
    action wrote; a cell someone changed since is left alone and counted as a conflict."""
    reverted: list[Change] = []
    cleared: set[tuple[str, int]] = set()  # label cells this compensation empties
    conflicts = 0
    for change in reversed(changes):
        current = state.cell(change)
        if current != change.after:
            conflicts += 1
            continue
        if type(change) is ObjectChange and change.before is None:
            # Un-creating an object would orphan labels that are still on it.
            remaining = set(state.labels.get(change.object, {})) - {f for o, f in cleared if o == change.object}
            if remaining:
                conflicts += 1
                continue
        if type(change) is LabelChange and change.before is None:
            cleared.add((change.object, change.frame))
        reverted.append(msgspec.structs.replace(change, before=current, after=change.before))
    return reverted, conflicts


def _undo(state: LabelState, actor: str, command: Undo) -> Body:
    target, changes, conflicts = _revert_top(state, actor, command.media, "undo")
    return Undone(media=command.media, target=target, changes=changes, conflicts=conflicts)


def _redo(state: LabelState, actor: str, command: Redo) -> Body:
    target, changes, conflicts = _revert_top(state, actor, command.media, "redo")
    return Redone(media=command.media, target=target, changes=changes, conflicts=conflicts)


def _revert_top(state: LabelState, actor: str, media: str, which: str) -> tuple[str, list[Change], int]:
    """The compensation for the top of the actor's undo or redo stack on `media`."""
    _media(state, media)
    stacks = state.stacks_of(actor, media)
    stack = stacks.undo if which == "undo" else stacks.redo
    if not stack:
        code = ErrorCode.NOTHING_TO_UNDO if which == "undo" else ErrorCode.NOTHING_TO_REDO
        raise DomainError(code, f"nothing of yours to {which} on this media")
    changes, conflicts = _compensate(state, state.action_changes(stack[-1]))
    return stack[-1], changes, conflicts


def _refused(state: LabelState, actor: str, body: Body) -> Body:
    raise DomainError(ErrorCode.NOT_ALLOWED, "undone/redone events are made by the undo and redo commands")


# ---- where a command lands --------------------------------------------------------------------


class Scope(msgspec.Struct, frozen=True):
    project: str
    media: str | None

    @property
    def stream(self) -> str:
        return media_stream(self.media) if self.media is not None else project_stream(self.project)


def scope_of(state: LabelState, command: Command) -> Scope:
    """The project and media item a command is about, so the server can check membership and
    that a socket's command stays on its media item. Unknown ids are a DomainError."""
    if isinstance(command, (ProjectCreated, ClassAdded, MediaAdded)):
        return Scope(command.project, None)
    media_id: str | None
    if isinstance(command, (ObjectCreated, TrackRequested, Undo, Redo, Undone, Redone)):
        media_id = command.media
    elif isinstance(command, (TrackFrameProduced, TrackCompleted, TrackCancelled, TrackFailed, TrackedAccepted, TrackedDiscarded)):
        media_id = _track(state, command.track).media
    elif isinstance(command, SaveSegment):
        media_id = _object_or_pending(state, _segment(state, command.prompt).object)[0].media
    elif isinstance(command, PromptAdded) and command.media is not None:
        media_id = command.media  # a prompt for a new object
    else:
        object_id = command.object
        media_id = state.object_media.get(object_id)
        if media_id is None and isinstance(command, SegmentProposed) and object_id in state.pending_objects:
            media_id = state.pending_objects[object_id][0]
        if media_id is None:
            raise DomainError(ErrorCode.UNKNOWN, f"unknown object {object_id!r}")
    return Scope(_media(state, media_id).project, media_id)
