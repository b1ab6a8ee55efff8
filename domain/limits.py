"""Protocol limits: how large any one value a client sends may be (docs/protocol.md lists them).

The schema (`domain.events`, `domain.shapes`, `server.protocol`) applies these through msgspec
bounds, so an oversized field is refused while it is decoded, before anything else looks at it.
They bound what one command may cost to decode, check, store and send to every client that
joins. Events already in a log are read without the length limits (see `domain.events`): a log
written before they existed keeps loading.

Also here: `json_depth_over`, the cheap check that refuses deeply nested JSON before a decoder
recurses into it.
"""

from __future__ import annotations

import re

import numpy as np

# Text.
MAX_ID_CHARS = 64  # ids of projects, classes, media, objects
MAX_NAME_CHARS = 200  # names of projects, classes, media, skeleton points
MAX_ACTOR_CHARS = 200  # `user:<name>` or `model:<backend>/<model>@<version>`
MAX_STREAM_CHARS = 100  # `media:<id>`, `project:<id>`
MAX_MODEL_CHARS = 200  # the model that made a segment, proposal or label
MAX_TEXT_CHARS = 1_000  # free text (why a track failed)
MAX_TOKEN_CHARS = 200  # an access token in the socket's hello

# Numbers.
INT64_MAX = 2**63 - 1  # log positions and anything else SQLite keeps as an integer
MAX_FRAME = 10_000_000  # frame indexes and frame counts
MAX_SIDE = 65_535  # a frame's width or height
MAX_LABEL_WINDOW = 512  # frames of a labels window (socket hello, REST `from`..`to`): full labels of at most this many frames at once

# Geometry.
MAX_SHAPE_POINTS = 10_000  # vertices of one polygon (all parts and holes) or polyline
MAX_POLYGON_RINGS = 1_000  # parts of a polygon, and holes of one part
MAX_SKELETON_POINTS = 1_000  # points of a skeleton template (and of a skeleton label)
MAX_SKELETON_EDGES = 10_000  # edges of a skeleton template
MAX_RLE_CHARS = 2 * 1024**2  # characters of a compressed RLE string (`counts`)
MAX_RLE_RUNS = 2 * 1024**2  # run lengths of an uncompressed RLE (COCO crowd masks)
MAX_PROMPT_POINTS = 1_000  # clicks of one prompt

# Lists of ids or frames.
MAX_TRACK_OBJECTS = 256  # objects one track follows
MAX_TRACK_RANGE = 100_000  # frames one track covers
MAX_CHANGES = MAX_TRACK_OBJECTS * MAX_TRACK_RANGE  # cells one undo or redo touches (server-written)

# JSON from clients (socket messages, REST bodies, imports) may nest at most this deep.
MAX_JSON_DEPTH = 64

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth_over(data: bytes | bytearray | memoryview | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `data` (JSON, well formed or not) has brackets nested more than `limit` deep.

    Decoders recurse once per level, so a few kilobytes of '[' could exhaust the stack; this
    checks first, without recursing and in C-speed passes: most messages have fewer brackets
    than the limit and stop at the count; the rest lose their strings (where brackets do not
    count) and a running sum over what brackets remain gives the depth, a chunk at a time so
    that a deep message stops at its first chunk.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = np.frombuffer(_JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS), dtype=np.uint8)
    depth = 0
    for start in range(0, brackets.size, _DEPTH_CHUNK):
        running = np.cumsum(_BRACKET_STEP[brackets[start : start + _DEPTH_CHUNK]], dtype=np.int64) + depth
        if running.max() > limit:
            return True
        depth = int(running[-1])
    return False


_DEPTH_CHUNK = 64 * 1024
_BRACKET_STEP = np.zeros(256, dtype=np.int64)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1
