"""Issue 14, point 4 (edit masks by hand) and point 9 in part (one undo step per drawn shape; no
empty object after a SAM preview), in a real Chromium against a real server.

The brush's footprint is exact: a stroke covers the pixels whose centre lies within half the
brush size of the stroke's path (web/js/brush.js). The tests drag straight lines between whole
pixel centres with a brush of 13 px (radius 6.5), so no pixel centre lies on the footprint's
edge, and compare the saved RLE pixel for pixel with that footprint.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
import numpy as np

from masklog.domain.geometry import rle_decode
from masklog.domain.shapes import Rle
from tests.server.rest import command
from tests.web.conftest import CLIP
from tests.web.test_page import click_image

RADIUS = 6.5  # the default brush: 13 px


def capsule(a: tuple[float, float], b: tuple[float, float], r: float = RADIUS) -> np.ndarray:
    """The pixels (height x width) whose centre lies within r of the segment a-b."""
    ys, xs = np.mgrid[0 : CLIP.height, 0 : CLIP.width].astype(float)
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / length2, 0, 1) if length2 else np.zeros_like(xs)
    return (xs - (ax + t * dx)) ** 2 + (ys - (ay + t * dy)) ** 2 <= r * r


def label_of(site, object_id: str, frame: int) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    with site.http("alice") as http:
        entries = http.get("/api/media/clip/labels", params={"frame": frame}).json()["labels"]
    return next((e["label"] for e in entries if e["object"] == object_id), None)


def history(site) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The clip's whole event stream, page by page."""
    events, after = [], 0
    with site.http("alice") as http:
        while after is not None:
            page = http.get("/api/media/clip/history", params={"after": after, "limit": 1000}).json()
            events += page["events"]
            after = page["next_after"]
    return events


def mask_of(label: dict[str, Any]) -> np.ndarray:
    assert label["shape"]["type"] == "bitmask"
    return rle_decode(msgspec.convert(label["shape"]["rle"], Rle))


