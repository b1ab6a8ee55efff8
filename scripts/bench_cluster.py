"""Cluster benchmark: fan-out and appends with 1, 2 and 3 `masklog serve` processes on one
PostgreSQL database, and the same fan-out on SQLite with one process, all in one run.

    python scripts/bench_cluster.py [--seconds 10] [--clients 50] [--rate 100] [--processes 1,2,3]

Starts a throwaway PostgreSQL (Debian's binaries, a temporary data directory, loopback only:
tests/server/postgres_server.py). For each process count N: a fresh database, N server processes
sharing it and one data folder (the shared media root), users and a project with a few video
media items seeded over REST through the first process (the others start after, from the log).
`--clients` websocket clients, each its own user, are spread round-robin over the processes and
the media items so that every media item has clients on every process; each creates an object,
then together they save labels at `--rate` commands a second in total (command k is sent by
client k mod clients at start + k/rate). Measured:

- fan-out latency: from a command's send to the moment each OTHER client on the same media item
  receives its event, over all deliveries (p50/p99/max); `cross_process_deliveries` counts those
  whose receiver sits on another process than the sender;
- ack latency (send to ack) p50/p99;
- deliveries expected (acknowledged commands x other clients on the media item), missing at the
  end (must be 0), duplicates, events out of position order, sockets closed by the server;
- error replies by code, commands never answered; conflicts and retries of the servers (the sum
  of `conflicts` / `retries` in each server's /api/health, null while the servers expose none);
- appends/s of the store itself: `--append-events` small events a process, appended in batches
  of 100 by 4 concurrent tasks (so group commit merges them), from N processes at once on a
  fresh database; the rate is all events over the time from the first start to the last end.

Then the same fan-out (and appends from one process) on SQLite. Prints one JSON object and exits
1 when a run failed (its figures are then its `error`) or missed deliveries. Everything it started (servers, PostgreSQL, temporary folders)
is stopped and removed at the end, also on an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from masklog.server.accounts import Role
from scripts.live_server import ROOT, ServerProcess, add_project, start_process, stopped_on_sigterm, upload, write_video

FRAMES = 30
BATCH = 100  # events per append in the append figure
APPEND_TASKS = 4  # concurrent appenders per process
# Goals of issue 16 (on this machine).
GOAL_FANOUT_P99_MS = 50.0  # with 50 clients at 100 events/s over 3 processes
GOAL_APPENDS_PER_S = 5000.0  # PostgreSQL, batched


# ---- fan-out --------------------------------------------------------------------------------------


@dataclass
class Sent:
    at: float
    sender: int
    media: str
    process: int


@dataclass
class Tally:
    """What the clients saw, all in this process's monotonic clock."""

    sent: dict[str, Sent] = field(default_factory=dict)
    fanout_ms: list[float] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    delivered: set[tuple[str, int]] = field(default_factory=set)
    duplicates: int = 0
    out_of_order: int = 0
    cross_process: int = 0
    closed: list[int] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class BenchClient:
    index: int
    user: str
    media: str
    process: int
    ws: ClientConnection
    last_seq: int = 0
    warmups: set[str] = field(default_factory=set)


