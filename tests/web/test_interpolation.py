"""Interpolation between keyframes in the page (issue 14 point 2): two people's boxes on frames 0
and 10, "Interpolate to next keyframe" from the object menu, review, Save: frames 1-9 hold the
linear boxes. A polygon pair morphs through the auto-label dialog's interpolation method.

Screenshots: p2-interpolation-review (frame 5 while the interpolated boxes wait for review,
dashed, the review row says "interpolated"), p2-interpolated-saved (frame 5 after Save, the
saved box between the two keyframes), p2-morph-saved (frame 5 of the polygon morph)."""

from __future__ import annotations

import uuid

import numpy as np

from masklog.domain.geometry import polygon_to_mask
from masklog.domain.shapes import Polygon, PolygonPart
from tests.server.rest import command
from tests.web.conftest import CLIP
from tests.web.test_page import drag_image, go_to_frame, wait_label


def labels(site, frame: int | None = None) -> list[dict]:  # type: ignore[no-untyped-def]
    with site.http("alice") as http:
        params = {"frame": frame} if frame is not None else None
        response = http.get("/api/media/clip/labels", params=params)
        response.raise_for_status()
        return response.json()["labels"]


def of_object(site, object_id: str) -> dict[int, dict]:  # type: ignore[no-untyped-def]
    return {entry["frame"]: entry["label"] for entry in labels(site) if entry["object"] == object_id}


def test_interpolating_a_box_between_two_peoples_keyframes_gives_the_linear_boxes(open_page, site, shot):
    alice, bob = open_page("alice"), open_page("bob", frame=10)
    known = set(alice.evaluate("[...masklog.model.objects.keys()]"))
    # Alice draws a box on frame 0: a new object.
    alice.click("[data-testid=class-box]")
    drag_image(alice, (60, 80), (140, 150))
    alice.wait_for_function(f"[...masklog.model.objects.keys()].some(id => !{sorted(known)!r}.includes(id) && masklog.model.label(id, 0))", timeout=20_000)
    object_id = alice.evaluate(f"[...masklog.model.objects.keys()].find(id => !{sorted(known)!r}.includes(id))")
    # Bob, on frame 10, picks her object and draws its box there, elsewhere and bigger.
    bob.wait_for_selector(f"[data-testid='object-{object_id}']")
    bob.click("[data-testid=class-box]")
    bob.click(f"[data-testid='object-{object_id}']")
    drag_image(bob, (360, 160), (560, 300))
    wait_label(alice, 10, f"e.object === '{object_id}' && e.label.actor === 'user:bob'")
    keyframes = of_object(site, object_id)
    assert sorted(keyframes) == [0, 10] and {k["source"] for k in keyframes.values()} == {"manual"}
    a, b = keyframes[0]["shape"], keyframes[10]["shape"]
    assert a["type"] == b["type"] == "bbox" and (a["x"], a["w"]) != (b["x"], b["w"])

    # Alice, on frame 0: the object menu interpolates to the next keyframe.
    alice.click(f"[data-testid='object-{object_id}']", button="right")
    item = alice.wait_for_selector("[data-testid=ctx-interpolate-next]")
    assert item.is_enabled()
    item.click()
    alice.wait_for_function(
        f"[...masklog.model.tracks.values()].some(t => t.request.objects.includes('{object_id}') && t.request.algorithm === 'interpolation' && t.status === 'completed')",
        timeout=30_000,
    )
    track = alice.evaluate(f"[...masklog.model.tracks.values()].find(t => t.request.objects.includes('{object_id}') && t.request.algorithm === 'interpolation')")
    assert (track["request"]["start"], track["request"]["range"], track["request"]["autosave"]) == (0, 11, False)
    proposed = alice.evaluate(f"[...Array(14).keys()].filter(f => masklog.model.proposalsAt(f).some(p => p.object === '{object_id}'))")
    assert proposed == list(range(1, 10)), "frames strictly between the keyframes wait for review"
    assert of_object(site, object_id).keys() == {0, 10}, "nothing is saved before review"
    bob.wait_for_function(f"masklog.model.proposalsAt(5).some(p => p.object === '{object_id}')", timeout=20_000)
    row = alice.wait_for_selector(f"[data-testid='track-{track['id']}']")
    assert "interpolated" in row.inner_text()
    go_to_frame(alice, 5)
    shot(alice, "p2-interpolation-review")

    row.query_selector("[data-testid=review-accept]").click()
    wait_label(alice, 9, f"e.object === '{object_id}' && e.label.source === 'tracked'")
    saved = of_object(site, object_id)
    assert sorted(saved) == list(range(11))
    assert saved[0] == keyframes[0] and saved[10] == keyframes[10], "the people's keyframes are untouched"
    for frame in range(1, 10):
        t = frame / 10
        label = saved[frame]
        assert label["source"] == "tracked" and label["model"] == "interpolation/linear@1" and label["actor"] == "user:alice"
        for key in ("x", "y", "w", "h"):
            assert abs(label["shape"][key] - ((1 - t) * a[key] + t * b[key])) <= 1e-6, (frame, key)
    wait_label(bob, 5, f"e.object === '{object_id}' && e.label.source === 'tracked'")
    shot(alice, "p2-interpolated-saved")


