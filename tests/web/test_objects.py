"""Issue 14, point 5 (objects you can tell apart) and point 11 (visual defects), in Chromium.

Two users where it matters: alice renames an object and bob sees the name in his list and his
tags; hide, lock and solo change what the canvas draws (read back from the canvas's pixels) and
lock refuses a drag (the server's label does not move); fourteen objects on one frame are all
listed and all have a timeline row; the tags on the canvas never overlap; the COCO export carries
the name. Point 11: the SAM bar is outside the image, a refine preview is drawn in another colour
than the label it refines, shift-click selects rows not text, the media picker shows whole names.
Screenshots: p5-colours, p5-names, p5-solo, p5-many-objects, p11-sam-bar, p11-refine-preview,
p11-media-picker.
"""

from __future__ import annotations

import json
import uuid

from tests.server.live import upload
from tests.server.rest import command
from tests.web.conftest import CLIP

MEDIA = "clip"


def create_box(http, object_id: str, frame: int, x: float, y: float, w: float = 60, h: float = 40, class_id: str = "box") -> None:  # type: ignore[no-untyped-def]
    command(http, {"type": "object_created", "object": object_id, "media": MEDIA, "class_id": class_id}, MEDIA)
    command(http, {"type": "label_saved", "object": object_id, "frame": frame, "shape": {"type": "bbox", "x": x, "y": y, "w": w, "h": h}, "source": "manual"}, MEDIA)


def server_label(site, object_id: str, frame: int) -> dict | None:  # type: ignore[no-untyped-def]
    with site.http("admin") as http:
        entries = http.get(f"/api/media/{MEDIA}/labels", params={"frame": frame}).json()["labels"]
    return next((e["label"] for e in entries if e["object"] == object_id), None)


