"""The annotator's page in a real Chromium against a real server (issue: the annotator's page).

Each test drives the page the way a person does — clicks on the canvas, keys, buttons — and
checks what the page shows and what the server logged. Screenshots of the editor mid-task go
to tests/web/screenshots/.
"""

from __future__ import annotations

import uuid

from tests.server.rest import command
from tests.web.conftest import CLIP


def click_image(page, x: float, y: float, button: str = "left") -> None:  # type: ignore[no-untyped-def]
    point = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", [x, y])
    page.mouse.click(point["x"], point["y"], button=button)


def drag_image(page, start: tuple[float, float], end: tuple[float, float]) -> None:  # type: ignore[no-untyped-def]
    a = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", list(start))
    b = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", list(end))
    page.mouse.move(a["x"], a["y"])
    page.mouse.down()
    page.mouse.move((a["x"] + b["x"]) / 2, (a["y"] + b["y"]) / 2, steps=4)
    page.mouse.move(b["x"], b["y"], steps=4)
    page.mouse.up()


def labels_at(page, frame: int) -> list[dict]:  # type: ignore[no-untyped-def]
    return page.evaluate("(f) => masklog.model.labelsAt(f).map(e => ({object: e.object, source: e.label.source, actor: e.label.actor, type: e.label.shape.type}))", frame)


def wait_label(page, frame: int, predicate_js: str, timeout: int = 20_000) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(f"masklog.model.labelsAt({frame}).some(e => {predicate_js})", timeout=timeout)


def go_to_frame(page, frame: int) -> None:  # type: ignore[no-untyped-def]
    page.keyboard.press("Home")
    for _ in range(frame):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(f"masklog.state.frame === {frame}")


def test_sam_click_preview_enter_and_the_other_user_sees_it(open_page, shot):
    alice, bob = open_page("alice"), open_page("bob")
    alice.click("[data-testid=class-mask]")
    alice.click("[data-testid=wand-mask]")
    (x, y) = CLIP.discs[0].centre(0)
    click_image(alice, x, y)
    alice.wait_for_function("[...masklog.model.segments.values()].some(s => s.event.actor.startsWith('model:'))", timeout=20_000)
    click_image(alice, x + 45, y, button="right")  # an exclude point outside refines the same preview
    alice.wait_for_function("masklog.model.segments.size >= 2", timeout=20_000)
    shot(alice, "sam-preview")
    alice.keyboard.press("Enter")
    wait_label(alice, 0, "e.label.source === 'sam'")
    wait_label(bob, 0, "e.label.source === 'sam' && e.label.actor === 'user:alice'")
    [saved] = [label for label in labels_at(bob, 0) if label["source"] == "sam"]
    assert saved["type"] == "bitmask"
    shot(bob, "sam-saved-seen-by-bob")


def test_track_forwards_ten_frames_then_save(open_page, site, shot):
    page = open_page("alice")
    object_id = f"disc-{uuid.uuid4().hex[:6]}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "mask"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": CLIP.bitmask(0, 0), "source": "manual"}, "clip")
    page.wait_for_selector(f"[data-testid='object-{object_id}']")
    page.click("[data-testid=settings-open]")
    page.fill("[data-testid=setting-range]", "11")  # the start frame and 10 more
    page.select_option("[data-testid=setting-tracker]", "classical")
    page.keyboard.press("Escape")
    page.click(f"[data-testid='object-{object_id}']")
    page.keyboard.press("Shift+T")
    page.wait_for_selector("[data-testid=track-progress]", timeout=20_000)
    shot(page, "tracking-progress")
    page.wait_for_selector("[data-testid=review-accept]", timeout=60_000)
    proposed = page.evaluate(f"[...Array(12).keys()].filter(f => masklog.model.proposalsAt(f).some(p => p.object === '{object_id}'))")
    assert proposed == list(range(1, 11))
    shot(page, "tracking-review")
    page.click("[data-testid=review-accept]")
    page.wait_for_function(f"masklog.model.labelsAt(10).some(e => e.object === '{object_id}' && e.label.source === 'tracked')", timeout=20_000)
    go_to_frame(page, 6)
    shot(page, "tracked-frame-6")