def disc_polygon(cx: float, cy: float, r: float) -> dict:
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    return {"type": "polygon", "parts": [{"outer": np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)]).round(2).ravel().tolist()}]}


def mask_of(shape: dict) -> np.ndarray:
    polygon = Polygon(parts=[PolygonPart(outer=part["outer"], holes=part.get("holes", [])) for part in shape["parts"]])
    return polygon_to_mask(polygon, CLIP.height, CLIP.width)


def test_a_polygon_pair_morphs_through_the_auto_label_dialog(open_page, site, shot):
    page = open_page("alice", frame=0)
    object_id = f"morph-{uuid.uuid4().hex[:6]}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "poly"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": disc_polygon(100, 100, 30), "source": "manual"}, "clip")
    with site.http("bob") as http:
        command(http, {"type": "label_saved", "object": object_id, "frame": 8, "shape": disc_polygon(420, 220, 60), "source": "manual"}, "clip")
    wait_label(page, 8, f"e.object === '{object_id}'")
    page.click("[data-testid=auto-open]")
    dialog = page.wait_for_selector("[data-testid=auto-dialog]", state="visible")
    for box in dialog.query_selector_all("[data-testid^=auto-object-]"):
        box.set_checked(box.get_attribute("value") == object_id)
    page.fill("[data-testid=auto-first]", "0")
    page.fill("[data-testid=auto-last]", "12")
    page.select_option("[data-testid=auto-algorithm]", "interpolation")
    page.click("[data-testid=auto-run]")
    page.wait_for_function(
        f"[...masklog.model.tracks.values()].some(t => t.request.objects.includes('{object_id}') && t.status === 'completed')",
        timeout=30_000,
    )
    saved = of_object(site, object_id)
    assert sorted(saved) == list(range(9)), "frames 1-7 between the keyframes, nothing after frame 8"
    for frame in range(1, 8):
        t = frame / 8
        label = saved[frame]
        assert label["source"] == "tracked" and label["model"] == "interpolation/sdf@1" and label["shape"]["type"] == "polygon"
        got, want = mask_of(label["shape"]), mask_of(disc_polygon(100 + 320 * t, 100 + 120 * t, 30 + 30 * t))
        assert (got & want).sum() / (got | want).sum() > 0.9, frame
    # A request without a second keyframe is refused with the server's message.
    page.click("[data-testid=auto-open]")
    dialog = page.wait_for_selector("[data-testid=auto-dialog]", state="visible")
    for box in dialog.query_selector_all("[data-testid^=auto-object-]"):
        box.set_checked(box.get_attribute("value") == object_id)
    page.fill("[data-testid=auto-first]", "8")
    page.fill("[data-testid=auto-last]", "12")
    page.select_option("[data-testid=auto-algorithm]", "interpolation")
    page.click("[data-testid=auto-run]")
    toast = page.wait_for_selector("[data-testid=toast]:has-text('second keyframe')", timeout=10_000)
    assert f"object '{object_id}'" in toast.inner_text()
    go_to_frame(page, 4)
    shot(page, "p2-morph-saved")
