#!/usr/bin/env bash
# Creates .venv in the repository (once) and installs masklog with SAM 2 and the test tools.
# Re-running is cheap: nothing is reinstalled unless pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# pip warns once per package about index folders of this machine's configuration that do not
# exist; those lines say nothing about the project, so they are dropped (errors still show).
quiet_pip() { .venv/bin/python -m pip "$@" 2> >(grep -v '^WARNING: Location .* is ignored' >&2); }
stamp=.venv/.masklog-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  pip=(quiet_pip install --quiet --disable-pip-version-check)
  # torch first: sam2's setup.py imports it, so sam2 is built without build isolation (an
  # isolated build would fetch a second torch). Its CUDA extension is optional: skip building it.
  "${pip[@]}" "torch==2.14.1" "torchvision==0.29.1" setuptools wheel
  SAM2_BUILD_CUDA=0 "${pip[@]}" --no-build-isolation "sam2==1.1.0"
  "${pip[@]}" -e ".[sam2,test]"
  touch "$stamp"
fi
# The page's tests drive Debian's Chromium (Playwright with executable_path; no browser download).
# Installed when missing and this user may: root with apt-get, as on CI machines.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }
fi
# The PostgreSQL store's tests start a throwaway server from Debian's binaries
# (/usr/lib/postgresql/*/bin); installed when missing, likewise only as root with apt-get. The
# package's own cluster is not needed: the tests make their own.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq postgresql >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null; }
fi
