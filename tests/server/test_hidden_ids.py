"""Answers never reveal what exists in other projects (issue 12, item 9), against a real server.

Each probe is sent twice with the same id: first while the id exists nowhere, then after another
project (p2, which alice and bob are not members of) made it. The two answers must be the same
bytes: status, code and message. Ids chosen at creation (objects, classes, media, command ids)
are global in the log, so one taken elsewhere is refused; the answer must then be the one for
an id taken in the caller's own project, naming no project.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest

from masklog.domain.events import Rle, SegmentProposed
from masklog.domain.geometry import rle_encode
from tests.server.live import Client, LiveServer, seeded_server, upload, write_image
from tests.server.rest import as_model, bbox, command, fresh, new_object, post_command, save_box

MASK = msgspec.to_builtins(rle_encode(np.pad(np.ones((8, 8), np.uint8), ((4, 36), (4, 52)))))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    with seeded_server(tmp_path_factory.mktemp("hidden-ids")) as live:
        with live.http("admin") as admin:
            admin.put("/api/projects/p1/members/bob", json={"role": "admin"}).raise_for_status()
        yield live


@pytest.fixture(scope="module")
def http(server) -> dict[str, httpx.Client]:
    clients = {user: server.http(user) for user in ("admin", "alice", "bob", "outsider")}
    yield clients
    for client in clients.values():
        client.close()


def same_before_and_after(probe: Callable[[], httpx.Response], make_elsewhere: Callable[[], Any]) -> httpx.Response:
    """`probe`'s answer while the id is missing, checked to be byte-identical once another
    project has made the id."""
    missing = probe()
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_id", missing.text
    make_elsewhere()
    hidden = probe()
    assert (hidden.status_code, hidden.content) == (missing.status_code, missing.content)
    return hidden


# ---- ids looked up by a command ------------------------------------------------------------------


def test_a_class_of_another_project(http):
    class_id = fresh("cls")
    object_id = new_object(http["alice"])
    make = lambda: http["admin"].post("/api/projects/p2/classes", json={"id": class_id, "name": "c", "shape": "bbox", "color": "#123456"}).raise_for_status()  # noqa: E731
    answer = same_before_and_after(
        lambda: post_command(http["alice"], {"type": "object_created", "object": fresh("obj"), "media": "m1", "class_id": class_id}), make
    )
    assert answer.json()["error"]["message"] == f"unknown class {class_id!r}"
    missing = post_command(http["alice"], {"type": "object_reclassed", "object": object_id, "class_id": "no-such-class"})
    hidden = post_command(http["alice"], {"type": "object_reclassed", "object": object_id, "class_id": class_id})
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content.replace(b"no-such-class", class_id.encode())


def test_an_object_of_another_project_in_a_track_request(http):
    mine = new_object(http["alice"])
    save_box(http["alice"], mine, 0)
    theirs = fresh("obj")
    body = {"type": "track_requested", "media": "m1", "objects": [mine, theirs], "start": 0, "direction": "forward", "range": 3}

    def make() -> None:
        command(http["outsider"], {"type": "object_created", "object": theirs, "media": "m2", "class_id": "box2"}, "m2")
        save_box(http["outsider"], theirs, 0, "m2")

    answer = same_before_and_after(lambda: post_command(http["alice"], body), make)
    assert answer.json()["error"]["message"] == f"unknown object {theirs!r}"


def test_a_track_of_another_project_as_the_replaced_track(http):
    mine = new_object(http["alice"])
    save_box(http["alice"], mine, 0)
    track = str(uuid.uuid4())
    body = {"type": "track_requested", "media": "m1", "objects": [mine], "start": 0, "direction": "forward", "range": 3, "replaces": track}

    def make() -> None:
        theirs = new_object(http["outsider"], "m2", "box2")
        save_box(http["outsider"], theirs, 0, "m2")
        # Left running (no models run here): not even its status may show through.
        request = {"type": "track_requested", "media": "m2", "objects": [theirs], "start": 0, "direction": "forward", "range": 3}
        assert post_command(http["outsider"], request, "m2", command_id=track).status_code == 201

    answer = same_before_and_after(lambda: post_command(http["alice"], body), make)
    assert answer.json()["error"]["message"] == f"unknown track {track}"


def test_a_prompt_of_another_project(server, http):
    """Saving another project's SAM answer through one's own media item: the prompt's media
    places the command in p2, where alice is no member."""
    prompt = str(uuid.uuid4())

    def make() -> None:
        theirs = new_object(http["outsider"], "m2", "box2")
        added = {"type": "prompt_added", "object": theirs, "frame": 0, "points": [{"x": 6, "y": 6}]}
        assert post_command(http["outsider"], added, "m2", command_id=prompt).status_code == 201
        as_model(server, SegmentProposed(prompt=prompt, object=theirs, frame=0, mask=msgspec.convert(MASK, Rle), score=0.9, model="test"))

    answer = same_before_and_after(lambda: post_command(http["alice"], {"type": "save_segment", "prompt": prompt}), make)
    assert answer.json()["error"]["message"].startswith(f"no proposed segment for prompt {prompt}: ")
    # A SAM label naming it is refused as for any prompt that is not its own.
    mine = new_object(http["alice"], class_id="mask")
    label = {"type": "label_saved", "object": mine, "frame": 0, "shape": {"type": "bitmask", "rle": MASK}, "source": "sam"}
    unknown = post_command(http["alice"], {**label, "prompt": str(uuid.uuid4())})
    hidden = post_command(http["alice"], {**label, "prompt": prompt})
    assert (hidden.status_code, hidden.content) == (unknown.status_code, unknown.content)


async def test_through_the_socket(server, http):
    """The socket answers with the same code and text as for a missing id."""
    mine = new_object(http["alice"])
    save_box(http["alice"], mine, 0)
    theirs, prompt = fresh("obj"), str(uuid.uuid4())
    probes = [
        {"type": "track_requested", "media": "m1", "objects": [mine, theirs], "start": 0, "direction": "forward", "range": 3},
        {"type": "save_segment", "prompt": prompt},
        {"type": "label_saved", "object": theirs, "frame": 0, "shape": bbox(), "source": "manual"},
    ]
    client = Client(server, "alice")
    await client.connect()
    try:
        missing = [await client.command(body) for body in probes]
        command(http["outsider"], {"type": "object_created", "object": theirs, "media": "m2", "class_id": "box2"}, "m2")
        save_box(http["outsider"], theirs, 0, "m2")
        added = {"type": "prompt_added", "object": theirs, "frame": 0, "points": [{"x": 6, "y": 6}]}
        assert post_command(http["outsider"], added, "m2", command_id=prompt).status_code == 201
        as_model(server, SegmentProposed(prompt=prompt, object=theirs, frame=0, mask=msgspec.convert(MASK, Rle), score=0.9, model="test"))
        hidden = [await client.command(body) for body in probes]
    finally:
        await client.close()
    for before, after in zip(missing, hidden):
        assert before["type"] == after["type"] == "error"
        assert (after["code"], after["message"]) == (before["code"], before["message"]) and after["code"] == "unknown_id"


# ---- ids chosen at creation: taken elsewhere is answered as taken here ---------------------------


def taken_answers(here: httpx.Response, elsewhere: httpx.Response, here_id: str, elsewhere_id: str) -> None:
    assert here.status_code == elsewhere.status_code == 409, (here.text, elsewhere.text)
    assert elsewhere.content.replace(elsewhere_id.encode(), b"<id>") == here.content.replace(here_id.encode(), b"<id>")
    assert b"p2" not in elsewhere.content


def test_an_object_id_taken_elsewhere(http):
    here, elsewhere = new_object(http["alice"]), new_object(http["outsider"], "m2", "box2")
    create = lambda object_id: post_command(http["alice"], {"type": "object_created", "object": object_id, "media": "m1", "class_id": "box"})  # noqa: E731
    taken_answers(create(here), create(elsewhere), here, elsewhere)


def test_a_command_id_used_elsewhere(http):
    here, elsewhere = str(uuid.uuid4()), str(uuid.uuid4())
    assert post_command(http["bob"], {"type": "object_created", "object": fresh("obj"), "media": "m1", "class_id": "box"}, command_id=here).status_code == 201
    assert post_command(http["outsider"], {"type": "object_created", "object": fresh("obj"), "media": "m2", "class_id": "box2"}, "m2", command_id=elsewhere).status_code == 201
    retry = lambda command_id: post_command(http["alice"], {"type": "object_created", "object": fresh("obj"), "media": "m1", "class_id": "box"}, command_id=command_id)  # noqa: E731
    taken_answers(retry(here), retry(elsewhere), here, elsewhere)


def test_a_class_id_taken_elsewhere(http):
    """bob administers p1 only; a class id taken in p2 is answered as one taken in p1."""
    here, elsewhere = fresh("cls"), fresh("cls")
    new = lambda class_id: {"id": class_id, "name": "c", "shape": "bbox", "color": "#123456"}  # noqa: E731
    http["bob"].post("/api/projects/p1/classes", json=new(here)).raise_for_status()
    http["admin"].post("/api/projects/p2/classes", json=new(elsewhere)).raise_for_status()
    add = lambda class_id: http["bob"].post("/api/projects/p1/classes", json=new(class_id))  # noqa: E731
    taken_answers(add(here), add(elsewhere), here, elsewhere)


def test_a_media_id_taken_elsewhere(server, http, tmp_path):
    image = write_image(tmp_path / "a.png")
    here, elsewhere = fresh("img"), fresh("img")
    assert upload(http["bob"], "p1", here, "image", [image]).status_code == 201
    assert upload(http["admin"], "p2", elsewhere, "image", [image]).status_code == 201
    taken_answers(upload(http["bob"], "p1", here, "image", [image]), upload(http["bob"], "p1", elsewhere, "image", [image]), here, elsewhere)


def test_media_files_without_an_event_are_answered_as_taken(server, http, tmp_path):
    """Files already under the id (another upload of it under way, in any project) get the
    answer of a taken id, not one that tells the two apart."""
    image = write_image(tmp_path / "a.png")
    taken, busy = fresh("img"), fresh("img")
    assert upload(http["bob"], "p1", taken, "image", [image]).status_code == 201
    (server.settings.media_dir / busy).mkdir()
    try:
        taken_answers(upload(http["bob"], "p1", taken, "image", [image]), upload(http["bob"], "p1", busy, "image", [image]), taken, busy)
    finally:
        (server.settings.media_dir / busy).rmdir()
    assert not (server.settings.media_dir / busy).exists()
