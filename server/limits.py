"""Per-user limits on the work one user can queue: commands per second, points per prompt, and
concurrently running tracks (issue 12). The settings are in `server.settings.Settings`.

The rate and the prompt size are checked at the edge (the socket and the REST command routes)
before a command reaches the ledger; the running tracks are counted from the ledger's index of
running tracks inside its lock (as part of authorizing a command), so two requests sent at once cannot both
take the last slot. A refused command appends nothing. The server's own actors (the model
actors) write through the ledger directly and are never limited.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from masklog.domain.decide import Command
from masklog.domain.events import PromptAdded, TrackRequested

# The most frames one labels window covers (socket hello `labels_window`, REST `from`..`to`): a
# protocol constant, kept with the others in domain/limits.py and re-exported with the edge's limits.
from masklog.domain.limits import MAX_LABEL_WINDOW as MAX_LABEL_WINDOW
from masklog.server.settings import Settings

LIMIT_EXCEEDED = "limit_exceeded"
RATE_LIMITED = "rate_limited"


class LimitExceeded(Exception):
    """A command refused by a per-user limit. `status` is its REST status; `retry_after` (seconds)
    is set when waiting is enough for the same command to pass."""

    def __init__(self, code: str, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """Token buckets keyed by user: each holds up to `burst` tokens and gains `rate` a second; a
    command takes one. A user's bucket starts full."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 when there was one, else the seconds until there is."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def running_tracks_of(running: Mapping[str, tuple[str, str]], actor: str) -> int:
    """How many of the running tracks ({track: (media, requester)}, `Ledger.running`) `actor` requested."""
    return sum(1 for _, requester in running.values() if requester == actor)


class Limits:
    """The per-user limits of one server process (the rate buckets live in memory: a restart
    refills them)."""

    def __init__(self, settings: Settings) -> None:
        self.max_running_tracks = settings.max_running_tracks
        self.max_prompt_points = settings.max_prompt_points
        self._rate = TokenBucket(settings.commands_per_second, settings.command_burst)

    def admit(self, actor: str, command: Command) -> None:
        """At the edge, before the ledger: the user's command rate, then the command's size."""
        wait = self._rate.take(actor)
        if wait > 0:
            raise LimitExceeded(
                RATE_LIMITED,
                f"too many commands: at most {self._rate.rate:g} a second (bursts of {self._rate.burst}); retry in {wait:.2f} s",
                429,
                retry_after=wait,
            )
        if isinstance(command, PromptAdded) and len(command.points) > self.max_prompt_points:
            raise LimitExceeded(
                LIMIT_EXCEEDED,
                f"a prompt has at most {self.max_prompt_points} points, this one has {len(command.points)}",
                422,
            )

    def check_quota(self, running: Mapping[str, tuple[str, str]], actor: str, command: Command) -> None:
        """Inside the ledger's lock, once the command is authorized: what it would start must fit
        in what the user already has running."""
        if isinstance(command, TrackRequested):
            count = running_tracks_of(running, actor)
            if count >= self.max_running_tracks:
                raise LimitExceeded(
                    LIMIT_EXCEEDED,
                    f"you have {count} tracks running, the most one user may have at once is {self.max_running_tracks}: "
                    "wait for one to end or cancel one",
                    429,
                )


def retry_after_header(error: LimitExceeded) -> dict[str, str]:
    """The Retry-After header (whole seconds, at least 1) of a refusal that waiting cures."""
    return {} if error.retry_after is None else {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
