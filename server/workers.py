"""The inference workers a server knows of (issue 17): who they are, what they run, and whether a
request can be served at all.

Workers — `masklog worker` processes, and servers that run models themselves when they share
their log — announce themselves in the storage's workers registry (`server.claims`, never the
log) every `lease_s / 3`; one not heard of for `2 × lease_s` is gone. A server reads the registry
every REFRESH_S in the background (`WorkerDirectory.follow`), so the per-command check is a
lookup: a track naming a tracker no live worker runs, or a click with no live segmenter, is
refused with the reason instead of waiting in the log forever. An embedded server (the log's
only process, running the models itself) has no registry and refuses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import msgspec

from masklog.domain.decide import Command
from masklog.domain.events import PromptAdded, TrackerAlias, TrackRequested
from masklog.inference.protocols import EmbeddingStats
from masklog.inference.registry import BASELINE_TRACKER, Backends
from masklog.server.capabilities import Capabilities, capabilities, workers_capabilities
from masklog.server.claims import WorkClaims, WorkerInfo
from masklog.server.limits import LimitExceeded

log = logging.getLogger("masklog.workers")

REFRESH_S = 1.0
NO_WORKER = "no_worker"


def new_worker_id() -> str:
    """Unique per process: its host, its pid, and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def served_trackers(backends: Backends) -> list[str]:
    """The track algorithms an actor with these backends takes: its trackers, 'simple', the
    model-free methods, and 'advanced' only when it runs a model beyond the baseline (a
    classical worker does not take a request for the best model there is)."""
    names = set(backends.names())
    if backends.advanced == BASELINE_TRACKER:
        names.discard(TrackerAlias.ADVANCED)
    return sorted(names)


def embedding_counts(stats: EmbeddingStats | None) -> dict[str, int]:
    """A segmenter's embedding cache as the workers list shows it ({} without one)."""
    return {} if stats is None else dataclasses.asdict(stats)


def serves(backends: Backends) -> Callable[[str], bool]:
    names = frozenset(served_trackers(backends))
    return lambda algorithm: algorithm in names


def worker_info(worker_id: str, backends: Backends, device: str | None, started_at: float) -> WorkerInfo:
    host, pid, _ = worker_id.rsplit(":", 2)
    return WorkerInfo(
        id=worker_id,
        host=host,
        pid=int(pid),
        backend=backends.backend,
        trackers=served_trackers(backends),
        segmenter=backends.segmenter.model,
        device=device,
        started_at=started_at,
    )


class WorkerDirectory:
    """The live workers as last read, and the check every track request and click passes."""

    def __init__(self, claims: WorkClaims | None) -> None:
        self.claims = claims
        self.live: list[WorkerInfo] = []
        self.read_at = 0.0

    async def refresh(self) -> None:
        if self.claims is not None:
            self.live = await self.claims.workers()
            self.read_at = time.monotonic()

    async def follow(self) -> None:
        """Read the registry every REFRESH_S until cancelled."""
        while True:
            with contextlib.suppress(Exception):  # unreachable for a moment: keep the last list
                await self.refresh()
            await asyncio.sleep(REFRESH_S)

    def capabilities(self, backends: Backends) -> Capabilities:
        """What clients may ask for here: this process's own models when it is alone on its
        log, else what the live workers run."""
        return capabilities(backends) if self.claims is None else workers_capabilities(self.live)

    async def look_again(self, command: Command) -> None:
        """Before deciding a request the last read would refuse, read the registry again: a
        worker may have started since (`check` then refuses it only if it is still true)."""
        if self.claims is None:
            return
        try:
            self.check(command)
        except LimitExceeded:
            with contextlib.suppress(Exception):
                await self.refresh()

    def check(self, command: Command) -> None:
        """Raise LimitExceeded (`no_worker`, 503) for a request no live worker can serve."""
        if self.claims is None:
            return
        if isinstance(command, TrackRequested):
            if any(command.algorithm in worker.trackers for worker in self.live):
                return
            raise LimitExceeded(NO_WORKER, f"no live worker runs tracker {command.algorithm!r}: {self._which()}", 503)
        if isinstance(command, PromptAdded):
            if any(worker.segmenter for worker in self.live):
                return
            raise LimitExceeded(NO_WORKER, f"no live worker answers clicks: {self._which()}", 503)

    def _which(self) -> str:
        if not self.live:
            return "no worker is running (start one with `masklog worker`, or a server without --no-models)"
        offered = "; ".join(f"{w.id} runs {', '.join(w.trackers)}" for w in self.live)
        return f"the live workers: {offered}"


class Announcer:
    """Keeps one actor's entry in the registry fresh, with its current load."""

    def __init__(
        self,
        claims: WorkClaims,
        info: WorkerInfo,
        lease_s: float,
        load: Callable[[], tuple[int, int, list[str]]],
        changed: asyncio.Event | None = None,
        embeddings: Callable[[], EmbeddingStats | None] | None = None,
    ) -> None:
        self.claims = claims
        self.info = info
        self.lease_s = lease_s
        self._load = load
        self._changed = changed or asyncio.Event()
        self._embeddings = embeddings or (lambda: None)

    async def announce(self) -> None:
        tracks, clicks, resumed = self._load()
        embeddings = embedding_counts(self._embeddings())
        # Listed for twice its lease: a worker slow to announce (a busy machine) is not taken for
        # gone, and requests refused, before its claims would even run out.
        info = msgspec.structs.replace(self.info, tracks=tracks, clicks=clicks, resumed=resumed, embeddings=embeddings)
        await self.claims.announce(info, 2 * self.lease_s)

    async def run(self) -> None:
        """Announce every lease_s / 3, and at once when the actor's load changed much (a
        takeover: the page shows it while the track runs)."""
        while True:
            self._changed.clear()
            try:
                await self.announce()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("announcing worker %s failed", self.info.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.lease_s / 3)

    async def retire(self) -> None:
        with contextlib.suppress(Exception):  # its entry and leases run out on their own otherwise
            await self.claims.retire(self.info.id)

