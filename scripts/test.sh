#!/usr/bin/env bash
# The test command: installs what the project needs into .venv, checks lint and types, then runs
# the whole suite. Extra arguments go to pytest (e.g. scripts/test.sh tests/domain -x).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
cd "$root"
.venv/bin/ruff check .
.venv/bin/python scripts/typecheck.py
exec .venv/bin/python -m pytest "$@"
