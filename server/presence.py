"""Who is on which media item, on which frame, where their cursor is. Never logged (presence is
not labelling history); it lives and dies with the sockets.

With several server processes (`Settings.follows_log`), each process's board tells the others
about its seats through a `PresenceRelay` (PostgreSQL notifications: server.postgres_presence;
a polled table beside SQLite's claims: server.sqlite_presence) and shows theirs in its rosters. A process re-announces its seats every REFRESH_S; a seat
another process has not announced for EXPIRE_S is dropped (that process died or lost its
connection), so a killed server's users leave the rosters within EXPIRE_S.

Whoever runs the models watches the board (`watch`): the frames users open and move to, here
and in other processes, are the ones worth embedding ahead of their clicks (issue 19). A
`masklog worker` keeps a board of its own with no seats, only to hear the servers'.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import msgspec

from masklog.server.protocol import Here, Presence

REFRESH_S = 5.0
EXPIRE_S = 3 * REFRESH_S


class SeatChange(msgspec.Struct, array_like=True, frozen=True):
    """One seat as its process last saw it (`left`: the socket closed). What a relay carries."""

    origin: str  # the board (process) the seat is on
    seat: int
    media: str
    user: str
    frame: int
    cursor: tuple[float, float] | None = None
    left: bool = False


class PresenceRelay(Protocol):
    """Carries seat changes between the boards of several processes."""

    def send(self, change: SeatChange) -> None:
        """Queue a change for the other processes; never waits, never raises."""
        ...

    async def close(self) -> None: ...


class Outbox:
    """A relay's seat changes not yet sent: the latest per (seat, media item), in the order made
    (a change made again before it went out is sent once, as it is now)."""

    def __init__(self) -> None:
        self._changes: dict[tuple[int, str], SeatChange] = {}
        self.wake = asyncio.Event()  # set when a change comes in

    def __bool__(self) -> bool:
        return bool(self._changes)

    def put(self, change: SeatChange) -> None:
        key = (change.seat, change.media)
        self._changes.pop(key, None)  # re-queued at the end: changes go out in the order made
        self._changes[key] = change
        self.wake.set()

    def take(self) -> list[SeatChange]:
        changes = list(self._changes.values())
        self._changes.clear()
        return changes

    def put_back(self, changes: list[SeatChange]) -> None:
        """Changes that failed to go out, unless a newer one of the same seat came meanwhile."""
        for change in changes:
            self._changes.setdefault((change.seat, change.media), change)


class Seat:
    """One socket's place on a media item, and its mailbox for roster changes. The mailbox keeps
    only the latest roster: an old one is worth nothing once a newer exists."""

    _ids = itertools.count()

    def __init__(self, media: str, user: str, frame: int) -> None:
        self.id = next(self._ids)
        self.media = media
        self.user = user
        self.frame = frame
        self.cursor: tuple[float, float] | None = None
        self._latest: Presence | None = None
        self._wake = asyncio.Event()

    def post(self, roster: Presence) -> None:
        self._latest = roster
        self._wake.set()

    async def next_roster(self) -> Presence:
        while self._latest is None:
            self._wake.clear()
            await self._wake.wait()
        roster, self._latest = self._latest, None
        return roster


class _Remote(msgspec.Struct):
    change: SeatChange
    heard_at: float


class PresenceBoard:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.origin = uuid.uuid4().hex  # this process, to the others
        self._seats: dict[str, dict[int, Seat]] = {}
        # Other processes' seats: {media: {(origin, seat): what was last heard}}.
        self._remote: dict[str, dict[tuple[str, int], _Remote]] = {}
        self._relay: PresenceRelay | None = None
        self._clock = clock
        self._watchers: list[Callable[[str, int], None]] = []

    def watch(self, callback: Callable[[str, int], None]) -> None:
        """Call `callback(media, frame)` when a seat, here or in another process, opens on a
        frame or moves to another one (not for cursor moves). It must be quick and not raise."""
        self._watchers.append(callback)

    def _on_frame(self, media: str, frame: int) -> None:
        for callback in self._watchers:
            callback(media, frame)

    def connect(self, relay: PresenceRelay) -> None:
        """Share seats with other processes through `relay` (and announce the current ones)."""
        self._relay = relay
        self.announce_all()

    def join(self, media: str, user: str, frame: int) -> Seat:
        seat = Seat(media, user, frame)
        self._seats.setdefault(media, {})[seat.id] = seat
        self._changed(seat)
        self._on_frame(media, frame)
        return seat

    def move(self, seat: Seat, frame: int, cursor: tuple[float, float] | None) -> None:
        moved = frame != seat.frame
        seat.frame, seat.cursor = frame, cursor
        self._changed(seat)
        if moved:
            self._on_frame(seat.media, frame)

    def leave(self, seat: Seat) -> None:
        seats = self._seats.get(seat.media, {})
        if seats.pop(seat.id, None) is not None:
            if not seats:
                del self._seats[seat.media]
            self._changed(seat, left=True)

    def roster(self, media: str) -> Presence:
        here = [(s.user, self.origin, s.id, Here(user=s.user, frame=s.frame, cursor=s.cursor)) for s in self._seats.get(media, {}).values()]
        for (origin, seat), remote in self._remote.get(media, {}).items():
            change = remote.change
            here.append((change.user, origin, seat, Here(user=change.user, frame=change.frame, cursor=change.cursor)))
        here.sort(key=lambda entry: entry[:3])
        return Presence(users=[entry[3] for entry in here])

    # ---- other processes' seats ----------------------------------------------------------------

    def heard(self, change: SeatChange) -> None:
        """A change another process announced (the relay calls this; own ones are ignored)."""
        if change.origin == self.origin:
            return
        key = (change.origin, change.seat)
        seats = self._remote.setdefault(change.media, {})
        if change.left:
            if seats.pop(key, None) is None:
                return
            if not seats:
                del self._remote[change.media]
        else:
            before = seats.get(key)
            seats[key] = _Remote(change, self._clock())
            if before is not None and before.change == change:
                return  # a refresh: nothing to show
            if before is None or before.change.frame != change.frame:
                self._on_frame(change.media, change.frame)
        self._broadcast(change.media)

    def announce_all(self) -> None:
        """Tell the other processes about every seat here again (every REFRESH_S, and after the
        relay reconnects), so theirs do not expire."""
        if self._relay is None:
            return
        for seats in self._seats.values():
            for seat in seats.values():
                self._relay.send(self._change_of(seat))

    def expire(self) -> None:
        """Drop other processes' seats not heard of for EXPIRE_S."""
        deadline = self._clock() - EXPIRE_S
        for media in list(self._remote):
            seats = self._remote[media]
            stale = [key for key, remote in seats.items() if remote.heard_at < deadline]
            if not stale:
                continue
            for key in stale:
                del seats[key]
            if not seats:
                del self._remote[media]
            self._broadcast(media)

    async def keep_fresh(self) -> None:
        """Re-announce and expire, every REFRESH_S, until cancelled (with a relay only)."""
        while True:
            await asyncio.sleep(REFRESH_S)
            self.announce_all()
            self.expire()

    # ---- this process's seats ----------------------------------------------------------------

    def _change_of(self, seat: Seat, left: bool = False) -> SeatChange:
        return SeatChange(self.origin, seat.id, seat.media, seat.user, seat.frame, seat.cursor, left)

    def _changed(self, seat: Seat, left: bool = False) -> None:
        self._broadcast(seat.media)
        if self._relay is not None:
            self._relay.send(self._change_of(seat, left))

    def _broadcast(self, media: str) -> None:
        roster = self.roster(media)
        for seat in self._seats.get(media, {}).values():
            seat.post(roster)
