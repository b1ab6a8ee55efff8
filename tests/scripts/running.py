"""Runs one of `scripts/` as its own process, as a user would, for the script tests.

A script that overruns its time is stopped with SIGTERM first (the benchmarks unwind on it and
stop the servers and workers they started, which SIGKILL would leave behind), and the test fails
with what the script had printed on stderr: its progress lines and the site's log tails."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts.live_server import ROOT


def run_script(name: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen([sys.executable, f"scripts/{name}", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        pytest.fail(f"scripts/{name} {' '.join(args)} ran past {timeout:g} s and was stopped; its stderr:\n{stderr[-6000:]}\nits stdout:\n{stdout[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
