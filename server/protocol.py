"""The socket protocol, free of I/O: message schema, parsing, the opening conversation, snapshots,
delivery order and close codes.

`server.ws` is the thin asyncio adapter that moves these messages over a WebSocket: it receives,
calls the functions here, sends what they return and closes with the code they name. Everything
a client can send is decoded strictly here; a bad message becomes a `ProtocolError` with a code
and a readable message, never an exception that reaches the socket loop. docs/protocol.md
describes the conversation.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import msgspec

from masklog.domain.decide import Command
from masklog.domain.events import ClassAdded, Event, Label, MediaAdded, ObjectInfo, Proposal, TrackRequested
from masklog.domain.limits import INT64_MAX, MAX_FRAME, MAX_JSON_DEPTH, MAX_LABEL_WINDOW, MAX_TOKEN_CHARS, json_depth_over
from masklog.domain.shapes import Coord
from masklog.domain.state import LabelState
from masklog.server.accounts import Credential, Role, User
from masklog.server.capabilities import Capabilities
from masklog.server.origins import origin_allowed
from masklog.server.settings import Settings

PROTOCOL_VERSION = 1


class CloseCode(enum.IntEnum):
    """The codes a socket is closed with; 4000–4999 are this application's (RFC 6455, 7.4.2).
    The page stops after UNAUTHORIZED, FORBIDDEN and UNKNOWN_MEDIA and reconnects after any other,
    resuming from the last position it saw. docs/protocol.md lists them (a test checks)."""

    MESSAGE_TOO_BIG = 1009  # sent by the WebSocket layer itself: a message far over the limit
    INTERNAL_ERROR = 1011  # the server failed on this socket (a bug); it keeps serving the others
    UNAUTHORIZED = 4001  # no hello in time, an unknown token; later: token revoked or expired
    BAD_HELLO = 4002  # the first message is not a valid hello
    FORBIDDEN = 4003  # Host or Origin not this server's; later: membership or account role changed
    UNKNOWN_MEDIA = 4004  # no such media item, or one of a project the user is not a member of
    TOO_SLOW = 4008  # fell behind or stopped reading: resume from the last seq


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, command_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.command_id = command_id


def _msg(tag: str) -> dict[str, object]:
    return {"tag": tag, "frozen": True, "forbid_unknown_fields": True, "kw_only": True}


# ---- client -> server ----------------------------------------------------------------------------


class Hello(msgspec.Struct, **_msg("hello")):
    """First message: who I am and the last position I saw (None: send me a snapshot)."""

    token: Annotated[str, msgspec.Meta(max_length=MAX_TOKEN_CHARS)]
    last_seq: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)] | None = None
    frame: Annotated[int, msgspec.Meta(ge=0, le=MAX_FRAME)] = 0
    # Inclusive first and last frame whose full labels the snapshot carries (the rest come as
    # `heads`); None: all labels. Checked by `window_error` (code `bad_window`), not the schema,
    # so a bad one is refused with the same code as on REST.
    labels_window: tuple[int, int] | None = None


# A command as a client sends it, one definition for both ways in: as it is, the body of
# POST /api/media/{media}/commands; tagged, the socket's `command` message (`CommandMessage`).
# (A comment, not a docstring: msgspec would publish a docstring in the OpenAPI description.)
class CommandRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: uuid.UUID  # any UUID text; the server uses its canonical form
    body: Command
    panoptic: bool = False


class CommandMessage(CommandRequest, tag="command", frozen=True):
    pass


class PresenceUpdate(msgspec.Struct, **_msg("presence")):
    frame: Annotated[int, msgspec.Meta(ge=0, le=MAX_FRAME)]
    cursor: tuple[Coord, Coord] | None = None


class Ping(msgspec.Struct, **_msg("ping")):
    pass


ClientMessage = Hello | CommandMessage | PresenceUpdate | Ping


# ---- server -> client ----------------------------------------------------------------------------


class Welcome(msgspec.Struct, **_msg("welcome")):
    protocol: int
    user: str
    role: str
    media: str
    head: int
    # The trackers and segmenter this server runs (as GET /api/capabilities; issue 14).
    capabilities: Capabilities | None = None


class LabelEntry(msgspec.Struct, frozen=True):
    object: str
    frame: int
    label: Label


class ProposalEntry(msgspec.Struct, frozen=True):
    track: str
    object: str
    frame: int
    proposal: Proposal


class TrackEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    actor: str
    request: TrackRequested
    status: str
    produced: int
    reason: str | None = None


class Heads(msgspec.Struct, frozen=True):
    """The label cells outside a snapshot's window, without their shapes: what the timeline,
    counts, audit filter and conflicts need. `cells` is flat, 5 ints a cell, sorted by (object,
    frame): object index, frame, source index, actor index, model index (-1: no model); the
    indexes point into the tables, which hold the values in the order first seen."""

    objects: list[str]
    sources: list[str]
    actors: list[str]
    models: list[str]
    cells: list[int]


# omit_defaults: without a window, the message is byte for byte what it was before windows.
class Snapshot(msgspec.Struct, omit_defaults=True, **_msg("snapshot")):
    """The media item's labels as of `seq`; the events after it follow as `events` messages.
    With a `window` (inclusive frames), `labels` holds only that window's labels and `heads`
    every other label cell without its shape."""

    seq: int
    media: MediaAdded
    classes: list[ClassAdded]
    objects: dict[str, ObjectInfo]
    labels: list[LabelEntry]
    proposals: list[ProposalEntry]
    tracks: list[TrackEntry]
    undo: int
    redo: int
    window: tuple[int, int] | None = None
    heads: Heads | None = None


class Events(msgspec.Struct, **_msg("events")):
    events: list[Event]


class Ack(msgspec.Struct, **_msg("ack")):
    id: str
    seq: int
    duplicate: bool
    undo: int
    redo: int


class Error(msgspec.Struct, **_msg("error")):
    code: str
    message: str
    id: str | None = None


class Here(msgspec.Struct, frozen=True):
    user: str
    frame: int
    cursor: tuple[float, float] | None = None


class Presence(msgspec.Struct, **_msg("presence")):
    """Who is on this media item and where; sent whole on every change (it is small)."""

    users: list[Here]


class Pong(msgspec.Struct, **_msg("pong")):
    pass


ServerMessage = Welcome | Snapshot | Events | Ack | Error | Presence | Pong

_client_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


def parse(data: str | bytes, max_bytes: int) -> ClientMessage:
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise ProtocolError("message_too_large", f"message of {size} bytes is over the limit of {max_bytes}")
    if json_depth_over(data):
        raise ProtocolError("too_deep", f"message nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return _client_decoder.decode(data)
    except msgspec.ValidationError as error:
        raise ProtocolError("invalid_message", str(error), _command_id(data)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise ProtocolError("malformed_message", f"not valid JSON: {error}") from None
    except RecursionError:  # not past the depth check, but the stack may be deeper here
        raise ProtocolError("too_deep", "message nested too deep") from None


def _command_id(data: str | bytes) -> str | None:
    """The id of a command that failed validation, so the error can answer it."""
    try:
        raw = msgspec.json.decode(data)
        return str(uuid.UUID(raw["id"])) if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    except (msgspec.DecodeError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def encode(message: ServerMessage) -> bytes:
    return _encoder.encode(message)


def window_error(first: int, last: int) -> str | None:
    """Why a labels window (inclusive frames) is refused, or None when it is fine. Frames past
    the media item's end are not an error (`clamp_window`)."""
    if first < 0 or last < 0:
        return f"a labels window's frames are 0 or more, not {first}..{last}"
    if first > last:
        return f"a labels window's first frame comes before its last, not {first}..{last}"
    if last - first + 1 > MAX_LABEL_WINDOW:
        return f"a labels window covers at most {MAX_LABEL_WINDOW} frames, {first}..{last} is {last - first + 1}"
    return None


