"""Offline work in the page (issue 14, point 9): commands made while the socket is down wait,
are counted in the connection pill, survive a reload of the tab, and land once each when the
server answers again; a running track's progress says it is stale meanwhile.

The page's socket is put behind a switch with Playwright's WebSocket routing: while the gate is
up a new socket is connected to the real server (messages pass through the test), while it is
down a new socket is closed at once, as a server that cannot be reached. The frames still come
over HTTP, so the page stays usable.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from tests.server.rest import command
from tests.web.test_page import drag_image

WS = re.compile(r".*/api/media/[^/]+/ws$")


class Gate:
    """The page's media socket behind a switch (see the module's docstring)."""

    def __init__(self, page: Any) -> None:
        self.up = True
        self.cut_after_event: Callable[[dict[str, Any]], bool] | None = None  # drop the line right after such an event
        self.cut_after_command: Callable[[dict[str, Any]], bool] | None = None  # ... right after sending such a command
        self.sent: list[dict[str, Any]] = []  # every command the page sent to the server, retries included
        self.cuts = 0
        page.route_web_socket(WS, self._route)

    def _route(self, ws: Any) -> None:
        if not self.up:
            ws.close(code=4000, reason="the test's network is down")
            return
        server = ws.connect_to_server()
        line = {"cut": False}

        def to_server(message: str | bytes) -> None:
            if line["cut"]:
                return  # lost with the line
            server.send(message)
            data = json.loads(message)
            if data.get("type") == "command":
                self.sent.append(data)
                if self.cut_after_command and self.cut_after_command(data):
                    self.cut_after_command = None
                    line["cut"] = True
                    self.cut(ws, server)

        def to_page(message: str | bytes) -> None:
            if line["cut"]:
                return
            data = json.loads(message)
            cut = False
            if data.get("type") == "events" and self.cut_after_event:
                for i, event in enumerate(data["events"]):
                    if self.cut_after_event(event):
                        # The line drops right after this event: what followed it is not delivered.
                        data["events"] = data["events"][: i + 1]
                        message, cut = json.dumps(data), True
                        self.cut_after_event = None
                        break
            ws.send(message)
            if cut:
                line["cut"] = True
                self.cut(ws, server)

        ws.on_message(to_server)
        server.on_message(to_page)

    def cut(self, ws: Any, server: Any) -> None:
        self.up = False
        self.cuts += 1
        ws.close(code=4000, reason="the test's network is down")
        server.close()

    def wait_cut(self, page: Any, cuts: int = 1) -> None:
        """Wait until the line was cut `cuts` times in all (the routing runs while Playwright waits)."""
        for _ in range(600):
            if self.cuts >= cuts:
                return
            page.wait_for_timeout(50)
        raise AssertionError("the line was never cut")

    def down(self, page: Any) -> None:
        """Take the socket away now (the page's open socket is closed and cannot come back)."""
        self.up = False
        page.evaluate("masklog.connection.ws && masklog.connection.ws.close()")
        page.wait_for_function("masklog.connection.status !== 'open'")


def pill(page: Any) -> str:
    return str(page.inner_text("[data-testid=connection]"))


def wait_pill(page: Any, text: str, timeout: int = 20_000) -> None:
    page.wait_for_function(f"document.querySelector('[data-testid=connection]').innerText === {json.dumps(text)}", timeout=timeout)


def history_of(http: Any, media: str = "clip") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = http.get(f"/api/media/{media}/history", params={"after": after, "limit": 1000}).json()
        events.extend(page["events"])
        if page["next_after"] is None:
            return events
        after = page["next_after"]


def labelled_frames(http: Any, object_id: str, media: str = "clip") -> list[int]:
    labels = http.get(f"/api/media/{media}/labels").json()["labels"]
    return sorted(entry["frame"] for entry in labels if entry["object"] == object_id)


def new_box_object(site: Any, user: str = "alice") -> str:
    object_id = f"off-{uuid.uuid4().hex[:6]}"
    with site.http(user) as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "box"}, "clip")
    return object_id