def test_undo_leaves_the_other_users_labels(open_page, shot):
    alice, bob = open_page("alice", frame=3), open_page("bob", frame=3)
    for page, corner in ((alice, (20, 20)), (bob, (300, 200))):
        page.click("[data-testid=class-box]")
        drag_image(page, corner, (corner[0] + 80, corner[1] + 60))
        wait_label(page, 3, f"e.label.actor === 'user:{'alice' if page is alice else 'bob'}' && e.label.shape.type === 'bbox'")
    for page in (alice, bob):
        page.wait_for_function("masklog.model.labelsAt(3).filter(e => e.label.shape.type === 'bbox').length === 2", timeout=20_000)
    alice.keyboard.press("Control+z")
    for page in (alice, bob):
        page.wait_for_function(
            "(() => { const b = masklog.model.labelsAt(3).filter(e => e.label.shape.type === 'bbox'); return b.length === 1 && b[0].label.actor === 'user:bob'; })()",
            timeout=20_000,
        )
    shot(bob, "after-alice-undo")
    alice.keyboard.press("Control+Shift+z")
    bob.wait_for_function("masklog.model.labelsAt(3).filter(e => e.label.shape.type === 'bbox').length === 2", timeout=20_000)


def test_replay_slider_shows_an_earlier_state(open_page, site, shot):
    page = open_page("alice", frame=12)
    object_id = f"late-{uuid.uuid4().hex[:6]}"
    with site.http("bob") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "box"}, "clip")
    page.wait_for_selector(f"[data-testid='object-{object_id}']")
    before = page.evaluate("masklog.model.seq")
    with site.http("bob") as http:
        command(http, {"type": "label_saved", "object": object_id, "frame": 12, "shape": {"type": "bbox", "x": 100, "y": 100, "w": 50, "h": 40}, "source": "manual"}, "clip")
    wait_label(page, 12, f"e.object === '{object_id}'")
    # The slider's steps are this media item's events (issue 14 point 8): the step of `before`.
    page.wait_for_function(f"masklog.app.replay.positions.some(s => s > {before})")
    step = page.evaluate("(seq) => masklog.app.replay.positions.filter(s => s <= seq).length", before)
    page.locator("[data-testid=replay]").evaluate(
        "(el, step) => { el.value = String(step); el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); }",
        step,
    )
    page.wait_for_selector("[data-testid=replay-banner]", state="visible")
    assert str(before) in page.inner_text("[data-testid=replay-banner]")
    page.wait_for_function(f"masklog.state.replaySeq === {before} && !masklog.shown().some(s => s.id === '{object_id}')", timeout=20_000)
    shot(page, "replay-earlier")
    page.click("[data-testid=replay-live]")
    page.wait_for_function(f"masklog.state.replaySeq === null && masklog.shown().some(s => s.id === '{object_id}')", timeout=20_000)


def test_a_refused_command_shows_its_message(open_page, site, shot):
    object_id = f"still-{uuid.uuid4().hex[:6]}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "i1", "class_id": "box"}, "i1")
        command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": {"type": "bbox", "x": 2, "y": 2, "w": 10, "h": 10}, "source": "manual"}, "i1")
    page = open_page("alice", media="i1")
    page.click(f"[data-testid='object-{object_id}']")
    page.keyboard.press("Shift+T")
    toast = page.wait_for_selector("[data-testid=toast]", timeout=20_000)
    assert "single image cannot be tracked" in toast.inner_text()
    shot(page, "refused-track")
    assert page.inner_text("[data-testid=connection]").strip().lower().startswith("connected")


def test_automated_labelling_saves_directly(open_page, site, shot):
    page = open_page("alice", frame=2)
    object_id = f"auto-{uuid.uuid4().hex[:6]}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "poly"}, "clip")
        (x, y) = CLIP.discs[1].centre(2)
        ring = [x - 20, y - 20, x + 20, y - 20, x + 20, y + 20, x - 20, y + 20]
        command(http, {"type": "label_saved", "object": object_id, "frame": 2, "shape": {"type": "polygon", "parts": [{"outer": ring}]}, "source": "manual"}, "clip")
    page.wait_for_selector(f"[data-testid='object-{object_id}']")
    page.click("[data-testid=auto-open]")
    dialog = page.wait_for_selector("[data-testid=auto-dialog]", state="visible")
    for box in dialog.query_selector_all("[data-testid^=auto-object-]"):
        box.set_checked(box.get_attribute("value") == object_id)
    page.fill("[data-testid=auto-first]", "2")
    page.fill("[data-testid=auto-last]", "8")
    page.fill("[data-testid=auto-interval]", "2")
    page.select_option("[data-testid=auto-algorithm]", "classical")
    shot(page, "auto-dialog")
    page.click("[data-testid=auto-run]")
    page.wait_for_function(
        f"[3,4,5,6,7,8].every(f => masklog.model.labelsAt(f).some(e => e.object === '{object_id}' && e.label.source === 'tracked'))",
        timeout=30_000,
    )
    request = page.evaluate(f"[...masklog.model.tracks.values()].find(t => t.request.objects.includes('{object_id}')).request")
    assert (request["start"], request["range"], request["interval"], request["autosave"], request["algorithm"]) == (2, 7, 2, True, "classical")
    assert page.evaluate(f"masklog.model.labelsAt(5).find(e => e.object === '{object_id}').label.shape.type") == "polygon"