def clamp_window(window: tuple[int, int], frames: int) -> tuple[int, int]:
    """A valid window cut to the media item's frames 0..frames-1 (past the end: its last frame)."""
    end = max(frames - 1, 0)
    first, last = window
    return min(first, end), min(last, end)


def window_labels(state: LabelState, objects: dict[str, ObjectInfo], window: tuple[int, int]) -> list[LabelEntry]:
    """The full labels of these objects on the window's frames, in (object, frame) order."""
    first, last = window
    entries: list[LabelEntry] = []
    for oid in sorted(objects):
        frames = state.labels.get(oid)
        if frames:
            entries += [LabelEntry(oid, frame, frames[frame]) for frame in sorted(f for f in frames if first <= f <= last)]
    return entries


def window_parts(state: LabelState, objects: dict[str, ObjectInfo], window: tuple[int, int] | None) -> tuple[list[LabelEntry], Heads | None]:
    """The label cells of these objects in (object, frame) order, in one pass: full labels of the
    window's frames (all, without a window) and the others as heads. Outside the window only a
    label's source, actor and model are read: there a state may hold placeholder labels whose
    shapes are not the real ones."""
    entries: list[LabelEntry] = []
    if window is None:
        for oid in sorted(objects):
            frames = state.labels.get(oid)
            if frames:
                entries += [LabelEntry(oid, frame, frames[frame]) for frame in sorted(frames)]
        return entries, None
    first, last = window
    tables: tuple[dict[str, int], dict[str, int], dict[str, int], dict[str, int]] = ({}, {}, {}, {})
    object_ids, sources, actors, models = tables
    # (source, actor, model) -> their table indexes: a media item has few such combinations.
    known: dict[tuple[str, str, str | None], tuple[int, int, int]] = {}
    flat: list[int] = []
    for oid in sorted(objects):
        frames = state.labels.get(oid)
        if not frames:
            continue
        index: int | None = None
        for frame in sorted(frames):
            label = frames[frame]
            if first <= frame <= last:
                entries.append(LabelEntry(oid, frame, label))
                continue
            if index is None:
                index = object_ids.setdefault(oid, len(object_ids))
            key = (label.source, label.actor, label.model)
            head = known.get(key)
            if head is None:
                model = -1 if label.model is None else models.setdefault(label.model, len(models))
                head = known[key] = (sources.setdefault(label.source.value, len(sources)), actors.setdefault(label.actor, len(actors)), model)
            flat += (index, frame, *head)
    heads = Heads(objects=list(object_ids), sources=list(sources), actors=list(actors), models=list(models), cells=flat)
    return entries, heads


