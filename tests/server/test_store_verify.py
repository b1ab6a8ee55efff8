"""The log's integrity checks read the whole file, so a server runs them once it serves, not
before (start-up must not grow with the history). A log that fails them is not written any more:
every command is refused saying why, and reads go on."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from masklog.server.sqlite_store import SQLiteEventStore
from masklog.server.store import StoreCorrupted
from scripts.live_server import seeded_server, start_server
from tests.server.rest import bbox, new_object, post_command


async def test_verify_passes_a_sound_log_and_finds_a_gap(tmp_path: Path) -> None:
    from tests.server.events_factory import batch

    store = await SQLiteEventStore.open(tmp_path / "log.sqlite3")
    try:
        await store.append(batch(5))
        await store.verify()
        with pytest.raises(ValueError):
            await store.verify("none")  # type: ignore[arg-type]
        with sqlite3.connect(tmp_path / "log.sqlite3") as conn:
            conn.execute("DELETE FROM events WHERE seq = 2")
        with pytest.raises(StoreCorrupted, match="gaps"):
            await store.verify()
    finally:
        await store.close()


def test_a_server_on_a_damaged_log_serves_reads_and_refuses_every_change(tmp_path: Path) -> None:
    with seeded_server(tmp_path) as live:
        with live.http("alice") as http:
            object_id = new_object(http)
            assert post_command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": bbox(), "source": "manual"}).status_code == 201
        database = live.settings.database
    with sqlite3.connect(database) as conn:
        conn.execute("DELETE FROM events WHERE seq = 3")  # a hole in the positions: a damaged file
    live = start_server(tmp_path / "data")
    try:
        with live.http("alice") as http:
            assert http.get("/api/health").status_code == 200  # it started without reading the whole log
            # Until the check (in the background) has finished, probe with a command that would be
            # refused anyway, so that nothing is written into the damaged file meanwhile.
            deadline = time.monotonic() + 20
            probe = {"type": "label_deleted", "object": "no-such-object", "frame": 0}
            while post_command(http, probe).status_code != 503 and time.monotonic() < deadline:
                time.sleep(0.1)
            answer = post_command(http, {"type": "label_saved", "object": object_id, "frame": 1, "shape": bbox(), "source": "manual"})
            assert answer.status_code == 503, answer.text
            assert "failed its integrity check" in answer.json()["error"]["message"]
            labels = http.get("/api/media/m1/labels").json()["labels"]
            assert [label for label in labels if label["object"] == object_id and label["frame"] == 1] == []
            assert http.get("/api/projects").status_code == 200  # reads go on
    finally:
        live.stop()
