"""Type-check masklog as the package it installs as: `mypy --strict` on masklog.domain (the pure
core), mypy's default mode on masklog.server and masklog.inference. The package exists only as
installed (its parts are the repository's top-level folders), so it is laid out here as links
under build/typecheck, where mypy finds it (`mypy_path` in pyproject.toml)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("domain", "inference", "server", "web")


def lay_out() -> None:
    package = ROOT / "build" / "typecheck" / "masklog"
    package.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        link = package / part
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(ROOT / part, package))


def main() -> int:
    os.chdir(ROOT)
    lay_out()
    failed = False
    for args in (["--strict", "-p", "masklog.domain"], ["-p", "masklog.server", "-p", "masklog.inference"]):
        out, err, status = api.run(args)
        sys.stdout.write(f"mypy {' '.join(args)}: {out}")
        sys.stderr.write(err)
        failed = failed or status != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
