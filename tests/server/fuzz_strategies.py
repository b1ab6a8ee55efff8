"""Hypothesis strategies for the fuzz suite (tests/server/test_fuzz.py): socket messages, hellos,
REST requests and uploads, built from valid templates with fields mutated to wrong types,
extreme numbers, huge strings, deep nesting, unknown fields and the ids of things that do not
exist or belong to another project.

Messages are Python values whose leaves may be `Raw` JSON text, written out by `dump`: that is
how a value no JSON encoder writes (1e400, 2**64, NaN, an array nested 3000 deep) gets into a
message, and how deep nesting is built without recursing in the test itself.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# ---- the world the seeded server holds (see `world` in test_fuzz.py) --------------------------------

TARGET = "fz-target"  # an object of m1, class box, labelled on frame 0 (alice)
MASK_OBJECT = "fz-mask"  # class mask, a bitmask label on frame 0
POLY_OBJECT = "fz-poly"  # class poly, a polygon label on frame 0
LINE_OBJECT = "fz-line"  # class line, a polyline label on frame 0
VICTIM = "fz-victim"  # an object a generated object_deleted may really delete
OTHER_OBJECT = "fz-other"  # an object of m2 in project p2, which alice is no member of
TRACK = "0f0f0f0f-0000-4000-8000-000000000001"  # a running track of TARGET on m1 (no model runs)
PROMPT = "0f0f0f0f-0000-4000-8000-000000000002"  # a prompt on TARGET, frame 0
OTHER_TRACK = "0f0f0f0f-0000-4000-8000-000000000003"  # a running track on m2 (project p2)
FULL_MASK = "0`0"  # placeholder; the real counts of an empty 48x64 mask are set by `world`

WIDTH, HEIGHT, FRAMES = 64, 48, 20  # m1, m2 (tests.server.live)

_fresh = itertools.count()


def fresh_id(prefix: str = "fz") -> str:
    """An id no example used before (so replaying an example behaves the same)."""
    return f"{prefix}{next(_fresh)}-{uuid.uuid4().hex[:6]}"


class Raw(str):
    """JSON text put into a message as it is."""


def dump(value: Any) -> str:
    """`value` as JSON text, `Raw` leaves verbatim; NaN and infinities come out as Python's
    json writes them (NaN, Infinity), which is not JSON."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(key))}:{dump(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dump(item) for item in value) + "]"
    return json.dumps(value)


# ---- leaves: extremes and near misses ----------------------------------------------------------------

EXTREME_NUMBERS = [
    0, -1, 1, 2**31, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63),
    Raw(str(2**63)), Raw(str(2**64)), Raw(str(-(2**63) - 1)), Raw("1" + "0" * 400),
    1e308, -1e308, 5e-324, -0.0, 0.5, Raw("1e400"), Raw("-1e400"), Raw("1E-400"),
    Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("01"), Raw("1."), Raw(".5"), Raw("+1"),
]  # fmt: skip

numbers = st.sampled_from(EXTREME_NUMBERS) | st.integers() | st.floats()


@st.composite
def deep(draw: st.DrawFn) -> Raw:
    """An array, object or mix nested up to a few thousand levels."""
    depth = draw(st.sampled_from([2, 999, 1001, 3000]) | st.integers(1, 3000))
    kind = draw(st.sampled_from(["list", "dict", "mixed"]))
    if kind == "list":
        return Raw("[" * depth + "]" * depth)
    if kind == "dict":
        return Raw('{"a":' * depth + "1" + "}" * depth)
    return Raw('[{"a":' * depth + "1" + "}]" * depth)


@st.composite
def huge_strings(draw: st.DrawFn, limit: int) -> str:
    """A string past every field's bound, up to nearly the whole message limit."""
    size = draw(st.sampled_from([65, 201, 1001, 10_001]) | st.integers(0, max(0, limit - 400)))
    return draw(st.sampled_from(["x", "\u00e9", "\x00", "\\", '"', "0"])) * size


odd_strings = st.sampled_from(["", " ", "..", "../../etc/passwd", "a\x00b", "\ud800", "\u202e", "%2e%2e", "NaN", "null", "-1", "user:admin"]) | st.text(max_size=12)

