"""Every event of the log: the envelope and one msgspec tagged union of bodies.

The log is the source of truth; the labels anyone sees are a projection of it (`domain.state`).
Decoding is strict: an unknown kind, a missing or extra field, or a value of the wrong type is a
`SchemaError` that names the problem. Each envelope carries the schema version `v` it was written
with; older versions are brought up to date by the upcasters registered in `UPCASTERS`, so old
logs keep loading after the schema grows.
"""

from __future__ import annotations

import enum
import hashlib
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args

import msgspec

from masklog.domain.limits import (
    INT64_MAX,
    MAX_ACTOR_CHARS,
    MAX_CHANGES,
    MAX_FRAME,
    MAX_ID_CHARS,
    MAX_MODEL_CHARS,
    MAX_NAME_CHARS,
    MAX_PROMPT_POINTS,
    MAX_SIDE,
    MAX_SKELETON_EDGES,
    MAX_SKELETON_POINTS,
    MAX_STREAM_CHARS,
    MAX_TEXT_CHARS,
    MAX_TRACK_OBJECTS,
    MAX_TRACK_RANGE,
)
from masklog.domain.shapes import Rle, Shape, ShapeKind

if TYPE_CHECKING:
    from typing_extensions import TypeIs  # typing's own from Python 3.13

SCHEMA_VERSION = 1

# Ids of projects, classes, media and objects, chosen by clients. Only the length is checked
# while decoding (a pattern costs about 1 us a field, too much for rebuilding a long log); new
# ids are checked against ID_PATTERN when a command creates them (`domain.decide`).
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
# A stream is what one client follows: `media:<id>` for a media item, `project:<id>` for the
# project's own events (ontology, media list); see `stream_of`.
Stream = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STREAM_CHARS)]
# `user:<name>` or `model:<backend>/<model>@<version>`; the pattern is checked where actors are
# made (the server's auth, the inference actor), not on every decode.
Actor = Annotated[str, msgspec.Meta(min_length=6, max_length=MAX_ACTOR_CHARS)]
ACTOR_PATTERN = re.compile(r"^(user:[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}|model:[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+@[A-Za-z0-9_.+-]+)$")
Frame = Annotated[int, msgspec.Meta(ge=0, le=MAX_FRAME)]
Model = Annotated[str, msgspec.Meta(max_length=MAX_MODEL_CHARS)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
# Counts the server writes (frames a track produced, cells an undo left alone).
Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Color = Annotated[str, msgspec.Meta(pattern=r"^#[0-9a-fA-F]{6}$")]
Score = Annotated[float, msgspec.Meta(ge=-1e6, le=1e6)]
# Event ids are UUIDs in canonical text form (lowercase, hyphenated), kept as str: msgspec
# builds EventId objects and Python hashes them slowly, which was a third of the decoding time
# of a large log. Ids that enter from outside are checked with `is_event_id` (the store does).
EventId = Annotated[str, msgspec.Meta(min_length=36, max_length=36)]


def new_event_id() -> str:
    return str(uuid.uuid4())


# Ids the server derives for the events it writes itself (a frame of a track, a track's end, the
# answer to a prompt) are UUIDs of version 8, made from a hash of what they answer: re-running
# the same work gives the same id, so it is never logged twice. Clients may not send ids of that
# version (`is_derived_event_id`), so an id a client chooses can never take one the server will
# need.
DERIVED_ID_VERSION = 8


def derived_event_id(*parts: str) -> str:
    """The id of the server's event that answers `parts` (e.g. track, object, frame)."""
    digest = hashlib.sha256("\x1f".join(("masklog-derived", *parts)).encode()).digest()
    value = int.from_bytes(digest[:16], "big")
    value &= ~(0xF << 76)  # version bits
    value |= DERIVED_ID_VERSION << 76
    value &= ~(0x3 << 62)  # variant bits: RFC 4122
    value |= 0x2 << 62
    return str(uuid.UUID(int=value))


def is_derived_event_id(value: str) -> bool:
    """Whether `value` (an event id in canonical form) is of the kind only the server derives."""
    return len(value) == 36 and value[14] == "8"


def is_event_id(value: object) -> bool:
    """Whether `value` is a UUID in canonical text form."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


class SchemaError(ValueError):
    """An event (or command) that does not match the schema."""


class MediaKind(enum.StrEnum):
    IMAGE = "image"
    IMAGE_GROUP = "image_group"
    IMAGE_SEQUENCE = "image_sequence"
    VIDEO = "video"
    DICOM_SERIES = "dicom_series"


class Source(enum.StrEnum):
    """Where a label came from (C4)."""

    MANUAL = "manual"
    SAM = "sam"
    TRACKED = "tracked"
    IMPORTED = "imported"


class Direction(enum.StrEnum):
    FORWARD = "forward"
    BACKWARD = "backward"

    @property
    def step(self) -> int:
        """+1 going forward, -1 going backward: frame = start + offset * step.

        A struct built in Python (not decoded) may hold the plain string: msgspec checks types
        only when decoding, so code reading a struct's field writes `Direction(value).step`."""
        return 1 if self is Direction.FORWARD else -1


class TrackerAlias(enum.StrEnum):
    """T7: the two tracker names of the first schema, valid on every server. 'simple' is the
    classical tracker; 'advanced' the best mask tracker the server has loaded (SAM 2 when it has
    it, else classical). Which tracker each stands for is decided when the track runs, as it
    always was, so logs keep meaning what they meant."""

    ADVANCED = "advanced"
    SIMPLE = "simple"


# The tracker a track request names (T7): an alias above or a name from the inference side's
# registry ('classical', 'sam2', ...), so a new tracker needs no schema change. Stored as text,
# as the first schema stored its two values. Only the length is checked while decoding;
# `domain.decide` checks the name against those the server offers.
TrackerName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]


