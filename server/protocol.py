"""The socket protocol, free of I/O: message schema, parsing, snapshots and delivery order.

`server.ws` is the thin asyncio adapter that moves these messages over a WebSocket. Everything
a client can send is decoded strictly here; a bad message becomes a `ProtocolError` with a code
and a readable message, never an exception that reaches the socket loop. docs/protocol.md
describes the conversation.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from domain.decide import Command
from domain.events import ClassAdded, Event, Label, MediaAdded, ObjectInfo, Proposal, TrackRequested
from domain.limits import INT64_MAX, MAX_FRAME, MAX_JSON_DEPTH, MAX_TOKEN_CHARS, json_depth_over
from domain.shapes import Coord
from domain.state import LabelState

PROTOCOL_VERSION = 1


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


class Snapshot(msgspec.Struct, **_msg("snapshot")):
    """The media item's labels as of `seq`; the events after it follow as `events` messages."""

    seq: int
    media: MediaAdded
    classes: list[ClassAdded]
    objects: dict[str, ObjectInfo]
    labels: list[LabelEntry]
    proposals: list[ProposalEntry]
    tracks: list[TrackEntry]
    undo: int
    redo: int


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


def snapshot(state: LabelState, media_id: str, actor: str) -> Snapshot:
    media = state.media[media_id]
    objects = state.objects_of(media_id)
    stacks = state.stacks_of(actor, media_id)
    return Snapshot(
        seq=state.seq,
        media=media,
        classes=[cls for cls in state.classes.values() if cls.project == media.project],
        objects=objects,
        labels=[LabelEntry(oid, frame, label) for (oid, frame), label in sorted(state.media_labels(media_id).items())],
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
