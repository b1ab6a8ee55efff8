"""Issue 14 point 1 in a real Chromium: tracking never silently replaces a person's label.

Bob draws a box by hand on frame 20; Alice tracks the object from frame 0 over 30 frames. The
review shows the tracker's result on frame 20 as a conflict (the track row's count, the result
drawn in the conflict colour over Bob's box), Save keeps Bob's box (checked over REST: same
source, author and shape), and only "Overwrite people's labels" replaces it. Auto-label follows
the same rule: its result on a person's frame waits in review instead of being saved.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.server.rest import command
from tests.web.conftest import CLIP
from tests.web.test_page import drag_image, go_to_frame

HAND = {"type": "bbox", "x": 300.0, "y": 40.0, "w": 120.0, "h": 90.0}  # far from where the disc is


def disc_box(frame: int) -> dict[str, Any]:
    (x, y), r = CLIP.discs[0].centre(frame), CLIP.discs[0].r
    return {"type": "bbox", "x": x - r - 4, "y": y - r - 4, "w": 2 * r + 8, "h": 2 * r + 8}


def label_over_rest(site, object_id: str, frame: int) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    with site.http("alice") as http:
        entries = http.get("/api/media/clip/labels", params={"frame": frame}).json()["labels"]
    found = [e["label"] for e in entries if e["object"] == object_id]
    return found[0] if found else None


def new_box_object(site) -> str:  # type: ignore[no-untyped-def]
    object_id = f"keep-{uuid.uuid4().hex[:6]}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "box"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": disc_box(0), "source": "manual"}, "clip")
    return object_id


def bob_draws_on_frame_20(bob, object_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Bob selects the object and draws its box on frame 20 by hand; the saved shape."""
    bob.wait_for_selector(f"[data-testid='object-{object_id}']")
    bob.click("[data-testid=class-box]")
    bob.click(f"[data-testid='object-{object_id}']")
    drag_image(bob, (HAND["x"], HAND["y"]), (HAND["x"] + HAND["w"], HAND["y"] + HAND["h"]))
    bob.wait_for_function(f"masklog.model.label('{object_id}', 20)?.source === 'manual'", timeout=20_000)
    return bob.evaluate(f"masklog.model.label('{object_id}', 20)")  # type: ignore[no-any-return]


