"""Segmentation and tracking backends benchmark: SAM 2 (ours against raw sam2), and classical.

    python scripts/bench_backends.py [--device cuda] [--image-size 1024] [--config sam2.1_hiera_t]
        [--checkpoint PATH] [--frames 60] [--long-frames 1200] [--track 30] [--classical] [--out FILE]
        [--parts click,track,long,objects] [--objects 1,3,10,30] [--compile [MODE]]
        [--compile-backend inductor] [--preprocess exact|device]

Prints JSON. SAM 2 runs with random weights unless --checkpoint is given (speed does not depend
on weight values). Made-up data only: the script writes a synthetic 854x480 video (a JPEG folder,
the input sam2's `init_state` reads, and an MP4 when PyAV is installed) into a temp dir.

- click: click -> mask latency of `Sam2Segmenter`, cold (decode + image encoder + decoder) and
  warm (the frame's embedding cached: prompt encoder + mask decoder only), and "navigated"
  (issue 19: the user moved to the frame 1 s before clicking; meanwhile a background thread
  warms the frames around it, as the inference actor does when idle).
- track: frames/s of our tracker and of raw sam2 (`init_state` + `propagate_in_video`) on the
  same short video in one process; raw is timed without and with its `init_state`. Ours
  prepares frames the model's default way (on CUDA resized on the GPU, else PIL's exact resize;
  `--preprocess` picks one); `track_exact` repeats it with the exact path on CUDA.
- compile (--compile [MODE]): the track measure with the network compiled (sam2's
  vos_optimized build; MODE default sam2's "max-autotune"): the warm-up's time (the first
  calls, which compile), frames/s compiled (ours and raw on the same compiled network) and, in
  a second process with the compile cache the first one left on disk, the warm-up again.
- long: a `--track`-frame track starting in the middle of a long video (and of one a quarter as
  long, to show what grows with the length): time from opening the video to the last mask, and
  peak memory: the process's peak RSS, the growth of RSS over the warmed-up model, and on CUDA
  torch.cuda.max_memory_allocated. Each run is a separate process, so peaks don't mix.
- objects: frames/s against the number of objects tracked at once (--objects), on the short
  video, all objects prompted on its first frame: our tracker (objects in batches, the
  default), our tracker object by object (`batch=False`, as before batching), and raw sam2's
  `propagate_in_video` with the same objects, in one process (frames/s from the median time of
  a tracked frame); `ratio_10_over_1` is the
  10-object frames/s over the 1-object frames/s. `fidelity` compares the batched masks with the
  object-by-object ones (max logit difference, min IoU) on the first frames.
- classical (--classical): the same measures for the classical backend (inference/classical/).

--parts picks the SAM 2 parts to run (default: click,track,long; objects is asked for).

Every timed run starts with the model loaded and warmed up (a short track on other frames),
as in a server; model loading is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT = 854, 480


# ---- synthetic video -------------------------------------------------------------------------


def object_center(i: int) -> tuple[int, int]:
    """Where the moving disc is on frame i (the click target)."""
    x = 150 + int(250 * (1 + np.sin(i / 40.0)))
    y = 240 + int(80 * np.cos(i / 55.0))
    return x, y


def make_frames(n: int):
    import cv2

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    background = np.stack([xx * 255 // WIDTH, yy * 255 // HEIGHT, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    background = cv2.add(background, rng.integers(0, 25, background.shape, dtype=np.uint8))
    for i in range(n):
        img = background.copy()
        cv2.circle(img, object_center(i), 60, (230, 40, 40), -1)
        cv2.rectangle(img, (600 - i % 200, 60), (700 - i % 200, 160), (30, 200, 60), -1)
        yield img


def write_video(folder: Path, n: int, mp4: bool) -> dict[str, Any]:
    """A JPEG folder (00000.jpg, ...) and, with PyAV, an H.264 MP4 of the same frames."""
    import cv2

    folder.mkdir(parents=True)
    container = stream = None
    if mp4:
        import av

        container = av.open(str(folder / "video.mp4"), "w")
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    for i, img in enumerate(make_frames(n)):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if stream is not None:
            import av

            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
    if stream is not None:
        for packet in stream.encode():
            container.mux(packet)
        container.close()
    return {"frames": n, "jpeg": str(folder), "mp4": str(folder / "video.mp4") if mp4 else None}


# ---- measuring -------------------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Memory:
    """Peak memory of what happens after `start()`, over the warmed-up process."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def start(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.cuda_base = torch.cuda.memory_allocated()
        self.rss_base = rss_mb()

    def report(self) -> dict[str, float]:
        import torch

        # ru_maxrss is the peak since the process started: growth is 0 when the model load peaked higher.
        out = {"peak_rss_mb": round(peak_rss_mb(), 1), "rss_growth_mb": round(max(0.0, peak_rss_mb() - self.rss_base), 1)}
        if self.cuda:
            torch.cuda.synchronize()
            out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            out["cuda_growth_mb"] = round((torch.cuda.max_memory_allocated() - self.cuda_base) / 2**20, 1)
        return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def load(args: argparse.Namespace):
    import torch

    from masklog.inference.sam2.model import CompileOptions, load_sam2

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t = time.perf_counter()
    sam = load_sam2(
        args.config,
        args.checkpoint,
        device=args.device,
        image_size=args.image_size,
        random_weights=args.checkpoint is None,
        preprocess_on_device=None if args.preprocess is None else args.preprocess == "device",
        compile=CompileOptions(backend=args.compile_backend, mode=args.compile, cache_dir=args.compile_cache) if args.compile else None,
    )
    sync(args.device)
    return sam, time.perf_counter() - t