ID_LIKE = [TARGET, MASK_OBJECT, POLY_OBJECT, LINE_OBJECT, VICTIM, OTHER_OBJECT, "m1", "m2", "g1", "i1", "p1", "p2", "box", "mask", "poly", "line", "box2", "nobody"]
EVENT_IDS = [TRACK, PROMPT, OTHER_TRACK, "00000000-0000-0000-0000-000000000000", "0F0F0F0F-0000-4000-8000-000000000001"]
FRAMES_NEAR_MISS = [0, 1, FRAMES - 1, FRAMES, FRAMES + 1, -1, 10_000_000, 10_000_001]

near_misses = st.sampled_from(ID_LIKE + EVENT_IDS + FRAMES_NEAR_MISS + [True, False, None, [], {}])


def json_values(limit: int) -> st.SearchStrategy[Any]:
    """Any JSON value (and some that are not JSON), small unless drawn extreme."""
    leaves = st.none() | st.booleans() | numbers | odd_strings | huge_strings(limit) | deep() | near_misses
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


# ---- command templates: every kind of `domain.decide.Command` ------------------------------------------


def _box(x: float = 1, y: float = 1, w: float = 5, h: float = 5) -> dict[str, Any]:
    return {"type": "bbox", "x": x, "y": y, "w": w, "h": h}


def command_templates(mask_counts: str) -> list[dict[str, Any]]:
    """A valid-shaped body of every command kind (most pass the schema; many pass the rules)."""
    rle = {"size": [HEIGHT, WIDTH], "counts": mask_counts}
    label_change = {"type": "label", "object": TARGET, "frame": 0, "before": None, "after": None}
    return [
        {"type": "project_created", "project": "fz-project", "name": "Fuzz"},
        {"type": "class_added", "project": "p1", "class_id": "fz-class", "name": "c", "shape": "skeleton", "color": "#ff8800", "skeleton": {"points": ["a", "b"], "edges": [[0, 1]]}},
        {"type": "media_added", "project": "p1", "media": "fz-media", "name": "n", "kind": "video", "width": WIDTH, "height": HEIGHT, "frames": FRAMES, "fps": 10.0},
        {"type": "object_created", "object": "fz-object", "media": "m1", "class_id": "box"},
        {"type": "object_deleted", "object": VICTIM},
        {"type": "object_reclassed", "object": TARGET, "class_id": "box"},
        {"type": "object_renamed", "object": TARGET, "name": "fuzzed name"},
        {"type": "prompt_added", "object": MASK_OBJECT, "frame": 0, "points": [{"x": 3, "y": 4, "include": True}], "box": {"x0": 1, "y0": 1, "x1": 9, "y1": 9}, "mask": rle},
        {"type": "segment_proposed", "prompt": PROMPT, "object": TARGET, "frame": 0, "mask": rle, "score": 0.9, "model": "m"},
        {"type": "label_saved", "object": TARGET, "frame": 1, "shape": _box(), "source": "manual"},
        {"type": "label_saved", "object": MASK_OBJECT, "frame": 1, "shape": {"type": "bitmask", "rle": rle}, "source": "manual"},
        {"type": "label_saved", "object": POLY_OBJECT, "frame": 1, "shape": {"type": "polygon", "parts": [{"outer": [1, 1, 9, 1, 9, 9], "holes": [[2, 2, 3, 2, 3, 3]]}]}, "source": "manual"},
        {"type": "label_saved", "object": LINE_OBJECT, "frame": 1, "shape": {"type": "polyline", "points": [1, 1, 5, 5, 9, 2]}, "source": "manual"},
        {"type": "label_saved", "object": TARGET, "frame": 1, "shape": {"type": "rotated_bbox", "cx": 5, "cy": 5, "w": 4, "h": 2, "angle": 30},
         "source": "sam", "model": "m", "prompt": PROMPT, "score": 0.5},
        {"type": "label_saved", "object": TARGET, "frame": 1, "shape": {"type": "skeleton", "points": [{"x": 1, "y": 1, "visible": True}]}, "source": "manual"},
        {"type": "label_saved", "object": TARGET, "frame": 1, "shape": {"type": "keypoint", "x": 1, "y": 1}, "source": "imported"},
        {"type": "label_deleted", "object": TARGET, "frame": 1},
        {"type": "track_requested", "media": "m1", "objects": [TARGET], "start": 0, "direction": "forward", "range": 3, "interval": 0, "algorithm": "simple", "autosave": False, "replaces": TRACK},
        {"type": "track_frame_produced", "track": TRACK, "object": TARGET, "frame": 1, "shape": _box(), "score": 0.5, "model": "m"},
        {"type": "track_completed", "track": TRACK, "frames": 3},
        {"type": "track_cancelled", "track": TRACK},
        {"type": "track_failed", "track": TRACK, "reason": "r"},
        {"type": "tracked_accepted", "track": TRACK, "objects": [TARGET], "frames": [1]},
        {"type": "tracked_discarded", "track": TRACK, "objects": [TARGET], "frames": [1]},
        {"type": "undone", "media": "m1", "target": PROMPT, "changes": [label_change], "conflicts": 0},
        {"type": "redone", "media": "m1", "target": PROMPT, "changes": [label_change], "conflicts": 0},
        {"type": "undo", "media": "m1"},
        {"type": "redo", "media": "m1"},
        {"type": "save_segment", "prompt": PROMPT},
    ]  # fmt: skip


