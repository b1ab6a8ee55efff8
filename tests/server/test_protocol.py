"""The socket protocol's core without a socket: the opening conversation (every refusal, welcome
plus snapshot or catch-up), catch-up paging, delivery order and the close codes' table.

The same conversation over a real socket: test_access.py, test_collaboration.py, test_bad_input.py.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from masklog.domain.events import Event, LabelSaved, ObjectCreated, Source
from masklog.domain.limits import MAX_JSON_DEPTH
from masklog.domain.shapes import BBox
from masklog.server import protocol as p
from masklog.server.accounts import Credential, Role, User
from masklog.server.settings import Settings
from tests.domain.builders import ALICE, MemoryLog, project_log

LIMIT = 1024 * 1024
DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

ALICE_USER = User("alice", Role.ANNOTATOR)
MEMBERSHIPS = {("p1", "alice"): Role.ANNOTATOR}


def role_in(user: User, project: str) -> Role | None:
    """Memberships as `Accounts.role_in` answers them, for users who are not account admins."""
    return MEMBERSHIPS.get((project, user.name))


def credential(user: User = ALICE_USER) -> Credential:
    return Credential(user=user, token_id="0123456789ab", expires=None, digest="d" * 64)


def hello(last_seq: int | None = None) -> p.Hello:
    return p.Hello(token="t", last_seq=last_seq)


@pytest.fixture()
def log() -> MemoryLog:
    """Project p1 with media m1, and one object of Alice's labelled on frame 0."""
    log = project_log()
    log.do(ALICE, ObjectCreated(object="o1", media="m1", class_id="bbox"))
    log.do(ALICE, LabelSaved(object="o1", frame=0, shape=BBox(x=1, y=2, w=3, h=4), source=Source.MANUAL))
    return log


# ---- close codes ---------------------------------------------------------------------------------


def test_close_codes_are_the_documented_ones() -> None:
    """docs/protocol.md's table of close codes lists exactly the enum, code and name."""
    rows = re.findall(r"^\| (\d{4}) \| `(\w+)` \|", DOCS.read_text(), flags=re.MULTILINE)
    assert {int(code): name for code, name in rows} == {code.value: code.name for code in p.CloseCode}
    # What clients and the fuzz suite rely on.
    assert (p.CloseCode.UNAUTHORIZED, p.CloseCode.BAD_HELLO, p.CloseCode.FORBIDDEN, p.CloseCode.UNKNOWN_MEDIA, p.CloseCode.TOO_SLOW) == (4001, 4002, 4003, 4004, 4008)


# ---- before any message: Host and Origin ---------------------------------------------------------


def test_a_foreign_origin_is_refused_with_4003_before_any_message() -> None:
    settings = Settings(data=Path("unused"))
    local = ("127.0.0.1", 8000)
    refused = p.check_origin("127.0.0.1:8000", "http://evil.example", local, settings)
    assert refused == p.Close(p.CloseCode.FORBIDDEN, "host or origin not allowed")
    assert refused is not None and refused.error is None  # nothing is said to another page
    assert p.check_origin("evil.example:8000", "http://evil.example:8000", local, settings) == refused  # DNS rebinding
    assert p.check_origin("127.0.0.1:8000", "http://127.0.0.1:8000", local, settings) is None
    assert p.check_origin("127.0.0.1:8000", None, local, settings) is None  # a program


# ---- the hello -----------------------------------------------------------------------------------


def test_no_hello_in_time_is_closed_with_4001_and_no_error() -> None:
    assert p.read_hello(None, LIMIT) == p.Close(p.CloseCode.UNAUTHORIZED, "no hello")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("{not json", "malformed_message"),
        (b"\xff\xfe", "malformed_message"),
        ('{"type": "hello"}', "invalid_message"),  # no token
        ('{"type": "hello", "token": "t", "extra": 1}', "invalid_message"),
        ('{"type": "hello", "token": "t", "last_seq": -1}', "invalid_message"),
        ('{"type": "nonsense"}', "invalid_message"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "too_deep"),
        (json.dumps({"type": "hello", "token": "t", "pad": "x" * LIMIT}), "message_too_large"),
    ],
)
def test_a_bad_hello_is_answered_with_its_error_then_closed_with_4002(data: str | bytes, code: str) -> None:
    refused = p.read_hello(data, LIMIT)
    assert isinstance(refused, p.Close)
    assert (refused.code, refused.reason) == (p.CloseCode.BAD_HELLO, "bad hello")
    assert refused.error is not None and refused.error.code == code and refused.error.id is None


def test_another_message_first_is_closed_with_4002_hello_expected() -> None:
    refused = p.read_hello('{"type": "ping"}', LIMIT)
    assert refused == p.Close(p.CloseCode.BAD_HELLO, "hello expected", p.Error(code="hello_expected", message="the first message must be a hello"))


def test_a_hello_is_read() -> None:
    assert p.read_hello('{"type": "hello", "token": "t", "last_seq": 7, "frame": 3}', LIMIT) == p.Hello(token="t", last_seq=7, frame=3)


