"""scripts/bench_cluster.py, very short: one server process on a throwaway PostgreSQL, then one on
SQLite; every figure is there, no delivery is missing or doubled (no timing is checked)."""

from __future__ import annotations

import json
import os

import pytest

from tests.scripts.running import run_script
from tests.server.postgres_server import find_binaries


def test_one_process_on_postgresql_and_one_on_sqlite_deliver_everything():
    if find_binaries() is None:
        if os.environ.get("MASKLOG_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required (MASKLOG_REQUIRE_POSTGRES=1) but its server binaries were not found")
        pytest.skip("no PostgreSQL server binaries (install Debian's postgresql package, as scripts/bootstrap.sh does)")
    args = ["--seconds", "2", "--clients", "4", "--rate", "40", "--processes", "1", "--append-events", "1000", "--drain", "2"]
    done = run_script("bench_cluster.py", args, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert set(result["postgresql"]) == {"version", "1"} and set(result["sqlite"]) == {"1"}
    for run in (result["postgresql"]["1"], result["sqlite"]["1"]):
        assert "error" not in run, run
        assert run["commands"] == 80 and run["acked"] == 80 and run["unanswered"] == 0 and run["errors"] == {}
        # 4 clients on 2 media items: each command reaches the one other client on its item.
        assert run["deliveries"] == run["deliveries_expected"] == 80 and run["missing"] == 0
        assert run["duplicates"] == 0 and run["out_of_order"] == 0 and run["closed_by_server"] == []
        for key in ("fanout_p50_ms", "fanout_p99_ms", "ack_p50_ms", "ack_p99_ms", "events_per_s", "append_batched_per_s"):
            assert isinstance(run[key], (int, float)) and run[key] > 0, (key, run[key])
        assert run["append_events"] == 1000
        assert "conflicts" in run and "retries" in run
    assert result["goals"]["postgresql_appends_per_s"]["measured"] == result["postgresql"]["1"]["append_batched_per_s"]
