"""Who may do what: every role against every REST route and every command kind, through the REST
command route and through the socket. The tables below are the rules; docs/api.md
("Authorization") says the same in prose, and server/authorization.py is where they are enforced.

Roles, on project p1: an account admin (admin of every project), a project admin (bob, admin of
p1 only), an annotator (alice), a viewer, a non-member (outsider: an annotator of p2 only), no
token, and a token nobody has. A non-member gets 404 `unknown_id` for another project's project,
media and ids, exactly what a missing id gets, so membership never reveals what exists elsewhere.

One server serves the whole module; every case makes the ids it needs, so cases do not depend on
each other or on their order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import httpx
import msgspec
import numpy as np
import pytest
import websockets

from masklog.domain.events import SegmentProposed, TrackFrameProduced
from masklog.domain.geometry import rle_encode
from masklog.domain.shapes import BBox, Rle
from tests.server.live import Client, LiveServer, seeded_server
from tests.server.rest import as_model, bbox, command, fresh, head, new_object, post_command, request_track, save_box

ROLES = ("account_admin", "project_admin", "annotator", "viewer", "outsider", "no_token", "bad_token")
USER = {"account_admin": "admin", "project_admin": "bob", "annotator": "alice", "viewer": "viewer", "outsider": "outsider"}
BAD_TOKEN = "not-a-token-anyone-has"
CELL_OBJECT = "cell-obj"
CELL_EVENT = "6d1f3c52-8a1e-4b7a-9f0e-2c4d5e6f7a8b"  # the object_created of CELL_OBJECT


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    # The cases set up hundreds of commands (and tracks, which stay running: no models here) as
    # the same few users, faster than anyone works: no per-user limits on those.
    with seeded_server(tmp_path_factory.mktemp("authorization"), max_running_tracks=10_000, command_burst=10_000) as live:
        with live.http("admin") as admin:
            admin.put("/api/projects/p1/members/bob", json={"role": "admin"}).raise_for_status()
            post_command(admin, {"type": "object_created", "object": CELL_OBJECT, "media": "m1", "class_id": "box"}, command_id=CELL_EVENT).raise_for_status()
            save_box(admin, CELL_OBJECT, 0)
        yield live


@pytest.fixture(scope="module")
def http(server) -> dict[str, httpx.Client]:
    """One client per role for the whole module."""
    clients = {role: as_role(server, role) for role in ROLES}
    yield clients
    for client in clients.values():
        client.close()


def as_role(live: LiveServer, role: str) -> httpx.Client:
    if role == "no_token":
        return httpx.Client(base_url=live.url, timeout=30)
    if role == "bad_token":
        return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {BAD_TOKEN}"}, timeout=30)
    return live.http(USER[role])


# ---- REST routes ------------------------------------------------------------------------------------

PNG = cv2.imencode(".png", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()

ROUTES: dict[str, Callable[[httpx.Client], httpx.Response]] = {
    "GET /api/health": lambda http: http.get("/api/health"),
    "GET /api/me": lambda http: http.get("/api/me"),
    "GET /api/capabilities": lambda http: http.get("/api/capabilities"),
    "GET /api/projects": lambda http: http.get("/api/projects"),
    "POST /api/projects": lambda http: http.post("/api/projects", json={"id": fresh("proj"), "name": "New"}),
    "GET /api/projects/p1": lambda http: http.get("/api/projects/p1"),
    "GET /api/projects/p2": lambda http: http.get("/api/projects/p2"),
    "POST /api/projects/p1/classes": lambda http: http.post(
        "/api/projects/p1/classes", json={"id": fresh("cls"), "name": "c", "shape": "bbox", "color": "#00ff00"}
    ),
    "GET /api/projects/p1/members": lambda http: http.get("/api/projects/p1/members"),
    # The account admin is admin everywhere whatever its membership says: a harmless target.
    "PUT /api/projects/p1/members/{user}": lambda http: http.put("/api/projects/p1/members/admin", json={"role": "admin"}),
    "DELETE /api/projects/p1/members/{user}": lambda http: http.delete("/api/projects/p1/members/admin"),
    "POST /api/projects/p1/media": lambda http: http.post(
        "/api/projects/p1/media", data={"id": fresh("img"), "name": "still", "kind": "image"}, files=[("file", ("still.png", PNG, "image/png"))]
    ),
    "GET /api/media/m1": lambda http: http.get("/api/media/m1"),
    "GET /api/media/m2": lambda http: http.get("/api/media/m2"),
    "GET /api/media/m1/frames/0": lambda http: http.get("/api/media/m1/frames/0"),
    "GET /api/media/m1/labels": lambda http: http.get("/api/media/m1/labels"),
    "GET /api/media/m1/snapshot": lambda http: http.get("/api/media/m1/snapshot"),
    "GET /api/media/m1/history": lambda http: http.get("/api/media/m1/history"),
    "GET /api/media/m1/positions": lambda http: http.get("/api/media/m1/positions"),
    "GET /api/media/m1/audit": lambda http: http.get("/api/media/m1/audit"),
    "GET /api/media/m1/cells/{object}/0": lambda http: http.get(f"/api/media/m1/cells/{CELL_OBJECT}/0"),
    "GET /api/media/m1/events/{id}": lambda http: http.get(f"/api/media/m1/events/{CELL_EVENT}"),
    "POST /api/media/m1/commands": lambda http: post_command(
        http, {"type": "object_created", "object": fresh("obj"), "media": "m1", "class_id": "box"}
    ),
    # Token management: harmless targets (a user and a token id nobody has: 404 for an admin).
    "GET /api/users/{user}/tokens": lambda http: http.get("/api/users/admin/tokens"),
    "DELETE /api/users/{user}/tokens": lambda http: http.delete("/api/users/nobody/tokens"),
    "DELETE /api/users/{user}/tokens/{token}": lambda http: http.delete("/api/users/admin/tokens/000000000000"),
}

#                                           account project                              no     bad
#                                           admin   admin    annotator viewer outsider  token  token
REST_TABLE: dict[str, tuple[int, ...]] = {
    "GET /api/health":                         (200,   200,     200,     200,   200,     200,   200),
    "GET /api/me":                             (200,   200,     200,     200,   200,     401,   401),
    "GET /api/capabilities":                   (200,   200,     200,     200,   200,     401,   401),
    "GET /api/projects":                       (200,   200,     200,     200,   200,     401,   401),
    "POST /api/projects":                      (201,   403,     403,     403,   403,     401,   401),
    "GET /api/projects/p1":                    (200,   200,     200,     200,   404,     401,   401),
    "GET /api/projects/p2":                    (200,   404,     404,     404,   200,     401,   401),
    "POST /api/projects/p1/classes":           (201,   201,     403,     403,   404,     401,   401),
    "GET /api/projects/p1/members":            (200,   200,     200,     200,   404,     401,   401),
    "PUT /api/projects/p1/members/{user}":     (200,   200,     403,     403,   404,     401,   401),
    "DELETE /api/projects/p1/members/{user}":  (200,   200,     403,     403,   404,     401,   401),
    "POST /api/projects/p1/media":             (201,   201,     403,     403,   404,     401,   401),
    "GET /api/media/m1":                       (200,   200,     200,     200,   404,     401,   401),
    "GET /api/media/m2":                       (200,   404,     404,     404,   200,     401,   401),
    "GET /api/media/m1/frames/0":              (200,   200,     200,     200,   404,     401,   401),
    "GET /api/media/m1/labels":                (200,   200,     200,     200,   404,     401,   401),
    "GET /api/media/m1/snapshot":              (200,   200,     200,     200,   404,     401,   401),
    "GET /api/media/m1/history":               (200,   200,     200,     200,   404,     401,   401),
    "GET /api/media/m1/positions":             (200,   200,     200,     200,   404,     401,   401),
    "GET /api/media/m1/audit":                 (200,   200,     200,     200,   404,     401,   401),
    "GET /api/media/m1/cells/{object}/0":      (200,   200,     200,     200,   404,     401,   401),
    "GET /api/media/m1/events/{id}":           (200,   200,     200,     200,   404,     401,   401),
    "POST /api/media/m1/commands":             (201,   201,     201,     403,   404,     401,   401),
    "GET /api/users/{user}/tokens":            (200,   403,     403,     403,   403,     401,   401),
    "DELETE /api/users/{user}/tokens":         (404,   403,     403,     403,   403,     401,   401),
    "DELETE /api/users/{user}/tokens/{token}": (404,   403,     403,     403,   403,     401,   401),
}  # fmt: skip

# Events an allowed call appends to the log (memberships live beside the log, in accounts).
APPENDS = {"POST /api/projects": 1, "POST /api/projects/p1/classes": 1, "POST /api/projects/p1/media": 1, "POST /api/media/m1/commands": 1}
ERROR_CODE = {401: "unauthorized", 403: "forbidden", 404: "unknown_id"}


def test_the_route_table_covers_every_route():
    from masklog.server.api import routes

    served = {f"{method} {route.path}" for route in routes for method in route.methods - {"HEAD"}}
    named = {name.replace("p1", "{project}").replace("p2", "{project}").replace("m1", "{media}").replace("m2", "{media}") for name in REST_TABLE}
    named = {n.replace("frames/0", "frames/{index}").replace("cells/{object}/0", "cells/{object}/{frame}") for n in named}
    assert served == named


@pytest.mark.parametrize(
    "route,role,status",
    [pytest.param(route, role, status, id=f"{route}-{role}") for route, row in REST_TABLE.items() for role, status in zip(ROLES, row)],
)
def test_rest_route(http, route, role, status):
    before = head(http["account_admin"])
    response = ROUTES[route](http[role])
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.json()["error"]["code"] == ERROR_CODE[status]
    assert head(http["account_admin"]) == before + (APPENDS.get(route, 0) if status < 300 else 0), "a refused call appends nothing"


# Calls a non-member makes about p1 and m1, with {id} for the project's or media's id.
HIDDEN_FROM_OUTSIDER = [
    ("GET", "/api/projects/{id}", None),
    ("POST", "/api/projects/{id}/classes", {"id": "c9", "name": "c", "shape": "bbox", "color": "#00ff00"}),
    ("GET", "/api/projects/{id}/members", None),
    ("PUT", "/api/projects/{id}/members/outsider", {"role": "admin"}),
    ("DELETE", "/api/projects/{id}/members/outsider", None),
    ("GET", "/api/media/{id}", None),
    ("GET", "/api/media/{id}/frames/0", None),
    ("GET", "/api/media/{id}/labels", None),
    ("GET", "/api/media/{id}/snapshot", None),
    ("GET", "/api/media/{id}/history", None),
    ("GET", "/api/media/{id}/audit", None),
    ("GET", "/api/media/{id}/cells/cell-obj/0", None),
    ("POST", "/api/media/{id}/commands", {"id": str(uuid.uuid4()), "body": {"type": "undo", "media": "m1"}}),
]


@pytest.mark.parametrize("method,path,body", HIDDEN_FROM_OUTSIDER, ids=[f"{m} {p}" for m, p, _ in HIDDEN_FROM_OUTSIDER])
def test_another_projects_ids_look_exactly_like_missing_ones(http, method, path, body):
    real = "p1" if "/projects/" in path else "m1"
    existing = http["outsider"].request(method, path.format(id=real), json=body)
    missing = http["outsider"].request(method, path.format(id="missing-id"), json=body)
    assert existing.status_code == missing.status_code == 404
    assert existing.json() == json.loads(missing.text.replace("missing-id", real))


def test_each_role_lists_only_its_projects(http):
    visible = {}
    for role in ("account_admin", "project_admin", "annotator", "viewer", "outsider"):
        visible[role] = {p["id"]: p["role"] for p in http[role].get("/api/projects").json()}
    assert {"p1": "admin", "p2": "admin"}.items() <= visible["account_admin"].items()
    assert visible["project_admin"] == {"p1": "admin"}
    assert visible["annotator"] == {"p1": "annotator"}
    assert visible["viewer"] == {"p1": "viewer"}
    assert visible["outsider"] == {"p2": "annotator"}


# ---- commands -----------------------------------------------------------------------------------------

OK, NO, HIDDEN = "ok", "forbidden", "unknown_id"
COMMAND_ROLES = ("account_admin", "project_admin", "annotator", "viewer", "outsider")

# Every command kind sent about m1 through m1's command route (REST) and m1's socket. The outsider
# column is REST only: on the socket a non-member never gets past hello (see the socket tests).
# None: the case cannot arise (a viewer cannot have requested a track).
#                                        account  project
#                                        admin    admin    annotator viewer  outsider
COMMAND_TABLE: dict[str, tuple[str | None, ...]] = {
    # Project-level commands have their own routes (POST /api/projects, .../classes, .../media).
    "project_created":                     (NO,      NO,      NO,       NO,     HIDDEN),
    "class_added":                         (NO,      NO,      NO,       NO,     HIDDEN),
    "media_added":                         (NO,      NO,      NO,       NO,     HIDDEN),
    "object_created":                      (OK,      OK,      OK,       NO,     HIDDEN),
    "object_deleted":                      (OK,      OK,      OK,       NO,     HIDDEN),
    "object_reclassed":                    (OK,      OK,      OK,       NO,     HIDDEN),
    "object_renamed":                      (OK,      OK,      OK,       NO,     HIDDEN),
    "prompt_added":                        (OK,      OK,      OK,       NO,     HIDDEN),
    "segment_proposed":                    (NO,      NO,      NO,       NO,     HIDDEN),  # models only
    "label_saved":                         (OK,      OK,      OK,       NO,     HIDDEN),
    "save_segment":                        (OK,      OK,      OK,       NO,     HIDDEN),
    "label_deleted":                       (OK,      OK,      OK,       NO,     HIDDEN),
    "track_requested":                     (OK,      OK,      OK,       NO,     HIDDEN),
    "track_frame_produced":                (NO,      NO,      NO,       NO,     HIDDEN),  # models only
    "track_completed":                     (NO,      NO,      NO,       NO,     HIDDEN),  # models only
    "track_failed":                        (NO,      NO,      NO,       NO,     HIDDEN),  # models only
    "track_cancelled (own track)":         (OK,      OK,      OK,       None,   None),
    "track_cancelled (another's track)":   (OK,      OK,      NO,       NO,     HIDDEN),
    "tracked_accepted":                    (OK,      OK,      OK,       NO,     HIDDEN),
    "tracked_discarded":                   (OK,      OK,      OK,       NO,     HIDDEN),
    "undone":                              (NO,      NO,      NO,       NO,     HIDDEN),  # the undo command makes these
    "redone":                              (NO,      NO,      NO,       NO,     HIDDEN),
    "undo":                                (OK,      OK,      OK,       NO,     HIDDEN),
    "redo":                                (OK,      OK,      OK,       NO,     HIDDEN),
}  # fmt: skip

MASK = msgspec.to_builtins(rle_encode(np.pad(np.ones((8, 8), np.uint8), ((4, 36), (4, 52)))))


@dataclass
class Setup:
    """What a case's command needs, made before it is sent: by the admin, or by the role's own
    user where the command is about its own work (undo, redo, cancelling its own track)."""

    live: LiveServer
    http: dict[str, httpx.Client]
    role: str

    @property
    def admin(self) -> httpx.Client:
        return self.http["account_admin"]

    def own(self) -> httpx.Client:
        return self.http[self.role]

    def can_write(self) -> bool:
        return COMMAND_TABLE["object_created"][COMMAND_ROLES.index(self.role)] == OK


def _proposed_track(s: Setup) -> str:
    """A running track with one result awaiting review, written by the model actor."""
    object_id = new_object(s.admin)
    track = request_track(s.admin, object_id)
    as_model(s.live, TrackFrameProduced(track=track, object=object_id, frame=1, shape=BBox(2, 2, 5, 5), score=0.9, model="test"))
    return track


def _answered_prompt(s: Setup) -> dict[str, Any]:
    """A prompt the model answered (the test server runs no models: the answer is written here)."""
    object_id = new_object(s.admin)
    prompt = command(s.admin, {"type": "prompt_added", "object": object_id, "frame": 0, "points": [{"x": 6, "y": 6}]})["id"]
    as_model(s.live, SegmentProposed(prompt=prompt, object=object_id, frame=0, mask=msgspec.convert(MASK, Rle), score=0.9, model="test"))
    return {"type": "save_segment", "prompt": prompt}


def _running_track(s: Setup) -> str:
    return request_track(s.admin, new_object(s.admin))


def _labelled(s: Setup) -> str:
    object_id = new_object(s.admin)
    save_box(s.admin, object_id, 1)
    return object_id


def _own_track(s: Setup) -> str:
    return request_track(s.own(), new_object(s.own()))


def _anothers_track(s: Setup) -> str:
    other = s.http["account_admin" if s.role == "annotator" else "annotator"]
    return request_track(other, new_object(other))


def _undo_body(s: Setup) -> dict[str, Any]:
    if s.can_write():
        new_object(s.own())
    return {"type": "undo", "media": "m1"}


def _redo_body(s: Setup) -> dict[str, Any]:
    if s.can_write():
        new_object(s.own())
        command(s.own(), {"type": "undo", "media": "m1"})
    return {"type": "redo", "media": "m1"}


BODIES: dict[str, Callable[[Setup], dict[str, Any]]] = {
    "project_created": lambda s: {"type": "project_created", "project": fresh("proj"), "name": "P"},
    "class_added": lambda s: {"type": "class_added", "project": "p1", "class_id": fresh("cls"), "name": "c", "shape": "bbox", "color": "#112233"},
    "media_added": lambda s: {
        "type": "media_added", "project": "p1", "media": fresh("med"), "name": "m", "kind": "image", "width": 64, "height": 48, "frames": 1,
    },
    "object_created": lambda s: {"type": "object_created", "object": fresh("obj"), "media": "m1", "class_id": "box"},
    "object_deleted": lambda s: {"type": "object_deleted", "object": new_object(s.admin)},
    "object_reclassed": lambda s: {"type": "object_reclassed", "object": new_object(s.admin), "class_id": "poly"},
    "object_renamed": lambda s: {"type": "object_renamed", "object": new_object(s.admin), "name": "renamed"},
    "prompt_added": lambda s: {"type": "prompt_added", "object": new_object(s.admin), "frame": 0, "points": [{"x": 10, "y": 10, "include": True}]},
    "segment_proposed": lambda s: {
        "type": "segment_proposed", "prompt": str(uuid.uuid4()), "object": new_object(s.admin), "frame": 0, "mask": MASK, "score": 0.9, "model": "sam2",
    },
    "label_saved": lambda s: {"type": "label_saved", "object": new_object(s.admin), "frame": 1, "shape": bbox(), "source": "manual"},
    "save_segment": lambda s: _answered_prompt(s),
    "label_deleted": lambda s: {"type": "label_deleted", "object": _labelled(s), "frame": 1},
    "track_requested": lambda s: {"type": "track_requested", "media": "m1", "objects": [_labelled(s)], "start": 1, "direction": "forward"},
    "track_frame_produced": lambda s: _frame_produced(s),
    "track_completed": lambda s: {"type": "track_completed", "track": _running_track(s), "frames": 1},
    "track_failed": lambda s: {"type": "track_failed", "track": _running_track(s), "reason": "lost"},
    "track_cancelled (own track)": lambda s: {"type": "track_cancelled", "track": _own_track(s)},
    "track_cancelled (another's track)": lambda s: {"type": "track_cancelled", "track": _anothers_track(s)},
    "tracked_accepted": lambda s: {"type": "tracked_accepted", "track": _proposed_track(s)},
    "tracked_discarded": lambda s: {"type": "tracked_discarded", "track": _proposed_track(s)},
    "undone": lambda s: {"type": "undone", "media": "m1", "target": str(uuid.uuid4()), "changes": []},
    "redone": lambda s: {"type": "redone", "media": "m1", "target": str(uuid.uuid4()), "changes": []},
    "undo": _undo_body,
    "redo": _redo_body,
}  # fmt: skip


def _frame_produced(s: Setup) -> dict[str, Any]:
    object_id = new_object(s.admin)
    track = request_track(s.admin, object_id)
    return {"type": "track_frame_produced", "track": track, "object": object_id, "frame": 1, "shape": bbox(), "score": 0.5, "model": "m"}


STATUS = {OK: 201, NO: 403, HIDDEN: 404}


async def send(live: LiveServer, http: dict[str, httpx.Client], role: str, transport: str, body: dict[str, Any], media: str) -> tuple[str, dict[str, Any]]:
    """Send one command; the outcome is "ok" or the error code, and the reply itself."""
    if transport == "rest":
        response = post_command(http[role], body, media)
        reply = response.json()
        outcome = OK if response.status_code == 201 else reply["error"]["code"]
        assert response.status_code == STATUS.get(outcome, response.status_code), response.text
        return outcome, reply
    client = Client(live, USER[role], media)
    welcome = await client.connect()
    assert welcome["type"] == "welcome", welcome
    try:
        reply = await client.command(body)
    finally:
        await client.close()
    return (OK if reply["type"] == "ack" else reply["code"]), reply


COMMAND_CASES = [
    pytest.param(kind, role, transport, id=f"{kind}-{role}-{transport}")
    for kind, row in COMMAND_TABLE.items()
    for role, expected in zip(COMMAND_ROLES, row)
    if expected is not None
    for transport in (("rest",) if role == "outsider" else ("rest", "socket"))
]


def test_the_command_table_covers_every_command_kind():
    from masklog.domain.decide import Command

    kinds = {t.__struct_config__.tag for t in Command.__args__}
    assert kinds == {kind.split(" ")[0] for kind in COMMAND_TABLE}


@pytest.mark.parametrize("kind,role,transport", COMMAND_CASES)
async def test_command(server, http, kind, role, transport):
    expected = COMMAND_TABLE[kind][COMMAND_ROLES.index(role)]
    body = BODIES[kind](Setup(server, http, role))
    before = head(http["account_admin"])
    outcome, reply = await send(server, http, role, transport, body, "m1")
    assert outcome == expected, reply
    assert head(http["account_admin"]) == before + (1 if expected == OK else 0), "a refused command appends nothing"


# ---- commands about another media item or project than the route's --------------------------------


def _m2_object(s: Setup) -> str:
    return new_object(s.http["outsider"], "m2", "box2")


def _object_on(media: str, class_id: str) -> Callable[[Setup], tuple[dict[str, Any], str]]:
    return lambda s: ({"type": "object_created", "object": fresh("obj"), "media": media, "class_id": class_id}, media)


def _label_on_m2_object(s: Setup) -> tuple[dict[str, Any], str]:
    object_id = _m2_object(s)
    return {"type": "label_saved", "object": object_id, "frame": 0, "shape": bbox(), "source": "manual"}, object_id


def _cancel_m2_track(s: Setup) -> tuple[dict[str, Any], str]:
    track = request_track(s.http["outsider"], _m2_object(s), "m2")
    return {"type": "track_cancelled", "track": track}, track


def _track_on_m2(s: Setup) -> tuple[dict[str, Any], str]:
    return {"type": "track_requested", "media": "m2", "objects": [_m2_object(s)], "start": 0, "direction": "forward"}, "m2"


def _delete_m1_label(s: Setup) -> tuple[dict[str, Any], str]:
    object_id = _labelled(s)
    return {"type": "label_deleted", "object": object_id, "frame": 1}, object_id


def _class_for_p1(s: Setup) -> tuple[dict[str, Any], str]:
    return {"type": "class_added", "project": "p1", "class_id": fresh("cls"), "name": "c", "shape": "bbox", "color": "#123456"}, "p1"


# name: (role, the route's or socket's media, body maker -> (body, the id that places it), expected)
CROSS: dict[str, tuple[str, str, Callable[[Setup], tuple[dict[str, Any], str]], str]] = {
    "annotator: object on m2 (another project) through m1": ("annotator", "m1", _object_on("m2", "box2"), HIDDEN),
    "annotator: label for an object of m2 through m1": ("annotator", "m1", _label_on_m2_object, HIDDEN),
    "annotator: cancel a track of m2 through m1": ("annotator", "m1", _cancel_m2_track, HIDDEN),
    "annotator: undo on m2 through m1": ("annotator", "m1", lambda s: ({"type": "undo", "media": "m2"}, "m2"), HIDDEN),
    "project admin: track on m2 through m1": ("project_admin", "m1", _track_on_m2, HIDDEN),
    "viewer: object on m2 through m1": ("viewer", "m1", _object_on("m2", "box2"), HIDDEN),
    "outsider: object on m1 through m2": ("outsider", "m2", _object_on("m1", "box"), HIDDEN),
    "outsider: delete a label of m1 through m2": ("outsider", "m2", _delete_m1_label, HIDDEN),
    # Media of one's own project, through another media item's route: just the wrong route.
    "annotator: object on g1 (same project) through m1": ("annotator", "m1", _object_on("g1", "box"), NO),
    "account admin: object on m2 through m1": ("account_admin", "m1", _object_on("m2", "box2"), NO),
    # Project-level commands never go through a media route, whatever project they name.
    "outsider: class for p1 through m2": ("outsider", "m2", _class_for_p1, NO),
}

CROSS_CASES = [
    pytest.param(name, transport, id=f"{name}-{transport}")
    for name, case in CROSS.items()
    for transport in ("rest", "socket")
]


@pytest.mark.parametrize("name,transport", CROSS_CASES)
async def test_command_about_another_media_item(server, http, name, transport):
    role, media, make, expected = CROSS[name]
    body, placed_by = make(Setup(server, http, role))
    before = head(http["account_admin"])
    outcome, reply = await send(server, http, role, transport, body, media)
    assert outcome == expected, reply
    assert head(http["account_admin"]) == before, "nothing is appended"
    if expected == HIDDEN:
        # The answer is the one for an id that does not exist at all.
        missing = str(uuid.uuid4()) if placed_by.count("-") == 4 else "missing-id"
        twin = json.loads(json.dumps(body).replace(placed_by, missing))
        _, twin_reply = await send(server, http, role, transport, twin, media)
        assert _error(reply) == json.loads(json.dumps(_error(twin_reply)).replace(missing, placed_by))


def _error(reply: dict[str, Any]) -> dict[str, Any]:
    """Code and message of a REST or socket error reply."""
    return {key: value for key, value in reply.get("error", reply).items() if key in ("code", "message")}


# ---- the socket's hello -------------------------------------------------------------------------------


async def hello(live: LiveServer, media: str, token: str) -> tuple[dict[str, Any], int | None]:
    """The first reply to a hello, and the close code when the server then closes."""
    async with websockets.connect(live.ws_url(media)) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        first = json.loads(await ws.recv())
        if first["type"] == "welcome":
            return first, None
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        return first, ws.close_code


def token_of(live: LiveServer, role: str) -> str:
    if role in ("no_token", "bad_token"):
        return "" if role == "no_token" else BAD_TOKEN
    return live.tokens[USER[role]]


# role: the welcome's role, or (error code, close code)
CONNECT_TABLE: dict[str, str | tuple[str, int]] = {
    "account_admin": "admin",
    "project_admin": "admin",
    "annotator": "annotator",
    "viewer": "viewer",
    "outsider": ("unknown_id", 4004),  # as for a media item that does not exist
    "no_token": ("unauthorized", 4001),
    "bad_token": ("unauthorized", 4001),
}

@pytest.mark.parametrize("role", list(CONNECT_TABLE))
async def test_socket_hello(server, role):
    first, closed = await hello(server, "m1", token_of(server, role))
    expected = CONNECT_TABLE[role]
    if isinstance(expected, str):
        assert first["type"] == "welcome" and first["role"] == expected and first["user"] == USER[role]
    else:
        assert (first["type"], first["code"], closed) == ("error", *expected)


async def test_a_non_member_never_gets_into_another_projects_socket(server):
    first, closed = await hello(server, "m1", token_of(server, "outsider"))
    assert first["type"] == "error" and closed in (4003, 4004)
    # ...while its own project's socket lets it in.
    first, closed = await hello(server, "m2", token_of(server, "outsider"))
    assert first["type"] == "welcome" and closed is None


# ---- the rules' own helpers, without a server ---------------------------------------------------


async def test_require_ranks_roles_and_names_the_missing_one(tmp_path):
    from masklog.server.accounts import Role, User
    from masklog.server.authorization import Forbidden, require
    from masklog.server.sqlite_accounts import SQLiteAccounts

    accounts = await SQLiteAccounts.open(tmp_path / "accounts.sqlite3")
    try:
        await accounts.add_user("ann", Role.ANNOTATOR)
        await accounts.set_member("p", "ann", Role.ANNOTATOR)
        ann = User("ann", Role.ANNOTATOR)
        assert require(accounts, ann, "p", Role.VIEWER) == Role.ANNOTATOR
        assert require(accounts, ann, "p", Role.ANNOTATOR) == Role.ANNOTATOR
        with pytest.raises(Forbidden, match="needs the admin role; you are annotator"):
            require(accounts, ann, "p", Role.ADMIN)
        with pytest.raises(Forbidden, match="not a member"):
            require(accounts, ann, "q", Role.VIEWER)
        assert require(accounts, User("root", Role.ADMIN), "q", Role.ADMIN) == Role.ADMIN
    finally:
        await accounts.close()
