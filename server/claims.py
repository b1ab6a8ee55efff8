"""Work claims with leases, and the registry of live workers (issue 17): what `masklog worker`
processes share OUTSIDE the event log, in the same storage as the log.

**Claims.** A unit of work (a track, a media item's prompts) has a key; one holder (a worker id)
holds it at a time, until its lease runs out. A holder renews its leases while it works; a worker
killed with SIGKILL stops renewing, so its claims expire and another worker can take the keys.
Releasing (or `retire`, on a clean shutdown) hands them back at once. Claims are a lease row per
key, not a database session lock, so a claim outlives a connection blip and the SQLite and
PostgreSQL backends keep one contract.

**Workers.** A worker announces what it can serve and its load (`WorkerInfo`) with a lease and
re-announces before it runs out; `workers()` lists the live ones. A worker's id is also the
holder id of its claims, so `retire` drops its row and releases its claims together.

**Time** is the storage's clock (PostgreSQL `clock_timestamp()`, SQLite's `julianday('now')`,
the in-memory backend's monotonic clock), never the caller's: workers on several hosts whose
clocks disagree still agree on who holds what. Leases are short (seconds), so the lease a caller
asks for is what it gets, counted from when the storage runs the statement.

**Clean-up.** Released keys and retired workers are deleted. A row whose lease ran out stays
until another holder takes the key, or until it has been expired for `FORGET_AFTER_S`; then
the next `announce` (any worker's) deletes it. Until then its old holder can still `renew` it
(nobody took it); after that a renew reports the key lost.

Backends: `MemoryClaims` here (one process: the embedded server), `server/sqlite_claims.py`
(`work.sqlite3` beside the log; several processes of one machine), `server/postgres_claims.py`
(tables in the log's database; a cluster). `server/storage.py` opens the one a setting names.
Every backend passes `tests/server/claims_contract.py`.

Limits (ValueError, nothing changed, when exceeded): keys and holder / worker ids are non-empty
strings of at most `MAX_KEY_LENGTH` characters, without NUL (PostgreSQL cannot store it); one
call takes at most `MAX_KEYS` keys; a lease is more than 0 and at most `MAX_LEASE_S` seconds; a
worker's announcement encodes to at most `MAX_WORKER_INFO_BYTES` of JSON.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

import msgspec

MAX_KEY_LENGTH = 200
MAX_KEYS = 10_000
MAX_LEASE_S = 3600.0
MAX_WORKER_INFO_BYTES = 64 * 1024
# How long an expired claim or worker row is kept (so its holder can still renew it) before an
# announce deletes it.
FORGET_AFTER_S = 3600.0


class WorkerInfo(msgspec.Struct, frozen=True):
    """What a worker announces (stored as JSON)."""

    id: str  # unique per worker process, e.g. f"{host}:{pid}:{random}"; the holder id of its claims
    host: str
    pid: int
    backend: str  # "classical" | "sam2"
    trackers: list[str]  # registry names it can run (e.g. ["classical", "simple", "advanced", "interpolation"])
    segmenter: str | None  # the click segmenter it runs, None if it answers no clicks
    device: str | None
    tracks: int = 0  # load: tracks it works now
    clicks: int = 0  # load: clicks waiting
    started_at: float = 0.0
    resumed: list[str] = []  # running tracks it took over after another worker's lease ran out
    # Its segmenter's image embeddings (`protocols.EmbeddingStats` as numbers: computed, warmed
    # ahead of a click, cached, bytes, budget_bytes, wanted); {} for a segmenter without them.
    embeddings: dict[str, int] = {}


class Claim(msgspec.Struct, frozen=True):
    key: str
    holder: str
    expires_in_s: float  # from the storage's clock, at the time of reading


class ClaimsError(Exception):
    """The claims storage could not do what was asked."""


class ClaimsUnavailable(ClaimsError):
    """The storage did not answer or failed (a database server gone, a file locked too long)."""


class ClaimsClosed(ClaimsError):
    """The claims store was closed."""


class WorkClaims(Protocol):
    async def claim(self, key: str, holder: str, lease_s: float) -> bool:
        """Hold `key` for `holder` for lease_s seconds from now: granted when nobody holds it, its
        lease ran out, or `holder` holds it already (then renewed). One atomic statement; True
        when holder holds it now."""
        ...

    async def renew(self, holder: str, keys: Collection[str], lease_s: float) -> set[str]:
        """Extend holder's leases; returns the keys it still held (a key whose lease ran out and
        that another holder took is lost, not returned; one that ran out but nobody took is
        renewed). Keys it never held are not returned either."""
        ...

    async def release(self, holder: str, keys: Collection[str]) -> None:
        """Give up those of `keys` that `holder` holds (others' claims are left alone)."""
        ...

    async def holders(self, keys: Collection[str] | None = None) -> dict[str, Claim]:
        """The live claims on `keys` (None: all), by key."""
        ...

    async def announce(self, worker: WorkerInfo, lease_s: float) -> None:
        """Add or replace the worker's row; it is live until lease_s seconds from now."""
        ...

    async def workers(self) -> list[WorkerInfo]:
        """The live workers, the longest announced first."""
        ...

    async def retire(self, worker_id: str) -> None:
        """A clean shutdown: drop the worker's row and release all its claims."""
        ...

    async def close(self) -> None:
        """Idempotent; afterwards every call raises ClaimsClosed."""
        ...


# -- checks every backend runs before touching its storage -----------------------------------


def check_key(value: object, what: str = "key") -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_LENGTH:
        raise ValueError(f"a claim's {what} must be a non-empty string of at most {MAX_KEY_LENGTH} characters, not {_show(value)}")
    if "\x00" in value:
        raise ValueError(f"a claim's {what} must not contain NUL")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"a claim's {what} must be valid Unicode (no lone surrogates)") from None
    return value


