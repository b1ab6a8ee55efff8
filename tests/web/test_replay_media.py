"""Replay of the open media item (issue 14 point 8), in a real Chromium with two users.

The project has two media items with labels on both; the slider and its steps move through the
open item's own events only (each step changes what the item shows), the object list, timeline,
counts and canvas follow the replayed position (an object deleted later is listed before its
deletion), edits are refused while replaying, and "Back to live" brings back the live state,
including what the other user did meanwhile.
"""

from __future__ import annotations

import uuid

from scripts.live_server import upload, write_image
from tests.server.rest import bbox, command

REPLAYED_JS = """() => {
  const r = masklog.app.replay;
  const m = r.model;
  return {
    seq: masklog.state.replaySeq,
    objects: [...m.objects.keys()].sort(),
    labels: [...m.labels.values()].map(e => `${e.object}@${e.frame}:${e.label.shape.x}`).sort(),
  };
}"""

SHOWN_JS = """() => ({
  list: [...document.querySelectorAll('[data-testid=objects] [data-testid^="object-"]')].map(r => r.dataset.testid.slice(7)),
  timeline: masklog.app.timeline._objects(),
  canvas: masklog.shown().map(i => i.id).sort(),
  manual: Number(document.querySelector('[data-testid=audit-manual] b').textContent),
})"""


def box(http, media: str, object_id: str, frame: int, x: float) -> int:  # type: ignore[no-untyped-def]
    return command(http, {"type": "label_saved", "object": object_id, "frame": frame, "shape": bbox(x=x, w=40, h=30), "source": "manual"}, media)["seq"]


def test_replay_steps_through_this_media_items_events_only(open_page, site, shot, tmp_path):
    other = f"still-{uuid.uuid4().hex[:6]}"
    kept, gone, elsewhere = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("kept", "gone", "elsewhere"))
    with site.http("admin") as admin:
        upload(admin, "p1", other, "image", [write_image(tmp_path / "still.png", size=(64, 48))]).raise_for_status()
    with site.http("alice") as alice, site.http("bob") as bob_http:
        # The two items' events interleave in the log.
        command(alice, {"type": "object_created", "object": kept, "media": "clip", "class_id": "box"}, "clip")
        command(bob_http, {"type": "object_created", "object": elsewhere, "media": other, "class_id": "box"}, other)
        box(alice, "clip", kept, 0, 100)
        box(bob_http, other, elsewhere, 0, 5)
        command(alice, {"type": "object_created", "object": gone, "media": "clip", "class_id": "box"}, "clip")
        box(bob_http, other, elsewhere, 0, 6)
        box(alice, "clip", gone, 0, 300)
        box(alice, "clip", kept, 1, 110)
        box(bob_http, other, elsewhere, 0, 7)
        command(alice, {"type": "object_deleted", "object": gone}, "clip")
        positions = alice.get("/api/media/clip/positions").json()["seqs"]
        other_positions = set(alice.get(f"/api/media/{other}/positions").json()["seqs"])
    assert len(other_positions) == 4 and not other_positions & set(positions)

    page, bob = open_page("alice"), open_page("bob")
    page.wait_for_function("masklog.app.replay.loaded")
    assert page.evaluate("masklog.app.replay.positions") == positions, "the steps are this item's events, no other's"
    live = page.evaluate(SHOWN_JS)
    assert gone not in live["list"] and kept in live["list"] and kept in live["timeline"]
    assert page.get_attribute("[data-testid=replay]", "max") == str(len(positions))

    # Step back from live, one event of this item at a time: every step changes what it shows,
    # and each position holds what the server says the labels were then.
    states = []
    with site.http("alice") as alice:
        for k in range(len(positions) - 1, -1, -1):
            page.click("[data-testid=replay-prev]")
            seq = positions[k - 1] if k else positions[0] - 1
            page.wait_for_function(f"masklog.state.replaySeq === {seq}")
            replayed = page.evaluate(REPLAYED_JS)
            assert replayed not in states, f"step {k} changed nothing"
            states.append(replayed)
            server = alice.get("/api/media/clip/labels", params={"seq": seq}).json()["labels"]
            assert sorted(f"{e['object']}@{e['frame']}:{int(e['label']['shape']['x'])}" for e in server) == replayed["labels"]
            assert page.input_value("[data-testid=replay]") == str(k)
            if k == len(positions) - 2:  # after `gone`'s label, before `kept`'s second one and the deletion
                page.wait_for_selector(f"[data-testid='objects'] [data-testid='object-{gone}']")
                shown = page.evaluate(SHOWN_JS)
                assert {gone, kept} <= set(shown["list"]) and {gone, kept} <= set(shown["timeline"])
                assert shown["canvas"] == sorted([gone, kept]) and shown["manual"] == 2
                assert "read-only" in page.inner_text("[data-testid=replay-banner]")
                shot(page, "p8-replay-earlier")

                # Edits are refused while replaying: Delete does nothing, a command is not sent.
                page.click(f"[data-testid='object-{gone}']")
                page.keyboard.press("Delete")
                assert page.is_disabled("[data-testid=undo]") and page.is_disabled("[data-testid=auto-open]")
                refused = page.evaluate(
                    "(o) => masklog.send({type: 'label_deleted', object: o, frame: 0}).then(() => 'sent', e => e.code)", kept
                )
                assert refused == "replaying"
                assert alice.get("/api/media/clip/positions").json()["seqs"] == positions, "nothing was written"
    assert states[-1]["objects"] == [] and states[-1]["labels"] == [], "step 0: before this item's first event"
    page.click("[data-testid=replay-prev]")  # at step 0 already: stays
    assert page.evaluate("masklog.state.replaySeq") == positions[0] - 1

    # The slider goes straight to a step; the other user works meanwhile (live for them).
    page.evaluate(f"(() => {{ const s = document.querySelector('[data-testid=replay]'); s.value = '{len(positions) - 2}'; s.dispatchEvent(new Event('change')); }})()")
    page.wait_for_function(f"masklog.state.replaySeq === {positions[-3]}")
    assert gone in page.evaluate(SHOWN_JS)["list"]
    with site.http("bob") as bob_http:
        late = box(bob_http, "clip", kept, 2, 120)
    page.wait_for_function(f"masklog.app.replay.positions.includes({late})")
    assert page.evaluate("masklog.state.replaySeq") == positions[-3], "replay stays where it is"
    bob.wait_for_function(f"masklog.model.label('{kept}', 2) !== null")

    page.click("[data-testid=replay-live]")
    page.wait_for_function("masklog.state.replaySeq === null")
    page.wait_for_function(f"!document.querySelector(\"[data-testid='objects'] [data-testid='object-{gone}']\")")
    back = page.evaluate(SHOWN_JS)
    assert gone not in back["list"] and gone not in back["timeline"] and back["canvas"] == [kept]
    assert page.is_hidden("[data-testid=replay-banner]")
    assert page.input_value("[data-testid=replay]") == str(len(positions) + 1) == page.get_attribute("[data-testid=replay]", "max")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"masklog.shown().some(i => i.id === '{kept}')")
    shot(page, "p8-back-to-live")
    # Live again, edits go through.
    page.evaluate("(o) => masklog.send({type: 'label_deleted', object: o, frame: 2})", kept)
    bob.wait_for_function(f"masklog.model.label('{kept}', 2) === null")