# ---- who may open --------------------------------------------------------------------------------


def test_an_unknown_token_is_answered_unauthorized_then_closed_with_4001(log: MemoryLog) -> None:
    refused = p.greet(hello(), None, "m1", log.state, log.state.seq, role_in)
    assert refused == p.Close(p.CloseCode.UNAUTHORIZED, "unauthorized", p.Error(code="unauthorized", message="unknown or missing token"))


def test_an_unknown_media_item_and_another_projects_look_the_same(log: MemoryLog) -> None:
    missing = p.greet(hello(), credential(), "nope", log.state, log.state.seq, role_in)
    outsider = p.greet(hello(), credential(User("mallory", Role.ANNOTATOR)), "m1", log.state, log.state.seq, role_in)
    for refused, media in ((missing, "nope"), (outsider, "m1")):
        assert refused == p.Close(p.CloseCode.UNKNOWN_MEDIA, "unknown media", p.Error(code="unknown_id", message=f"unknown media {media!r}"))


# ---- welcome, then a snapshot or the events missed -----------------------------------------------


def test_a_new_client_is_welcomed_with_a_snapshot(log: MemoryLog) -> None:
    greeting = p.greet(hello(), credential(), "m1", log.state, log.state.seq, role_in)
    assert isinstance(greeting, p.Greeting)
    assert greeting.welcome == p.Welcome(protocol=p.PROTOCOL_VERSION, user="alice", role="annotator", media="m1", head=log.state.seq)
    assert greeting.project == "p1" and greeting.credential == credential()
    snapshot = greeting.then
    assert isinstance(snapshot, p.Snapshot)
    assert snapshot == p.snapshot(log.state, "m1", ALICE) and snapshot.seq == log.state.seq
    assert [(entry.object, entry.frame) for entry in snapshot.labels] == [("o1", 0)]
    assert (snapshot.undo, snapshot.redo) == (2, 0)  # Alice's own stacks
    assert greeting.delivered == log.state.seq  # live events follow from the snapshot's position


def test_a_client_ahead_of_the_log_gets_a_snapshot(log: MemoryLog) -> None:
    greeting = p.greet(hello(last_seq=log.state.seq + 1), credential(), "m1", log.state, log.state.seq, role_in)
    assert isinstance(greeting, p.Greeting) and isinstance(greeting.then, p.Snapshot)


@pytest.mark.parametrize("last_seq", [0, 3, "head"])
def test_a_resuming_client_catches_up_from_its_position_to_the_published_one(log: MemoryLog, last_seq: int | str) -> None:
    position = log.state.seq if last_seq == "head" else int(last_seq)
    # The state may run ahead of the log by commits under way: the catch-up ends where the
    # live subscription starts, at the published position.
    published = log.state.seq - 1
    greeting = p.greet(hello(last_seq=position), credential(), "m1", log.state, published, role_in)
    assert isinstance(greeting, p.Greeting)
    assert greeting.then == p.CatchUp(after=position, until=published)
    assert greeting.delivered == position
    assert greeting.welcome.head == log.state.seq


def test_an_account_admin_is_welcomed_as_admin(log: MemoryLog) -> None:
    def admin_everywhere(user: User, project: str) -> Role | None:
        return Role.ADMIN if user.role == Role.ADMIN else role_in(user, project)

    greeting = p.greet(hello(), credential(User("root", Role.ADMIN)), "m1", log.state, log.state.seq, admin_everywhere)
    assert isinstance(greeting, p.Greeting) and greeting.welcome.role == "admin"


# ---- catch-up paging and delivery order ----------------------------------------------------------


def events(*seqs: int, stream: str) -> list[Event]:
    return [
        Event(seq=seq, id=str(uuid.uuid4()), stream=stream, actor=ALICE, at=0.0, body=LabelSaved(object="o1", frame=0, shape=BBox(x=0, y=0, w=1, h=1), source=Source.MANUAL))
        for seq in seqs
    ]


def test_a_catch_up_page_merges_both_streams_in_order() -> None:
    page, bound = p.catch_up_page(events(2, 5, stream="media:m1"), events(3, stream="project:p1"), until=9)
    assert [e.seq for e in page] == [2, 3, 5] and bound == 9


def test_a_full_read_cuts_the_page_where_it_stopped() -> None:
    full = events(*range(1, 2 * p.CATCH_UP_PAGE, 2), stream="media:m1")  # a page of odd positions
    last = full[-1].seq
    page, bound = p.catch_up_page(full, events(4, last + 1, stream="project:p1"), until=10_000)
    # The media stream may have more before last + 1: that one waits for the next page.
    assert bound == last and [e.seq for e in page][-2:] == [last - 2, last] and 4 in [e.seq for e in page]


def test_delivery_drops_what_was_sent_already() -> None:
    delivery = p.Delivery(3)
    assert [e.seq for e in delivery.admit(events(2, 3, 4, 5, stream="media:m1"))] == [4, 5]
    assert delivery.admit(events(5, stream="media:m1")) == [] and delivery.last_seq == 5