def warm_up(sam: Any, tracker_cls: Any) -> None:
    """A 3-frame track on other pixels: CUDA kernels, cuBLAS/cuDNN handles and allocator pools
    are set up before anything is timed, as in a running server."""
    from masklog.domain.events import Direction
    from masklog.inference.frames.arrays import ArrayFrames
    from masklog.inference.protocols import ClickPoint, Prompt

    frames = ArrayFrames([np.full((HEIGHT, WIDTH, 3), 60 + 40 * i, np.uint8) for i in range(3)])
    session = tracker_cls(sam).open(frames)
    session.add_prompt(0, "warm", Prompt(points=[ClickPoint(WIDTH / 2, HEIGHT / 2)]))
    for _ in session.propagate(0, Direction.FORWARD, 3):
        pass
    session.close()
    sync(str(sam.device))


def click_prompt(i: int):
    from masklog.inference.protocols import ClickPoint, Prompt

    x, y = object_center(i)
    return Prompt(points=[ClickPoint(x, y)])


def open_frames(kind: str, video: dict[str, Any]):
    from masklog.inference.frames.images import ImageListFrames
    from masklog.inference.frames.video import VideoFrames

    if kind == "mp4":
        return VideoFrames(video["mp4"])
    return ImageListFrames(sorted(Path(video["jpeg"]).glob("*.jpg")))


# ---- workers (each its own process) ------------------------------------------------------------


def worker_click(args: argparse.Namespace, video: dict[str, Any]) -> dict[str, Any]:
    from masklog.inference.protocols import ClickPoint, Prompt
    from masklog.inference.sam2.image import Sam2Segmenter
    from masklog.inference.sam2.video import Sam2Tracker

    sam, load_s = load(args)
    warm_up(sam, Sam2Tracker)
    frames = open_frames("jpeg", video)
    seg = Sam2Segmenter(sam, cache_size=2)
    seg.segment(frames, 0, click_prompt(0))  # the segmenter's own first call, not timed
    cold, warm = [], []
    for i in range(1, 1 + args.clicks):
        t = time.perf_counter()
        seg.segment(frames, i, click_prompt(i))
        cold.append(time.perf_counter() - t)
        x, y = object_center(i)
        for k in range(2):
            prompt = Prompt(points=[ClickPoint(x, y), ClickPoint(x + 30 * (k + 1), y, include=False)])
            t = time.perf_counter()
            seg.segment(frames, i, prompt)
            warm.append(time.perf_counter() - t)
    navigated, embedded = navigated_clicks(sam, frames, args.clicks)
    return {
        "model_load_s": round(load_s, 2),
        "cold_ms": ms_stats(cold),
        "warm_ms": ms_stats(warm),
        "embeddings_computed": seg.embeddings_computed,
        "navigated_1s_ms": ms_stats(navigated),
        "navigated_embedded_before_click": embedded,
    }


