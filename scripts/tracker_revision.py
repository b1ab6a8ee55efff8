"""The classical tracker as it was at a git revision: its tracker.py on today's helpers, so the
evaluation scripts can score "before" and "after" in one run (`--before REV`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

from masklog.inference.protocols import Tracker

ROOT = Path(__file__).resolve().parent.parent


def classical_tracker_at(revision: str) -> Tracker:
    """The classical tracker of `revision`, at its default settings."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:inference/classical/tracker.py"], capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="masklog-tracker-at-")) / "tracker_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("masklog_tracker_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    tracker: Tracker = module.ClassicalTracker()
    return tracker