def draw_boxes_on(page: Any, object_id: str, frames: list[int]) -> None:
    """With `object_id` selected and its class active, draw a box on each frame (the object gets it)."""
    page.evaluate(f"masklog.select(['{object_id}'])")
    page.click("[data-testid=class-box]")
    page.wait_for_function("masklog.state.tool === 'draw' && masklog.state.activeClass === 'box'")
    for i, frame in enumerate(frames):
        page.evaluate(f"masklog.goto({frame})")
        page.wait_for_function(f"masklog.state.frame === {frame}")
        drag_image(page, (60 + 20 * i, 60), (140 + 20 * i, 130))


def test_edits_made_offline_wait_are_counted_and_land_once_each(open_page, site, shot):
    alice, bob = open_page("alice"), open_page("bob")
    object_id = new_box_object(site)
    alice.wait_for_function(f"masklog.model.objects.has('{object_id}')")
    gate = Gate(alice)
    with site.http("alice") as http:
        before = http.get("/api/media/clip/labels").json()["seq"]

    gate.down(alice)
    draw_boxes_on(alice, object_id, [1, 2, 3])
    wait_pill(alice, "offline · 3 waiting")
    assert alice.get_attribute("[data-testid=connection]", "data-state") == "offline"
    assert alice.evaluate("masklog.connection.waitingCount()") == 3
    # The page shows the work it holds: this frame's waiting box, dashed and marked.
    waiting = alice.evaluate(f"masklog.shown().filter(i => i.id === '{object_id}').map(i => ({{dashed: i.dashed, text: i.text, type: i.shape.type}}))")
    assert waiting == [{"dashed": True, "text": f"{object_id} · waiting", "type": "bbox"}]
    shot(alice, "p9-offline-queue")
    with site.http("alice") as http:
        assert labelled_frames(http, object_id) == [], "nothing reached the server while it was down"

    # The line comes back, and drops again right after the first resent command went out (before
    # its answer reached the page): the page sends all three again on the next welcome.
    gate.cut_after_command = lambda c: c["body"].get("object") == object_id
    gate.up = True
    gate.wait_cut(alice)
    assert alice.evaluate("masklog.connection.waitingCount()") == 3, "no answer reached the page before the drop"
    gate.up = True
    wait_pill(alice, "connected")
    alice.wait_for_function("masklog.connection.waitingCount() === 0", timeout=20_000)
    for frame in (1, 2, 3):
        alice.wait_for_function(f"masklog.model.label('{object_id}', {frame}) !== null", timeout=20_000)
        bob.wait_for_function(f"masklog.model.label('{object_id}', {frame}) !== null", timeout=20_000)

    with site.http("bob") as http:
        assert labelled_frames(http, object_id) == [1, 2, 3]
        saved = [e for e in history_of(http) if e["seq"] > before and e["body"]["type"] == "label_saved" and e["body"]["object"] == object_id]
    assert len(saved) == 3, saved
    assert len({e["id"] for e in saved}) == 3
    assert sorted(e["body"]["frame"] for e in saved) == [1, 2, 3]
    assert all(e["actor"] == "user:alice" for e in saved)
    # The first command really went out twice (once before the drop, once after): the log has it once.
    retried = [c for c in gate.sent if c["body"].get("object") == object_id]
    assert len(retried) > len({c["id"] for c in retried}), "the test's drop did not make the page send a command again"
    assert {c["id"] for c in retried} == {e["id"] for e in saved}