def navigated_clicks(sam: Any, frames: Any, clicks: int, ahead_s: float = 1.0) -> tuple[list[float], int]:
    """Click latency on frames the user moved to `ahead_s` before: the frames around it are
    handed to the segmenter (`want`, as the actor does on a presence message) and warmed by a
    background thread meanwhile. Returns the latencies and how many of the clicked frames were
    embedded by the time of the click."""
    import threading

    from masklog.inference.actor import frames_around
    from masklog.inference.sam2.image import Sam2Segmenter

    seg = Sam2Segmenter(sam)
    seg.segment(frames, 0, click_prompt(0))  # not timed
    stop = threading.Event()

    def idle_loop() -> None:
        while not stop.is_set():
            if not seg.warm_one():
                stop.wait(0.002)

    warmer = threading.Thread(target=idle_loop, daemon=True)
    warmer.start()
    latencies: list[float] = []
    embedded = 0
    try:
        for k in range(clicks):
            frame = min(len(frames) - 1, 50 + 40 * k)  # far from the last: a cold frame
            seg.want(frames, frames_around(frame, len(frames)))
            time.sleep(ahead_s)
            embedded += seg.cached(frames, frame)
            t = time.perf_counter()
            seg.segment(frames, frame, click_prompt(frame))
            latencies.append(time.perf_counter() - t)
    finally:
        stop.set()
        warmer.join()
    return latencies, embedded


def worker_track(args: argparse.Namespace, video: dict[str, Any]) -> dict[str, Any]:
    """Ours and raw on the same short video, in one process."""
    from masklog.domain.events import Direction
    from masklog.inference.sam2.video import Sam2Tracker

    sam, _ = load(args)
    t = time.perf_counter()
    if args.compile:  # what a server started with compile on runs before serving
        from masklog.inference.sam2.warmup import warm_up as warm_up_compiled

        warm_up_compiled(sam)
    warm_up(sam, Sam2Tracker)
    warm_up_s = time.perf_counter() - t
    n = video["frames"]
    x, y = object_center(0)

    session = Sam2Tracker(sam).open(open_frames("jpeg", video))
    session.add_prompt(0, "a", click_prompt(0))
    t = time.perf_counter()
    ours_masks = [step[0].mask for step in session.propagate(0, Direction.FORWARD, n)]
    ours_s = time.perf_counter() - t

    t = time.perf_counter()
    with sam.running():
        state = sam.net.init_state(video["jpeg"])
    sync(args.device)
    init_s = time.perf_counter() - t
    with sam.running():
        sam.net.add_new_points_or_box(state, 0, "a", points=np.array([[x, y]], np.float32), labels=np.array([1], np.int32))
        t = time.perf_counter()
        raw_masks = [(masks[0, 0] > 0).cpu().numpy() for _, _, masks in sam.net.propagate_in_video(state, 0, n - 1)]
        raw_s = time.perf_counter() - t  # as ours: every frame's masks end up on the host
    tracked = n - 1  # the first frame is the prompted one
    return {
        "frames": n,
        "preprocess": "device" if sam.preprocess_on_device else "exact",
        "compiled": f"{args.compile_backend}/{args.compile}" if args.compile else None,
        "warm_up_s": round(warm_up_s, 2),  # with --compile: inference.sam2.warmup first, i.e. the compile time
        "ours_fps": round(tracked / ours_s, 2),
        "raw_fps_propagate_only": round(tracked / raw_s, 2),
        "raw_fps_with_init_state": round(tracked / (raw_s + init_s), 2),
        "raw_init_state_s": round(init_s, 2),
        "ours_over_raw_propagate": round(raw_s / ours_s, 3),
        "ours_over_raw_with_init_state": round((raw_s + init_s) / ours_s, 3),
        # Agreement with raw sam2's masks (random weights make masks fragile; ours decodes the
        # JPEGs with OpenCV, raw with PIL, which may differ by a grey level here and there).
        "mask_iou_vs_raw": iou_stats(ours_masks, raw_masks),
    }


