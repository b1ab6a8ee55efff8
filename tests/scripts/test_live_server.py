"""scripts/live_server.py: a server in its own process, set up over REST as the benchmarks do;
and one that cannot start says so. (The in-process `start_server` and `seed` run under every
server test.)"""

from __future__ import annotations

import socket

import pytest

from masklog.server.accounts import Role
from scripts.live_server import add_project, start_process, upload, write_video


def test_a_server_process_is_set_up_over_rest_then_stopped(tmp_path):
    server = start_process(tmp_path / "data", {"admin": Role.ADMIN, "ann": Role.ANNOTATOR})
    try:
        with server.http("admin") as admin:
            add_project(admin, "p", name="P", classes={"box": "bbox", "mask": "bitmask"}, members={"ann": "annotator"})
            upload(admin, "p", "v", "video", [write_video(tmp_path / "v.mp4", frames=5)]).raise_for_status()
        with server.http("ann") as ann:
            project = ann.get("/api/projects/p").json()
        assert project["role"] == "annotator"
        assert [(c["class_id"], c["shape"]) for c in project["classes"]] == [("box", "bbox"), ("mask", "bitmask")]
        assert [(m["media"], m["frames"]) for m in project["media"]] == [("v", 5)]
    finally:
        server.stop()
    assert server.process.returncode is not None


def test_a_server_process_that_cannot_start_names_its_log(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="serve.log"):
            start_process(tmp_path / "data", port=taken.getsockname()[1])
