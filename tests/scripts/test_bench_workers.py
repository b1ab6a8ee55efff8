"""scripts/bench_workers.py, very short (30 frames, 2 tracks, 3 clicks, one SIGKILL with 2 s
leases): every figure is there and every frame is logged once (no timing is checked, beyond a
takeover that cannot come before the kill)."""

from __future__ import annotations

import json

from tests.scripts.running import run_script


def test_throughput_clicks_and_a_takeover_in_one_run():
    args = ["--frames", "30", "--tracks", "2", "--clicks", "3", "--leases", "2", "--kill-trials", "1", "--json"]
    done = run_script("bench_workers.py", args, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert "errors" not in result, result["errors"]
    for workers in ("1", "2"):
        run = result["throughput"][workers]
        assert run["workers"] == int(workers) and run["tracks"] == 2 and run["ended"] == {"track_completed": 2}
        assert run["frames_logged"] == 2 * 29 and run["duplicated"] == 0 and run["missing"] == 0
        assert run["frames_per_s"] > 0 and run["seconds"] > 0
        clicks = result["click_latency"][workers]
        assert clicks["workers"] == int(workers)
        for kind in ("idle", "loaded"):
            assert clicks[kind]["clicks"] == 3 and 0 < clicks[kind]["p50_ms"] <= clicks[kind]["p99_ms"] == clicks[kind]["max_ms"]
        assert clicks["loaded"]["load_tracks"] == 2
        assert clicks["p99_loaded_over_idle"] > 0
        assert result["goals"][f"click_p99_loaded_over_idle_{workers}_workers"]["goal"] == 2.0
    assert result["throughput"]["ratio_2_over_1"] > 0
    [takeover] = result["takeover"]
    assert takeover["lease_s"] == 2.0 and takeover["trials"] == 1 and len(takeover["takeover_s"]) == 1
    assert 0 < takeover["takeover_s"][0] < 2.0 * 3 + 30
    # The resumed track ends with each of its frames once, whoever produced it.
    assert takeover["duplicated"] == 0 and takeover["missing"] == 0
    assert takeover["frames_logged"] == 29 * (takeover["trials"] + takeover["ended_before_kill"])
