"""Live fan-out benchmark: N real websocket clients on one media item, one writer at a fixed rate.

    python scripts/bench_fanout.py --clients 50 --rate 100 --seconds 10

Starts `masklog serve` in its own process on 127.0.0.1 with a fresh data folder, connects the
clients, then the writer saves a label `rate` times a second through its own socket. Latency is
measured per (event, client) from the moment the writer sent the command to the moment that
client received the event. Prints JSON: clients, events_per_s (achieved), p50_ms, p99_ms, max_ms,
deliveries, lost (deliveries that never arrived).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from masklog.server.accounts import Role
from scripts.live_server import add_project, start_process, upload, write_video


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        users = {"admin": Role.ADMIN} | {f"u{index}": Role.ANNOTATOR for index in range(args.clients + 1)}
        server = start_process(Path(tmp) / "data", users)
        try:
            with server.http("admin") as http:
                add_project(http, "bench", name="Bench", classes={"box": "bbox"}, members=dict.fromkeys(list(users)[1:], "annotator"))
                upload(http, "bench", "m1", "video", [write_video(Path(tmp) / "clip.mp4", frames=30)], name="clip").raise_for_status()
            return asyncio.run(measure(server.port, server.tokens, args))
        finally:
            server.stop()


async def connect(port: int, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/api/media/m1/ws", max_size=None)
    await ws.send(json.dumps({"type": "hello", "token": token, "last_seq": None}))
    return ws


async def measure(port: int, tokens: dict[str, str], args: argparse.Namespace) -> dict[str, object]:
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    receivers = [await connect(port, tokens[f"u{index}"]) for index in range(args.clients)]
    writer = await connect(port, tokens[f"u{args.clients}"])
    for ws in [*receivers, writer]:
        while json.loads(await ws.recv())["type"] != "snapshot":
            pass
    expected = int(args.rate * args.seconds)
    done = asyncio.Event()
    received = 0

    async def receive(ws: websockets.ClientConnection) -> None:
        nonlocal received
        async for raw in ws:
            now = time.perf_counter()
            message = json.loads(raw)
            if message["type"] != "events":
                continue
            for event in message["events"]:
                started = sent_at.get(event["id"])
                if started is not None:
                    latencies.append((now - started) * 1000)
                    received += 1
            if received >= expected * args.clients:
                done.set()

    async def drain_writer() -> None:
        async for _ in writer:
            pass

    tasks = [asyncio.create_task(receive(ws)) for ws in receivers]
    tasks.append(asyncio.create_task(drain_writer()))
    await writer.send(json.dumps({"type": "command", "id": str(uuid.uuid4()), "body": {"type": "object_created", "object": "o1", "media": "m1", "class_id": "box"}}))
    await asyncio.sleep(0.5)
    started = time.perf_counter()
    for index in range(expected):
        # Pace by the clock so a slow send does not lower the rate for the rest of the run.
        delay = started + index / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        command_id = str(uuid.uuid4())
        body = {"type": "label_saved", "object": "o1", "frame": index % 30, "shape": {"type": "bbox", "x": 1 + index % 50, "y": 1, "w": 5, "h": 5}, "source": "manual"}
        sent_at[command_id] = time.perf_counter()
        await writer.send(json.dumps({"type": "command", "id": command_id, "body": body}))
    elapsed = time.perf_counter() - started
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    except TimeoutError:
        pass
    for task in tasks:
        task.cancel()
    for ws in [*receivers, writer]:
        await ws.close()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else float("nan")

    return {
        "clients": args.clients,
        "events_per_s": round(expected / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "deliveries": len(latencies),
        "lost": expected * args.clients - len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second from the writer")
    parser.add_argument("--seconds", type=float, default=10.0)
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
