"""The export formats by name. The export route's `format`, `masklog export --format`, the
OpenAPI description and docs/api.md all follow this table (tests/server/test_formats.py checks
the docs). A new format is a module in `writers/` that defines `WRITER`, and one line here."""

from __future__ import annotations

from masklog.server.exchange.writer import Writer
from masklog.server.exchange.writers import coco, events, yolo

FORMATS: dict[str, Writer] = {
    "coco": coco.WRITER,
    "yolo": yolo.WRITER,
    "events": events.WRITER,
}

DEFAULT_FORMAT = "coco"


def describe_formats() -> str:
    """'coco: COCO instance file (JSON); yolo: ...', for help texts."""
    return "; ".join(f"{name}: {writer.summary}" for name, writer in FORMATS.items())
