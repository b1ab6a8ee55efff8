"""scripts/eval_presence.py on one short sequence (skipped without the shared data unless
MASKLOG_REQUIRE_SHARED_DATA=1): every figure is there and adds up; no quality is checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts.running import run_script


@pytest.mark.shared_data
def test_occlusion_and_exit_figures_on_one_short_sequence(shared_data: Path) -> None:
    args = ["--data", str(shared_data / "vos"), "--sequences", "blackswan", "--max-frames", "30", "--lengths", "3", "--events", "1", "--before", "HEAD", "--json"]
    done = run_script("eval_presence.py", args, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["threshold"] == 0.5
    assert set(result["scenarios"]) == {"occlusion_k3", "exit_k3"}
    occlusion = result["scenarios"]["occlusion_k3"]
    assert occlusion["events"] == 1 and occlusion["absent_frames"] == 3 and occlusion["present_frames"] > 0
    for figures in (*result["scenarios"].values(), result["overall"]):
        for name in ("precision_absent", "recall_absent", "false_alarm_rate", "recovered"):
            assert figures[name] is None or 0.0 <= figures[name] <= 1.0, (name, figures)
    [(name, sequence)] = result["unmodified"]["sequences"].items()
    assert name == "vos/blackswan" and sequence["frames"] == 30
    assert 0.0 <= sequence["JF"] <= 1.0 and 0.0 <= sequence["before"]["JF"] <= 1.0
    assert result["unmodified"]["before"]["revision"] == "HEAD"
