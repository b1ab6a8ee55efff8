"""Which work an inference actor holds when several share one log (workers, issue 17).

Every actor follows the whole log and so hears of every track and click. Before working a track
it claims `track:<id>`, and before answering a media item's clicks `media:<id>`, through the
work claims of the storage (`server.claims`: a lease row per key, timed by the database's
clock). A claim is a lease: the holder renews it every `lease_s / 3`; a holder that dies stops
renewing and, `lease_s` later, another actor takes the key and resumes the track from its last
produced frame (the log has it). An actor that finds one of its leases lost (it was too slow to
renew, and another took over) stops that work at once; anything it still writes is harmless,
since result ids are derived from what they answer and a frame is logged once.

Holding `media:<id>` is the clicks' affinity: the actor that answered a media item's last click
has its frames (and a model's image embeddings) at hand, so the next click goes to it while it
lives; a media item with no click for `media_idle_s` is let go.

`fair_order` is the queue: running tracks, requesters taken in turn (each one's tracks in the
order requested), so nobody's twenty tracks hold up another's one. Actors claim in that order,
each up to `max_tracks` at once, and the server shows a waiting track's place in it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol


class Claims(Protocol):
    """The work claims of the storage (`server.claims.WorkClaims`), as an actor uses them."""

    async def claim(self, key: str, holder: str, lease_s: float) -> bool: ...

    async def renew(self, holder: str, keys: Collection[str], lease_s: float) -> set[str]: ...

    async def release(self, holder: str, keys: Collection[str]) -> None: ...


@dataclass(frozen=True)
class ClaimPolicy:
    holder: str  # this actor, to the others (unique per process)
    lease_s: float = 10.0
    max_tracks: int = 4  # tracks worked at once; the others wait for a free actor
    media_idle_s: float = 60.0

    @property
    def renew_every_s(self) -> float:
        return self.lease_s / 3


def track_key(track: str) -> str:
    return f"track:{track}"


def media_key(media: str) -> str:
    return f"media:{media}"


def fair_order(running: Mapping[str, tuple[str, str]]) -> list[str]:
    """Running tracks ({track: (media, requester)}, in the order requested) as the queue serves
    them: one of each requester's in turn, requesters in the order they first asked."""
    by_requester: OrderedDict[str, list[str]] = OrderedDict()
    for track, (_, requester) in running.items():
        by_requester.setdefault(requester, []).append(track)
    order: list[str] = []
    depth = 0
    while len(order) < len(running):
        for tracks in by_requester.values():
            if depth < len(tracks):
                order.append(tracks[depth])
        depth += 1
    return order


@dataclass
class ClaimKeeper:
    """The keys one actor holds, and the calls that take, renew and let them go."""

    claims: Claims
    policy: ClaimPolicy
    tracks: set[str] = field(default_factory=set)
    media: dict[str, float] = field(default_factory=dict)  # media -> when its last click came
    # Media items another actor holds: not asked again before this time (on `clock`).
    _media_denied: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    async def take_track(self, track: str) -> bool:
        if track in self.tracks:
            return True
        if await self.claims.claim(track_key(track), self.policy.holder, self.policy.lease_s):
            self.tracks.add(track)
            return True
        return False

    async def take_media(self, media: str) -> bool:
        now = self.clock()
        if media in self.media:
            self.media[media] = now
            return True
        if self._media_denied.get(media, 0.0) > now:
            return False
        if await self.claims.claim(media_key(media), self.policy.holder, self.policy.lease_s):
            self.media[media] = now
            self._media_denied.pop(media, None)
            return True
        self._media_denied[media] = now + self.policy.renew_every_s
        return False

    async def drop_track(self, track: str) -> None:
        if track in self.tracks:
            self.tracks.discard(track)
            await self.claims.release(self.policy.holder, [track_key(track)])

    async def renew(self) -> tuple[set[str], set[str]]:
        """Renew every lease; returns the tracks and media items lost (taken by another)."""
        keys = [track_key(t) for t in self.tracks] + [media_key(m) for m in self.media]
        if not keys:
            return set(), set()
        kept = await self.claims.renew(self.policy.holder, keys, self.policy.lease_s)
        lost_tracks = {t for t in self.tracks if track_key(t) not in kept}
        lost_media = {m for m in self.media if media_key(m) not in kept}
        self.tracks -= lost_tracks
        for media in lost_media:
            del self.media[media]
        return lost_tracks, lost_media

    async def drop_idle_media(self) -> None:
        deadline = self.clock() - self.policy.media_idle_s
        idle = [m for m, used in self.media.items() if used < deadline]
        for media in idle:
            del self.media[media]
        if idle:
            await self.claims.release(self.policy.holder, [media_key(m) for m in idle])

    async def release_all(self) -> None:
        keys = [track_key(t) for t in self.tracks] + [media_key(m) for m in self.media]
        self.tracks.clear()
        self.media.clear()
        if keys:
            await self.claims.release(self.policy.holder, keys)