def _extremes_like(value: Any, limit: int) -> st.SearchStrategy[Any]:
    """The extremes of the kind of value a place holds: numbers for a number, long and odd
    strings for a string (so that the bounds of each field are tried, not only its type)."""
    if isinstance(value, bool) or value is None:
        return numbers | odd_strings
    if isinstance(value, (int, float)):
        return numbers
    if isinstance(value, str) and not isinstance(value, Raw):
        return huge_strings(limit) | odd_strings
    return deep()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside `value` (dict keys and list positions), outermost first."""
    out = [prefix] if prefix else []
    if isinstance(value, dict) and not isinstance(value, Raw):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


@st.composite
def mutated(draw: st.DrawFn, template: Any, limit: int) -> Any:
    """`template` with one to three of its places replaced, dropped, grown or given a neighbour."""
    value = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(value)
        if not paths:
            return draw(json_values(limit))
        kept = copy.deepcopy(value)
        path = draw(st.sampled_from(paths))
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "drop", "add", "repeat"]))
        if action == "replace":
            parent[last] = draw(_extremes_like(parent[last], limit) | deep() | near_misses | json_values(limit))
        elif action == "drop":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(json_values(limit))
        elif action == "add":
            parent.append(draw(json_values(limit)))
        else:  # many copies of the place (long lists, long strings)
            times = draw(st.sampled_from([2, 257, 2000]))
            item = parent[last]
            parent[last] = item * times if isinstance(item, str) and not isinstance(item, Raw) else [item] * times
        if len(dump(value)) > 2 * limit:
            value = kept  # giant, but not past what the socket takes at all (that closes it, 1009)
    return value


def commands(templates: list[dict[str, Any]], limit: int) -> st.SearchStrategy[Any]:
    """A command body: a template as it is, mutated, or any value at all."""
    template = st.sampled_from(templates)
    return template | template.flatmap(lambda t: mutated(t, limit)) | json_values(limit)


# ---- socket messages ----------------------------------------------------------------------------------


def _short(value: str | bytes, keep: int = 150) -> str:
    """A long message cut for hypothesis' report (the example is replayed whole all the same)."""
    if len(value) <= 2 * keep:
        return repr(value)
    return f"{value[:keep]!r} + <{len(value) - 2 * keep} more> + {value[-keep:]!r}"


class Message:
    """What a test sends on the socket, and the id of the command it carries (for its reply)."""

    def __init__(self, data: str | bytes, command_id: str | None = None) -> None:
        self.data, self.command_id = data, command_id

    def __repr__(self) -> str:
        return f"Message({_short(self.data)}, command_id={self.command_id!r})"


