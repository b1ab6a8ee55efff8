"""YOLO segmentation labels in a zip: `data.yaml`, `labels/<media>/<frame>.txt` and, when the
frames are asked for, `images/<media>/<frame>.jpg`. Area classes only."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from masklog.domain import coco, yolo
from masklog.server.exchange.writer import LabelsToExport, ProjectionWriter


def write(export: LabelsToExport) -> Iterator[bytes]:
    """The zip, written as it goes: zipfile streams to a sink that cannot seek, with sizes after
    each member."""
    project = export.media[0].project if export.media else ""
    classes = yolo.area_classes(export.state, project)
    selected = coco.select(export.state, export.media, export.selection)
    total = sum(len(items) for _, items in selected)
    frame_jpeg, progress = export.frame_jpeg, export.progress

    def generate() -> Iterator[bytes]:
        sink = _Sink()
        done = 0
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path, content in yolo.label_files(classes, selected):
                archive.writestr(path, content)
                yield sink.take()
                if path.startswith("labels/"):
                    done += 1
                    if progress is not None:
                        progress(done, total)
            if frame_jpeg is not None:
                for media, items in selected:
                    for frame in items:
                        archive.writestr(f"images/{media.media}/{frame:06d}.jpg", frame_jpeg(media, frame), compress_type=zipfile.ZIP_STORED)
                        yield sink.take()
        yield sink.take()

    return generate()


class _Sink:
    """A write-only file for zipfile that hands over what was written since the last `take`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


WRITER = ProjectionWriter(summary="YOLO segmentation labels (a zip)", media_type="application/zip", file_suffix="yolo.zip", write=write)
