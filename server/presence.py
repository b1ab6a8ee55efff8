"""Who is on which media item, on which frame, where their cursor is. Never logged (presence is
not labelling history); it lives and dies with the sockets."""

from __future__ import annotations

import asyncio
import itertools

from masklog.server.protocol import Here, Presence


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


class PresenceBoard:
    def __init__(self) -> None:
        self._seats: dict[str, dict[int, Seat]] = {}

    def join(self, media: str, user: str, frame: int) -> Seat:
        seat = Seat(media, user, frame)
        self._seats.setdefault(media, {})[seat.id] = seat
        self._broadcast(media)
        return seat

    def move(self, seat: Seat, frame: int, cursor: tuple[float, float] | None) -> None:
        seat.frame, seat.cursor = frame, cursor
        self._broadcast(seat.media)

    def leave(self, seat: Seat) -> None:
        seats = self._seats.get(seat.media, {})
        if seats.pop(seat.id, None) is not None:
            if not seats:
                del self._seats[seat.media]
            self._broadcast(seat.media)

    def roster(self, media: str) -> Presence:
        seats = sorted(self._seats.get(media, {}).values(), key=lambda s: (s.user, s.id))
        return Presence(users=[Here(user=s.user, frame=s.frame, cursor=s.cursor) for s in seats])

    def _broadcast(self, media: str) -> None:
        roster = self.roster(media)
        for seat in self._seats.get(media, {}).values():
            seat.post(roster)