@st.composite
def command_messages(draw: st.DrawFn, templates: list[dict[str, Any]], limit: int) -> Message:
    command_id = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    envelope: dict[str, Any] = {"type": "command", "id": command_id, "body": draw(commands(templates, limit))}
    if draw(st.booleans()):
        envelope["panoptic"] = draw(st.booleans() | json_values(limit))
    if draw(st.integers(0, 5)) == 0:
        envelope = draw(mutated(envelope, limit))
    text = dump(envelope)
    # Ids are fresh per example: a replayed example must not meet its own earlier event.
    fresh = str(uuid.uuid4())
    return Message(text.replace(command_id, fresh), fresh if isinstance(envelope, dict) and envelope.get("id") == command_id else None)


@st.composite
def other_messages(draw: st.DrawFn, limit: int) -> Message:
    """Presence, ping, a second hello, unknown kinds; mutated."""
    template = draw(
        st.sampled_from(
            [
                {"type": "presence", "frame": 3, "cursor": [1.5, 2.5]},
                {"type": "ping"},
                {"type": "hello", "token": "x", "last_seq": 0, "frame": 0},
                {"type": "teleport"},
            ]
        )
    )
    return Message(dump(draw(mutated(template, limit)) if draw(st.booleans()) else template))


@st.composite
def garbage(draw: st.DrawFn, limit: int) -> Message:
    """Raw bytes and text, invalid UTF-8, and giant messages just under the limit."""
    choice = draw(st.sampled_from(["bytes", "text", "bad utf-8", "giant", "giant binary"]))
    if choice == "bytes":
        return Message(draw(st.binary(max_size=64)))
    if choice == "text":
        return Message(draw(st.text(max_size=64)))
    if choice == "bad utf-8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]))
        return Message(b'{"type": "presence", "frame": 1, "cursor": "' + bad + b'"}')
    body = '{"type": "ping", "pad": "' + "x" * (limit - 40) + '"}'
    return Message(body if choice == "giant" else body.encode())


def socket_messages(templates: list[dict[str, Any]], limit: int) -> st.SearchStrategy[Message]:
    return command_messages(templates, limit) | other_messages(limit) | garbage(limit)


# ---- hellos -------------------------------------------------------------------------------------------


TOKEN = "$token-of:"  # hellos name a user; the test puts in that user's token


class Hello:
    def __init__(self, media: str, data: str | bytes) -> None:
        self.media, self.data = media, data

    def with_tokens(self, tokens: dict[str, str]) -> str | bytes:
        data = self.data
        for user, token in tokens.items():
            data = data.replace(TOKEN + user, token) if isinstance(data, str) else data.replace((TOKEN + user).encode(), token.encode())
        return data

    def __repr__(self) -> str:
        return f"Hello(media={_short(self.media)}, data={_short(self.data)})"


@st.composite
def hellos(draw: st.DrawFn, users: list[str], limit: int) -> Hello:
    media = draw(st.sampled_from(["m1", "m2", "g1", "i1", "nowhere", "..", "x" * 300]))
    token = draw(st.sampled_from([TOKEN + user for user in users] + ["", "not-a-token", "Bearer x"]))
    template = {"type": "hello", "token": token, "last_seq": draw(st.sampled_from([None, 0, 1, 5, 10**6])), "frame": draw(st.sampled_from([0, 3, 19, 20]))}
    how = draw(st.sampled_from(["valid", "mutated", "mutated", "other"]))
    if how == "valid":
        return Hello(media, dump(template))
    if how == "mutated":
        return Hello(media, dump(draw(mutated(template, limit))))
    return Hello(media, draw(garbage(limit)).data)


# ---- REST -----------------------------------------------------------------------------------------------

PATH_VALUES = {
    "project": ["p1", "p2", "nope", "..", "%2e%2e", "P1", "p1 ", "x" * 300],
    "media": ["m1", "m2", "g1", "i1", "nowhere", "..", "%2E%2E%2Fetc", "x" * 300],
    "index": ["0", "19", "20", "-1", str(2**63), str(2**64), "9" * 400, "1e3", "0x10", " 1", "\uff11", "NaN", ""],
    "frame": ["0", "19", "20", "-1", str(2**63), str(2**64), "9" * 5000, "1.0"],
    "object": [TARGET, OTHER_OBJECT, "nobody", "..", "x" * 300],
    # Never the seeded users: a generated PUT or DELETE must not take alice's seat away.
    "user": ["fz-user", "nobody", "", "..", "x" * 300, "user:admin"],
}