def placement(clients: int, processes: int, media: int) -> list[tuple[int, int]]:
    """(process, media item) of each client: round-robin over the processes, and a block of
    `processes` clients per media item in turn, so each media item gets clients on every process."""
    return [(index % processes, (index // processes) % media) for index in range(clients)]


async def connect(server: ServerProcess, client: int, user: str, media: str, process: int) -> BenchClient:
    ws = await websockets.connect(server.ws_url(media), max_size=None)
    await ws.send(json.dumps({"type": "hello", "token": server.tokens[user], "last_seq": None, "frame": 0}))
    welcome = json.loads(await ws.recv())
    if welcome["type"] != "welcome":
        raise RuntimeError(f"{user} was refused on {media}: {welcome}")
    snapshot = json.loads(await ws.recv())
    if snapshot["type"] != "snapshot":
        raise RuntimeError(f"{user} got {snapshot['type']} instead of a snapshot on {media}")
    return BenchClient(client, user, media, process, ws, last_seq=snapshot["seq"])


async def read(client: BenchClient, tally: Tally) -> None:
    try:
        async for raw in client.ws:
            now = time.perf_counter()  # before decoding: decoding is the client's own cost
            message = json.loads(raw)
            kind = message["type"]
            if kind == "events":
                for event in message["events"]:
                    if event["seq"] <= client.last_seq:
                        tally.out_of_order += 1
                    client.last_seq = max(client.last_seq, event["seq"])
                    sent = tally.sent.get(event["id"])
                    if sent is None or sent.sender == client.index:
                        continue
                    key = (event["id"], client.index)
                    if key in tally.delivered:
                        tally.duplicates += 1
                        continue
                    tally.delivered.add(key)
                    tally.fanout_ms.append((now - sent.at) * 1000)
                    tally.cross_process += sent.process != client.process
                tally.progress.set()
            elif kind == "ack":
                client.warmups.discard(message["id"])
                sent = tally.sent.get(message["id"])
                if sent is not None and message["id"] not in tally.acked:
                    tally.acked.add(message["id"])
                    tally.ack_ms.append((now - sent.at) * 1000)
                tally.progress.set()
            elif kind == "error":
                tally.errors[message.get("code", "?")] += 1
                if message.get("id") in tally.sent:
                    tally.refused.add(message["id"])
                tally.progress.set()
    except websockets.ConnectionClosed:
        pass
    finally:
        if client.ws.close_code not in (None, 1000):
            tally.closed.append(client.ws.close_code or 0)
        tally.progress.set()


def pct(values: list[float], p: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else None


async def settle(done: Callable[[], bool], tally: Tally, quiet_s: float, limit_s: float) -> None:
    """Wait until `done()`, or until nothing has arrived for `quiet_s`, or `limit_s` in all."""
    deadline = time.monotonic() + limit_s
    while not done() and time.monotonic() < deadline:
        tally.progress.clear()
        try:
            await asyncio.wait_for(tally.progress.wait(), min(quiet_s, max(0.0, deadline - time.monotonic())))
        except TimeoutError:
            return


async def fanout(servers: list[ServerProcess], users: list[str], media: list[str], args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    where = placement(len(users), len(servers), len(media))
    clients = [await connect(servers[process], index, users[index], media[item], process) for index, (process, item) in enumerate(where)]
    readers = [asyncio.create_task(read(client, tally)) for client in clients]
    others = Counter(client.media for client in clients)
    try:
        # Each client's own object, with a first label: not measured.
        for client in clients:
            command_id = str(uuid.uuid4())
            client.warmups.add(command_id)
            body: dict[str, Any] = {"type": "object_created", "object": f"o{client.index}", "media": client.media, "class_id": "box",
                    "label": {"frame": 0, "shape": _box(client.index), "source": "manual"}}  # fmt: skip
            await client.ws.send(json.dumps({"type": "command", "id": command_id, "body": body}))
        await settle(lambda: not any(client.warmups for client in clients), tally, 10, 30)
        if any(client.warmups for client in clients) or tally.errors:
            raise RuntimeError(f"the clients' objects were not all created: errors {dict(tally.errors)}, closed {tally.closed}")
        await asyncio.sleep(0.5)

        total = int(args.rate * args.seconds)
        started = time.perf_counter()
        for index in range(total):
            # Paced by the clock, so a slow send does not lower the rate for the rest of the run.
            delay = started + index / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            client = clients[index % len(clients)]
            body = {"type": "label_saved", "object": f"o{client.index}", "frame": index % FRAMES, "shape": _box(index), "source": "manual"}
            command_id = str(uuid.uuid4())
            tally.sent[command_id] = Sent(time.perf_counter(), client.index, client.media, client.process)
            # A socket the server closed (closed_by_server) leaves its commands unanswered.
            with contextlib.suppress(websockets.ConnectionClosed):
                await client.ws.send(json.dumps({"type": "command", "id": command_id, "body": body}))
        elapsed = time.perf_counter() - started

        def expected() -> int:
            return sum(others[tally.sent[command].media] - 1 for command in tally.acked)

        def complete() -> bool:
            return len(tally.acked) + len(tally.refused) >= total and len(tally.delivered) >= expected()

        await settle(complete, tally, args.drain, 60)
    finally:
        for client in clients:
            await client.ws.close()
        await asyncio.gather(*readers, return_exceptions=True)

    deliveries = len(tally.delivered)
    counters = [_server_counters(server) for server in servers]
    return {
        "commands": total,
        "events_per_s": round(total / elapsed, 1),
        "fanout_p50_ms": pct(tally.fanout_ms, 0.50),
        "fanout_p99_ms": pct(tally.fanout_ms, 0.99),
        "fanout_max_ms": round(max(tally.fanout_ms), 2) if tally.fanout_ms else None,
        "ack_p50_ms": pct(tally.ack_ms, 0.50),
        "ack_p99_ms": pct(tally.ack_ms, 0.99),
        "acked": len(tally.acked),
        "deliveries": deliveries,
        "deliveries_expected": expected(),
        "missing": expected() - deliveries,
        "cross_process_deliveries": tally.cross_process,
        "duplicates": tally.duplicates,
        "out_of_order": tally.out_of_order,
        "unanswered": total - len(tally.acked) - len(tally.refused),
        "errors": dict(tally.errors),
        "closed_by_server": tally.closed,
        "conflicts": _sum_or_none(counter.get("conflicts") for counter in counters),
        "retries": _sum_or_none(counter.get("retries") for counter in counters),
    }


def _box(index: int) -> dict[str, Any]:
    return {"type": "bbox", "x": 1 + index % 40, "y": 1 + index % 30, "w": 5, "h": 5}


def _server_counters(server: ServerProcess) -> dict[str, Any]:
    """The server's own counters, where /api/health carries them (conflicts, retries)."""
    with contextlib.suppress(Exception), server.http() as http:
        answer = http.get("/api/health").json()
        return answer if isinstance(answer, dict) else {}
    return {}


def _sum_or_none(values: Any) -> int | None:
    found = [value for value in values if isinstance(value, int)]
    return sum(found) if found else None


# ---- servers ------------------------------------------------------------------------------------


def serve(root: Path, processes: int, clients: int, media_items: int, database: str | None, stack: contextlib.ExitStack) -> tuple[list[ServerProcess], list[str], list[str]]:
    """`processes` servers on one data folder (and `database`), seeded through the first; stopped
    when `stack` closes. Returns them, the clients' user names and the media ids."""
    data = root / "data"
    users = [f"u{index}" for index in range(clients)]
    roles = {"admin": Role.ADMIN} | dict.fromkeys(users, Role.ANNOTATOR)
    extra = ["--no-models"]
    first = start_process(data, roles, database=database, args=extra, log=root / "serve-1.log")
    stack.callback(first.stop)
    media = [f"m{index}" for index in range(media_items)]
    with first.http("admin") as http:
        add_project(http, "bench", name="Bench", classes={"box": "bbox"}, members=dict.fromkeys(users, "annotator"))
        video = write_video(root / "clip.mp4", frames=FRAMES)
        for item in media:
            upload(http, "bench", item, "video", [video]).raise_for_status()
    servers = [first]
    # The others start from the seeded log: they know the project whether or not they follow
    # each other's appends yet.
    for number in range(2, processes + 1):
        server = start_process(data, None, database=database, args=extra, log=root / f"serve-{number}.log")
        stack.callback(server.stop)
        server.tokens = first.tokens
        servers.append(server)
    return servers, users, media


def log_tails(root: Path) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}" for log in sorted(root.glob("serve-*.log")))


# ---- appends ------------------------------------------------------------------------------------


async def append_child(kind: str, target: str, events: int) -> None:
    """One appending process: opens the store, says "ready", waits for "go" on stdin, appends
    `events` small events in batches of BATCH from APPEND_TASKS tasks, prints its start and end
    (time.monotonic, one clock for all processes of the machine)."""
    from masklog.server.store import EventStore
    from scripts.bench_store import small_event

    store: EventStore
    if kind == "postgresql":
        from masklog.server.postgres_store import PostgresEventStore

        store = await PostgresEventStore.open(target)
    else:
        from masklog.server.sqlite_store import SQLiteEventStore

        store = await SQLiteEventStore.open(Path(target))
    try:
        batches = [[small_event(i) for i in range(BATCH)] for _ in range(max(1, events // BATCH))]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.monotonic()

        async def appender(task: int) -> None:
            for batch in batches[task::APPEND_TASKS]:
                await store.append(batch)

        await asyncio.gather(*(appender(task) for task in range(APPEND_TASKS)))
        print(json.dumps({"started": started, "ended": time.monotonic(), "events": len(batches) * BATCH}), flush=True)
    finally:
        await store.close()


def appends(kind: str, target: str, processes: int, events: int) -> dict[str, Any]:
    """Appends/s of `processes` processes appending at once to one store."""
    children = [
        subprocess.Popen([sys.executable, __file__, "--append-child", kind, target, str(events)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"an appending process did not start (exit {child.wait()})")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, _ = child.communicate(timeout=600)
            if child.returncode != 0:
                raise RuntimeError(f"an appending process failed (exit {child.returncode})")
            results.append(json.loads(out))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    total = sum(result["events"] for result in results)
    seconds = max(result["ended"] for result in results) - min(result["started"] for result in results)
    return {"append_processes": processes, "append_events": total, "append_batched_per_s": round(total / seconds)}


# ---- the runs -----------------------------------------------------------------------------------


def run_postgres(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    from tests.server.postgres_server import PostgresServer, find_binaries

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): install Debian's postgresql package (scripts/bootstrap.sh does as root)")
    postgres = PostgresServer(binaries)
    stack.callback(postgres.stop)
    postgres.start()
    figures: dict[str, Any] = {"version": binaries.parts[-2]}
    for processes in args.processes:
        dsn = asyncio.run(postgres.create_database())
        run = fanout_run(args, tmp / f"pg-{processes}", processes, dsn)
        append_dsn = asyncio.run(postgres.create_database())
        figures[str(processes)] = run | appends("postgresql", append_dsn, processes, args.append_events)
    return figures


def run_sqlite(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run = fanout_run(args, tmp / "sqlite", 1, None)
    return {"1": run | appends("sqlite", str(tmp / "append.sqlite3"), 1, args.append_events)}


def fanout_run(args: argparse.Namespace, root: Path, processes: int, database: str | None) -> dict[str, Any]:
    """One fan-out run on servers of its own, stopped at its end. A run that fails is reported
    as its error (the servers' log tails go to stderr) and the next run still runs."""
    root.mkdir()
    media = min(args.media, max(1, args.clients // 2))
    with contextlib.ExitStack() as stack:
        try:
            servers, users, media_ids = serve(root, processes, args.clients, media, database, stack)
            return {"media": media} | asyncio.run(fanout(servers, users, media_ids, args))
        except Exception as error:
            print(log_tails(root), file=sys.stderr)
            return {"media": media, "error": f"{type(error).__name__}: {error}"}


def goals(result: dict[str, Any]) -> dict[str, Any]:
    postgres = result.get("postgresql", {})
    three = postgres.get("3", {})
    rates = [figures["append_batched_per_s"] for key, figures in postgres.items() if key.isdigit()]
    return {
        "fanout_p99_ms_3_processes": {"goal": GOAL_FANOUT_P99_MS, "measured": three.get("fanout_p99_ms"),
                                      "met": None if not three or three.get("fanout_p99_ms") is None else three["fanout_p99_ms"] <= GOAL_FANOUT_P99_MS},
        "postgresql_appends_per_s": {"goal": GOAL_APPENDS_PER_S, "measured": max(rates) if rates else None,
                                     "met": None if not rates else max(rates) >= GOAL_APPENDS_PER_S},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each fan-out run")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0, help="commands a second, all clients together")
    parser.add_argument("--processes", type=lambda text: [int(n) for n in text.split(",")], default=[1, 2, 3], help="server process counts on PostgreSQL, comma-separated")
    parser.add_argument("--media", type=int, default=5, help="media items the clients share (at most clients/2, so each has at least two)")
    parser.add_argument("--append-events", type=int, default=20_000, help="events each appending process appends")
    parser.add_argument("--drain", type=float, default=5.0, help="after the last command, seconds with nothing arriving before a run ends")
    parser.add_argument("--json", action="store_true", help="print the JSON only (it is all this prints on stdout anyway)")
    parser.add_argument("--append-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.append_child:
        kind, target, events = args.append_child
        asyncio.run(append_child(kind, target, int(events)))
        return
    if args.clients < 2 or args.rate <= 0 or args.seconds <= 0 or not all(n >= 1 for n in args.processes):
        parser.error("--clients must be at least 2, --rate and --seconds above 0, --processes at least 1 each")

    result: dict[str, Any] = {"clients": args.clients, "rate": args.rate, "seconds": args.seconds}
    with stopped_on_sigterm(), tempfile.TemporaryDirectory(prefix="masklog-cluster-") as tmp, contextlib.ExitStack() as stack:
        result["postgresql"] = run_postgres(args, Path(tmp), stack)
        stack.close()  # PostgreSQL stops before the SQLite run, which then has the machine to itself
        result["sqlite"] = run_sqlite(args, Path(tmp))
    result["goals"] = goals(result)
    if all(figures.get("conflicts") is None for runs in (result["postgresql"], result["sqlite"]) for figures in runs.values() if isinstance(figures, dict)):
        result["note"] = "conflicts/retries: null, the servers expose no such counters yet (/api/health); error replies are under errors"
    print(json.dumps(result))
    runs = [figures for key in ("postgresql", "sqlite") for figures in result[key].values() if isinstance(figures, dict)]
    if any("error" in figures or figures["missing"] or figures["unanswered"] for figures in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