def _struct(tag: str) -> dict[str, Any]:
    return {"tag": tag, "frozen": True, "forbid_unknown_fields": True, "kw_only": True}


# ---------------------------------------------------------------------------------------------
# Values kept in the projection and carried by undo/redo compensations.


# Edges name points by index; `decide` checks they exist, the schema only that they fit in int64.
SkeletonIndex = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]


class SkeletonTemplate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    points: Annotated[list[Name], msgspec.Meta(max_length=MAX_SKELETON_POINTS)]
    edges: Annotated[list[tuple[SkeletonIndex, SkeletonIndex]], msgspec.Meta(max_length=MAX_SKELETON_EDGES)] = []


class ObjectInfo(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """An object instance on one media item; its labels hang off it per frame. `name` is what
    people call it (None: unnamed, shown as "<class> #<n>"); left out of the encoding when None,
    so an unnamed object encodes as it did before names existed."""

    media: Id
    class_id: Id
    created_by: Actor
    name: Name | None = None


class Label(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True, kw_only=True):
    """The value of one (object, frame) cell, with its provenance (C4)."""

    written_by: EventId  # the event that wrote this value; first, so equality checks it first
    shape: Shape
    source: Source
    actor: Actor
    model: Model | None = None
    prompt: EventId | None = None
    track: EventId | None = None
    score: float | None = None
    # A hand edit names the label it started from (its `written_by`): "manual, edited from
    # the SAM label by alice". None for a label drawn from scratch, and in logs before it.
    edited: EventId | None = None


class Proposal(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True, kw_only=True):
    """A tracked result awaiting review (T9)."""

    written_by: EventId
    shape: Shape
    score: float
    model: Model


class ObjectChange(msgspec.Struct, frozen=True, tag="object", forbid_unknown_fields=True, kw_only=True):
    object: Id
    before: ObjectInfo | None
    after: ObjectInfo | None


class LabelChange(msgspec.Struct, frozen=True, tag="label", forbid_unknown_fields=True, kw_only=True):
    object: Id
    frame: Frame
    before: Label | None
    after: Label | None


class ProposalChange(msgspec.Struct, frozen=True, tag="proposal", forbid_unknown_fields=True, kw_only=True):
    track: EventId
    object: Id
    frame: Frame
    before: Proposal | None
    after: Proposal | None


Change = ObjectChange | LabelChange | ProposalChange


class Point(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    x: float
    y: float
    include: bool = True


class Box(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    x0: float
    y0: float
    x1: float
    y1: float


# ---------------------------------------------------------------------------------------------
# Bodies: one per kind of fact.


class ProjectCreated(msgspec.Struct, **_struct("project_created")):
    project: Id
    name: Name


class ClassAdded(msgspec.Struct, **_struct("class_added")):
    project: Id
    class_id: Id
    name: Name
    shape: ShapeKind
    color: Color
    skeleton: SkeletonTemplate | None = None


class MediaAdded(msgspec.Struct, **_struct("media_added")):
    project: Id
    media: Id
    name: Name
    kind: MediaKind
    width: Annotated[int, msgspec.Meta(ge=1, le=MAX_SIDE)]
    height: Annotated[int, msgspec.Meta(ge=1, le=MAX_SIDE)]
    frames: Annotated[int, msgspec.Meta(ge=1, le=MAX_FRAME)]
    fps: Annotated[float, msgspec.Meta(gt=0, le=1000)] | None = None


class FirstLabel(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The label an object is created with (`ObjectCreated.label`): a `LabelSaved` body
    without the object, which is the one being created."""

    frame: Frame
    shape: Shape
    source: Source
    model: Model | None = None
    prompt: EventId | None = None
    score: float | None = None


class ObjectCreated(msgspec.Struct, **_struct("object_created"), omit_defaults=True):
    """A new object; with `label`, the object and its first label in one event (one undo
    step): an object drawn or segmented exists once it has a label. Without it (old logs, the
    REST clients that create first and label later), an object without labels."""

    object: Id
    media: Id
    class_id: Id
    name: Name | None = None  # optional; left out of the encoding when None (as before names)
    label: FirstLabel | None = None  # likewise


class ObjectDeleted(msgspec.Struct, **_struct("object_deleted")):
    object: Id


class ObjectReclassed(msgspec.Struct, **_struct("object_reclassed")):
    object: Id
    class_id: Id


# An object's name as a rename sends it: "" (or only blanks) clears the name.
ObjectNameText = Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)]


class ObjectRenamed(msgspec.Struct, **_struct("object_renamed")):
    """An object's name changed (shared by everyone; undoable like a reclass)."""

    object: Id
    name: ObjectNameText


class PromptAdded(msgspec.Struct, **_struct("prompt_added")):
    """SAM mode input (S1, S2, S7): clicks, a box and optionally an existing mask to refine."""

    object: Id
    frame: Frame
    points: Annotated[list[Point], msgspec.Meta(max_length=MAX_PROMPT_POINTS)] = []
    box: Box | None = None
    mask: Rle | None = None
    # A prompt for an object that does not exist yet: a new object of this class on this media
    # item (both given, or neither). Saving its segment creates the object with its first label
    # (`save_segment` -> `object_created` with `label`); an abandoned preview leaves no object.
    class_id: Id | None = None
    media: Id | None = None


class SegmentProposed(msgspec.Struct, **_struct("segment_proposed")):
    """A model's answer to a prompt: the preview, not yet a label."""

    prompt: EventId
    object: Id
    frame: Frame
    mask: Rle
    score: Score
    model: Model


class LabelSaved(msgspec.Struct, **_struct("label_saved")):
    object: Id
    frame: Frame
    shape: Shape
    source: Source
    model: Model | None = None
    prompt: EventId | None = None
    score: float | None = None
    # A hand edit (source manual) of an existing label names that label's `written_by`: the
    # provenance of "edited from the SAM label". Recorded as given (a stale one is no error).
    edited: EventId | None = None


class LabelDeleted(msgspec.Struct, **_struct("label_deleted")):
    object: Id
    frame: Frame


class TrackRequested(msgspec.Struct, **_struct("track_requested")):
    """The envelope's id names the track; frame results point back at it."""

    media: Id
    objects: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=MAX_TRACK_OBJECTS)]
    start: Frame
    direction: Direction
    range: Annotated[int, msgspec.Meta(ge=1, le=MAX_TRACK_RANGE)] = 30  # counts the start frame (T1)
    interval: Annotated[int, msgspec.Meta(ge=0, le=MAX_TRACK_RANGE)] = 0  # frames an object may be lost (T5)
    algorithm: TrackerName = TrackerAlias.ADVANCED.value
    autosave: bool = False  # automated labelling saves directly (T9)
    # A correction re-tracked (T9): this earlier track's unreviewed results for these objects,
    # from `start` onwards in `direction`, are replaced by this track's.
    replaces: EventId | None = None
    # People's labels are keyframes (True on every request decided since issue 14; unset in
    # older logs, which fold as they did): a result on a frame that holds a person's label is a
    # proposal flagged as a conflict, also when autosaving, and accepting keeps the person's
    # label unless the reviewer overwrites. The trackers condition on the keyframes in range.
    keep_people: bool | msgspec.UnsetType = msgspec.UNSET  # unset: not written, old logs' bytes stay the same


class TrackFrameProduced(msgspec.Struct, **_struct("track_frame_produced")):
    track: EventId
    object: Id
    frame: Frame
    shape: Shape | None  # None: the object is lost on this frame
    score: Score
    model: Model


class TrackCompleted(msgspec.Struct, **_struct("track_completed")):
    track: EventId
    frames: Count


class TrackCancelled(msgspec.Struct, **_struct("track_cancelled")):
    track: EventId


class TrackFailed(msgspec.Struct, **_struct("track_failed")):
    track: EventId
    reason: Text


class TrackedAccepted(msgspec.Struct, **_struct("tracked_accepted")):
    """Review (T9): turn a track's proposals into labels; None selects all."""

    track: EventId
    objects: Annotated[list[Id], msgspec.Meta(max_length=MAX_TRACK_OBJECTS)] | None = None
    frames: Annotated[list[Frame], msgspec.Meta(max_length=MAX_TRACK_RANGE)] | None = None
    # Only for a track that keeps people's labels: True replaces them too (the reviewer chose
    # to overwrite); False keeps each person's label and sets the conflicting result aside.
    overwrite: bool | msgspec.UnsetType = msgspec.UNSET


class TrackedDiscarded(msgspec.Struct, **_struct("tracked_discarded")):
    track: EventId
    objects: Annotated[list[Id], msgspec.Meta(max_length=MAX_TRACK_OBJECTS)] | None = None
    frames: Annotated[list[Frame], msgspec.Meta(max_length=MAX_TRACK_RANGE)] | None = None


class Undone(msgspec.Struct, **_struct("undone")):
    """A compensation (C2) computed against the state at undo time: `changes` is what it did;
    `conflicts` the cells it left alone because someone else changed them since."""

    media: Id
    target: EventId
    changes: Annotated[list[Change], msgspec.Meta(max_length=MAX_CHANGES)]
    conflicts: Count = 0


class Redone(msgspec.Struct, **_struct("redone")):
    media: Id
    target: EventId  # the Undone event it reverts
    changes: Annotated[list[Change], msgspec.Meta(max_length=MAX_CHANGES)]
    conflicts: Count = 0


Body = (
    ProjectCreated
    | ClassAdded
    | MediaAdded
    | ObjectCreated
    | ObjectDeleted
    | ObjectReclassed
    | ObjectRenamed
    | PromptAdded
    | SegmentProposed
    | LabelSaved
    | LabelDeleted
    | TrackRequested
    | TrackFrameProduced
    | TrackCompleted
    | TrackCancelled
    | TrackFailed
    | TrackedAccepted
    | TrackedDiscarded
    | Undone
    | Redone
)


def struct_tag(cls: type[msgspec.Struct]) -> str:
    """The tag a tagged struct type is encoded with (the kind of a body, of a shape, of a command)."""
    tag = cls.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__name__} has no text tag")
    return tag


BODY_TYPES: tuple[type[msgspec.Struct], ...] = get_args(Body)
BODY_KINDS: dict[str, type[msgspec.Struct]] = {struct_tag(t): t for t in BODY_TYPES}


# ---------------------------------------------------------------------------------------------
# The envelope.


class NewEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An event before the store gave it a position and a time."""

    id: EventId
    stream: Stream
    actor: Actor
    body: Body
    cause: EventId | None = None


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    seq: Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]
    id: EventId
    stream: Stream
    actor: Actor
    at: float  # server time, Unix seconds
    body: Body
    cause: EventId | None = None
    v: int = SCHEMA_VERSION


def project_stream(project: str) -> str:
    return f"project:{project}"


def media_stream(media: str) -> str:
    return f"media:{media}"


def stored(new: NewEvent, seq: int, at: float) -> Event:
    return Event(seq=seq, id=new.id, stream=new.stream, actor=new.actor, at=at, body=new.body, cause=new.cause)


# ---------------------------------------------------------------------------------------------
# Codec.

# An upcaster turns a raw envelope (a dict) of version N into version N + 1.
UPCASTERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(Event)
_new_event_decoder = msgspec.json.Decoder(NewEvent)
_body_decoder: msgspec.json.Decoder[Body] = msgspec.json.Decoder(Body)


def encode(value: Event | NewEvent | msgspec.Struct) -> bytes:
    return _encoder.encode(value)


_events_decoder = msgspec.json.Decoder(list[Event])


def decode_events(rows: list[bytes] | list[str]) -> list[Event]:
    """Decode many stored events at once: one decoder call over a JSON array is cheaper than a
    call per event. Falls back to one by one (and upcasting) when any is old or malformed."""
    if not rows:
        return []
    # One copy of the rows (the join), not three: the brackets ride on the first and last row.
    joined: str | bytes
    if _text_rows(rows):
        text_parts = ["[" + rows[0], *rows[1:]]
        text_parts[-1] = text_parts[-1] + "]"
        joined = ",".join(text_parts)
    else:
        byte_parts = [b"[" + rows[0], *rows[1:]]
        byte_parts[-1] = byte_parts[-1] + b"]"
        joined = b",".join(byte_parts)
    try:
        events = _events_decoder.decode(joined)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return [decode_event(row) for row in rows]
    if any(event.v != SCHEMA_VERSION for event in events):
        return [decode_event(row) for row in rows]
    return events


def _text_rows(rows: list[bytes] | list[str]) -> TypeIs[list[str]]:
    """Whether the rows are text (rows are all text or all bytes)."""
    return isinstance(rows[0], str)


def decode_event(data: bytes | str) -> Event:
    """Decode a stored event, upcasting an older schema version; raises SchemaError.

    Stored events are held to the schema except for its length limits (`domain.limits`): those
    bound what clients may send now, and a log may hold longer values written before them."""
    try:
        event = _event_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as fast_error:
        raw = _raw_object(data, fast_error)
        if raw.get("v", SCHEMA_VERSION) == SCHEMA_VERSION:
            return _without_length_limits(raw, Event, fast_error)
        return upcast(raw)
    if event.v != SCHEMA_VERSION:
        return upcast(msgspec.json.decode(data))
    return event


def upcast(raw: dict[str, Any]) -> Event:
    version = raw.get("v", SCHEMA_VERSION)
    if not isinstance(version, int) or version < 1:
        raise SchemaError(f"bad schema version {version!r}")
    if version > SCHEMA_VERSION:
        raise SchemaError(f"event written by a newer schema (v{version}); this build reads up to v{SCHEMA_VERSION}")
    while version < SCHEMA_VERSION:
        step = UPCASTERS.get(version)
        if step is None:
            raise SchemaError(f"no upcaster from schema v{version}")
        raw = step(raw)
        version += 1
        raw["v"] = version
    try:
        return msgspec.convert(raw, Event)
    except msgspec.ValidationError as error:
        return _without_length_limits(raw, Event, error)


def decode_new_event(data: bytes | str) -> NewEvent:
    """Decode an event as it will be stored, held to the schema like `decode_event` holds a
    stored one (without the length limits)."""
    try:
        return _new_event_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
        return _without_length_limits(_raw_object(data, error), NewEvent, error)


def decode_body(data: bytes | str) -> Body:
    """Decode a body as a client sends it: the full schema, length limits included."""
    try:
        return _body_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise SchemaError(str(error)) from None
    except RecursionError:
        raise SchemaError("nested too deep") from None


def check_limits(body: msgspec.Struct) -> None:
    """Raise SchemaError unless `body`, built in code from outside input (an import), is within
    the schema and its limits, as if a client had sent it."""
    try:
        msgspec.convert(msgspec.to_builtins(body), type(body))
    except msgspec.ValidationError as error:
        raise SchemaError(f"{struct_tag(type(body)) if isinstance(body, BODY_TYPES) else type(body).__name__}: {error}") from None


def _raw_object(data: bytes | str, error: Exception) -> dict[str, Any]:
    if isinstance(error, RecursionError):
        raise SchemaError("nested too deep") from None
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as decode_error:
        raise SchemaError(f"not JSON: {decode_error}") from None
    except RecursionError:
        raise SchemaError("nested too deep") from None
    if not isinstance(raw, dict):
        raise SchemaError("an event must be a JSON object") from None
    return raw


class _Mismatch(Exception):
    pass


_S = TypeVar("_S", bound=msgspec.Struct)


def _without_length_limits(raw: dict[str, Any], type_: type[_S], error: Exception) -> _S:
    """`raw` as a `type_`, checked like msgspec checks it except for the maximum lengths of
    strings and lists; raises SchemaError with the strict decoder's `error` when anything
    else is wrong. The slow path, for the rare event that holds a value over a length limit."""
    try:
        value = _relaxed(raw, _type_info(type_))
    except (_Mismatch, TypeError, ValueError, RecursionError):
        raise SchemaError(str(error)) from None
    if not isinstance(value, type_):  # a struct type's info makes an instance of it
        raise SchemaError(str(error))
    return value


_TYPE_INFO: dict[type, Any] = {}


def _type_info(type_: type) -> Any:
    if type_ not in _TYPE_INFO:
        _TYPE_INFO[type_] = msgspec.inspect.type_info(type_)
    return _TYPE_INFO[type_]


def _relaxed(value: Any, info: Any) -> Any:
    mi = msgspec.inspect
    if isinstance(info, mi.StructType):
        if not isinstance(value, dict):
            raise _Mismatch
        fields = {field.encode_name: field for field in info.fields}
        extra = set(value) - set(fields) - ({info.tag_field} if info.tag_field else set())
        if extra and info.forbid_unknown_fields:
            raise _Mismatch
        if info.tag_field is not None and value.get(info.tag_field, info.tag) != info.tag:
            raise _Mismatch
        kwargs = {}
        for name, field in fields.items():
            if name in value:
                kwargs[field.name] = _relaxed(value[name], field.type)
            elif field.required:
                raise _Mismatch
        return info.cls(**kwargs)
    if isinstance(info, mi.UnionType):
        if value is None:
            if any(isinstance(t, mi.NoneType) for t in info.types):
                return None
            raise _Mismatch
        structs = [t for t in info.types if isinstance(t, mi.StructType)]
        if isinstance(value, dict) and structs:
            tagged: dict[object, mi.StructType] = {t.tag: t for t in structs if t.tag is not None}
            chosen = tagged.get(value.get(structs[0].tag_field)) if tagged else structs[0]
            if chosen is None:
                raise _Mismatch
            return _relaxed(value, chosen)
        for option in info.types:
            if not isinstance(option, (mi.StructType, mi.NoneType)):
                try:
                    return _relaxed(value, option)
                except _Mismatch:
                    continue
        raise _Mismatch
    if isinstance(info, mi.ListType):
        if not isinstance(value, list) or (info.min_length is not None and len(value) < info.min_length):
            raise _Mismatch
        return [_relaxed(item, info.item_type) for item in value]
    if isinstance(info, mi.TupleType):
        if not isinstance(value, list) or len(value) != len(info.item_types):
            raise _Mismatch
        return tuple(_relaxed(item, item_type) for item, item_type in zip(value, info.item_types, strict=True))
    if isinstance(info, mi.StrType):
        if not isinstance(value, str) or (info.min_length is not None and len(value) < info.min_length):
            raise _Mismatch
        if info.pattern is not None and not re.search(info.pattern, value):
            raise _Mismatch
        return value
    if isinstance(info, (mi.IntType, mi.FloatType)):
        if isinstance(value, bool) or not isinstance(value, (int, float) if isinstance(info, mi.FloatType) else int):
            raise _Mismatch
        bounds_hold = (
            (info.ge is None or value >= info.ge)
            and (info.gt is None or value > info.gt)
            and (info.le is None or value <= info.le)
            and (info.lt is None or value < info.lt)
        )
        if not bounds_hold:
            raise _Mismatch
        return float(value) if isinstance(info, mi.FloatType) else value
    if isinstance(info, mi.BoolType):
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if isinstance(info, mi.EnumType):
        return info.cls(value)
    if isinstance(info, mi.NoneType):
        if value is not None:
            raise _Mismatch
        return None
    raise _Mismatch


def kind(body: Body) -> str:
    return struct_tag(type(body))