QUERY_KEYS = ["after", "limit", "frame", "seq", "by", "annotator", "format", "media", "masks", "first", "last", "proposals", "images", "token"]
# The parameters each route reads (any route gets the others too, now and then).
ROUTE_QUERY_KEYS = {
    "/history": ["after", "limit"],
    "/positions": ["after", "limit"],
    "/snapshot": ["seq"],
    "/labels": ["frame", "seq"],
    "/audit": ["by", "annotator"],
    "/export": ["format", "media", "masks", "first", "last", "proposals", "images", "seq"],
}
QUERY_VALUES = [
    "0", "1", "-1", "19", "20", "1000", "1001", str(2**31), str(2**53), str(2**63 - 1), str(2**63), str(2**64), str(-(2**63) - 1),
    "9" * 30, "9" * 5000, "1e3", "NaN", "", " ", "x", "object", "frame", "annotator", "source", "coco", "yolo", "events",
    "rle", "polygon", "true", "m1", "m1,m2", "m2", ",,,", "alice",
]  # fmt: skip


def request_bodies(mask_counts: str, limit: int) -> dict[str, list[Any]]:
    """Valid-shaped JSON bodies of each route that takes one."""
    coco = {
        "images": [{"id": 1, "file_name": "frame_3.jpg", "width": WIDTH, "height": HEIGHT}],
        "categories": [{"id": 1, "name": "mask"}, {"id": 2, "name": "box"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [HEIGHT, WIDTH], "counts": [100, 20, WIDTH * HEIGHT - 120]}, "area": 20, "bbox": [2, 2, 1, 20], "iscrowd": 1},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0, "track_id": 7},
        ],
    }  # fmt: skip
    polygons = {**coco, "annotations": [{"id": 3, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "area": 32, "bbox": [1, 1, 8, 8], "iscrowd": 0}]}
    return {
        "projects": [{"id": "fz-p", "name": "P"}],
        "classes": [{"id": "fz-c", "name": "c", "shape": "bbox", "color": "#000000"},
                    {"id": "fz-s", "name": "s", "shape": "skeleton", "color": "#000000", "skeleton": {"points": ["a", "b"], "edges": [[0, 1]]}}],
        "members": [{"role": "viewer"}, {"role": "annotator"}],
        "commands": [{"id": PROMPT, "body": body, "panoptic": False} for body in command_templates(mask_counts)],
        "import": [coco, polygons],
    }  # fmt: skip


class RestRequest:
    def __init__(self, user: str | None, method: str, path: str, params: tuple[tuple[str, str], ...], body: bytes | None) -> None:
        self.user, self.method, self.path, self.params, self.body = user, method, path, params, body

    def __repr__(self) -> str:
        params = ", ".join(f"{key!r}: {_short(value, 30)}" for key, value in self.params)
        body = None if self.body is None else _short(self.body)
        return f"RestRequest(user={self.user!r}, {self.method} {_short(self.path)} params={{{params}}} body={body})"


def body_kind(path_template: str) -> str | None:
    for suffix, kind in [("/classes", "classes"), ("/members/{user}", "members"), ("/commands", "commands"), ("/import", "import")]:
        if path_template.endswith(suffix):
            return kind
    return "projects" if path_template == "/api/projects" else None