def snapshot(state: LabelState, media_id: str, actor: str, seq: int | None = None, window: tuple[int, int] | None = None) -> Snapshot:
    """The media item's part of `state`, as of `seq` (default `state.seq`: a media item's own
    state is as of the ledger's head, which its last event may be before). With a `window` (a
    valid one, see `window_error`; clamped to the media item's frames), full labels only for its
    frames and heads for the others."""
    media = state.media[media_id]
    objects = state.objects_of(media_id)
    stacks = state.stacks_of(actor, media_id)
    window = None if window is None else clamp_window(window, media.frames)
    labels, heads = window_parts(state, objects, window)
    return Snapshot(
        seq=state.seq if seq is None else seq,
        media=media,
        classes=[cls for cls in state.classes.values() if cls.project == media.project],
        objects=objects,
        labels=labels,
        proposals=[
            ProposalEntry(track, oid, frame, proposal)
            for track, info in state.tracks.items()
            if info.request.media == media_id
            for (oid, frame), proposal in sorted(state.proposals.get(track, {}).items())
        ],
        tracks=[
            TrackEntry(id=track, actor=info.actor, request=info.request, status=info.status, produced=info.produced, reason=info.reason)
            for track, info in state.tracks.items()
            if info.request.media == media_id
        ],
        undo=len(stacks.undo),
        redo=len(stacks.redo),
        window=window,
        heads=heads,
    )


class Delivery:
    """Delivery order for one socket: events strictly after the last one sent, each once.

    A resuming client first gets the log from its position up to where the live subscription
    began, then the live events; the two may overlap, and this drops the overlap.
    """

    def __init__(self, last_seq: int) -> None:
        self.last_seq = last_seq

    def admit(self, events: list[Event]) -> list[Event]:
        fresh = [event for event in events if event.seq > self.last_seq]
        if fresh:
            self.last_seq = fresh[-1].seq
        return fresh


# ---- closing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Close:
    """How the server ends a socket: `error` first when there is one, then the close frame."""

    code: CloseCode
    reason: str
    error: Error | None = None


ORIGIN_REFUSED = Close(CloseCode.FORBIDDEN, "host or origin not allowed")
NO_HELLO = Close(CloseCode.UNAUTHORIZED, "no hello")
TOO_SLOW = Close(CloseCode.TOO_SLOW, "too slow: resume from your last seq")


