"""The event log as JSON lines, one event a line in log order: what `masklog import-log` loads."""

from __future__ import annotations

from collections.abc import AsyncIterator

from masklog.domain.events import encode
from masklog.server.exchange.writer import LogWriter
from masklog.server.store import EventStore


async def write(store: EventStore, streams: set[str] | None, seq: int | None) -> AsyncIterator[bytes]:
    """The log (or the events of `streams`) up to `seq`, a batch of lines at a time."""
    async for batch in store.iter_batches(0):
        lines: list[bytes] = []
        for event in batch:
            if seq is not None and event.seq > seq:
                if lines:
                    yield b"".join(lines)
                return
            if streams is None or event.stream in streams:
                lines.append(encode(event) + b"\n")
        if lines:
            yield b"".join(lines)


WRITER = LogWriter(summary="the event log as JSON lines", media_type="application/x-ndjson", file_suffix="events.jsonl", write=write)
