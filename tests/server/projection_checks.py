"""Comparing what a ledger holds (the base, the running tracks, each media item's state) with a
full fold of its log: the per-media projections must add up to exactly that."""

from __future__ import annotations

from typing import Any

from masklog.domain.events import Event
from masklog.domain.snapshots import media_part
from masklog.domain.state import LabelState, TrackStatus, fold
from masklog.server.ledger import Ledger


def parts_of(state: LabelState, running: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """A full state as comparable parts: the project-level dicts, the running tracks, and each
    media item's part."""
    if running is None:
        running = {tid: (info.request.media, info.actor) for tid, info in state.tracks.items() if info.status == TrackStatus.RUNNING}
    return {
        "projects": dict(state.projects),
        "classes": dict(state.classes),
        "media": dict(state.media),
        "running": dict(sorted(running.items())),
        "by_media": {media: media_part(state, media) for media in sorted(state.media)},
    }


async def ledger_parts(ledger: Ledger) -> dict[str, Any]:
    """The same parts from the ledger (loading every media item's state)."""
    base = ledger.base
    return {
        "projects": dict(base.projects),
        "classes": dict(base.classes),
        "media": dict(base.media),
        "running": dict(sorted(ledger.running.items())),
        "by_media": {media: media_part(await ledger.state_of(media), media) for media in sorted(base.media)},
    }


def log_parts(events: list[Event]) -> dict[str, Any]:
    return parts_of(fold(events))


async def assert_matches_log(ledger: Ledger, events: list[Event]) -> None:
    assert await ledger_parts(ledger) == log_parts(events)