def test_a_reload_while_offline_keeps_the_waiting_commands(open_page, site):
    alice = open_page("alice")
    object_id = new_box_object(site)
    alice.wait_for_function(f"masklog.model.objects.has('{object_id}')")
    gate = Gate(alice)
    gate.down(alice)
    draw_boxes_on(alice, object_id, [5])
    wait_pill(alice, "offline · 1 waiting")

    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.type)
        dialog.accept()

    alice.on("dialog", on_dialog)
    alice.reload()
    alice.wait_for_function("window.masklog && masklog.connection", timeout=20_000)
    # The reload asked first (closing the tab would lose the commands); the page came back with them.
    assert dialogs == ["beforeunload"]
    wait_pill(alice, "offline · 1 waiting")
    with site.http("alice") as http:
        assert labelled_frames(http, object_id) == []
    gate.up = True
    wait_pill(alice, "connected")
    alice.wait_for_function(f"masklog.model.label('{object_id}', 5) !== null", timeout=20_000)
    alice.wait_for_function("masklog.connection.waitingCount() === 0")
    assert alice.evaluate("sessionStorage.getItem('masklog.outbox:clip')") is None
    with site.http("alice") as http:
        saved = [e for e in history_of(http) if e["body"]["type"] == "label_saved" and e["body"]["object"] == object_id]
    assert [e["body"]["frame"] for e in saved] == [5]


def test_a_running_tracks_progress_is_stale_while_the_socket_is_down(open_page, site, shot):
    alice = open_page("alice")
    object_id = f"stale-{uuid.uuid4().hex[:6]}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "box"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": {"type": "bbox", "x": 120, "y": 140, "w": 80, "h": 80}, "source": "manual"}, "clip")
    alice.wait_for_function(f"masklog.model.label('{object_id}', 0) !== null")
    gate = Gate(alice)
    gate.down(alice)  # the next socket goes through the gate
    gate.up = True
    wait_pill(alice, "connected")
    # The line drops right after the track's first produced frame reaches the page.
    gate.cut_after_event = lambda e: e["body"]["type"] == "track_frame_produced" and e["body"]["object"] == object_id
    alice.evaluate(f"masklog.select(['{object_id}'])")
    alice.keyboard.press("Shift+T")
    gate.wait_cut(alice)
    alice.wait_for_function("masklog.connection.status !== 'open'")
    track = alice.evaluate(f"[...masklog.model.tracks.values()].find(t => t.request.objects.includes('{object_id}')).id")
    row = f"[data-testid='track-{track}']"
    assert alice.evaluate(f"masklog.model.tracks.get('{track}').status") == "running"
    alice.wait_for_selector(f"{row}.stale")
    status = alice.inner_text(f"{row} [data-testid=track-status]")
    assert status.startswith("stale"), status
    shot(alice, "p9-stale-progress")

    gate.up = True
    wait_pill(alice, "connected")
    alice.wait_for_function(f"masklog.model.tracks.get('{track}').status === 'completed'", timeout=30_000)
    alice.wait_for_function(f"!document.querySelector(\"{row}\").classList.contains('stale')")
    assert not alice.inner_text(f"{row} [data-testid=track-status]").startswith("stale")


def test_a_waiting_command_the_server_refuses_is_shown_like_any_refusal(open_page, site):
    alice = open_page("alice")
    gone, kept = new_box_object(site), new_box_object(site)
    alice.wait_for_function(f"masklog.model.objects.has('{gone}') && masklog.model.objects.has('{kept}')")
    gate = Gate(alice)
    gate.down(alice)
    draw_boxes_on(alice, gone, [6])
    draw_boxes_on(alice, kept, [7])
    wait_pill(alice, "offline · 2 waiting")
    with site.http("bob") as http:  # meanwhile bob deletes the first object
        command(http, {"type": "object_deleted", "object": gone}, "clip")
    gate.up = True
    wait_pill(alice, "connected")
    alice.wait_for_function("masklog.connection.waitingCount() === 0", timeout=20_000)
    toast = alice.wait_for_selector("[data-testid=toast]:has-text('unknown_id')", timeout=20_000)
    assert gone in toast.inner_text()
    alice.wait_for_function(f"masklog.model.label('{kept}', 7) !== null", timeout=20_000)
    with site.http("alice") as http:
        assert labelled_frames(http, gone) == [] and labelled_frames(http, kept) == [7]
