"""The page's pure JavaScript modules, tested with Node's own runner (tests/web/js/*.test.mjs)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_javascript_unit_tests_pass():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("MASKLOG_REQUIRE_BROWSER") == "1":
            pytest.fail("node is required for the page's unit tests")
        pytest.skip("node not found")
    files = sorted(str(p) for p in (HERE / "js").glob("*.test.mjs"))
    assert files, "no JavaScript tests found"
    done = subprocess.run([node, "--test", *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