def object_prompts(n: int) -> list[Any]:
    """`n` clicks on a grid over the frame (with random weights any pixel makes an object)."""
    from masklog.inference.protocols import ClickPoint, Prompt

    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    return [Prompt(points=[ClickPoint(WIDTH * (0.5 + k % cols) / cols, HEIGHT * (0.5 + k // cols) / rows)]) for k in range(n)]


def worker_objects(args: argparse.Namespace, video: dict[str, Any]) -> dict[str, Any]:
    """Frames/s against the number of objects: ours batched, ours object by object, raw sam2."""
    from masklog.domain.events import Direction
    from masklog.inference.sam2.video import Sam2Tracker

    sam, _ = load(args)
    warm_up(sam, Sam2Tracker)
    n = video["frames"]
    counts = [int(c) for c in args.objects.split(",")]
    with sam.running():
        raw_state = sam.net.init_state(video["jpeg"])
    out: dict[str, Any] = {"frames": n, "repeat": args.repeat, "objects": {}}

    def ours(prompts: list[Any], batch: bool) -> tuple[float, int]:
        session = Sam2Tracker(sam, batch=batch).open(open_frames("jpeg", video))
        for k, prompt in enumerate(prompts):
            session.add_prompt(0, f"o{k}", prompt)
        sync(args.device)
        ticks = [time.perf_counter()]
        for _ in session.propagate(0, Direction.FORWARD, n):
            ticks.append(time.perf_counter())
        session.close()
        return per_frame_fps(ticks), session.batches

    def raw(prompts: list[Any]) -> float:
        with sam.running():
            sam.net.reset_state(raw_state)
            for k, prompt in enumerate(prompts):
                click = np.array([[prompt.points[0].x, prompt.points[0].y]], np.float32)
                sam.net.add_new_points_or_box(raw_state, 0, f"o{k}", points=click, labels=np.array([1], np.int32))
            sync(args.device)
            ticks = [time.perf_counter()]
            for _, _, masks in sam.net.propagate_in_video(raw_state, 0, n - 1):
                (masks > 0).cpu().numpy()  # as ours: every frame's masks end up on the host
                ticks.append(time.perf_counter())
        return per_frame_fps(ticks)

    for count in counts:
        prompts = object_prompts(count)
        row: dict[str, Any] = {"ours_fps": 0.0, "ours_one_by_one_fps": 0.0, "raw_fps": 0.0}
        for _ in range(args.repeat):  # the variants in turn; the best of the rounds
            fps, row["batched_calls"] = ours(prompts, True)
            row["ours_fps"] = max(row["ours_fps"], fps)
            row["ours_one_by_one_fps"] = max(row["ours_one_by_one_fps"], ours(prompts, False)[0])
            row["raw_fps"] = max(row["raw_fps"], raw(prompts))
        row["ours_over_raw"] = round(row["ours_fps"] / row["raw_fps"], 3)
        out["objects"][str(count)] = row
        print(f"[bench] objects {count}: {row}", file=sys.stderr, flush=True)
    if "1" in out["objects"] and "10" in out["objects"]:
        one, ten = out["objects"]["1"], out["objects"]["10"]
        out["ratio_10_over_1"] = {k: round(ten[f"{k}_fps"] / one[f"{k}_fps"], 3) for k in ("ours", "ours_one_by_one", "raw")}
    out["fidelity"] = batch_fidelity(sam, video, max(c for c in counts if c <= 10), min(n, 8))
    return out


def per_frame_fps(ticks: list[float]) -> float:
    """Frames/s from the median time of a tracked frame (past the prompted first one): on a busy
    machine one stall then moves the figure less than in a total."""
    per_frame = [b - a for a, b in zip(ticks[1:], ticks[2:], strict=False)]
    return round(1.0 / statistics.median(per_frame), 2)


def batch_fidelity(sam: Any, video: dict[str, Any], count: int, frames: int) -> dict[str, Any]:
    """Batched against object by object on the first `frames` frames with `count` objects."""
    from masklog.domain.events import Direction
    from masklog.inference.sam2.video import Sam2Tracker

    results = []
    for batch in (True, False):
        session = Sam2Tracker(sam, batch=batch).open(open_frames("jpeg", video))
        for k, prompt in enumerate(object_prompts(count)):
            session.add_prompt(0, f"o{k}", prompt)
        results.append(list(session.propagate_logits(0, Direction.FORWARD, frames)))
        session.close()
    worst_iou, logit_diff, score_diff, differ = 1.0, 0.0, 0.0, 0
    for a, b in zip(*results, strict=True):
        logit_diff = max(logit_diff, float(np.abs(a.logits - b.logits).max()))
        score_diff = max(score_diff, float(np.abs(a.object_scores - b.object_scores).max()))
        for x, y in zip(a.logits > 0, b.logits > 0, strict=True):
            union = int((x | y).sum())
            worst_iou = min(worst_iou, float((x & y).sum()) / union if union else 1.0)
            differ += int((x != y).sum())
    return {
        "objects": count,
        "frames": frames,
        "max_logit_diff": logit_diff,
        "max_object_score_diff": score_diff,
        "min_mask_iou": round(worst_iou, 6),
        "pixels_differing": differ,
    }


def iou_stats(ours: list[Any], raw: list[Any]) -> dict[str, float]:
    ious = []
    for a, b in zip(ours, raw, strict=True):
        a = np.zeros_like(b) if a is None else a  # ours: None where the object is lost
        union = int((a | b).sum())
        ious.append(float((a & b).sum() / union) if union else 1.0)
    return {"min": round(min(ious), 4), "median": round(statistics.median(ious), 4)}


def worker_long(args: argparse.Namespace, video: dict[str, Any], source: str) -> dict[str, Any]:
    from masklog.domain.events import Direction
    from masklog.inference.sam2.video import Sam2Tracker

    sam, load_s = load(args)
    warm_up(sam, Sam2Tracker)
    n, count = video["frames"], args.track
    start = n // 2
    mem = Memory(args.device)
    mem.start()
    out: dict[str, Any] = {"video_frames": n, "start": start, "tracked": count, "model_load_s": round(load_s, 2)}
    t0 = time.perf_counter()
    if source == "raw":
        x, y = object_center(start)
        with sam.running():
            state = sam.net.init_state(video["jpeg"])
            sync(args.device)
            out["init_state_s"] = round(time.perf_counter() - t0, 2)
            click, label = np.array([[x, y]], np.float32), np.array([1], np.int32)
            sam.net.add_new_points_or_box(state, start, "a", points=click, labels=label)
            out["first_mask_s"] = round(time.perf_counter() - t0, 3)
            ticks = [time.perf_counter()]
            for _, _, masks in sam.net.propagate_in_video(state, start, count - 1):
                (masks > 0).cpu().numpy()
                ticks.append(time.perf_counter())
    else:
        frames = open_frames(source, video)
        session = Sam2Tracker(sam).open(frames)
        session.add_prompt(start, "a", click_prompt(start))
        out["first_mask_s"] = round(time.perf_counter() - t0, 3)
        ticks = [time.perf_counter()]
        for _ in session.propagate(start, Direction.FORWARD, count):
            ticks.append(time.perf_counter())
        retained = session.retained()
        out["session_tensor_mb"] = round(retained.tensor_bytes / 2**20, 2)
        out["frames_decoded_by_model"] = retained.frames_read
    out["last_mask_s"] = round(time.perf_counter() - t0, 3)
    # Per tracked frame, past the prompted one (whose mask the prompt already produced).
    out["tracked_frame_ms"] = ms_stats([b - a for a, b in zip(ticks[1:], ticks[2:], strict=False)])
    out.update(mem.report())
    return out


def worker_classical(args: argparse.Namespace, video: dict[str, Any]) -> dict[str, Any]:
    """The classical backend's segmenter and tracker (inference/classical/), with default settings."""
    from masklog.domain.events import Direction
    from masklog.inference.classical.segmenter import ClassicalSegmenter
    from masklog.inference.classical.tracker import ClassicalTracker
    from masklog.inference.protocols import Segmenter, Tracker

    out: dict[str, Any] = {}
    for obj in (ClassicalSegmenter(), ClassicalTracker()):
        name = type(obj).__name__
        n = video["frames"]
        start = n // 2
        if isinstance(obj, Segmenter):
            frames = open_frames("jpeg", video)
            times = []
            for i in range(args.clicks):
                t = time.perf_counter()
                obj.segment(frames, start + i, click_prompt(start + i))
                times.append(time.perf_counter() - t)
            out[name] = {"model": obj.model, "click_ms": ms_stats(times)}
        elif isinstance(obj, Tracker):
            mem = Memory("cpu")
            mem.start()
            t0 = time.perf_counter()
            frames = open_frames("mp4" if video["mp4"] else "jpeg", video)
            mask = np.zeros((HEIGHT, WIDTH), bool)
            x, y = object_center(start)
            yy, xx = np.ogrid[0:HEIGHT, 0:WIDTH]
            mask[(xx - x) ** 2 + (yy - y) ** 2 < 60**2] = True
            session = obj.open(frames)
            session.add_mask(start, "a", mask)
            for _ in session.propagate(start, Direction.FORWARD, args.track):
                pass
            last = time.perf_counter() - t0
            out[name] = {
                "model": obj.model,
                "video_frames": n,
                "tracked": args.track,
                "last_mask_s": round(last, 3),
                "fps": round((args.track - 1) / last, 2),
                **mem.report(),
            }
    return out


def ms_stats(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"median": round(statistics.median(ms), 2), "min": round(min(ms), 2), "n": len(ms)}


# ---- orchestration ---------------------------------------------------------------------------


def run_worker(args: argparse.Namespace, name: str, video: dict[str, Any], source: str = "") -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", name, "--video", json.dumps(video), "--source", source]
    cmd += ["--device", args.device, "--image-size", str(args.image_size), "--config", args.config]
    cmd += ["--track", str(args.track), "--clicks", str(args.clicks), "--compile-backend", args.compile_backend, "--objects", args.objects, "--repeat", str(args.repeat)]
    if args.preprocess:
        cmd += ["--preprocess", args.preprocess]
    if args.compile:
        cmd += ["--compile", args.compile, "--compile-cache", str(args.compile_cache)]
    if args.checkpoint:
        cmd += ["--checkpoint", str(args.checkpoint)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONWARNINGS="ignore")
    print(f"[bench] {name} {source} on {video['frames']} frames ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.worker_timeout)
    except subprocess.TimeoutExpired:  # the child is killed: nothing of it keeps the GPU busy
        return {"error": f"timed out after {args.worker_timeout} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-5:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_compile(args: argparse.Namespace, mode: str, video: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Tracking with the network compiled: a first process compiles (into a fresh cache unless
    --compile-cache names one), a second one starts with the cache the first one left."""
    cache = args.compile_cache or tmp / "compile-cache"
    compiled = argparse.Namespace(**{**vars(args), "compile": mode, "compile_cache": cache})
    first = run_worker(compiled, "track", video)
    second = run_worker(compiled, "track", video)
    out: dict[str, Any] = {"mode": mode, "backend": args.compile_backend, "cache": str(cache), "first_process": first, "second_process": second}
    if "error" not in first and "error" not in second:
        out["compile_s_cold_cache"] = first["warm_up_s"]
        out["compile_s_warm_cache"] = second["warm_up_s"]
    return out


def describe(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata

    import torch

    info: dict[str, Any] = {
        "device": args.device,
        "config": args.config,
        "image_size": args.image_size,
        "weights": str(args.checkpoint) if args.checkpoint else "random",
        "torch": torch.__version__,
        "sam2": importlib.metadata.version("sam2"),
        "autocast": "bf16" if args.device.startswith("cuda") else "none (float32)",
        "cpu_threads": args.threads or torch.get_num_threads(),
    }
    if args.device.startswith("cuda"):
        info["card"] = torch.cuda.get_device_name()
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--image-size", type=int, default=None, help="model input size (default 1024 on CUDA, 128 on CPU)")
    p.add_argument("--config", default="sam2.1_hiera_t")
    p.add_argument("--checkpoint", type=Path, default=None, help="real weights (default: random weights)")
    p.add_argument("--frames", type=int, default=None, help="short video for frames/s (default 60 on CUDA, 10 on CPU)")
    p.add_argument("--long-frames", type=int, default=None, help="long video length (default 1200 on CUDA, 300 on CPU)")
    p.add_argument("--track", type=int, default=30, help="frames tracked in the long video, counting the start")
    p.add_argument("--clicks", type=int, default=5, help="cold clicks measured (twice as many warm ones)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-scaling", action="store_true", help="skip the quarter-length long video")
    p.add_argument("--classical", action="store_true", help="also measure the classical backend (inference/classical/)")
    p.add_argument("--parts", default="click,track,long", help="SAM 2 parts to run, of click,track,long,objects")
    p.add_argument("--objects", default="1,3,10,30", help="object counts of the objects part")
    p.add_argument("--repeat", type=int, default=1, help="rounds of the objects part (the best is kept)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--preprocess", choices=["exact", "device"], default=None, help="frame preprocessing (default: device on CUDA, exact elsewhere)")
    p.add_argument(
        "--compile", nargs="?", const="max-autotune", default=None, metavar="MODE",
        help="also measure tracking with the model compiled (torch.compile mode; default sam2's max-autotune)",
    )  # fmt: skip
    p.add_argument("--worker-timeout", type=float, default=None, help="seconds each measuring process may take (default: no limit)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend for --compile (default inductor)")
    p.add_argument("--compile-cache", type=Path, default=None, help="compile cache folder (default: a fresh temp folder, so the first run compiles)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--video", default=None, help=argparse.SUPPRESS)
    p.add_argument("--source", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= {"click", "track", "long", "objects"}:
        p.error(f"unknown parts: {', '.join(sorted(parts - {'click', 'track', 'long', 'objects'}))}")
    if any(not c.isdigit() or int(c) < 1 for c in args.objects.split(",")):
        p.error("--objects is a comma-separated list of counts of 1 or more")
    if args.repeat < 1:
        p.error("--repeat must be 1 or more")

    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    args.image_size = args.image_size or (1024 if cuda else 128)
    args.frames = args.frames or (60 if cuda else 10)
    args.long_frames = args.long_frames or (1200 if cuda else 300)

    if args.worker:
        video = json.loads(args.video)
        if args.worker == "click":
            result = worker_click(args, video)
        elif args.worker == "track":
            result = worker_track(args, video)
        elif args.worker == "long":
            result = worker_long(args, video, args.source)
        elif args.worker == "objects":
            result = worker_objects(args, video)
        else:
            result = worker_classical(args, video)
        print(json.dumps(result))
        return

    try:
        import av  # noqa: F401

        mp4 = True
    except ImportError:
        mp4 = False
    report: dict[str, Any] = describe(args)

    def save() -> None:
        # Written after every step, so a run cut short still leaves what it measured.
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="masklog-bench-") as tmp:
        t = time.perf_counter()
        short = write_video(Path(tmp) / "short", args.frames, mp4=False)
        lengths = [args.long_frames] if args.no_scaling else [max(args.long_frames // 4, args.track + 1), args.long_frames]
        if not (parts & {"click", "long"} or args.classical):
            lengths = []  # no part reads a long video
        longs = [write_video(Path(tmp) / f"long{n}", n, mp4=mp4) for n in lengths]
        report["data_written_s"] = round(time.perf_counter() - t, 1)
        compile_mode, args.compile = args.compile, None  # every part but `compile` runs uncompiled
        if "click" in parts:
            report["click"] = run_worker(args, "click", longs[-1])
            save()
        if "track" in parts:
            report["track"] = run_worker(args, "track", short)
            save()
            if cuda and args.preprocess is None:
                report["track_exact"] = run_worker(argparse.Namespace(**{**vars(args), "preprocess": "exact"}), "track", short)
                save()
        if "objects" in parts:
            report["objects"] = run_worker(args, "objects", short)
            save()
        if compile_mode:
            report["compile"] = measure_compile(args, compile_mode, short, Path(tmp))
            save()
        if "long" in parts:
            report["long"] = {}
        for video in reversed(longs) if "long" in parts else []:  # the full length first: it is the one that matters
            runs: dict[str, Any] = {}
            report["long"][f"{video['frames']}_frames"] = runs
            for source in ["raw", "jpeg"] + (["mp4"] if mp4 else []):
                name = "raw_jpeg" if source == "raw" else f"ours_{source}"
                runs[name] = run_worker(args, "long", video, source)
                save()
        full = report.get("long", {}).get(f"{args.long_frames}_frames", {})
        raw, ours = full.get("raw_jpeg", {"error": "not run"}), full.get("ours_jpeg", {"error": "not run"})
        if "error" not in raw and "error" not in ours:
            report["long_ratio_raw_over_ours"] = {
                "time_to_last_mask": round(raw["last_mask_s"] / ours["last_mask_s"], 1),
                "peak_rss": round(raw["peak_rss_mb"] / ours["peak_rss_mb"], 1),
                "rss_growth": round(raw["rss_growth_mb"] / max(ours["rss_growth_mb"], 1.0), 1),
            }
            if cuda:
                report["long_ratio_raw_over_ours"]["cuda_max_allocated"] = round(
                    raw["cuda_max_allocated_mb"] / ours["cuda_max_allocated_mb"], 1
                )
        if args.classical:
            report["classical"] = run_worker(args, "classical", longs[-1])
        save()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
