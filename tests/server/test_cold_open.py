"""A cold open of a windowed client (issue 15): a media item nobody has used since the server
started is greeted from the log — its snapshot's parts for the window and its stream after them —
rather than after loading its whole state. The answer is the one a warm open gives, events
committed while it is built arrive once and in order, and the client's commands work at once (the
state loads in the background). Real server, real sockets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from masklog.server import ws
from masklog.server.replay import replay_media
from scripts.live_server import start_server
from tests.server.live import Client, seeded_server
from tests.server.test_label_window import assert_window_matches, label_m1


def seed_labels(data_root: Path) -> None:
    """`label_m1`'s labels, then the server stops (writing its snapshots at shutdown)."""
    with seeded_server(data_root, snapshot_every=7) as server:
        label_m1(server)


def labels_of(client: Client, window: tuple[int, int]) -> dict[tuple[str, int], Any]:
    """The labels of the window's frames a client holds: its snapshot, then its events applied."""
    assert client.snapshot is not None
    cells = {(e["object"], e["frame"]): e["label"]["shape"] for e in client.snapshot["labels"]}
    for event in client.events:
        body = event["body"]
        if body["type"] == "label_saved" and window[0] <= body["frame"] <= window[1]:
            cells[(body["object"], body["frame"])] = body["shape"]
    return cells


def greeted_from_the_log(caplog: pytest.LogCaptureFixture) -> int:
    return sum("from the log" in record.getMessage() for record in caplog.records if record.name == "masklog.ws")


async def test_a_cold_windowed_open_is_a_warm_one_and_misses_nothing_committed_meanwhile(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="masklog.ws")
    seed_labels(tmp_path)

    async def slow_replay(*args: Any, **kwargs: Any) -> Any:
        # The greeting is built from the log while another user commits: 0.5 s for bob's writes.
        state = await replay_media(*args, **kwargs)
        await asyncio.sleep(0.5)
        return state

    monkeypatch.setattr(ws, "replay_media", slow_replay)
    server = start_server(tmp_path / "data", snapshot_every=7)
    try:
        window = (5, 9)
        reader = Client(server, "alice")
        opening = asyncio.create_task(reader.connect(window=window))
        await asyncio.sleep(0.1)  # alice's hello is in: her greeting is being built from the log
        writer = Client(server, "bob")
        await writer.connect()
        assert writer.snapshot is not None
        walker = next(oid for oid, info in writer.snapshot["objects"].items() if info["created_by"] == "user:alice")
        written = []
        for i in range(12):
            shape = {"type": "bbox", "x": 30 + i, "y": 1, "w": 2, "h": 2}
            reply = await writer.command({"type": "label_saved", "object": walker, "frame": 5 + i % 5, "shape": shape, "source": "manual"})
            assert reply["type"] == "ack", reply
            written.append(reply["seq"])
        await opening
        assert greeted_from_the_log(caplog) == 1, "alice's open was cold"
        assert reader.snapshot is not None and reader.snapshot["seq"] < written[0], "her snapshot is from before bob's writes"

        # Her first command works at once (her state loads behind the greeting).
        reply = await reader.command({"type": "label_saved", "object": walker, "frame": 9, "shape": {"type": "bbox", "x": 7, "y": 7, "w": 2, "h": 2}, "source": "manual"})
        assert reply["type"] == "ack", reply
        await reader.wait_for(lambda: reader.last_seq == reply["seq"])
        seqs = [event["seq"] for event in reader.events]
        assert seqs == sorted(set(seqs)), "each event once, in order"
        assert set(written) <= set(seqs), "bob's writes during her greeting reached her"

        # What she holds equals a full answer now, and a windowed open is now warm and the same.
        full = Client(server, "alice")
        await full.connect()
        assert full.snapshot is not None and full.snapshot["seq"] == reply["seq"]
        expected = {(e["object"], e["frame"]): e["label"]["shape"] for e in full.snapshot["labels"] if window[0] <= e["frame"] <= window[1]}
        assert labels_of(reader, window) == expected
        again = Client(server, "alice")
        await again.connect(window=window)
        assert greeted_from_the_log(caplog) == 1, "loaded now: greeted from its state"
        assert again.snapshot is not None
        assert_window_matches(again.snapshot, full.snapshot, *window)
        for client in (writer, reader, full, again):
            await client.close()
    finally:
        server.stop()


async def test_a_cold_windowed_snapshot_equals_the_warm_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="masklog.ws")
    seed_labels(tmp_path)
    server = start_server(tmp_path / "data", snapshot_every=7)
    try:
        cold = Client(server, "alice")
        await cold.connect(window=(0, 9))
        assert greeted_from_the_log(caplog) == 1
        warm = Client(server, "alice")
        await warm.connect()
        assert cold.snapshot is not None and warm.snapshot is not None
        assert cold.snapshot["seq"] == warm.snapshot["seq"]
        assert_window_matches(cold.snapshot, warm.snapshot, 0, 9)
        await cold.close()
        await warm.close()
    finally:
        server.stop()
