"""Review points at doubtful frames (issue 18, part 2): a tracked result whose presence score is
under PRESENCE_DOUBT is counted on its track's row ("2 doubtful"; each click goes to the next
one), tagged with its score on the canvas and marked on the timeline.

The scores come from the server's own ledger as a model actor (tests.server.rest.as_model), so
they are exact: no tracker runs in this module's server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from masklog.domain.events import TrackCompleted, TrackFrameProduced
from masklog.domain.shapes import BBox
from tests.server.live import LiveServer, seeded_server, upload
from tests.server.rest import as_model, command
from tests.web.conftest import CLIP

SCORES = {1: 0.92, 2: 0.62, 3: 0.95, 4: 0.55, 5: 0.81}  # frames 2 and 4 are doubtful (< 0.7)
DOUBT_COLOUR = (0xFF, 0xB7, 0x4D)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("doubtful")
    with seeded_server(root) as server:
        with server.http("admin") as admin:
            upload(admin, "p1", "clip", "video", [CLIP.write_video(root / "clip.mp4")]).raise_for_status()
        yield server


def tracked_with_scores(site: LiveServer) -> tuple[str, str]:
    with site.http("alice") as http:
        object_id = "doubt-box"
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "box"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": {"type": "bbox", "x": 120, "y": 140, "w": 80, "h": 80}, "source": "manual"}, "clip")
        track = command(http, {"type": "track_requested", "media": "clip", "objects": [object_id], "start": 0, "direction": "forward", "range": 6}, "clip")["id"]
    for frame, score in SCORES.items():
        as_model(site, TrackFrameProduced(track=track, object=object_id, frame=frame, shape=BBox(120 + 4 * frame, 140, 80, 80), score=score, model="classical/flowcolour@2"))
    as_model(site, TrackCompleted(track=track, frames=len(SCORES)))
    return object_id, track


HEADER_COLOUR_JS = """(frame) => {
    const t = masklog.timeline, c = t.canvas, dpr = window.devicePixelRatio || 1;
    const x = t._x(frame + 0.5, c.clientWidth), y = 18 - 2;
    return [...c.getContext('2d').getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data].slice(0, 3);
}"""


def header_colour(page: Any, frame: int) -> list[int]:
    """The timeline's header pixel above `frame` (where review marks are drawn)."""
    return page.evaluate(HEADER_COLOUR_JS, frame)


def test_review_counts_tags_and_steps_through_the_doubtful_frames(open_page, site, shot):
    object_id, track = tracked_with_scores(site)
    alice = open_page("alice", frame=0)
    alice.wait_for_selector("[data-testid=track-doubtful]", timeout=20_000)
    assert alice.inner_text("[data-testid=track-doubtful]").strip() == "2 doubtful"
    assert "frame 2 (0.62)" in alice.get_attribute("[data-testid=track-doubtful]", "title")

    # Each click goes to the next doubtful frame, then round again.
    for frame in (2, 4, 2):
        alice.click("[data-testid=track-doubtful]")
        alice.wait_for_function(f"masklog.state.frame === {frame}")
        alice.wait_for_function(f"masklog.shown().some(i => i.id === '{object_id}' && i.text.endsWith('doubtful {SCORES[frame]:.2f}'))", timeout=20_000)
    # A confident result is not tagged.
    alice.evaluate("masklog.goto(3)")
    alice.wait_for_function(f"masklog.shown().some(i => i.id === '{object_id}' && i.text.endsWith('· tracked'))", timeout=20_000)

    # The timeline marks frames 2 and 4 (header), not 1, 3 or 5 (once it has drawn them).
    alice.wait_for_function(f"({HEADER_COLOUR_JS})(4).join() === '{','.join(map(str, DOUBT_COLOUR))}'", timeout=20_000)
    assert header_colour(alice, 2) == list(DOUBT_COLOUR) and header_colour(alice, 4) == list(DOUBT_COLOUR)
    assert all(header_colour(alice, f) != list(DOUBT_COLOUR) for f in (1, 3, 5))
    shot(alice, "p12-doubtful")

    # Reviewed, a frame is no longer pointed at.
    alice.evaluate(f"masklog.send({{type: 'tracked_accepted', track: '{track}', frames: [2]}})")
    alice.wait_for_function("document.querySelector('[data-testid=track-doubtful]')?.innerText.trim() === '1 doubtful'", timeout=20_000)
