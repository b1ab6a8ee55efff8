"""Issue 14 point 3: the server says which trackers and segmenter it runs (GET /api/capabilities
and the socket's welcome), why the others do not, and which is the default; a request for a
tracker it does not run is refused with a message that says what it offers."""

from __future__ import annotations

import msgspec

from masklog.inference import registry
from masklog.inference.classical.segmenter import ClassicalSegmenter
from masklog.inference.classical.tracker import ClassicalTracker, TrackerConfig
from masklog.inference.registry import Backend, Backends, load_backends
from masklog.server.capabilities import capabilities
from tests.server.live import Client, LiveServer
from tests.server.rest import new_object, save_box


def test_a_classical_server_runs_classical_and_says_why_not_sam2():
    caps = msgspec.to_builtins(capabilities(load_backends("classical")))
    by_name = {t["name"]: t for t in caps["trackers"]}
    assert list(by_name)[:2] == ["classical", "sam2"]  # registry order
    assert by_name["classical"] == {
        "name": "classical", "label": "Classical (optical flow + colour)", "backend": "classical", "available": True,
        "why": None, "model": ClassicalTracker().model,
    }
    sam2 = by_name["sam2"]
    assert (sam2["available"], sam2["model"], sam2["backend"]) == (False, None, "sam2")
    assert "runs the classical backend" in sam2["why"] and "--backend sam2 --sam2-checkpoint PATH" in sam2["why"]
    assert caps["default_tracker"] == "classical"
    assert caps["aliases"] == {"simple": "classical", "advanced": "classical"}
    assert caps["segmenter"] == {"name": "classical", "available": True, "why": None, "model": ClassicalSegmenter().model}
    assert [(s["name"], s["available"]) for s in caps["segmenters"]] == [("classical", True), ("sam2", False)]


def test_the_list_follows_the_registry_and_what_is_loaded(monkeypatch):
    """Generic over BACKENDS: another backend's method is listed (unavailable, with how to have
    it) without any change; a loaded better tracker is available and the default."""
    extra = Backend("extra", "a method registered later", ("interpolation",), lambda options: None)  # type: ignore[arg-type,return-value]
    monkeypatch.setattr(registry, "BACKENDS", {**registry.BACKENDS, "extra": extra})
    caps = capabilities(Backends(ClassicalSegmenter(), {"classical": ClassicalTracker(), "lighter": ClassicalTracker(TrackerConfig(work_side=96))}, advanced="lighter"))
    offered = [(t.name, t.available) for t in caps.trackers]
    assert offered == [("classical", True), ("sam2", False), ("interpolation", False), ("lighter", True)]
    interpolation = next(t for t in caps.trackers if t.name == "interpolation")
    assert interpolation.backend == "extra" and "--backend extra" in (interpolation.why or "")
    assert caps.default_tracker == "lighter" and caps.aliases["advanced"] == "lighter" and caps.aliases["simple"] == "classical"


async def test_rest_and_welcome_say_the_same_and_an_absent_tracker_is_refused(live: LiveServer):
    with live.http("alice") as http:
        response = http.get("/api/capabilities")
        assert response.status_code == 200
        caps = response.json()
        object_id = new_object(http)
        save_box(http, object_id, 0)
        assert http.get("/api/capabilities", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert caps == msgspec.to_builtins(capabilities(load_backends("classical")))
    client = Client(live, "alice")
    welcome = await client.connect()
    try:
        assert welcome["type"] == "welcome" and welcome["capabilities"] == caps
        body = {"type": "track_requested", "media": "m1", "objects": [object_id], "start": 0, "direction": "forward", "range": 3, "algorithm": "sam2"}
        reply = await client.command(body)
        assert reply["type"] == "error" and reply["code"] == "invalid"
        assert reply["message"] == "tracker 'sam2' does not run on this server: it offers advanced, classical, interpolation, simple"
        # The old clients' aliases and the registry name stay accepted.
        for name in ("simple", "advanced", "classical"):
            assert (await client.command({**body, "algorithm": name}))["type"] == "ack"
    finally:
        await client.close()
    with live.http("alice") as http:  # the refused request logged nothing
        events = http.get("/api/media/m1/history", params={"limit": 1000}).json()["events"]
    assert sorted(e["body"]["algorithm"] for e in events if e["body"]["type"] == "track_requested") == ["advanced", "classical", "simple"]