# ---- opening -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Send the logged events of the socket's streams after position `after`, up to `until`,
    where the live subscription starts."""

    after: int
    until: int


@dataclass(frozen=True, slots=True)
class Greeting:
    """An accepted hello: send `welcome`, then `then` (a snapshot, or the events a resuming
    client missed); live events follow from `delivered`, the position the client then holds."""

    credential: Credential
    welcome: Welcome
    project: str
    then: Snapshot | CatchUp

    @property
    def delivered(self) -> int:
        return self.then.seq if isinstance(self.then, Snapshot) else self.then.after


def check_origin(host_header: str | None, origin_header: str | None, local: tuple[str, int] | None, settings: Settings) -> Close | None:
    """Before any message: a socket whose Host or Origin is not this server's is closed
    (accepted, then closed at once, so a browser sees 4003; a refused handshake shows as 1006)."""
    return None if origin_allowed(host_header, origin_header, local, settings) else ORIGIN_REFUSED


def read_hello(data: str | bytes | None, max_bytes: int) -> Hello | Close:
    """The client's first message (None: none came in time) as a hello, or how to refuse it."""
    if data is None:
        return NO_HELLO
    try:
        message = parse(data, max_bytes)
    except ProtocolError as error:
        return Close(CloseCode.BAD_HELLO, "bad hello", Error(code=error.code, message=error.message))
    if not isinstance(message, Hello):
        return Close(CloseCode.BAD_HELLO, "hello expected", Error(code="hello_expected", message="the first message must be a hello"))
    if message.labels_window is not None:
        problem = window_error(*message.labels_window)
        if problem is not None:
            return Close(CloseCode.BAD_HELLO, "bad hello", Error(code="bad_window", message=problem))
    return message


def greet(
    hello: Hello, credential: Credential | None, media_id: str, state: LabelState, published: int, role_in: Callable[[User, str], Role | None],
    capabilities: Capabilities | None = None, head: int | None = None,
) -> Greeting | Close:
    """Answer a hello: `credential` is what its token stands for (None: unknown, revoked or
    expired), `role_in` a user's role in a project (None: not a member), `published` the last position
    the hub has handed out. The caller subscribes to the socket's streams with no await between
    this and the subscription, so the live queue starts exactly where the snapshot (the state, at
    `head`, default `state.seq`) or the catch-up (the log, up to `published`) ends. The state may
    run ahead of the log by commands whose commit is under way (see Ledger)."""
    if credential is None:
        return Close(CloseCode.UNAUTHORIZED, "unauthorized", Error(code="unauthorized", message="unknown or missing token"))
    media = state.media.get(media_id)
    user = credential.user
    role = role_in(user, media.project) if media is not None else None
    # Another project's media item looks exactly like a missing one.
    if media is None or role is None:
        return Close(CloseCode.UNKNOWN_MEDIA, "unknown media", Error(code="unknown_id", message=f"unknown media {media_id!r}"))
    head = state.seq if head is None else head
    welcome = Welcome(protocol=PROTOCOL_VERSION, user=user.name, role=role.value, media=media_id, head=head, capabilities=capabilities)
    # A client ahead of anything this server knows (another server's log, a reset) starts over.
    if hello.last_seq is None or hello.last_seq > head:
        return Greeting(credential, welcome, media.project, snapshot(state, media_id, user.actor, head, hello.labels_window))
    return Greeting(credential, welcome, media.project, CatchUp(after=hello.last_seq, until=published))


CATCH_UP_PAGE = 1000


def catch_up_page(media_events: list[Event], project_events: list[Event], until: int) -> tuple[list[Event], int]:
    """One step of a catch-up: the events of two reads after the same position (each at most
    `CATCH_UP_PAGE` events of one stream, up to `until`), in order, and the position they cover.
    A full read may have stopped early: past its last event the other read's events are cut,
    since the full one may have more before them."""
    bound = min(
        media_events[-1].seq if len(media_events) == CATCH_UP_PAGE else until,
        project_events[-1].seq if len(project_events) == CATCH_UP_PAGE else until,
    )
    events = sorted((e for e in media_events + project_events if e.seq <= bound), key=lambda e: e.seq)
    return events, bound
