"""Issue 14 point 3 in a real Chromium: the page offers the trackers the server runs, defaults to
the best of them, says why the others are unavailable, and names the tracker in its requests.
The test server runs the classical backend: SAM 2 is listed, disabled, with the reason."""

from __future__ import annotations

import uuid

from tests.server.rest import command
from tests.web.conftest import CLIP


def options(page, select: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector(  # type: ignore[no-any-return]
        select, "s => [...s.options].map(o => ({value: o.value, text: o.textContent, disabled: o.disabled, title: o.title, selected: o.selected}))"
    )


def test_the_method_select_offers_what_runs_and_says_why_not_sam2(open_page, site, shot):
    page = open_page("alice")
    object_id = f"offer-{uuid.uuid4().hex[:6]}"
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "mask"}, "clip")
        command(http, {"type": "label_saved", "object": object_id, "frame": 0, "shape": CLIP.bitmask(0, 0), "source": "manual"}, "clip")
    page.wait_for_selector(f"[data-testid='object-{object_id}']")

    # The settings: classical chosen (the best this server runs), SAM 2 off with the reason.
    page.click("[data-testid=settings-open]")
    listed = options(page, "[data-testid=setting-tracker]")
    assert [(o["value"], o["disabled"], o["selected"]) for o in listed[:2]] == [("classical", False, True), ("sam2", True, False)]
    assert "--backend sam2" in listed[1]["title"] and "unavailable" in listed[1]["text"]
    why = page.inner_text("[data-testid=setting-tracker-why]")
    assert "SAM 2" in why and "runs the classical backend" in why and "--sam2-checkpoint" in why
    page.keyboard.press("Escape")

    # The Auto-label dialog's method: the same list, the reason under it.
    page.click("[data-testid=auto-open]")
    page.wait_for_selector("[data-testid=auto-dialog]", state="visible")
    listed = options(page, "[data-testid=auto-algorithm]")
    assert [(o["value"], o["disabled"], o["selected"]) for o in listed[:2]] == [("classical", False, True), ("sam2", True, False)]
    assert page.is_visible("[data-testid=auto-algorithm-why]") and "--backend sam2" in page.inner_text("[data-testid=auto-algorithm-why]")
    shot(page, "p3-trackers")
    page.click("[data-testid=auto-cancel]")

    # The object menu says which tracker runs; the request names it (not 'advanced').
    page.click(f"[data-testid='object-{object_id}']", button="right")
    assert page.inner_text("[data-testid=ctx-track-forward]").startswith("Track forwards (Classical")
    page.click("[data-testid=ctx-track-forward]")
    page.wait_for_function(f"[...masklog.model.tracks.values()].some(t => t.request.objects.includes('{object_id}'))", timeout=20_000)
    request = page.evaluate(f"[...masklog.model.tracks.values()].find(t => t.request.objects.includes('{object_id}')).request")
    assert request["algorithm"] == "classical"


def test_settings_saved_before_name_a_tracker_that_runs(open_page, site):
    """A browser that chose "advanced" or "simple" before (or a tracker this server lacks) asks
    for one this server runs."""
    page = open_page("alice")
    for stored in ('{"range": 5, "advanced": true}', '{"range": 5, "advanced": false}', '{"range": 5, "tracker": "sam2"}'):
        page.evaluate(f"localStorage.setItem('masklog.settings', {stored!r})")
        page.reload()
        page.wait_for_function("window.masklog && window.masklog.ready && masklog.settings.capabilities !== null", timeout=20_000)
        assert page.evaluate("masklog.settings.algorithm") == "classical", stored
