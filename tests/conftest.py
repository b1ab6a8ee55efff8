import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: skipped outside our CI when absent, a failure in CI (MASKLOG_REQUIRE_SHARED_DATA=1)."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    if os.environ.get("MASKLOG_REQUIRE_SHARED_DATA") == "1":
        pytest.fail(f"shared data is required but missing at {SHARED_DATA}")
    pytest.skip(f"shared data not found at {SHARED_DATA} (only our CI has it)")
