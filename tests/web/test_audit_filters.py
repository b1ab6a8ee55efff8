"""An audit you can filter (issue 14, point 10): the labels on the canvas and in the audit table
filtered by source, annotator, model and class (AND), a "filtered" badge on the canvas, and a
SAM label's prompt drawn on the frame as its clicks.

Frame 0 of the clip holds, by the end of the set-up: alice's SAM mask (two clicks on the red
disc), bob's hand-drawn box and bob's imported polygon; frames 1-2 bob's tracked boxes.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.server.rest import command
from tests.web.conftest import CLIP
from tests.web.test_page import click_image, wait_label

BOB_BOX = {"type": "bbox", "x": 420, "y": 60, "w": 100, "h": 120}
BOB_POLY = {"type": "polygon", "parts": [{"outer": [20, 280, 120, 280, 120, 340, 20, 340], "holes": []}]}


def drawn(page: Any) -> set[str]:
    """The objects the canvas draws now (the editor's items: what it paints this frame)."""
    return set(page.evaluate("masklog.shown().map(i => i.id)"))


def audit_rows(page: Any) -> dict[str, str]:
    """The audit table's rows: first cell -> last cell (the total)."""
    return dict(page.evaluate(
        "[...document.querySelectorAll('#audit-table tr')].slice(1).map(r => [r.cells[0].dataset.key ?? r.cells[0].innerText, r.cells[r.cells.length - 1].innerText])"
    ))


def wait_audit(page: Any, rows: dict[str, str]) -> None:
    page.wait_for_function(
        """(want) => {
          const rows = [...document.querySelectorAll('#audit-table tr')].slice(1).map(r => [r.cells[0].dataset.key ?? r.cells[0].innerText, r.cells[r.cells.length - 1].innerText]);
          return JSON.stringify(Object.fromEntries(rows.filter(r => r.length === 2 && r[0] !== 'no labels'))) === JSON.stringify(want);
        }""",
        arg=dict(sorted(rows.items())),
        timeout=20_000,
    )


def choose(page: Any, key: str, value: str) -> None:
    page.select_option(f"[data-testid=filter-{key}]", value)


def make_labels(alice: Any, site: Any) -> dict[str, str]:
    # Alice: a SAM mask from an include click on the red disc and an exclude click beside it.
    alice.click("[data-testid=class-mask]")
    alice.click("[data-testid=wand-mask]")
    (x, y) = CLIP.discs[0].centre(0)
    click_image(alice, x, y)
    alice.wait_for_function("[...masklog.model.segments.values()].some(s => s.event.actor.startsWith('model:'))", timeout=30_000)
    click_image(alice, x + 50, y - 50, button="right")
    alice.wait_for_function("masklog.model.segments.size >= 2", timeout=30_000)
    alice.keyboard.press("Enter")
    wait_label(alice, 0, "e.label.source === 'sam'")
    sam = alice.evaluate("masklog.model.labelsAt(0).find(e => e.label.source === 'sam').object")
    alice.click("[data-testid=tool-select]")
    alice.wait_for_function("masklog.state.tool === 'select'")
    # Bob: a box by hand, a polygon imported, and his box tracked over frames 1-2 and saved.
    box, poly = f"bbox-{uuid.uuid4().hex[:6]}", f"poly-{uuid.uuid4().hex[:6]}"
    with site.http("bob") as http:
        command(http, {"type": "object_created", "object": box, "media": "clip", "class_id": "box"}, "clip")
        command(http, {"type": "label_saved", "object": box, "frame": 0, "shape": BOB_BOX, "source": "manual"}, "clip")
        command(http, {"type": "object_created", "object": poly, "media": "clip", "class_id": "poly"}, "clip")
        command(http, {"type": "label_saved", "object": poly, "frame": 0, "shape": BOB_POLY, "source": "imported"}, "clip")
        track = command(http, {"type": "track_requested", "media": "clip", "objects": [box], "start": 0, "direction": "forward", "range": 3, "algorithm": "simple"}, "clip")["id"]
    alice.wait_for_function(f"masklog.model.tracks.get('{track}')?.status === 'completed'", timeout=30_000)
    with site.http("bob") as http:
        command(http, {"type": "tracked_accepted", "track": track}, "clip")
    alice.wait_for_function(f"masklog.model.label('{box}', 2)?.source === 'tracked'", timeout=20_000)
    return {"sam": sam, "box": box, "poly": poly}


def test_filters_narrow_the_canvas_and_the_audit_table_and_a_prompt_is_drawn_on_the_frame(open_page, site, shot):
    alice, bob = open_page("alice"), open_page("bob")
    ids = make_labels(alice, site)
    sam, box, poly = ids["sam"], ids["box"], ids["poly"]
    assert drawn(alice) == {sam, box, poly}
    assert alice.is_hidden("[data-testid=filter-badge]")
    alice.select_option("[data-testid=audit-by]", "object")
    wait_audit(alice, {sam: "1", box: "3", poly: "1"})
    # Objects are listed by the names people see (the id in the title), as in the object list.
    shown_names = alice.evaluate("[...document.querySelectorAll('#audit-table tr')].slice(1).map(r => [r.cells[0].dataset.key, r.cells[0].innerText])")
    assert {key: text for key, text in shown_names} == {key: alice.evaluate("(id) => masklog.objectName(id)", key) for key in (sam, box, poly)}

    # Annotator: only bob's labels are drawn and counted.
    choose(alice, "annotator", "user:bob")
    alice.wait_for_function(f"!masklog.shown().some(i => i.id === '{sam}')")
    assert drawn(alice) == {box, poly}
    wait_audit(alice, {box: "3", poly: "1"})
    assert "annotator bob" in alice.inner_text("[data-testid=filter-badge]")
    # The selected SAM label is filtered off the canvas: so are its prompt's clicks.
    alice.wait_for_function("!document.querySelector('[data-testid=prompt-point]')")
    shot(alice, "p10-filter-annotator")
    # ... and (AND) the source: bob's hand-drawn box alone.
    choose(alice, "source", "manual")
    alice.wait_for_function(f"!masklog.shown().some(i => i.id === '{poly}')")
    assert drawn(alice) == {box}
    wait_audit(alice, {box: "1"})
    choose(alice, "annotator", "")

    # Source: SAM alone, whoever made it.
    choose(alice, "source", "sam")
    alice.wait_for_function(f"masklog.shown().length === 1 && masklog.shown()[0].id === '{sam}'")
    wait_audit(alice, {sam: "1"})
    badge = alice.inner_text("[data-testid=filter-badge]")
    assert "source SAM" in badge and "1 of 5 labels" in badge, badge
    shot(alice, "p10-filter-source")
    # Tracked: nothing on frame 0, bob's box on frame 2.
    choose(alice, "source", "tracked")
    alice.wait_for_function("masklog.shown().length === 0")
    wait_audit(alice, {box: "2"})
    alice.evaluate("masklog.goto(2)")
    alice.wait_for_function(f"masklog.state.frame === 2 && masklog.shown().some(i => i.id === '{box}')")
    alice.evaluate("masklog.goto(0)")
    alice.wait_for_function("masklog.state.frame === 0")
    alice.click("[data-testid=filter-clear]")

    # Class, then model (labels made without a model: the box by hand and the imported polygon).
    choose(alice, "class", "poly")
    alice.wait_for_function(f"masklog.shown().length === 1 && masklog.shown()[0].id === '{poly}'")
    wait_audit(alice, {poly: "1"})
    choose(alice, "class", "")
    choose(alice, "model", "(none)")
    alice.wait_for_function("masklog.shown().length === 2")
    assert drawn(alice) == {box, poly}
    wait_audit(alice, {box: "1", poly: "1"})
    sam_model = alice.evaluate(f"masklog.model.label('{sam}', 0).model")
    choose(alice, "model", sam_model)
    alice.wait_for_function(f"masklog.shown().length === 1 && masklog.shown()[0].id === '{sam}'")
    wait_audit(alice, {sam: "1"})

    # Clear restores everything; the badge goes.
    alice.click("[data-testid=filter-badge-clear]")
    alice.wait_for_function("masklog.shown().length === 3")
    assert drawn(alice) == {sam, box, poly}
    wait_audit(alice, {sam: "1", box: "3", poly: "1"})
    assert alice.is_hidden("[data-testid=filter-badge]")
    # The filter is the viewer's own: bob's page still draws everything.
    bob.wait_for_function(f"masklog.model.label('{sam}', 0) !== null")
    assert drawn(bob) == {sam, box, poly}

    # The SAM label's provenance: its clicks drawn on the frame, where they were clicked. Bob's
    # page never saw the prompt event live, so it asks the server for it.
    (x, y) = CLIP.discs[0].centre(0)
    for page in (alice, bob):
        page.evaluate(f"masklog.select(['{sam}'])")
        page.wait_for_selector("[data-testid=prompt-point]", state="attached")
        info = page.inner_text("[data-testid=label-info]")
        assert "2 clicks (1 include, 1 exclude)" in info, info
        points = page.evaluate(
            """() => [...document.querySelectorAll('[data-testid=prompt-point]')].map(c => {
                 const r = c.getBoundingClientRect();
                 return {include: c.dataset.include === 'true', cx: r.left + r.width / 2, cy: r.top + r.height / 2, fill: c.getAttribute('fill')};
               })"""
        )
        assert [p["include"] for p in points] == [True, False]
        for point, (px, py) in zip(points, [(x, y), (x + 50, y - 50)], strict=True):
            at = page.evaluate("([x, y]) => masklog.editor.imageToClient(x, y)", [px, py])
            assert abs(point["cx"] - at["x"]) < 1.5 and abs(point["cy"] - at["y"]) < 1.5, (point, at)
        assert [p["fill"] for p in points] == ["#2ecc71", "#ff4d4f"]
    shot(alice, "p10-prompt-provenance")
    # A label without a prompt shows none.
    alice.evaluate(f"masklog.select(['{box}'])")
    alice.wait_for_function("!document.querySelector('[data-testid=prompt-point]')")