def test_a_dropped_connection_is_shown_and_healed(open_page, site):
    page = open_page("alice", frame=4)
    page.evaluate("masklog.connection.ws.close()")
    page.wait_for_function("document.querySelector('[data-testid=connection]').innerText.toLowerCase().includes('reconnect')", timeout=5_000)
    object_id = f"meanwhile-{uuid.uuid4().hex[:6]}"
    with site.http("bob") as http:  # while alice's page is away
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "box"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 4, "shape": {"type": "bbox", "x": 5, "y": 5, "w": 30, "h": 30}, "source": "manual"}, "clip")
    page.wait_for_function("document.querySelector('[data-testid=connection]').innerText.toLowerCase().startsWith('connected')", timeout=20_000)
    wait_label(page, 4, f"e.object === '{object_id}'")
    with site.http("alice") as http:
        head = http.get("/api/media/clip/labels", params={"frame": 0}).json()["seq"]
    page.wait_for_function(f"masklog.model.seq >= {head}", timeout=20_000)


def test_review_in_part_from_the_objects_menu(open_page, site):
    page = open_page("alice")
    object_id = f"part-{uuid.uuid4().hex[:6]}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "mask"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": CLIP.bitmask(0, 0), "source": "manual"}, "clip")
        command(http, {"type": "track_requested", "media": "clip", "objects": [object_id], "start": 0, "direction": "forward", "range": 7, "algorithm": "simple"}, "clip")
    page.wait_for_function(f"[...masklog.model.tracks.values()].some(t => t.request.objects.includes('{object_id}') && t.status === 'completed')", timeout=30_000)
    go_to_frame(page, 2)
    row = f"[data-testid='object-{object_id}']"
    page.click(row, button="right")
    page.click("[data-testid=ctx-accept-frame]")
    wait_label(page, 2, f"e.object === '{object_id}' && e.label.source === 'tracked'")
    go_to_frame(page, 4)
    page.click(row, button="right")
    page.click("[data-testid=ctx-discard-rest]")
    page.wait_for_function(f"[4, 5, 6].every(f => !masklog.model.proposalsAt(f).some(p => p.object === '{object_id}'))", timeout=20_000)
    left = page.evaluate(f"[1, 3].map(f => masklog.model.proposalsAt(f).some(p => p.object === '{object_id}'))")
    assert left == [True, True], "frames 1 and 3 still wait for review"
    assert not page.evaluate(f"masklog.model.labelsAt(5).some(e => e.object === '{object_id}')")


def test_keys_from_the_keymap_wands_from_the_server_and_the_audit_table(open_page, site):
    page = open_page("alice")
    # The wand is off only for the class whose shape SAM cannot make (GET /api/me says which).
    assert page.is_disabled("[data-testid=wand-line]")
    assert not page.is_disabled("[data-testid=wand-mask]")
    page.keyboard.press("Digit4")  # the fourth class: a polyline, drawn
    page.wait_for_function("masklog.state.activeClass === 'line' && masklog.state.tool === 'draw'")
    page.keyboard.press("Shift+A")  # SAM cannot make polylines: the first class it can make
    page.wait_for_function("masklog.state.activeClass === 'box' && masklog.state.tool === 'sam'")
    page.keyboard.press("Escape")
    page.wait_for_function("masklog.state.tool === 'select'")
    page.keyboard.press("Shift+ArrowRight")
    page.wait_for_function("masklog.state.frame === 10")
    page.keyboard.press("End")
    page.wait_for_function(f"masklog.state.frame === {CLIP.frames - 1}")
    page.keyboard.press("Home")
    page.wait_for_function("masklog.state.frame === 0")

    object_id = f"keys-{uuid.uuid4().hex[:6]}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "mask"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 3, "shape": CLIP.bitmask(0, 3), "source": "manual"}, "clip")
    row = f"[data-testid='object-{object_id}']"
    page.wait_for_selector(row)
    page.click(row, button="right")  # the menu shows the keys the table binds
    assert page.inner_text("[data-testid=ctx-track-forward]").endswith("Shift+T")
    assert page.inner_text("[data-testid=ctx-track-backward]").endswith("Shift+Alt+T")
    page.keyboard.press("Escape")

    page.select_option("[data-testid=audit-by]", "frame")
    page.wait_for_selector("#audit-table tr td:first-child:text-is('3')")
    page.click("#audit-table tr td:first-child:text-is('3')")  # a frame's row goes to it
    page.wait_for_function("masklog.state.frame === 3")