@st.composite
def rest_requests(draw: st.DrawFn, routes: list[tuple[str, tuple[str, ...]]], bodies: dict[str, list[Any]], limit: int) -> RestRequest:
    """A request to one of `routes` ((path template, methods)), all parts generated."""
    template, methods = draw(st.sampled_from(routes))
    method = draw(st.sampled_from(methods))
    path = template
    for name, values in PATH_VALUES.items():
        if "{" + name + "}" in path:
            anything = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/?#"), max_size=8)
            path = path.replace("{" + name + "}", draw(st.sampled_from(values[:2]) | st.sampled_from(values) | anything))
    own = next((keys for suffix, keys in ROUTE_QUERY_KEYS.items() if template.endswith(suffix)), ["token"])
    keys = draw(st.lists(st.sampled_from(own) | st.sampled_from(QUERY_KEYS) | st.text(max_size=5), max_size=4))
    params = tuple((key, draw(st.sampled_from(QUERY_VALUES) | st.integers().map(str) | st.text(max_size=8))) for key in keys)
    body: bytes | None = None
    kind = body_kind(template)
    if method in ("POST", "PUT"):
        if kind is not None and draw(st.integers(0, 3)) > 0:
            value = draw(st.sampled_from(bodies[kind]))
            if kind == "commands":
                value = {**value, "id": str(uuid.uuid4())}
            body = dump(draw(mutated(value, limit)) if draw(st.booleans()) else value).encode()
        else:
            body = draw(st.binary(max_size=64) | json_values(limit).map(lambda v: dump(v).encode()))
    user = draw(st.sampled_from(["admin", "alice"]) | st.sampled_from(["viewer", "outsider", None]))
    return RestRequest(user, method, path, params, body)


# ---- uploads ----------------------------------------------------------------------------------------------

UPLOAD_KINDS = ["image", "image_group", "image_sequence", "video", "dicom_series", "hologram", ""]
# A file's name mostly fits its upload's kind or its own content, so that content checks are
# reached (a PNG named .mp4 in a video upload), not only the suffix check.
KIND_SUFFIXES = {"image": [".png", ".jpg"], "image_group": [".png", ".jpg"], "image_sequence": [".png", ".jpg"], "video": [".mp4", ".mov", ".avi"], "dicom_series": [".dcm", ""]}
SAMPLE_SUFFIXES = {"png": [".png"], "jpeg": [".jpg"], "mp4": [".mp4"], "dicom": [".dcm"]}
SUFFIXES = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".webp", ".mp4", ".mov", ".mkv", ".webm", ".avi", ".dcm", ".dicom", "", ".1", ".txt", ".PNG", ".mp4.png"]


@dataclass(frozen=True)
class UploadFile:
    name: str
    sample: str
    damage: str
    at: int

    def content(self, samples: dict[str, bytes]) -> bytes:
        data = samples[self.sample]
        at = self.at % (len(data) + 1)
        if self.damage == "truncated":
            return data[:at]
        if self.damage == "flipped" and data:
            index = at % len(data)
            return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]
        if self.damage == "garbage after":
            return data + bytes(range(256))[: self.at % 256]
        if self.damage == "header only":
            return data[:64]
        return data


@st.composite
def upload_files(draw: st.DrawFn, sample_names: list[str], kind_suffixes: list[str]) -> UploadFile:
    sample = draw(st.sampled_from(sample_names))
    damage = draw(st.sampled_from(["whole", "whole", "truncated", "flipped", "garbage after", "header only"]))
    suffix = draw(st.sampled_from(kind_suffixes) | st.sampled_from(SAMPLE_SUFFIXES.get(sample, [""])) | st.sampled_from(SUFFIXES))
    name = draw(st.sampled_from(["a", "IM0001", "frame_001", "1.2.840.113619"])) + suffix
    return UploadFile(name, sample, damage, draw(st.integers(0, 1 << 20)))


@dataclass(frozen=True)
class Upload:
    kind: str
    files: tuple[UploadFile, ...]
    user: str


@st.composite
def uploads(draw: st.DrawFn, sample_names: list[str]) -> Upload:
    count = draw(st.sampled_from([0, 1, 1, 1, 2, 3, 40]) if draw(st.booleans()) else st.integers(0, 5))
    kind = draw(st.sampled_from(UPLOAD_KINDS))
    files = tuple(draw(upload_files(sample_names, KIND_SUFFIXES.get(kind, SUFFIXES))) for _ in range(count))
    return Upload(kind, files, draw(st.sampled_from(["admin", "admin", "admin", "alice"])))
