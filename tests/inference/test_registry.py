"""The registry of model backends and trackers: names, what each server accepts, what 'simple'
and 'advanced' stand for, loading, and that reading it loads no model library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from masklog.domain.events import TrackerAlias
from masklog.domain.limits import MAX_ID_CHARS
from masklog.inference.classical.segmenter import ClassicalSegmenter
from masklog.inference.classical.tracker import ClassicalTracker, TrackerConfig
from masklog.inference.protocols import Segmenter, Tracker
from masklog.inference.registry import (
    BACKENDS,
    BASELINE_TRACKER,
    DEFAULT_BACKEND,
    NAME_PATTERN,
    Backends,
    ModelOptions,
    UnknownBackend,
    backend_named,
    backend_of_tracker,
    load_backends,
    load_tracker,
    offered_trackers,
    tracker_names,
)

ROOT = Path(__file__).resolve().parents[2]


def test_names_are_plain_and_never_an_alias():
    names = [*BACKENDS, *tracker_names()]
    assert set(BACKENDS) == {"classical", "sam2"} and tracker_names() == ("classical", "sam2")
    for name in names:
        assert NAME_PATTERN.match(name) and len(name) <= MAX_ID_CHARS, name
        assert name not in set(TrackerAlias), "an alias stands for a tracker, it is none"
    for name, entry in BACKENDS.items():
        assert entry.name == name and entry.trackers and entry.summary
    assert DEFAULT_BACKEND in BACKENDS and BASELINE_TRACKER in BACKENDS[DEFAULT_BACKEND].trackers


def test_what_each_backend_accepts_without_loading_it():
    assert offered_trackers("classical") == {"simple", "advanced", "classical", "interpolation"}
    assert offered_trackers("sam2") == {"simple", "advanced", "classical", "sam2", "interpolation"}
    assert backend_of_tracker("sam2") is BACKENDS["sam2"]
    with pytest.raises(UnknownBackend, match=r"^unknown backend 'sam3': use 'classical' or 'sam2'$"):
        offered_trackers("sam3")
    with pytest.raises(ValueError, match="unknown tracker 'advanced'"):
        backend_of_tracker("advanced")  # an alias names no backend by itself
    assert backend_named("sam2").trackers == ("sam2",)


def test_classical_server_every_name_is_the_classical_tracker():
    backends = load_backends("classical")
    assert isinstance(backends.segmenter, ClassicalSegmenter) and isinstance(backends.segmenter, Segmenter)
    classical = backends.trackers["classical"]
    assert isinstance(classical, ClassicalTracker) and isinstance(classical, Tracker)
    assert backends.tracker("simple") is backends.tracker("advanced") is backends.tracker("classical") is classical
    assert backends.tracker("sam2") is None and backends.tracker("nope") is None
    assert backends.names() == offered_trackers("classical")


def test_advanced_is_the_backends_best_tracker_and_simple_the_baseline():
    baseline, better = ClassicalTracker(), ClassicalTracker(TrackerConfig(work_side=256))
    backends = Backends(ClassicalSegmenter(), {"classical": baseline, "lighter": better}, advanced="lighter")
    assert backends.tracker("advanced") is better and backends.tracker("lighter") is better
    assert backends.tracker("simple") is baseline
    assert backends.names() == {"simple", "advanced", "classical", "lighter", "interpolation"}
    with pytest.raises(ValueError, match="not loaded"):
        Backends(ClassicalSegmenter(), {"lighter": better}, advanced="lighter")  # no baseline
    with pytest.raises(ValueError, match="not loaded"):
        Backends(ClassicalSegmenter(), {"classical": baseline}, advanced="sam2")


def test_load_tracker_by_name_or_simple():
    assert isinstance(load_tracker("simple"), ClassicalTracker)
    assert isinstance(load_tracker("classical"), ClassicalTracker)
    with pytest.raises(ValueError, match="unknown tracker 'nope': use 'classical' or 'sam2'"):
        load_tracker("nope")


def test_a_configured_sam2_that_cannot_load_is_an_error_not_a_fallback(tmp_path):
    from masklog.inference.sam2.model import Sam2LoadError

    with pytest.raises(Sam2LoadError, match="nope.pt"):
        load_backends("sam2", ModelOptions(checkpoint=tmp_path / "nope.pt", device="cpu"))


def test_reading_the_registry_loads_no_model_library():
    """The settings and the CLI read the registry in every process: torch must stay unloaded
    until a server is configured with SAM 2."""
    code = "import sys, masklog.inference.registry, masklog.server.settings, masklog.server.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT)}).returncode == 0
