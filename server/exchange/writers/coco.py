"""COCO instance files (JSON): categories from the ontology, one image per exported frame, one
annotation per label (docs/api.md, Export and import)."""

from __future__ import annotations

from collections.abc import Iterator

from masklog.domain import coco
from masklog.server.exchange.writer import LabelsToExport, ProjectionWriter


def write(export: LabelsToExport) -> Iterator[bytes]:
    project = export.media[0].project if export.media else ""
    classes = [c for c in export.state.classes.values() if c.project == project]
    selected = coco.select(export.state, export.media, export.selection)
    chunks = coco.export_chunks(classes, selected, export.selection, seq=export.state.seq, progress=export.progress)
    # The head of the file (info and categories) is made now, on the caller's thread, like the
    # selection; only the frames are encoded later.
    first = next(chunks)
    return _prefixed(first, chunks)


def _prefixed(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


WRITER = ProjectionWriter(summary="COCO instance file (JSON)", media_type="application/json", file_suffix="coco.json", write=write)
