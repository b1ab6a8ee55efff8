"""The protocol limits (`domain/limits.py`): the depth check, and events over the length limits,
which clients may no longer send but a log may already hold."""

from __future__ import annotations

import uuid

import pytest

from masklog.domain.events import Event, LabelSaved, SchemaError, Source, decode_body, decode_event, decode_events, encode
from masklog.domain.geometry import GeometryError, rle_area, rle_from_counts
from masklog.domain.limits import MAX_JSON_DEPTH, MAX_MODEL_CHARS, json_depth_over
from masklog.domain.shapes import BBox, Rle


@pytest.mark.parametrize(
    ("data", "over"),
    [
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), True),
        (b"[" * 100_000, True),  # unclosed counts too
        (b'["' + b"[" * 1000 + b'"]', False),  # inside a string
        (b'["\\"' + b"[" * 1000 + b'"]', False),  # after an escaped quote, still inside
        (b'["\\\\"' + b"[" * 1000 + b"]", True),  # an escaped backslash ends the string
        (b"[" + b"[1]," * 100_000 + b"1]", False),  # many brackets, shallow
        ("{" * 70 + "}" * 70, True),
    ],
)
def test_json_depth(data, over):
    assert json_depth_over(data) is over


def _event(model: str) -> Event:
    body = LabelSaved(object="o", frame=0, shape=BBox(x=1, y=1, w=2, h=2), source=Source.MANUAL, model=model)
    return Event(seq=1, id=str(uuid.uuid4()), stream="media:m", actor="user:alice", at=1.0, body=body)


def test_a_stored_event_over_a_length_limit_still_decodes():
    event = _event("m" * (MAX_MODEL_CHARS + 1))
    assert decode_event(encode(event)) == event
    assert decode_events([encode(event), encode(_event("ok"))])[0] == event
    with pytest.raises(SchemaError, match="length <= 200"):
        decode_body(encode(event.body))  # as a client would send it


def test_a_stored_event_is_held_to_the_rest_of_the_schema():
    data = encode(_event("m" * (MAX_MODEL_CHARS + 1)))
    for broken, message in [(b'"frame":-1', "Expected `int` >= 0"), (b'"frame":"1"', "got `str`"), (b'"frame":0,"extra":1', "unknown field")]:
        with pytest.raises(SchemaError, match=message):
            decode_event(data.replace(b'"frame":0', broken))
    with pytest.raises(SchemaError, match="nested too deep"):
        decode_event(b"[" * 5000 + b"]" * 5000)


def test_rle_counts_past_64_bits():
    with pytest.raises(GeometryError, match="cover"):
        rle_from_counts([99999999999999999999999, 10, 2], (3, 4))
    with pytest.raises(GeometryError, match="negative"):
        rle_from_counts([-99999999999999999999999, 10, 2], (3, 4))
    with pytest.raises(GeometryError, match="whole numbers"):
        rle_from_counts([float("inf")], (3, 4))


def test_a_long_rle_is_checked_once():
    counts = "1" * 100_000
    rle = Rle(size=(4, 4), counts=counts)
    for _ in range(2):  # the second answer is the remembered one, the same
        with pytest.raises(GeometryError, match="cover"):
            rle_area(rle)
