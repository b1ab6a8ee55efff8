"""The server process killed with SIGKILL in the middle of a track, then started again (C5, T8):
the track is taken up where the log says it was and ends; no frame is logged twice; nothing a
client was sent is lost; and it produces exactly what the same track run without a crash does,
an object lost (with interval 0, so never stopped) on the resume frame included."""

from __future__ import annotations

import collections
import json
import time
import uuid

import httpx
import websockets.sync.client

from masklog.server.accounts import Role
from scripts.live_server import add_project, start_process, upload
from tests.server.tracking_clips import LONG_LEAVING as LONG


def _history(http: httpx.Client, media: str) -> list[dict]:
    events, after = [], 0
    while after is not None:
        page = http.get(f"/api/media/{media}/history", params={"after": after, "limit": 1000}).json()
        events += page["events"]
        after = page["next_after"] if page["events"] else None
    return events


def test_sigkill_mid_track_then_restart(tmp_path):
    data = tmp_path / "data"
    server = start_process(data, {"alice": Role.ADMIN})
    token = server.tokens["alice"]
    http = server.http("alice")
    try:
        add_project(http, "p", name="P", classes={"mask": "bitmask"})
        upload(http, "p", "long", "image_sequence", LONG.write_images(tmp_path / "clip")).raise_for_status()

        seen: list[dict] = []
        track = str(uuid.uuid4())
        with websockets.sync.client.connect(server.ws_url("long"), max_size=None) as ws:
            ws.send(json.dumps({"type": "hello", "token": token, "last_seq": 0}))
            assert json.loads(ws.recv())["type"] == "welcome"
            commands = [
                {"type": "object_created", "object": "disc", "media": "long", "class_id": "mask"},
                {"type": "label_saved", "object": "disc", "frame": 0, "shape": LONG.bitmask(0, 0), "source": "manual"},
                {"type": "object_created", "object": "leaving", "media": "long", "class_id": "mask"},
                {"type": "label_saved", "object": "leaving", "frame": 0, "shape": LONG.bitmask(1, 0), "source": "manual"},
                {"type": "track_requested", "media": "long", "objects": ["disc", "leaving"], "start": 0, "direction": "forward", "range": LONG.frames, "interval": 0},
            ]
            for number, body in enumerate(commands):
                ws.send(json.dumps({"type": "command", "id": track if number == 4 else str(uuid.uuid4()), "body": body}))
            # Killed once the leaving disc is lost: it is lost on the frame the track resumes from.
            while not any(e["body"]["type"] == "track_frame_produced" and e["body"]["object"] == "leaving" and e["body"]["shape"] is None and e["body"]["frame"] >= 20 for e in seen):
                message = json.loads(ws.recv(timeout=30))
                if message["type"] == "events":
                    seen += message["events"]
            server.kill()
        produced_before = [e for e in seen if e["body"]["type"] == "track_frame_produced"]
        assert not any(e["body"]["type"] == "track_completed" for e in seen), "killed mid-track"

        server = start_process(data, port=server.port)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            events = _history(http, "long")
            ends = [e for e in events if e["body"]["type"] in ("track_completed", "track_failed", "track_cancelled")]
            if ends:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the track did not end after the restart")
        [end] = ends
        assert end["body"]["type"] == "track_completed", end
        for object_id in ("disc", "leaving"):
            frames = [e["body"]["frame"] for e in events if e["body"]["type"] == "track_frame_produced" and e["body"]["object"] == object_id]
            duplicates = [frame for frame, count in collections.Counter(frames).items() if count > 1]
            assert not duplicates, f"frames logged twice: {duplicates}"
            assert frames == list(range(1, LONG.frames)), f"{object_id}: resumed after the last produced frame, with no gap"
        ids = {e["id"] for e in events}
        assert all(e["id"] in ids for e in seen if e["stream"] == "media:long"), "every event a client was sent survived the crash"
        assert len(produced_before) < 2 * len(frames)
        assert end["body"]["frames"] == LONG.frames - 1

        # The same request again, with no crash: the same results, frame for frame.
        again = str(uuid.uuid4())
        request = {"type": "track_requested", "media": "long", "objects": ["disc", "leaving"], "start": 0, "direction": "forward", "range": LONG.frames, "interval": 0}
        http.post("/api/media/long/commands", json={"id": again, "body": request}).raise_for_status()
        deadline = time.monotonic() + 120
        while True:
            events = _history(http, "long")
            if any(e["body"]["type"] == "track_completed" and e["body"]["track"] == again for e in events):
                break
            assert time.monotonic() < deadline, "the second track did not end"
            time.sleep(0.2)

        def results(track_id: str) -> dict:
            return {(e["body"]["object"], e["body"]["frame"]): e["body"]["shape"] for e in events if e["body"]["type"] == "track_frame_produced" and e["body"]["track"] == track_id}

        resumed, uninterrupted = results(track), results(again)
        assert sum(shape is None for (o, _), shape in uninterrupted.items() if o == "leaving") > 100, "the disc left the frame"
        assert resumed == uninterrupted, "a crash changes no result"
    finally:
        http.close()
        server.stop()
