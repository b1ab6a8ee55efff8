"""How fast the annotator's page is on a 1280x720 video, in Debian's Chromium (headless).

    python scripts/bench_page.py [--frames 60] [--objects 12]

Starts a real server on 127.0.0.1 with a 1280x720 video and `--objects` objects labelled with
bitmasks and polygons on every frame, opens the page, and times (medians, in ms):
- `step_ms`: going to the next frame (`masklog.goto`), image on the canvas and labels drawn;
- `jump_ms`: going to a frame far away, never shown before (nothing preloaded);
- `redraw_ms`: redrawing the canvas with every label of a frame;
- `open_ms`: from loading the page to the first frame drawn.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: `scripts` and `tests`

import numpy as np

from masklog.domain.geometry import mask_to_polygon, rle_encode
from scripts.live_server import seeded_server, upload
from tests.server.rest import command
from tests.server.tracking_clips import Clip, Disc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--objects", type=int, default=12)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("needs Debian's chromium")
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(0)
    discs = tuple(Disc((int(rng.integers(60, 250)), 60, 60), float(rng.uniform(100, 1180)), float(rng.uniform(100, 620)), 2, 1, r=40) for _ in range(args.objects))
    clip = Clip(1280, 720, args.frames, discs)
    with tempfile.TemporaryDirectory() as tmp:
        # The labels are set up by one client at full speed: past the per-user rate limit.
        with seeded_server(Path(tmp), commands_per_second=1e6, command_burst=1_000_000) as live:
            with live.http("admin") as admin:
                upload(admin, "p1", "hd", "video", [clip.write_video(Path(tmp) / "hd.mp4")]).raise_for_status()
                for number in range(args.objects):
                    kind = "mask" if number % 2 == 0 else "poly"
                    object_id = f"o{number}"
                    command(admin, {"type": "object_created", "object": object_id, "media": "hd", "class_id": kind}, "hd")
                    for frame in range(args.frames):
                        mask = discs[number].mask(frame, 720, 1280)
                        if kind == "mask":
                            rle = rle_encode(mask)
                            shape = {"type": "bitmask", "rle": {"size": list(rle.size), "counts": rle.counts}}
                        else:
                            shape = {"type": "polygon", "parts": [{"outer": part.outer, "holes": part.holes} for part in mask_to_polygon(mask, 1.0).parts]}
                        command(admin, {"type": "label_saved", "object": object_id, "frame": frame, "shape": shape, "source": "manual"}, "hd")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                def fresh_page():  # type: ignore[no-untyped-def]
                    """A new browser context (empty caches) on the media item; the time it took to open."""
                    page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
                    started = time.perf_counter()
                    page.goto(f"{live.url}/#token={live.tokens['admin']}&media=hd&frame=0")
                    page.wait_for_function("window.masklog && window.masklog.ready")
                    page.evaluate("window.masklog.ready")
                    return page, (time.perf_counter() - started) * 1000

                page, open_ms = fresh_page()
                step = page.evaluate(
                    """async (n) => { const out = [];
                       for (let f = 1; f < n; f++) { const t = performance.now(); await masklog.goto(f); masklog.editor.redraw(); out.push(performance.now() - t); }
                       return out; }""",
                    min(args.frames, 40),
                )
                redraw = page.evaluate("() => { const out = []; for (let i = 0; i < 30; i++) { const t = performance.now(); masklog.editor.redraw(); out.push(performance.now() - t); } return out; }")
                page, _ = fresh_page()
                targets = [int(f) for f in random.Random(1).sample(range(5, args.frames), min(10, args.frames - 5))]
                jump = page.evaluate(
                    """async (targets) => { const out = [];
                       for (const f of targets) { const t = performance.now(); await masklog.goto(f); masklog.editor.redraw(); out.push(performance.now() - t); }
                       return out; }""",
                    targets,
                )
                browser.close()
    print(json.dumps({
        "video": "1280x720", "frames": args.frames, "labels_per_frame": args.objects,
        "open_ms": round(open_ms), "step_ms": round(statistics.median(step), 1), "step_p90_ms": round(sorted(step)[int(0.9 * len(step))], 1),
        "jump_ms": round(statistics.median(jump), 1), "redraw_ms": round(statistics.median(redraw), 2),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
