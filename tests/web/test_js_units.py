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


def test_the_pages_doubt_threshold_is_the_trackers():
    """web/js/doubt.js repeats inference.protocols.PRESENCE_DOUBT (the page has no Python)."""
    import re

    from masklog.inference.protocols import PRESENCE_DOUBT

    text = (HERE.parents[1] / "web" / "js" / "doubt.js").read_text()
    found = re.search(r"export const PRESENCE_DOUBT = ([0-9.]+);", text)
    assert found is not None and float(found.group(1)) == PRESENCE_DOUBT