def stroke(page, a: tuple[float, float], b: tuple[float, float], *, alt: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Press at image point a, drag straight to b, release (Alt held throughout if asked)."""
    pa = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", list(a))
    pb = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", list(b))
    if alt:
        page.keyboard.down("Alt")
    page.mouse.move(pa["x"], pa["y"])
    page.mouse.down()
    page.mouse.move(pb["x"], pb["y"], steps=9)
    page.mouse.up()
    if alt:
        page.keyboard.up("Alt")


def wait_written(page, object_id: str, frame: int, not_by: str) -> str:  # type: ignore[no-untyped-def]
    """Wait until the page's label of the cell is another than `not_by`; its written_by."""
    page.wait_for_function(
        "([o, f, w]) => { const l = masklog.model.label(o, f); return l && l.written_by !== w; }", arg=[object_id, frame, not_by], timeout=20_000
    )
    return page.evaluate("([o, f]) => masklog.model.label(o, f).written_by", [object_id, frame])


def undo_count(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.inner_text("#undo-count"))


def sam_label(site, object_id: str, frame: int, user: str = "bob") -> str:  # type: ignore[no-untyped-def]
    """A SAM label on the red disc, made through REST as `user` the way the page makes one: a
    prompt for a new object, the model's answer, save_segment. Its event id."""
    x, y = CLIP.discs[0].centre(frame)
    with site.http(user) as http:
        prompt = command(http, {"type": "prompt_added", "object": object_id, "frame": frame, "points": [{"x": x, "y": y}], "class_id": "mask", "media": "clip"}, "clip")
        for _ in range(400):
            if any(e["body"]["type"] == "segment_proposed" and e["body"]["prompt"] == prompt["id"] for e in history(site)):
                break
            time.sleep(0.05)
        saved = command(http, {"type": "save_segment", "prompt": prompt["id"]}, "clip")
    return str(saved["id"])


# ---- point 4: brush and eraser ------------------------------------------------------------------


def test_brush_and_eraser_change_the_pixels_drawn_and_undo_one_stroke(open_page, site, shot):
    frame = 4
    object_id = f"disc-{uuid.uuid4().hex[:6]}"
    sam_id = sam_label(site, object_id, frame)
    alice, bob = open_page("alice", frame=frame), open_page("bob", frame=frame)
    alice.wait_for_function("([o, f]) => masklog.model.label(o, f)?.source === 'sam'", arg=[object_id, frame], timeout=20_000)
    sam = mask_of(label_of(site, object_id, frame))

    alice.click(f"[data-testid='object-{object_id}']")
    alice.keyboard.press("b")
    indicator = alice.locator("[data-testid=tool-indicator]")
    assert "Brush 13 px" in indicator.inner_text()
    # [ and ] and Shift+wheel size the brush; back to 13 for the strokes.
    alice.keyboard.press("]")
    assert "Brush 15 px" in indicator.inner_text()
    alice.keyboard.press("[")
    point = alice.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", [320, 300])
    alice.mouse.move(point["x"], point["y"])
    alice.keyboard.down("Shift")
    alice.mouse.wheel(0, -100)
    alice.keyboard.up("Shift")
    alice.wait_for_function("document.querySelector('[data-testid=tool-indicator]').textContent.includes('Brush 15 px')")
    alice.keyboard.press("[")
    assert "Brush 13 px" in indicator.inner_text()
    undo_before = undo_count(alice)

    # A brush stroke away from the disc: the mask gains exactly the stroke's footprint.
    a, b = (300, 60), (420, 60)
    stroke(alice, a, b)
    brushed_id = wait_written(alice, object_id, frame, sam_id)
    label = label_of(site, object_id, frame)
    assert (label["source"], label["actor"], label["edited"], label["written_by"]) == ("manual", "user:alice", sam_id, brushed_id)
    brushed = mask_of(label)
    expected = sam | capsule(a, b)
    assert np.array_equal(brushed, expected), f"{int((brushed != expected).sum())} pixels differ from the stroke drawn"
    assert undo_count(alice) == undo_before + 1
    info = alice.locator("[data-testid=label-edited]")
    info.wait_for()
    assert info.inner_text().startswith("edited from the SAM label by bob")
    bob.wait_for_function("([o, f, w]) => masklog.model.label(o, f)?.written_by === w", arg=[object_id, frame, brushed_id], timeout=20_000)
    shot(alice, "p4-brush")

    # The eraser tool: a vertical stroke through the brushed band and the disc's top.
    alice.keyboard.press("e")
    assert "Eraser 13 px" in indicator.inner_text()
    c, d = (360, 40), (360, 80)
    stroke(alice, c, d)
    erased_id = wait_written(alice, object_id, frame, brushed_id)
    erased = mask_of(label_of(site, object_id, frame))
    assert np.array_equal(erased, brushed & ~capsule(c, d))
    assert label_of(site, object_id, frame)["edited"] == brushed_id

    # The brush with Alt held erases too: a stroke across the disc itself (a SAM region).
    alice.keyboard.press("b")
    cx, cy = CLIP.discs[0].centre(frame)
    e, f = (round(cx) - 20, round(cy)), (round(cx) + 20, round(cy))
    stroke(alice, e, f, alt=True)
    alt_id = wait_written(alice, object_id, frame, erased_id)
    alt_erased = mask_of(label_of(site, object_id, frame))
    assert np.array_equal(alt_erased, erased & ~capsule(e, f))
    assert alt_erased.sum() < erased.sum()
    shot(alice, "p4-erase")

    # One Ctrl+Z undoes exactly one stroke: the mask is the one before the Alt stroke.
    count = undo_count(alice)
    alice.keyboard.press("Control+z")
    alice.wait_for_function("([o, f, w]) => masklog.model.label(o, f)?.written_by !== w", arg=[object_id, frame, alt_id], timeout=20_000)
    assert np.array_equal(mask_of(label_of(site, object_id, frame)), erased)
    assert undo_count(alice) == count - 1
    bob.wait_for_function("([o, f, w]) => masklog.model.label(o, f)?.written_by === w", arg=[object_id, frame, erased_id], timeout=20_000)


def test_a_brush_stroke_with_nothing_selected_makes_a_new_object_in_one_step(open_page, site):
    frame = 9
    page = open_page("alice", frame=frame)
    page.click("[data-testid=class-mask]")
    page.keyboard.press("Escape")  # the select tool, nothing selected
    page.keyboard.press("b")
    before = page.evaluate("new Set(masklog.model.objects.keys()).size")
    undo_before = undo_count(page)
    a, b = (40, 300), (140, 300)
    stroke(page, a, b)
    page.wait_for_function(f"masklog.model.objects.size === {before + 1}", timeout=20_000)
    object_id = page.evaluate("[...masklog.state.selected][0]")
    page.wait_for_function("([o, f]) => !!masklog.model.label(o, f)", arg=[object_id, frame], timeout=20_000)
    label = label_of(site, object_id, frame)
    assert (label["source"], label["edited"]) == ("manual", None)
    assert np.array_equal(mask_of(label), capsule(a, b))
    page.wait_for_function(f"Number(document.getElementById('undo-count').textContent) === {undo_before + 1}")
    page.keyboard.press("Control+z")
    page.wait_for_function("(o) => !masklog.model.objects.has(o)", arg=object_id, timeout=20_000)
    assert label_of(site, object_id, frame) is None


# ---- point 4: polygon vertices --------------------------------------------------------------------


def test_polygon_vertices_are_added_on_an_edge_and_removed_with_alt_click(open_page, site, shot):
    frame = 2
    object_id = f"poly-{uuid.uuid4().hex[:6]}"
    square = [100.0, 100.0, 200.0, 100.0, 200.0, 200.0, 100.0, 200.0]
    with site.http("bob") as http:
        created = command(
            http,
            {"type": "object_created", "object": object_id, "media": "clip", "class_id": "poly",
             "label": {"frame": frame, "shape": {"type": "polygon", "parts": [{"outer": square, "holes": []}]}, "source": "manual"}},
            "clip",
        )  # fmt: skip
    page = open_page("alice", frame=frame)
    page.wait_for_selector(f"[data-testid='object-{object_id}']")
    page.click(f"[data-testid='object-{object_id}']")
    # Its handles are on the canvas (the editor draws the selection on the next frame).
    page.wait_for_function("(o) => masklog.shown().some(i => i.id === o && i.selected)", arg=object_id)

    def outer() -> list[float]:
        return label_of(site, object_id, frame)["shape"]["parts"][0]["outer"]

    # A click on the top edge inserts a vertex where it was clicked.
    click_image(page, 150, 100)
    first = wait_written(page, object_id, frame, created["id"])
    assert outer() == [100, 100, 150, 100, 200, 100, 200, 200, 100, 200]
    assert label_of(site, object_id, frame)["edited"] == created["id"]
    # A press on the right edge, dragged out: the new vertex goes where it is released.
    a = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", [200, 150])
    b = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", [240, 150])
    page.mouse.move(a["x"], a["y"])
    page.mouse.down()
    page.mouse.move(b["x"], b["y"], steps=6)
    page.mouse.up()
    second = wait_written(page, object_id, frame, first)
    assert outer() == [100, 100, 150, 100, 200, 100, 200, 200, 100, 200][:6] + [240, 150] + [200, 200, 100, 200]
    shot(page, "p4-polygon-vertex")
    # Alt+click on the first inserted vertex removes it.
    point = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", [150, 100])
    page.keyboard.down("Alt")
    page.mouse.click(point["x"], point["y"])
    page.keyboard.up("Alt")
    third = wait_written(page, object_id, frame, second)
    assert outer() == [100, 100, 200, 100, 240, 150, 200, 200, 100, 200]
    # One Ctrl+Z brings that vertex back, and only it.
    page.keyboard.press("Control+z")
    wait_written(page, object_id, frame, third)
    assert outer() == [100, 100, 150, 100, 200, 100, 240, 150, 200, 200, 100, 200]


# ---- point 9: one undo step per drawn shape; no empty object after a SAM preview ----------------


def test_drawing_a_box_is_one_undo_step(open_page, site, shot):
    frame = 7
    alice, bob = open_page("alice", frame=frame), open_page("bob", frame=frame)
    alice.click("[data-testid=class-box]")
    before = undo_count(alice)
    objects = alice.evaluate("[...masklog.model.objects.keys()]")
    a = alice.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", [420, 230])
    b = alice.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", [520, 320])
    alice.mouse.move(a["x"], a["y"])
    alice.mouse.down()
    alice.mouse.move(b["x"], b["y"], steps=6)
    alice.mouse.up()
    alice.wait_for_function(f"masklog.model.objects.size === {len(objects) + 1}", timeout=20_000)
    [object_id] = [o for o in alice.evaluate("[...masklog.model.objects.keys()]") if o not in objects]
    alice.wait_for_function(f"Number(document.getElementById('undo-count').textContent) === {before + 1}")
    assert label_of(site, object_id, frame)["shape"]["type"] == "bbox"
    events = history(site)
    mine = [e for e in events if object_id in (e["body"].get("object"), *(e["body"].get("objects") or []))]
    assert [e["body"]["type"] for e in mine] == ["object_created"] and mine[0]["body"]["label"]["frame"] == frame
    bob.wait_for_function("(o) => masklog.model.label(o, 7)?.shape.type === 'bbox'", arg=object_id, timeout=20_000)
    shot(alice, "p9-one-undo")
    alice.keyboard.press("Control+z")
    for page in (alice, bob):
        page.wait_for_function("(o) => !masklog.model.objects.has(o) && !masklog.model.label(o, 7)", arg=object_id, timeout=20_000)
    assert undo_count(alice) == before
    assert label_of(site, object_id, frame) is None


def test_a_sam_preview_on_a_new_object_leaves_no_object_when_the_page_reloads(open_page, site, shot):
    frame = 0
    alice, bob = open_page("alice", frame=frame), open_page("bob", frame=frame)
    bob.evaluate(
        "window.__created = []; masklog.connection.addEventListener('events', (e) => "
        "{ for (const ev of e.detail) if (ev.body.type === 'object_created') window.__created.push(ev.body.object); })"
    )
    objects_before = set(alice.evaluate("[...masklog.model.objects.keys()]"))
    undo_before = undo_count(alice)
    alice.click("[data-testid=class-mask]")
    alice.click("[data-testid=wand-mask]")
    x, y = CLIP.discs[1].centre(frame)
    click_image(alice, x, y)
    alice.wait_for_function("masklog.app.sam.status === 'ready'", timeout=30_000)
    object_id = alice.evaluate("masklog.app.sam.object")
    assert object_id and object_id not in objects_before
    bob.wait_for_function(
        "(o) => [...masklog.model.segments.values()].some(s => s.body.object === o)", arg=object_id, timeout=20_000
    )  # bob saw the preview's events...
    assert not alice.evaluate("(o) => masklog.model.objects.has(o)", object_id)
    assert undo_count(alice) == undo_before  # a preview is nothing to undo
    alice.reload()
    alice.wait_for_function("window.masklog && window.masklog.ready", timeout=20_000)
    alice.evaluate("window.masklog.ready")
    shot(alice, "p9-no-empty-object")
    assert not alice.evaluate("(o) => masklog.model.objects.has(o)", object_id)
    with site.http("alice") as http:
        assert object_id not in http.get("/api/media/clip/snapshot").json()["objects"]
        assert all(e["object"] != object_id for e in http.get("/api/media/clip/labels").json()["labels"])
    assert object_id not in bob.evaluate("window.__created")  # ...but never an object
    assert not bob.evaluate("(o) => masklog.model.objects.has(o)", object_id)
    assert not bob.locator(f"[data-testid='object-{object_id}']").count()

    # Saving a preview on a new object creates it with its label in one step; Escape leaves none.
    alice.click("[data-testid=class-mask]")
    if not alice.evaluate("masklog.state.tool === 'sam'"):
        alice.click("[data-testid=wand-mask]")
    before = undo_count(alice)
    click_image(alice, x, y)
    alice.wait_for_function("masklog.app.sam.status === 'ready'", timeout=30_000)
    saved_id = alice.evaluate("masklog.app.sam.object")
    alice.keyboard.press("Enter")
    alice.wait_for_function("(o) => masklog.model.label(o, 0)?.source === 'sam'", arg=saved_id, timeout=20_000)
    alice.wait_for_function(f"Number(document.getElementById('undo-count').textContent) === {before + 1}")
    bob.wait_for_function("(o) => masklog.model.label(o, 0)?.source === 'sam'", arg=saved_id, timeout=20_000)
    alice.keyboard.press("n")
    click_image(alice, *CLIP.discs[0].centre(frame))
    alice.wait_for_function("masklog.app.sam.status === 'ready'", timeout=30_000)
    dropped = alice.evaluate("masklog.app.sam.object")
    assert dropped != saved_id
    alice.keyboard.press("Escape")
    alice.wait_for_function("masklog.app.sam.status === 'idle'")
    events = history(site)
    assert not [e for e in events if e["body"].get("object") == dropped and e["body"]["type"] in ("object_created", "object_deleted")]


def test_the_brush_edits_a_tracked_label(open_page, site, shot):
    frame = 12
    object_id = f"tracked-{uuid.uuid4().hex[:6]}"
    sam_label(site, object_id, frame)
    with site.http("bob") as http:
        track = command(
            http,
            {"type": "track_requested", "media": "clip", "objects": [object_id], "start": frame, "direction": "forward", "range": 3, "algorithm": "simple", "autosave": True},
            "clip",
        )
    page = open_page("alice", frame=frame + 2)
    page.wait_for_function("([o, f]) => masklog.model.label(o, f)?.source === 'tracked'", arg=[object_id, frame + 2], timeout=60_000)
    tracked = label_of(site, object_id, frame + 2)
    assert tracked["track"] == track["id"]
    page.click(f"[data-testid='object-{object_id}']")
    page.keyboard.press("b")
    a, b = (500, 300), (560, 300)
    stroke(page, a, b)
    wait_written(page, object_id, frame + 2, tracked["written_by"])
    label = label_of(site, object_id, frame + 2)
    assert (label["source"], label["edited"]) == ("manual", tracked["written_by"])
    assert np.array_equal(mask_of(label), mask_of(tracked) | capsule(a, b))
    page.locator("[data-testid=label-edited]").wait_for()
    assert page.locator("[data-testid=label-edited]").inner_text().startswith("edited from the tracked label by ")
    # A page opened afterwards never saw the tracked label: it asks the cell's history.
    late = open_page("bob", frame=frame + 2)
    late.evaluate("(o) => masklog.select([o])", object_id)
    late.wait_for_function(
        "document.querySelector('[data-testid=label-edited]')?.textContent.startsWith('edited from the tracked label by ')", timeout=20_000
    )
    shot(late, "p4-edited-tracked")