def track_of(page, object_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return page.evaluate(f"[...masklog.model.tracks.values()].find(t => t.request.objects.includes('{object_id}'))")  # type: ignore[no-any-return]


def test_a_track_over_a_hand_label_shows_the_conflict_and_save_keeps_it(open_page, site, shot):
    object_id = new_box_object(site)
    bob = open_page("bob", frame=20)
    hand = bob_draws_on_frame_20(bob, object_id)
    assert hand["actor"] == "user:bob"

    alice = open_page("alice")
    alice.wait_for_function(f"masklog.model.label('{object_id}', 20)?.source === 'manual'", timeout=20_000)
    alice.click("[data-testid=settings-open]")
    alice.fill("[data-testid=setting-range]", "30")  # frame 0 and 29 more: over frame 20
    alice.select_option("[data-testid=setting-tracker]", "classical")
    alice.keyboard.press("Escape")
    alice.click(f"[data-testid='object-{object_id}']")
    alice.keyboard.press("Shift+T")
    alice.wait_for_selector("[data-testid=review-accept]", timeout=90_000)
    track = track_of(alice, object_id)
    assert track["request"]["keep_people"] is True and track["request"]["range"] == 30

    # The review: the result on frame 20 is a conflict, counted in the row and drawn over Bob's box.
    assert alice.evaluate(f"masklog.model.proposalsAt(20).some(p => p.object === '{object_id}')"), "the tracker's own result on frame 20 is in review"
    assert alice.inner_text("[data-testid=track-conflicts]").strip() == "1 conflict"
    alice.click("[data-testid=track-conflicts]")  # goes to the conflict
    alice.wait_for_function("masklog.state.frame === 20")
    # Drawn over Bob's box in the conflict colour (the canvas redraws once the frame is shown).
    alice.wait_for_function(f"masklog.shown().some(i => i.id === '{object_id}' && i.text.includes('conflict'))", timeout=20_000)
    drawn = alice.evaluate("masklog.shown().filter(i => i.text.includes('conflict')).map(i => [i.id, i.color, i.dashed])")
    assert drawn == [[object_id, "#ff5252", True]]
    assert alice.is_visible("[data-testid=review-overwrite]")
    shot(alice, "p1-conflict-review")

    alice.click("[data-testid=review-accept]")
    alice.wait_for_function(f"masklog.model.label('{object_id}', 21)?.source === 'tracked' && masklog.model.pendingCount('{track['id']}') === 0", timeout=20_000)
    kept = label_over_rest(site, object_id, 20)
    assert kept is not None
    assert (kept["source"], kept["actor"], kept["shape"]) == ("manual", "user:bob", hand["shape"])
    assert label_over_rest(site, object_id, 19)["source"] == "tracked"  # type: ignore[index]
    # Both pages agree with the server: Bob's box is still on frame 20.
    for page in (alice, bob):
        page.wait_for_function(f"masklog.model.label('{object_id}', 20)?.written_by === '{kept['written_by']}'", timeout=20_000)
    shot(alice, "p1-saved-keeps-hand-label")


def test_auto_label_leaves_the_conflict_to_review_and_overwrite_replaces(open_page, site, shot):
    object_id = new_box_object(site)
    bob = open_page("bob", frame=20)
    hand = bob_draws_on_frame_20(bob, object_id)

    alice = open_page("alice")
    alice.wait_for_function(f"masklog.model.label('{object_id}', 20)?.source === 'manual'", timeout=20_000)
    alice.click("[data-testid=auto-open]")
    dialog = alice.wait_for_selector("[data-testid=auto-dialog]", state="visible")
    for box in dialog.query_selector_all("[data-testid^=auto-object-]"):
        box.set_checked(box.get_attribute("value") == object_id)
    alice.fill("[data-testid=auto-first]", "0")
    alice.fill("[data-testid=auto-last]", "29")
    alice.fill("[data-testid=auto-interval]", "0")
    alice.select_option("[data-testid=auto-algorithm]", "classical")
    alice.click("[data-testid=auto-run]")
    # Saved directly everywhere but on Bob's frame, where the result waits as a conflict.
    alice.wait_for_selector("[data-testid=review-overwrite]", timeout=90_000)
    track = track_of(alice, object_id)
    assert (track["request"]["autosave"], track["status"]) == (True, "completed")
    saved = alice.evaluate(f"[...Array(30).keys()].filter(f => masklog.model.label('{object_id}', f)?.source === 'tracked')")
    assert saved == [f for f in range(1, 30) if f != 20]
    assert alice.evaluate("masklog.model.proposalsAt(20).map(p => p.object)") == [object_id]
    assert label_over_rest(site, object_id, 20)["shape"] == hand["shape"]  # type: ignore[index]
    assert alice.inner_text("[data-testid=track-conflicts]").strip() == "1 conflict"
    go_to_frame(alice, 20)
    shot(alice, "p1-autolabel-conflict")

    # The explicit choice: the reviewer overwrites; the tracker's box replaces Bob's on frame 20.
    proposed = alice.evaluate(f"masklog.model.proposalsAt(20).find(p => p.object === '{object_id}').proposal.shape")
    alice.click("[data-testid=review-overwrite]")
    alice.wait_for_function(f"masklog.model.label('{object_id}', 20)?.source === 'tracked'", timeout=20_000)
    replaced = label_over_rest(site, object_id, 20)
    assert replaced is not None and (replaced["source"], replaced["shape"]) == ("tracked", proposed)
    bob.wait_for_function(f"masklog.model.label('{object_id}', 20)?.source === 'tracked'", timeout=20_000)
    # The log keeps everything: Bob's box is still in the media item's history.
    with site.http("alice") as http:
        events = http.get("/api/media/clip/history", params={"limit": 1000}).json()["events"]
    assert any(e["body"]["type"] == "label_saved" and e["body"]["object"] == object_id and e["body"]["frame"] == 20 and e["actor"] == "user:bob" for e in events)


def test_overwrite_one_conflict_from_the_object_menu(open_page, site):
    object_id = new_box_object(site)
    with site.http("bob") as http:
        command(http, {"type": "label_saved", "object": object_id, "frame": 5, "shape": HAND, "source": "manual"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 7, "shape": HAND, "source": "manual"}, "clip")
    alice = open_page("alice")
    with site.http("alice") as http:
        command(http, {"type": "track_requested", "media": "clip", "objects": [object_id], "start": 0, "direction": "forward", "range": 10, "algorithm": "classical"}, "clip")
    alice.wait_for_function(f"[...masklog.model.tracks.values()].some(t => t.request.objects.includes('{object_id}') && t.status === 'completed')", timeout=60_000)
    assert alice.inner_text("[data-testid=track-conflicts]").strip() == "2 conflicts"
    go_to_frame(alice, 5)
    alice.click(f"[data-testid='object-{object_id}']", button="right")
    alice.click("[data-testid=ctx-overwrite-frame]")
    alice.wait_for_function(f"masklog.model.label('{object_id}', 5)?.source === 'tracked'", timeout=20_000)
    alice.wait_for_function("document.querySelector('[data-testid=track-conflicts]')?.innerText.trim() === '1 conflict'", timeout=20_000)
    assert label_over_rest(site, object_id, 5)["source"] == "tracked"  # type: ignore[index]
    assert label_over_rest(site, object_id, 7)["source"] == "manual"  # type: ignore[index]
