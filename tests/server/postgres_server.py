"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temporary data directory,
127.0.0.1 on a free port, stopped and removed at the end of the session.

The server refuses to run as root, so when the tests run as root (CI) the directory is handed to
the `postgres` system user and `initdb` / `pg_ctl` run through `runuser`; as any other user they
run directly. Its unix socket goes into the temporary directory (nothing in a shared folder) and
only loopback TCP is used. fsync stays on: the durability tests mean it. Each test asks for fresh
databases (`create_database`), dropped when it ends.

Missing binaries skip the PostgreSQL tests with the reason, unless MASKLOG_REQUIRE_POSTGRES=1
(CI), which makes that a failure; scripts/bootstrap.sh installs Debian's `postgresql` package.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn
from uuid import uuid4

import pytest

SUPERUSER = "postgres"


def find_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One running cluster; `dsn(name)` connects to a database of it as the superuser."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.root = Path(tempfile.mkdtemp(prefix="masklog-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root)
                raise RuntimeError("running as root, and there is no 'postgres' user to run the server as") from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._prefix = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run([*self._prefix, *args], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}{log}")

    def start(self) -> None:
        # --no-sync: initdb's own files need not survive a power cut; the server itself runs
        # with fsync on.
        self._run(str(self.binaries / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        for attempt in range(3):
            self.port = _free_port()
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": f"'{self.root}'",
                "fsync": "on",
                "synchronous_commit": "on",
                "max_connections": "200",
            }
            # Later lines of postgresql.conf win, so appending on a retry is fine.
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
            try:
                self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
                return
            except RuntimeError:
                if attempt == 2:  # the port was taken between the probe and the start, thrice
                    raise

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> str:
        """A new empty database; its DSN."""
        import asyncpg

        name = f"t_{uuid4().hex}"
        admin = await asyncpg.connect(self.dsn())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.dsn(name)

    async def drop_database(self, dsn: str) -> None:
        import asyncpg

        name = dsn.rsplit("/", 1)[1]
        admin = await asyncpg.connect(self.dsn())
        try:
            # FORCE: a store a test left open must not keep the database alive.
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("MASKLOG_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (MASKLOG_REQUIRE_POSTGRES=1) but {reason}")
    pytest.skip(f"{reason} (install Debian's postgresql package, as scripts/bootstrap.sh does)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test session (skipped when PostgreSQL is not installed)."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        _unavailable("the asyncpg driver is not installed")
    binaries = find_binaries()
    if binaries is None:
        _unavailable("no PostgreSQL server binaries were found (/usr/lib/postgresql/*/bin/initdb)")
    started = time.perf_counter()
    server = PostgresServer(binaries)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    print(f"PostgreSQL {binaries.parts[-2]} on 127.0.0.1:{server.port} in {time.perf_counter() - started:.1f} s")
    try:
        yield server
    finally:
        server.stop()
