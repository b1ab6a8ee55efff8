"""Several real `masklog serve` processes on one throwaway PostgreSQL database, sharing one data
folder (the shared media root), seeded like the other server tests (`seed`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masklog.domain.events import Event
from masklog.server.postgres_store import PostgresEventStore
from masklog.server.settings import Settings
from scripts.live_server import USERS, ServerProcess, add_users, seed, start_process
from tests.server.postgres_server import PostgresServer


@dataclass
class Cluster:
    dsn: str
    data: Path
    tokens: dict[str, str]
    processes: list[ServerProcess] = field(default_factory=list)
    # The process that runs the models (the others run with --no-models): one, so a track is
    # worked off once.
    models_on: int = 0

    def start(self, index: int) -> ServerProcess:
        """Start (or restart) process `index` on the shared database and data folder."""
        args = ["--database", self.dsn, *([] if index == self.models_on else ["--no-models"])]
        process = start_process(self.data, None, args=args)
        process.tokens = self.tokens
        if index < len(self.processes):
            self.processes[index] = process
        else:
            self.processes.append(process)
        return process

    def __getitem__(self, index: int) -> ServerProcess:
        return self.processes[index]

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.stop()

    def log(self, stream: str | None = None) -> list[Event]:
        """The whole log (of one stream), read straight from the database."""

        async def read() -> list[Event]:
            async with await PostgresEventStore.open(self.dsn, check=False) as store:
                return await store.read(stream=stream)

        return asyncio.run(read()) if not _in_loop() else _run_in_thread(read)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(make: Any) -> Any:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


class _Seedable:
    """What `seed` needs of a server: its files folder and a REST client."""

    def __init__(self, process: ServerProcess, files: Path) -> None:
        self.files = files
        self.http = process.http


@contextlib.contextmanager
def running_cluster(postgres: PostgresServer, root: Path, size: int = 3, models_on: int = 0) -> Iterator[Cluster]:
    """`size` server processes on a fresh database, seeded through the first one."""
    dsn = _run_in_thread(postgres.create_database) if _in_loop() else asyncio.run(postgres.create_database())
    data = root / "data"
    data.mkdir(parents=True)
    tokens = add_users(Settings(data=data, storage="postgresql", database_url=dsn), USERS)
    cluster = Cluster(dsn, data, tokens, models_on=models_on)
    try:
        for index in range(size):
            cluster.start(index)
        seed(_Seedable(cluster[0], root))  # type: ignore[arg-type]
        yield cluster
    finally:
        cluster.stop()


def on(processes: Sequence[ServerProcess], index: int) -> ServerProcess:
    """Process `index`, round the cluster."""
    return processes[index % len(processes)]
