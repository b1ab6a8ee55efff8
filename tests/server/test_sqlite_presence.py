"""Presence between processes on one SQLite log (`server.sqlite_presence`): boards on one
`work.sqlite3` (as the server and the workers of `serve --workers` open it) hear each other's
seats, moves and departures; one opened later hears the seats present, not those gone; and the
watchers (the model side) hear the frames."""

from __future__ import annotations

import asyncio
from pathlib import Path

from masklog.server.presence import PresenceBoard
from masklog.server.sqlite_presence import SQLitePresenceRelay


async def until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def frames_seen(board: PresenceBoard, media: str) -> list[int]:
    return [here.frame for here in board.roster(media).users]


async def test_boards_on_one_file_hear_each_other(tmp_path: Path) -> None:
    path = tmp_path / "work.sqlite3"
    server, worker = PresenceBoard(), PresenceBoard()
    heard: list[tuple[str, int]] = []
    worker.watch(lambda media, frame: heard.append((media, frame)))
    relays = [await SQLitePresenceRelay.open(path, server), await SQLitePresenceRelay.open(path, worker)]
    try:
        seat = server.join("m1", "alice", 3)
        gone = server.join("m2", "bob", 0)
        await until(lambda: frames_seen(worker, "m1") == [3] and frames_seen(worker, "m2") == [0])
        server.move(seat, 7, (1.0, 2.0))
        server.move(seat, 7, (5.0, 2.0))  # the cursor only: no frame for the watchers
        await until(lambda: worker.roster("m1").users[0].cursor == (5.0, 2.0))
        assert heard == [("m1", 3), ("m2", 0), ("m1", 7)]
        server.leave(gone)
        await until(lambda: frames_seen(worker, "m2") == [])

        later = PresenceBoard()  # a worker started now: the seats there are, not those gone
        relays.append(await SQLitePresenceRelay.open(path, later))
        assert frames_seen(later, "m1") == [7] and frames_seen(later, "m2") == []
        server.leave(seat)
        await until(lambda: frames_seen(later, "m1") == [] and frames_seen(worker, "m1") == [])
    finally:
        for relay in relays:
            await relay.close()