def check_keys(keys: object) -> list[str]:
    """The distinct keys of a collection, in their first order. A single string is refused: it
    is a collection of characters, never what a caller means."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Collection):
        raise ValueError(f"keys must be a collection of strings, not {_show(keys)}")
    if len(keys) > MAX_KEYS:
        raise ValueError(f"at most {MAX_KEYS} keys in one call, not {len(keys)}")
    return list(dict.fromkeys(check_key(key) for key in keys))


def check_lease(lease_s: object) -> float:
    if isinstance(lease_s, bool) or not isinstance(lease_s, (int, float)) or not math.isfinite(lease_s) or not 0 < lease_s <= MAX_LEASE_S:
        raise ValueError(f"a lease must be more than 0 and at most {MAX_LEASE_S:g} seconds, not {_show(lease_s)}")
    return float(lease_s)


def encode_worker(worker: object) -> bytes:
    """The worker's JSON, after checking it is a WorkerInfo whose fields have their types."""
    if not isinstance(worker, WorkerInfo):
        raise ValueError(f"expected a WorkerInfo, not {_show(worker)}")
    check_key(worker.id, "worker id")
    try:
        data = msgspec.json.encode(worker)
        msgspec.json.decode(data, type=WorkerInfo)  # msgspec does not check types on construction
    except (msgspec.EncodeError, msgspec.ValidationError, UnicodeEncodeError) as error:
        raise ValueError(f"not a valid worker announcement: {error}") from None
    if len(data) > MAX_WORKER_INFO_BYTES:
        raise ValueError(f"a worker announcement is at most {MAX_WORKER_INFO_BYTES} bytes of JSON, not {len(data)}")
    return data


def decode_worker(data: bytes | str) -> WorkerInfo:
    return msgspec.json.decode(data, type=WorkerInfo)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- in memory ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    holder: str
    expires: float


@dataclass(slots=True)
class _Announced:
    info: WorkerInfo
    since: float
    expires: float


class _MemoryState:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.claims: dict[str, _Held] = {}
        self.workers: dict[str, _Announced] = {}


class MemoryClaims:
    """`WorkClaims` in this process's memory, on the monotonic clock: for the embedded server,
    where one process does everything. `another()` is a second handle on the same claims (what a
    second process would open on a shared storage). No call awaits inside, so each is atomic on
    the event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, _state: _MemoryState | None = None) -> None:
        self._state = _state if _state is not None else _MemoryState(clock)
        self._closed = False

    def another(self) -> MemoryClaims:
        return MemoryClaims(_state=self._state)

    def _now(self) -> float:
        if self._closed:
            raise ClaimsClosed("the claims are closed")
        return self._state.clock()

    async def claim(self, key: str, holder: str, lease_s: float) -> bool:
        check_key(key)
        check_key(holder, "holder")
        lease = check_lease(lease_s)
        now = self._now()
        held = self._state.claims.get(key)
        if held is not None and held.expires > now and held.holder != holder:
            return False
        self._state.claims[key] = _Held(holder, now + lease)
        return True

    async def renew(self, holder: str, keys: Collection[str], lease_s: float) -> set[str]:
        check_key(holder, "holder")
        wanted = check_keys(keys)
        lease = check_lease(lease_s)
        now = self._now()
        kept: set[str] = set()
        for key in wanted:
            held = self._state.claims.get(key)
            if held is not None and held.holder == holder:
                held.expires = now + lease
                kept.add(key)
        return kept

    async def release(self, holder: str, keys: Collection[str]) -> None:
        check_key(holder, "holder")
        wanted = check_keys(keys)
        self._now()
        for key in wanted:
            held = self._state.claims.get(key)
            if held is not None and held.holder == holder:
                del self._state.claims[key]

    async def holders(self, keys: Collection[str] | None = None) -> dict[str, Claim]:
        wanted = None if keys is None else check_keys(keys)
        now = self._now()
        claims = self._state.claims
        found = claims.items() if wanted is None else ((key, claims[key]) for key in wanted if key in claims)
        return {key: Claim(key, held.holder, held.expires - now) for key, held in found if held.expires > now}

    async def announce(self, worker: WorkerInfo, lease_s: float) -> None:
        data = encode_worker(worker)
        lease = check_lease(lease_s)
        now = self._now()
        self._forget(now)
        before = self._state.workers.get(worker.id)
        since = before.since if before is not None and before.expires > now else now
        self._state.workers[worker.id] = _Announced(decode_worker(data), since, now + lease)

    def _forget(self, now: float) -> None:
        for table in (self._state.claims, self._state.workers):
            for key in [key for key, row in table.items() if row.expires < now - FORGET_AFTER_S]:
                del table[key]

    async def workers(self) -> list[WorkerInfo]:
        now = self._now()
        live = [row for row in self._state.workers.values() if row.expires > now]
        return [row.info for row in sorted(live, key=lambda row: (row.since, row.info.id))]

    async def retire(self, worker_id: str) -> None:
        check_key(worker_id, "worker id")
        self._now()
        self._state.workers.pop(worker_id, None)
        for key in [key for key, held in self._state.claims.items() if held.holder == worker_id]:
            del self._state.claims[key]

    async def close(self) -> None:
        self._closed = True
