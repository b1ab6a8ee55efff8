"""Keyboard help and playback in the page (issue 14 point 7), in a real Chromium.

`?` opens a help generated from the keymap (every binding of web/js/keymap.js is listed, read
from the module itself), Esc and `?` close it; Space plays (the frame advances, several frames)
and pauses (the frame stops changing); the frame counter reads "frame N of 0–LAST" everywhere.
"""

from __future__ import annotations

from tests.web.conftest import CLIP

KEYMAP_JS = """async () => {
  const { KEYMAP, chordLabel } = await import('/js/keymap.js');
  return KEYMAP.map(b => ({ action: b.action, keys: [...new Set(b.keys.map(chordLabel))], help: b.help }));
}"""

HELP_ROWS_JS = """() => [...document.querySelectorAll('[data-testid=keyboard-help] [data-testid=help-row]')].map(tr => ({
  action: tr.dataset.action, text: tr.innerText,
}))"""


def test_question_mark_opens_the_help_generated_from_the_keymap(open_page, shot):
    page = open_page("alice")
    keymap = page.evaluate(KEYMAP_JS)
    assert {"help", "playPause", "undo", "trackForward"} <= {b["action"] for b in keymap}
    assert not page.is_visible("[data-testid=keyboard-help]")

    page.keyboard.press("Shift+Slash")  # "?" on a US keyboard
    page.wait_for_selector("[data-testid=keyboard-help]", state="visible")
    rows = page.evaluate(HELP_ROWS_JS)
    assert sorted(r["action"] for r in rows) == sorted(b["action"] for b in keymap), "one row per binding"
    for binding in keymap:
        [row] = [r for r in rows if r["action"] == binding["action"]]
        assert binding["help"] in row["text"]
        if binding["action"] != "pickClass":  # the digits are written as one range, 1…9
            assert all(key in row["text"] for key in binding["keys"]), (binding, row)
    assert "1…9" in next(r["text"] for r in rows if r["action"] == "pickClass")
    groups = page.locator("[data-testid=keyboard-help] h4").all_inner_texts()
    assert len(groups) >= 5 and "Mouse on the frame".upper() in [g.upper() for g in groups]
    shot(page, "p7-help")

    page.keyboard.press("Escape")
    page.wait_for_selector("[data-testid=keyboard-help]", state="hidden")
    assert page.evaluate("masklog.state.replaySeq") is None and page.evaluate("masklog.state.frame") == 0

    page.keyboard.press("Shift+Slash")
    page.wait_for_selector("[data-testid=keyboard-help]", state="visible")
    page.keyboard.press("Shift+Slash")  # ? closes it again
    page.wait_for_selector("[data-testid=keyboard-help]", state="hidden")

    page.click("[data-testid=help-open]")  # the toolbar's ? button
    page.wait_for_selector("[data-testid=keyboard-help]", state="visible")
    page.click("[data-testid=help-close]")
    page.wait_for_selector("[data-testid=keyboard-help]", state="hidden")


def test_space_plays_and_pauses_and_the_counter_says_the_range(open_page, shot):
    page = open_page("alice")
    last = CLIP.frames - 1
    assert page.inner_text("[data-testid=frame-label]") == f"frame 0 of 0–{last}"
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.querySelector('[data-testid=frame-label]').textContent === 'frame 1 of 0–%d'" % last)

    # Space (a tap) plays: the frame advances, several frames, without further keys.
    page.evaluate("window.seen = []; setInterval(() => window.seen.push(masklog.state.frame), 20)")
    page.keyboard.press("Space")
    page.wait_for_function("masklog.state.frame >= 5", timeout=20_000)
    assert page.evaluate("masklog.app.player.playing")
    assert page.get_attribute("[data-testid=play]", "class").split().count("active") == 1
    shot(page, "p7-playing")
    seen = page.evaluate("window.seen")
    assert len(set(seen)) >= 4 and seen == sorted(seen), "frames go forwards, several of them"
    assert page.inner_text("[data-testid=frame-label]").startswith("frame ")
    assert page.inner_text("[data-testid=frame-label]").endswith(f" of 0–{last}")

    # Space again pauses: the frame stops changing (checked after two more frame fetches' worth
    # of waiting on the page's own clock, not on a timed assertion about when it stopped).
    page.keyboard.press("Space")
    page.wait_for_function("!masklog.app.player.playing")
    stopped = page.evaluate("masklog.state.frame")
    assert 5 <= stopped < last
    page.evaluate("masklog.goto(masklog.state.frame).then(() => new Promise(r => setTimeout(r, 400)))")
    assert page.evaluate("masklog.state.frame") == stopped, "paused: the frame stays"
    assert page.inner_text("[data-testid=frame-label]") == f"frame {stopped} of 0–{last}"
    assert page.get_attribute("[data-testid=play]", "class").split().count("active") == 0

    # Played to the end, playback stops on the last frame (and a press there starts again at 0).
    page.keyboard.press("Space")
    page.wait_for_function(f"masklog.state.frame === {last} && !masklog.app.player.playing", timeout=30_000)
    assert page.inner_text("[data-testid=frame-label]") == f"frame {last} of 0–{last}"
    assert page.evaluate("location.hash").endswith(f"frame={last}")

    # Holding Space to pan (a drag on the frame while it is held) does not toggle playback.
    page.keyboard.press("Home")
    page.wait_for_function("masklog.state.frame === 0")
    box = page.locator("[data-testid=stage]").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.down("Space")
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2 + 10, steps=4)
    page.mouse.up()
    page.keyboard.up("Space")
    assert not page.evaluate("masklog.app.player.playing")
    assert page.evaluate("masklog.state.frame") == 0


def test_the_auto_label_dialog_and_menus_number_frames_from_zero(open_page):
    page = open_page("alice", frame=3)
    last = CLIP.frames - 1
    assert page.inner_text("[data-testid=frame-label]") == f"frame 3 of 0–{last}"
    page.click("[data-testid=auto-open]")
    page.wait_for_selector("[data-testid=auto-dialog]", state="visible")
    assert page.input_value("[data-testid=auto-first]") == "3"
    assert page.get_attribute("[data-testid=auto-last]", "max") == str(last)
    assert f"0–{last}" in page.get_attribute("[data-testid=auto-first]", "title")
    page.click("[data-testid=auto-cancel]")
