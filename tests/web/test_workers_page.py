"""Issue 17 in a real Chromium: the page shows the model work. A `masklog serve --workers` process
and two `masklog worker` processes on one data folder; alice's page shows the live workers in the
toolbar, where each running track is ("on host:pid", "queued #1"), and, after the worker running
a track is SIGKILLed, "resumed on host:pid" until the other worker finishes it; the indicator
drops to one worker once the dead one's lease runs out. A request no live worker can serve shows
its `no_worker` message; a server alone on its log shows no workers and polls nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scripts.live_server import start_worker, upload, write_video
from tests.server.rest import command
from tests.server.test_workers import LEASE_S, Site, running_site
from tests.web.conftest import CLIP, page_opener

# Long enough (several seconds a track here) that the takeover is on screen for a while: the
# seeded 64x48 clip is tracked in under a second.
SLOW_FRAMES, SLOW_SIZE = 480, (640, 480)
TRACKS_JS = """Object.fromEntries([...document.querySelectorAll('.track-row')].map((row) => {
  const where = row.querySelector('[data-testid=track-worker]');
  return [row.dataset.track, where.hidden ? '' : where.textContent];
}))"""


@pytest.fixture(scope="module")
def workers_site(chromium, tmp_path_factory) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    """tests.server.test_workers' site (a `serve --workers` process, seeded) plus media 'slow', and
    two workers that each work one track at a time, so a third track waits in the queue."""
    root = tmp_path_factory.mktemp("workers-page")
    with running_site(root, workers=0) as site:
        with site.http() as http:
            upload(http, "p1", "slow", "video", [write_video(root / "files" / "slow.mp4", frames=SLOW_FRAMES, size=SLOW_SIZE)]).raise_for_status()
        for n in range(2):
            site.workers.append(start_worker(site.data, args=["--lease", str(LEASE_S), "--max-tracks", "1"], log=root / f"worker-{n}.log"))
        site.wait_workers(2)
        yield site


@pytest.fixture
def open_workers_page(browser, workers_site):  # type: ignore[no-untyped-def]
    with page_opener(browser, workers_site.servers[0]) as open_:
        yield open_


def watch(page, seen: dict[str, list[str]], done: Callable[[dict[str, str]], bool], what: str, timeout: float = 60) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Read every track row's "where" until `done(rows)`, noting each text a row showed in `seen`."""
    deadline = time.monotonic() + timeout
    while True:
        rows: dict[str, str] = page.evaluate(TRACKS_JS)
        for track, text in rows.items():
            if text and text not in seen.setdefault(track, []):
                seen[track].append(text)
        if done(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: the rows showed {seen}, now {rows}")
        page.wait_for_timeout(100)


def workers_text(page) -> str:  # type: ignore[no-untyped-def]
    return page.inner_text("[data-testid=workers]").strip()  # type: ignore[no-any-return]


def new_box(page, media: str) -> str:  # type: ignore[no-untyped-def]
    """An object with a box around the moving disc on frame 0, made from the page."""
    obj = f"w-{uuid.uuid4().hex[:6]}"
    label = {"frame": 0, "shape": {"type": "bbox", "x": 0.0, "y": SLOW_SIZE[1] / 2 - 12, "w": 24.0, "h": 24.0}, "source": "manual"}
    page.evaluate("(body) => masklog.send(body)", {"type": "object_created", "object": obj, "media": media, "class_id": "box", "label": label})
    page.wait_for_selector(f"[data-testid='object-{obj}']")
    return obj


def test_a_request_no_live_worker_can_serve_shows_why(open_workers_page, shot):  # type: ignore[no-untyped-def]
    page = open_workers_page("alice", media="slow")
    obj = new_box(page, "slow")
    body = {"type": "track_requested", "media": "slow", "objects": [obj], "start": 0, "direction": "forward", "range": 5, "algorithm": "sam2"}
    refused: dict[str, Any] = page.evaluate("(body) => masklog.send(body).then(() => null, (e) => ({code: e.code, message: e.message}))", body)
    assert refused["code"] == "no_worker" and "sam2" in refused["message"], refused
    toast = page.wait_for_selector("[data-testid=toast]:has-text('no live worker runs tracker')", timeout=10_000)
    text = toast.inner_text()
    assert "'sam2'" in text and "classical" in text and "no_worker" in text, text
    shot(page, "workers-refused")


def test_the_page_shows_the_queue_the_workers_and_a_takeover(open_workers_page, workers_site, shot):  # type: ignore[no-untyped-def]
    site: Site = workers_site
    page = open_workers_page("alice", media="slow")

    # The toolbar: both live workers, each listed in the tooltip with what it runs.
    page.wait_for_function("document.querySelector('[data-testid=workers]').textContent === '2 workers'", timeout=20_000)
    assert page.is_visible("[data-testid=workers]")
    tooltip = page.get_attribute("[data-testid=workers]", "title") or ""
    for worker in site.workers:
        assert f":{worker.pid} · classical · trackers: classical" in tooltip, tooltip
    assert "working" in tooltip

    # Three tracks from the page (the object menu, the range from the settings): one per worker
    # runs, the third waits first in the queue.
    page.click("[data-testid=settings-open]")
    page.fill("[data-testid=setting-range]", str(SLOW_FRAMES))
    page.keyboard.press("Escape")
    tracks = []
    for _ in range(3):
        obj = new_box(page, "slow")
        page.click(f"[data-testid='object-{obj}']", button="right")
        page.click("[data-testid=ctx-track-forward]")
        tracks.append(page.wait_for_function(f"[...masklog.model.tracks.values()].find(t => t.request.objects.includes('{obj}'))?.id", timeout=20_000).json_value())
    first, second, third = tracks
    seen: dict[str, list[str]] = {}
    rows = watch(
        page, seen,
        lambda r: r.get(first, "").startswith("on ") and r.get(second, "").startswith("on ") and r.get(third) == "queued #1",
        "two tracks worked, one queued",
    )  # fmt: skip
    assert rows[first] != rows[second], rows
    shot(page, "workers-queue")

    # SIGKILL the worker running the first track: it waits for the lease to run out, then the
    # other worker resumes it from its last produced frame (after the track it is working on).
    killed = int(rows[first].rsplit(":", 1)[1])
    [victim] = [w for w in site.workers if w.pid == killed]
    with site.http("alice") as http:
        holder = next(t for t in http.get("/api/media/slow/tracks").json()["tracks"] if t["track"] == first)["worker"]
    assert holder.startswith(rows[first][len("on ") :] + ":"), (holder, rows)
    victim.kill()
    before = page.evaluate(f"masklog.model.tracks.get('{first}').produced")
    page.wait_for_function("document.querySelector('[data-testid=workers]').textContent === '1 worker'", timeout=30_000)
    rows = watch(page, seen, lambda r: r.get(first, "").startswith("resumed on "), "the first track taken over", timeout=120)
    survivor = int(rows[first].rsplit(":", 1)[1])
    assert survivor != killed and survivor in {w.pid for w in site.workers}, rows
    shot(page, "workers-resumed")

    # All three complete; the first's frames run on past the kill without a gap (taken over from
    # the last produced frame; where the disc jumps back, the classical tracker may lose it and
    # end early); a row no longer says where once its track has ended.
    watch(page, seen, lambda r: all(r.get(t) == "" for t in tracks), "the tracks ending", timeout=180)
    page.wait_for_function(f"{tracks!r}.every(id => masklog.model.tracks.get(id)?.status === 'completed')", timeout=30_000)
    for track in tracks:
        assert page.inner_text(f"[data-testid='track-{track}'] [data-testid=track-status]").strip() == "completed"
    produced = page.evaluate(f"[...masklog.model.proposals.get('{first}').values()].map(e => e.frame).sort((a, b) => a - b)")
    assert produced == list(range(1, len(produced) + 1)) and len(produced) > before, f"{len(produced)} frames, {before} before the kill"
    # The first track's row went from the killed worker to the other one; the third waited first.
    on_killed = next(i for i, text in enumerate(seen[first]) if text.startswith("on ") and text.endswith(f":{killed}"))
    assert seen[first].index(rows[first]) > on_killed, seen
    assert seen[third][0] == "queued #1" and any(text.startswith("on ") for text in seen[third]), seen
    assert workers_text(page) == "1 worker"


def test_a_server_alone_on_its_log_shows_no_workers_and_polls_no_tracks(open_page, site):  # type: ignore[no-untyped-def]
    """The embedded server runs the models itself (`shared` false): nothing to tell, nothing polled."""
    page = open_page("alice")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.wait_for_function("masklog.app.workers.shared === false", timeout=20_000)
    object_id = f"alone-{uuid.uuid4().hex[:6]}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "mask"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": CLIP.bitmask(0, 0), "source": "manual"}, "clip")
        command(http, {"type": "track_requested", "media": "clip", "objects": [object_id], "start": 0, "direction": "forward", "range": 20, "algorithm": "classical"}, "clip")
    page.wait_for_function(f"[...masklog.model.tracks.values()].some(t => t.request.objects.includes('{object_id}') && t.status === 'completed')", timeout=60_000)
    assert page.is_hidden("[data-testid=workers]")
    assert not any(url.endswith("/tracks") for url in asked), asked
    assert page.evaluate("[...document.querySelectorAll('[data-testid=track-worker]')].every(e => e.hidden)")
