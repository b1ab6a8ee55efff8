"""Tracking and click latency through the whole server path, against the bare backend.

    python scripts/bench_track.py [--clip blackswan] [--frames 50] [--repeats 7] [--clicks 10]
    python scripts/bench_track.py --sam2-checkpoint sam2.1_hiera_tiny.pt --device cuda
    python scripts/bench_track.py --sam2-random --frames 6 --repeats 3 --clicks 4   # SAM 2 speed only

Tracking: the same frames and the same first-frame mask (a DAVIS ground-truth annotation under
../shared/data/vos, or a synthetic clip when that folder is missing) are tracked

- bare: the backend's tracker session in this process, frames read from the same image files,
  timed from opening the session to the last frame's mask;
- through: `masklog serve` in its own process; a socket client sends `track_requested` and the
  time runs from sending it to receiving the last frame's `track_frame_produced` event, so it
  includes the actor, the shapes made from the masks, the log's commits and the fan-out.

Each is run `--repeats` times, alternating, bare then through: `ratio` is the median over the
pairs of through_fps / backend_fps (the fps figures are medians of the runs). Clicks: `segment` on the bare segmenter against `prompt_added` sent on the socket
until the `segment_proposed` event arrives (median of `--clicks`). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: `scripts` and `tests`

from masklog.domain.events import Direction
from masklog.domain.geometry import rle_encode
from masklog.inference.frames.images import ImageListFrames
from masklog.inference.protocols import ClickPoint, Prompt
from masklog.inference.registry import ModelOptions, load_backends
from masklog.server.accounts import Role
from scripts.live_server import ServerProcess, add_project, start_process, upload

ROOT = Path(__file__).resolve().parent.parent
VOS = ROOT.parent / "shared" / "data" / "vos"


def clip_files(args: argparse.Namespace, folder: Path) -> tuple[list[Path], np.ndarray, str]:
    """Frame files and the first frame's object mask."""
    sequence = VOS / args.clip
    if sequence.is_dir():
        frames = sorted((sequence / "JPEGImages").iterdir())[: args.frames]
        annotation = cv2.imread(str(sorted((sequence / "Annotations").iterdir())[0]), cv2.IMREAD_GRAYSCALE)
        return frames, annotation > 0, f"vos/{args.clip}"
    # No shared data here: a textured disc moving over texture, written losslessly.
    sys.path.insert(0, str(ROOT))
    from tests.server.tracking_clips import Clip, Disc

    clip = Clip(854, 480, args.frames, (Disc((220, 40, 40), 200, 240, 3, 1, r=60),))
    return clip.write_images(folder / "synthetic"), clip.discs[0].mask(0, 480, 854), "synthetic 854x480"


def bare_track(backends, paths: list[Path], mask: np.ndarray) -> float:
    started = time.perf_counter()
    frames = ImageListFrames(paths)  # the actor opens its own source of the files as well
    session = backends.trackers[backends.advanced].open(frames)
    session.add_mask(0, "o", mask)
    count = 0
    for _ in session.propagate(0, Direction.FORWARD, len(paths)):
        count += 1
    elapsed = time.perf_counter() - started
    session.close()
    assert count == len(paths)
    return (len(paths) - 1) / elapsed


def bare_click(backends, frames: ImageListFrames, x: float, y: float) -> float:
    started = time.perf_counter()
    backends.segmenter.segment(frames, 0, Prompt(points=(ClickPoint(x, y),)))
    return (time.perf_counter() - started) * 1000


class Socket:
    def __init__(self, ws) -> None:  # type: ignore[no-untyped-def]
        self.ws = ws

    async def command(self, body: dict, command_id: str | None = None) -> str:
        command_id = command_id or str(uuid.uuid4())
        await self.ws.send(json.dumps({"type": "command", "id": command_id, "body": body}))
        return command_id

    async def until(self, predicate) -> dict:  # type: ignore[no-untyped-def]
        """Read until an event matches; returns it."""
        while True:
            message = json.loads(await self.ws.recv())
            if message["type"] == "error":
                raise RuntimeError(message)
            if message["type"] == "events":
                for event in message["events"]:
                    if predicate(event):
                        return event


def through(args: argparse.Namespace, paths: list[Path], mask: np.ndarray, points: list[tuple[float, float]], bare: list[float], backends) -> dict:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        extra = []
        if args.sam2_checkpoint:
            extra = ["--sam2-checkpoint", args.sam2_checkpoint, *(["--device", args.device] if args.device else [])]
        server = start_process(Path(tmp) / "data", {"bench": Role.ADMIN}, args=extra, timeout=120)
        try:
            with server.http("bench", timeout=120) as http:
                add_project(http, "bench", name="Bench", classes={"mask": "bitmask"})
                upload(http, "bench", "clip", "image_sequence", paths).raise_for_status()
            return asyncio.run(socket_runs(args, server, paths, mask, points, bare, backends))
        finally:
            server.stop()


