"""The export formats' registry (server/exchange/formats.py): the docs, `masklog export`, the
OpenAPI description and the route all follow it, and a new format needs only its writer and one
line there (shown here with a CSV writer registered for one test)."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from masklog.domain.coco import Selection
from masklog.server import api, cli
from masklog.server.exchange.formats import DEFAULT_FORMAT, FORMATS
from masklog.server.exchange.jobs import ExchangeError, export_offline
from masklog.server.exchange.routes import routes as exchange_routes
from masklog.server.exchange.writer import LabelsToExport, LogWriter, ProjectionWriter
from masklog.server.openapi import describe
from tests.server.live import seeded_server
from tests.server.rest import new_object, save_box

ROOT = Path(__file__).resolve().parents[3]


def test_docs_list_exactly_the_registrys_formats():
    api_doc = (ROOT / "docs" / "api.md").read_text()
    [row] = [line for line in api_doc.splitlines() if line.startswith("| `format` |")]
    meaning = row.split("|")[2]
    assert re.findall(r"`([\w-]+)`", meaning) == list(FORMATS), "docs/api.md, the export's parameters"
    assert f"`{DEFAULT_FORMAT}` (default" in meaning
    for doc in (ROOT / "docs" / "api.md", ROOT / "README.md"):
        usages = re.findall(r"--format ([\w|-]+)", doc.read_text())
        listed = [usage.split("|") for usage in usages if "|" in usage]
        assert listed and all(names == list(FORMATS) for names in listed), doc.name


def test_cli_and_openapi_offer_the_registrys_formats():
    done = subprocess.run([sys.executable, "-m", "masklog.server.cli", "export", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "{" + ",".join(FORMATS) + "}" in done.stdout
    assert all(writer.summary in " ".join(done.stdout.split()) for writer in FORMATS.values())
    [operation] = [ops["get"] for path, ops in describe([*api.routes, *exchange_routes])["paths"].items() if path.endswith("/export")]
    [parameter] = [p for p in operation["parameters"] if p["name"] == "format"]
    assert parameter["schema"]["enum"] == list(FORMATS) and parameter["schema"]["default"] == DEFAULT_FORMAT


def test_every_writer_says_what_it_writes():
    assert DEFAULT_FORMAT in FORMATS
    for name, writer in FORMATS.items():
        assert isinstance(writer, ProjectionWriter | LogWriter), name
        assert writer.summary and "/" in writer.media_type and "." in writer.file_suffix, name


# ---- a new format: one writer, one registry line ------------------------------------------------


def write_csv(export: LabelsToExport) -> Iterator[bytes]:
    # Taken now, on the caller's thread, as the contract asks; encoded as the iterator runs.
    rows = [(m.media, oid, frame) for m in export.media for (oid, frame) in sorted(export.state.media_labels(m.media))]

    def encode() -> Iterator[bytes]:
        yield b"media,object,frame\n"
        for row in rows:
            yield ",".join(map(str, row)).encode() + b"\n"

    return encode()


CSV = ProjectionWriter(summary="one line per label (CSV)", media_type="text/csv", file_suffix="labels.csv", write=write_csv)


@pytest.fixture
def with_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FORMATS, "csv", CSV)


def test_a_registered_writer_is_offered_everywhere(with_csv, tmp_path):
    with seeded_server(tmp_path) as live:
        with live.http("alice") as alice:
            labelled = new_object(alice)
            save_box(alice, labelled, 2)
            response = alice.get("/api/projects/p1/export", params={"format": "csv", "media": "m1"})
            refused = alice.get("/api/projects/p1/export", params={"format": "pdf"})
        with live.http() as anonymous:
            spec = anonymous.get("/api/openapi.json").json()
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"] == 'attachment; filename="p1-labels.csv"'
        assert f"m1,{labelled},2" in response.text.splitlines()
        assert refused.json()["error"]["message"] == "format must be one of coco, yolo, events, csv, not 'pdf'"
        [parameter] = [p for p in spec["paths"]["/api/projects/{project}/export"]["get"]["parameters"] if p["name"] == "format"]
        assert "csv" in parameter["schema"]["enum"]

        out = tmp_path / "p1.csv"
        assert cli.main(["export", "--data", str(live.settings.data), "--project", "p1", "--format", "csv", "--out", str(out)]) == 0
        assert f"m1,{labelled},2" in out.read_text().splitlines()


def test_the_offline_export_refuses_what_it_cannot_write(tmp_path):
    selection = Selection()
    with pytest.raises(ExchangeError, match="format must be one of coco, yolo, events, not 'pdf'"):
        asyncio.run(export_offline(tmp_path, "p1", [], "pdf", io.BytesIO(), selection, None, False))
    with pytest.raises(ExchangeError, match="no event log"):
        asyncio.run(export_offline(tmp_path, "p1", [], "coco", io.BytesIO(), selection, None, False))
