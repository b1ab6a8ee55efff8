"""Reading a media item's snapshot from the store: its manifest, then only the parts needed.

Shared by the live projections (the whole state, to decide on) and replay (often only a window
of frames, to read). A snapshot that fails anywhere — its manifest does not decode, a part is
missing or damaged — is skipped with a warning and the next older one is tried: a snapshot is a
cache, never trusted over the events.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from masklog.domain.events import media_stream
from masklog.domain.snapshots import PROJECTION_VERSION, EncodedSnapshot, SnapshotError, Window, decode_media_snapshot, read_manifest
from masklog.domain.state import LabelState
from masklog.server.store import EventStore, Snapshot

log = logging.getLogger("masklog.snapshots")

# Decoding more than this many bytes runs on a worker thread, not on the event loop.
_DECODE_INLINE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class LoadedSnapshot:
    state: LabelState
    seq: int
    size: int  # bytes read: the manifest and the parts decoded


async def load_media_snapshot(
    store: EventStore, media: str, base: LabelState, *, at_or_before: int | None = None, window: Window | None = None
) -> LoadedSnapshot | None:
    """The newest usable snapshot of `media` at or before `at_or_before`, decoded onto `base`
    (with `window`, only those frames' labels: see `decode_media_snapshot`); None when none is."""
    stream = media_stream(media)
    bound = at_or_before
    while True:
        snapshot = await store.load_snapshot(stream, PROJECTION_VERSION, at_or_before=bound)
        if snapshot is None:
            return None
        try:
            manifest = read_manifest(snapshot.data)
            keys = manifest.parts_for(window)
            parts = await store.load_parts(keys) if keys else []
            if parts is None:
                raise SnapshotError("a part is missing or damaged")
            size = len(snapshot.data) + sum(len(part) for part in parts)
            mapping = dict(zip(keys, parts, strict=True))
            if size > _DECODE_INLINE_BYTES:
                state = await asyncio.to_thread(decode_media_snapshot, manifest, mapping, base, window)
            else:
                state = decode_media_snapshot(manifest, mapping, base, window)
            return LoadedSnapshot(state, snapshot.seq, size)
        except SnapshotError as error:
            log.warning("snapshot of %s at %d is not usable (%s): an older one or the events are used", stream, snapshot.seq, error)
            bound = snapshot.seq - 1


def stored_snapshot(stream: str, seq: int, encoded: EncodedSnapshot) -> Snapshot:
    """The store's snapshot of an encoded media state: its manifest, and its parts."""
    return Snapshot(stream=stream, seq=seq, version=PROJECTION_VERSION, data=encoded.manifest, parts=tuple(encoded.parts.values()))
