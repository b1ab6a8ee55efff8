#!/usr/bin/env bash
# Runs masklog with a demo project (classical backend, no checkpoint needed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
cd "$root"
exec .venv/bin/masklog demo "$@"