async def socket_runs(args: argparse.Namespace, server: ServerProcess, paths: list[Path], mask: np.ndarray, points: list[tuple[float, float]], bare: list[float], backends) -> dict:  # type: ignore[no-untyped-def]
    rle = rle_encode(mask)
    async with websockets.connect(server.ws_url("clip"), max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "token": server.tokens["bench"], "last_seq": None}))
        link = Socket(ws)
        through_fps: list[float] = []
        for repeat in range(args.repeats):
            object_id = f"o{repeat}"
            await link.command({"type": "object_created", "object": object_id, "media": "clip", "class_id": "mask"})
            shape = {"type": "bitmask", "rle": {"size": list(rle.size), "counts": rle.counts}}
            saved = await link.command({"type": "label_saved", "object": object_id, "frame": 0, "shape": shape, "source": "manual"})
            await link.until(lambda e, saved=saved: e["id"] == saved)
            # Alternate with the bare runs so both see the same machine state.
            bare.append(await asyncio.to_thread(bare_track, backends, paths, mask))
            track = str(uuid.uuid4())
            last = len(paths) - 1
            started = time.perf_counter()
            await link.command({"type": "track_requested", "media": "clip", "objects": [object_id], "start": 0, "direction": "forward", "range": len(paths)}, track)
            await link.until(lambda e, track=track, last=last: e["body"]["type"] == "track_frame_produced" and e["body"]["track"] == track and e["body"]["frame"] == last)
            through_fps.append(last / (time.perf_counter() - started))
            await link.until(lambda e, track=track: e["body"]["type"] in ("track_completed", "track_failed") and e["body"]["track"] == track)
        # Clicks: each point on the bare segmenter, then through the socket, in turn.
        frames = ImageListFrames(paths)
        bare_click(backends, frames, *points[0])  # warm-up
        click_ms, socket_ms = [], []
        await link.command({"type": "object_created", "object": "clicked", "media": "clip", "class_id": "mask"})
        for number, (x, y) in enumerate([points[0], *points]):
            if number:  # the first one warms up
                click_ms.append(await asyncio.to_thread(bare_click, backends, frames, x, y))
            started = time.perf_counter()
            prompt = await link.command({"type": "prompt_added", "object": "clicked", "frame": 0, "points": [{"x": x, "y": y}]})
            await link.until(lambda e, prompt=prompt: e["body"]["type"] == "segment_proposed" and e["body"]["prompt"] == prompt)
            if number:
                socket_ms.append((time.perf_counter() - started) * 1000)
    return {"through_fps": through_fps, "click_ms_backend": statistics.median(click_ms), "click_ms_socket": statistics.median(socket_ms)}


def random_checkpoint() -> str:
    """A checkpoint file of SAM 2 tiny with random weights (the real architecture, full size)."""
    import torch

    from masklog.inference.sam2.model import DEFAULT_CONFIG, load_sam2

    torch.manual_seed(0)
    model = load_sam2(DEFAULT_CONFIG, None, "cpu", random_weights=True)
    path = Path(tempfile.mkdtemp()) / "sam2.1_hiera_tiny-random.pt"
    torch.save({"model": model.net.state_dict()}, path)
    return str(path)


def device_name(args: argparse.Namespace) -> str:
    if args.sam2_checkpoint:
        import torch

        if torch.cuda.is_available() and (args.device or "cuda").startswith("cuda"):
            return torch.cuda.get_device_name(0)
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="blackswan", help="a sequence under ../shared/data/vos")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--sam2-checkpoint", help="bench SAM 2 (advanced) instead of the classical backend")
    parser.add_argument("--device")
    parser.add_argument("--sam2-random", action="store_true", help="SAM 2 (tiny) with random weights, saved as a checkpoint for both sides: speed only, the masks mean nothing")
    args = parser.parse_args()
    weights = "checkpoint" if args.sam2_checkpoint else "n/a"
    if args.sam2_random:
        args.sam2_checkpoint = random_checkpoint()
        weights = "random"
    options = ModelOptions(checkpoint=Path(args.sam2_checkpoint) if args.sam2_checkpoint else None, device=args.device)
    backends = load_backends("sam2" if args.sam2_checkpoint else "classical", options)
    with tempfile.TemporaryDirectory() as tmp:
        paths, mask, source = clip_files(args, Path(tmp))
        ys, xs = np.nonzero(mask)
        rng = np.random.default_rng(0)
        picks = rng.choice(len(xs), size=args.clicks, replace=False)
        points = [(float(xs[i]), float(ys[i])) for i in picks]
        bare: list[float] = []
        result = through(args, paths, mask, points, bare, backends)
    backend_fps = statistics.median(bare)
    through_fps = statistics.median(result["through_fps"])
    # Each through run follows its bare run: the median of the pairs' ratios cancels the drift
    # of a shared machine's speed better than a ratio of medians.
    ratio = statistics.median(t / b for t, b in zip(result["through_fps"], bare, strict=True))
    print(json.dumps({
        "clip": source,
        "frames": len(paths),
        "size": [int(mask.shape[1]), int(mask.shape[0])],
        "tracker": backends.trackers[backends.advanced].model,
        "weights": weights,
        "segmenter": backends.segmenter.model,
        "device": device_name(args),
        "backend_fps": round(backend_fps, 2),
        "through_fps": round(through_fps, 2),
        "ratio": round(ratio, 3),
        "backend_fps_runs": [round(v, 2) for v in bare],
        "through_fps_runs": [round(v, 2) for v in result["through_fps"]],
        "click_ms_backend": round(result["click_ms_backend"], 1),
        "click_ms_socket": round(result["click_ms_socket"], 1),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