def after_paint(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until the page has drawn what it was told (two animation frames)."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def pixel(page, x: float, y: float) -> list[int]:  # type: ignore[no-untyped-def]
    """The canvas's colour at image point (x, y)."""
    after_paint(page)
    return page.evaluate(
        """([x, y]) => {
          const canvas = document.getElementById('stage');
          const rect = canvas.getBoundingClientRect();
          const p = masklog.editor.imageToClient(x, y);
          const dpr = window.devicePixelRatio || 1;
          return [...canvas.getContext('2d').getImageData(Math.round((p.x - rect.left) * dpr), Math.round((p.y - rect.top) * dpr), 1, 1).data];
        }""",
        [x, y],
    )


def shown_ids(page) -> set[str]:  # type: ignore[no-untyped-def]
    after_paint(page)
    return set(page.evaluate("masklog.shown().map(i => i.id)"))


def rects_overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def test_p5_fourteen_objects_colours_names_tags_and_the_timeline(open_page, site, shot):
    tag = uuid.uuid4().hex[:5]
    ids = [f"car-{tag}-{i:02d}" for i in range(14)]
    with site.http("alice") as http:
        for i, object_id in enumerate(ids):
            # Two columns of boxes whose top-left corners crowd together: their tags would pile up.
            create_box(http, object_id, 0, x=40 + (i % 2) * 14 + (i // 7) * 300, y=30 + (i % 7) * 12, w=120, h=90)
    alice, bob = open_page("alice"), open_page("bob")
    for page in (alice, bob):
        page.wait_for_function(f"masklog.shown().filter(i => i.id.startsWith('car-{tag}')).length === 14", timeout=20_000)

    # Distinct colours per instance of one class, the same for both users.
    colours = alice.evaluate(f"Object.fromEntries(masklog.shown().filter(i => i.id.startsWith('car-{tag}')).map(i => [i.id, i.color]))")
    assert len(set(colours.values())) == 14, colours
    assert colours == bob.evaluate(f"Object.fromEntries(masklog.shown().filter(i => i.id.startsWith('car-{tag}')).map(i => [i.id, i.color]))")
    # The tags, crowded, do not overlap.
    after_paint(alice)
    tags = alice.evaluate("masklog.editor.tags")
    assert len(tags) >= 14
    for i, a in enumerate(tags):
        for b in tags[i + 1 :]:
            assert not rects_overlap(a, b), (a, b)
    shot(alice, "p5-colours")

    # Every object is listed (the list scrolls) and has a timeline row (no "+N more").
    rows = alice.eval_on_selector_all("[data-testid=objects] .object-row", "rows => rows.map(r => r.dataset.object)")
    assert set(ids) <= set(rows)
    alice.locator(f"[data-testid='object-{ids[-1]}']").scroll_into_view_if_needed()
    assert alice.locator(f"[data-testid='object-{ids[-1]}']").is_visible()
    timeline_rows = alice.evaluate("masklog.app.timeline.rows.map(r => r.id)")
    assert timeline_rows == alice.evaluate("[...masklog.model.objects.keys()]") and set(ids) <= set(timeline_rows)
    box = alice.locator("[data-testid=timeline]").bounding_box()
    alice.mouse.move(box["x"] + 40, box["y"] + box["height"] / 2)
    alice.mouse.wheel(0, 400)
    alice.wait_for_function("masklog.app.timeline.scroll > 0")
    after_paint(alice)
    shot(alice, "p5-many-objects")

    # alice renames one in place; bob sees the name in his list, his tags and his timeline.
    target = ids[3]
    assert alice.evaluate(f"masklog.objectName('{target}')") == "box #4"
    alice.locator(f"[data-testid='object-{target}']").scroll_into_view_if_needed()
    alice.dblclick(f"[data-testid='object-name-{target}']")
    alice.fill("[data-testid=object-name-input]", "lead car")
    alice.keyboard.press("Enter")
    bob.wait_for_function(f"masklog.objectName('{target}') === 'lead car'", timeout=10_000)
    bob.wait_for_function(f"document.querySelector(\"[data-testid='object-name-{target}']\").textContent === 'lead car'")
    after_paint(bob)
    assert any(t["id"] == target and t["text"] == "lead car" for t in bob.evaluate("masklog.editor.tags"))
    bob.locator(f"[data-testid='object-{target}']").scroll_into_view_if_needed()
    bob.click(f"[data-testid='object-{target}']")
    after_paint(bob)
    shot(bob, "p5-names")
    with site.http("alice") as http:
        assert http.get(f"/api/media/{MEDIA}/snapshot").json()["objects"][target]["name"] == "lead car"
        export = http.get("/api/projects/p1/export", params={"media": MEDIA})
    annotations = [a for a in json.loads(export.content)["annotations"] if a["masklog"]["object"] == target]
    assert annotations and all(a["attributes"] == {"name": "lead car"} for a in annotations)

    # F2 renames too; a rename is one undo step of its author.
    alice.click(f"[data-testid='object-{target}']")
    alice.keyboard.press("F2")
    alice.fill("[data-testid=object-name-input]", "second car")
    alice.keyboard.press("Enter")
    bob.wait_for_function(f"masklog.objectName('{target}') === 'second car'", timeout=10_000)
    alice.focus("[data-testid=stage]")
    alice.keyboard.press("Control+z")
    bob.wait_for_function(f"masklog.objectName('{target}') === 'lead car'", timeout=10_000)


def test_p5_hide_lock_and_solo_change_what_is_drawn_and_lock_refuses_a_drag(open_page, site, shot):
    tag = uuid.uuid4().hex[:5]
    a, b = f"a-{tag}", f"b-{tag}"
    with site.http("alice") as http:
        create_box(http, a, 2, x=100, y=200, w=80, h=60)
        create_box(http, b, 2, x=400, y=200, w=80, h=60)
    page = open_page("alice", frame=2)
    page.wait_for_function(f"masklog.shown().some(i => i.id === '{b}')", timeout=20_000)
    inside_a, inside_b = (140, 230), (440, 230)
    drawn_a, drawn_b = pixel(page, *inside_a), pixel(page, *inside_b)

    # Hide a: it is not drawn (its pixels change), and it stays hidden after a reload.
    page.click(f"[data-testid='object-hide-{a}']")
    assert shown_ids(page) >= {b} and a not in shown_ids(page)
    bare_a = pixel(page, *inside_a)
    assert bare_a != drawn_a, "hiding a changed what is drawn where it was"
    page.reload()
    page.wait_for_function("window.masklog && window.masklog.ready", timeout=20_000)
    page.evaluate("window.masklog.ready")
    page.wait_for_function(f"masklog.shown().some(i => i.id === '{b}')", timeout=20_000)
    assert a not in shown_ids(page), "kept in this browser"
    page.click(f"[data-testid='object-hide-{a}']")
    page.wait_for_function(f"masklog.shown().some(i => i.id === '{a}')")
    assert pixel(page, *inside_a) == drawn_a

    # Solo b (S): only b is drawn.
    page.click(f"[data-testid='object-{b}']")
    page.focus("[data-testid=stage]")
    page.keyboard.press("s")
    page.keyboard.press("Escape")  # deselected, b is drawn as before
    assert shown_ids(page) == {b}
    assert pixel(page, *inside_a) == bare_a and pixel(page, *inside_b) == drawn_b
    shot(page, "p5-solo")
    page.click(f"[data-testid='object-solo-{b}']")
    assert shown_ids(page) >= {a, b}

    # Lock a (its row's button): dragging it moves nothing, Delete deletes nothing.
    before = server_label(site, a, 2)
    page.click(f"[data-testid='object-lock-{a}']")
    page.click(f"[data-testid='object-{a}']")
    assert page.evaluate(f"masklog.shown().find(i => i.id === '{a}').locked") is True

    def drag(start: tuple[float, float], end: tuple[float, float]) -> None:
        p = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", list(start))
        q = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", list(end))
        page.mouse.move(p["x"], p["y"])
        page.mouse.down()
        page.mouse.move((p["x"] + q["x"]) / 2, (p["y"] + q["y"]) / 2, steps=4)
        page.mouse.move(q["x"], q["y"], steps=4)
        page.mouse.up()

    seq = page.evaluate("masklog.model.seq")
    drag(inside_a, (inside_a[0] + 60, inside_a[1] + 40))
    page.keyboard.press("Delete")
    page.wait_for_selector(".toast", timeout=5_000)
    assert "locked" in page.inner_text(".toasts")
    after_paint(page)
    assert server_label(site, a, 2) == before and page.evaluate("masklog.model.seq") == seq, "nothing was sent"
    # Unlocked, the same drag moves it (the check above can fail).
    page.click(f"[data-testid='object-lock-{a}']")
    page.keyboard.press("f")
    page.click(f"[data-testid='object-{a}']")
    drag(inside_a, (inside_a[0] + 60, inside_a[1] + 40))
    page.wait_for_function(f"masklog.model.label('{a}', 2).shape.x > 140", timeout=10_000)
    moved = server_label(site, a, 2)
    assert moved["shape"]["x"] > before["shape"]["x"] + 30


def test_p11_sam_bar_refine_preview_shift_click_and_media_picker(open_page, site, shot, tmp_path):
    tag = uuid.uuid4().hex[:5]
    disc, other = f"disc-{tag}", f"top-{tag}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": disc, "media": MEDIA, "class_id": "mask"}, MEDIA)
        command(http, {"type": "label_saved", "object": disc, "frame": 5, "shape": CLIP.bitmask(0, 5), "source": "manual"}, MEDIA)
        # A box at the very top of the image: its tag is where the old SAM bar sat.
        create_box(http, other, 5, x=250, y=0, w=140, h=50)
    page = open_page("alice", frame=5)
    page.wait_for_function(f"masklog.shown().some(i => i.id === '{other}')", timeout=20_000)

    # The SAM bar is a row above the image, not over it (nor over the tags).
    page.click(f"[data-testid='object-{disc}']")
    page.click("[data-testid=wand-mask]")
    bar = page.locator("[data-testid=sam-bar]")
    assert bar.is_visible()
    after_paint(page)
    bar_box = bar.bounding_box()
    image = page.evaluate(
        "() => { const a = masklog.editor.imageToClient(-0.5, -0.5), b = masklog.editor.imageToClient(CLIP_W - 0.5, CLIP_H - 0.5); return {x: a.x, y: a.y, w: b.x - a.x, h: b.y - a.y}; }"
        .replace("CLIP_W", str(CLIP.width)).replace("CLIP_H", str(CLIP.height))
    )
    bar_rect = {"x": bar_box["x"], "y": bar_box["y"], "w": bar_box["width"], "h": bar_box["height"]}
    assert not rects_overlap(bar_rect, image), (bar_rect, image)
    canvas = page.locator("[data-testid=stage]").bounding_box()
    for t in page.evaluate("masklog.editor.tags"):
        assert not rects_overlap(bar_rect, {"x": canvas["x"] + t["x"], "y": canvas["y"] + t["y"], "w": t["w"], "h": t["h"]})
    # With the tool's text in the toolbar, the pickers give up room: Sign out stays on screen.
    logout = page.locator("[data-testid=logout]").bounding_box()
    assert logout["x"] + logout["width"] <= page.viewport_size["width"], logout
    # ... and no control of the toolbar is drawn over another (at 1280 px, with someone else here,
    # the tools once covered undo).
    open_page("bob", frame=5)
    page.wait_for_function("document.querySelectorAll('[data-testid=presence] > *').length >= 2", timeout=20_000)
    controls = page.evaluate(
        """() => [...document.querySelectorAll('.toolbar > select, .toolbar > button, .toolbar .group > button, .toolbar > .connection')]
            .filter(e => e.offsetParent !== null)
            .map(e => { const r = e.getBoundingClientRect(); return {id: e.id, x: r.x, y: r.y, w: r.width, h: r.height}; })"""
    )
    assert len(controls) >= 10, controls
    for i, a in enumerate(controls):
        assert a["x"] >= 0 and a["x"] + a["w"] <= page.viewport_size["width"], a
        for b in controls[i + 1 :]:
            assert not rects_overlap(a, b), (a, b)
    shot(page, "p11-sam-bar")

    # A refine preview (S7) is drawn in a colour of its own; the label it refines dashed meanwhile.
    (x, y) = CLIP.discs[0].centre(5)
    point = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", [x, y])
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function("masklog.editor.preview !== null", timeout=20_000)
    after_paint(page)
    label_item = page.evaluate(f"masklog.shown().find(i => i.id === '{disc}')")
    preview_colour = page.evaluate("masklog.editor.preview.color")
    assert preview_colour.lower() != label_item["color"].lower() and label_item["dashed"] is True
    shot(page, "p11-refine-preview")
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")

    # Shift-click in the object list selects rows, not text.
    page.click(f"[data-testid='object-{disc}']")
    page.click(f"[data-testid='object-{other}']", modifiers=["Shift"])
    assert set(page.evaluate("[...masklog.state.selected]")) == {disc, other}
    assert page.evaluate("window.getSelection().toString()") == ""

    # The media picker shows a long name whole, or in its title.
    long_name = "bedroom_walkthrough_2024-05-17_camera_left_take_3.mp4"
    with site.http("admin") as admin:
        upload(admin, "p1", f"long-{tag}", "video", [CLIP.write_video(tmp_path / "long.mp4")], name=long_name).raise_for_status()
    picker = open_page("alice", media=f"long-{tag}")
    select = picker.locator("[data-testid=media-select]")
    fits = select.evaluate("s => s.scrollWidth <= s.clientWidth")
    title = select.get_attribute("title") or ""
    option_title = picker.evaluate(f"document.querySelector(\"[data-testid=media-select] option[value='long-{tag}']\").title")
    assert long_name in title and long_name in option_title
    assert fits or long_name in title
    assert select.bounding_box()["width"] >= 250, "wide enough for most names"
    shot(picker, "p11-media-picker")
