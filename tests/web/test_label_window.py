"""Label windows in a real Chromium (issue 15): the page opens a long media item with full labels
only around its frame and heads (no shape) for the others; the timeline shows the heads, going to
a far frame fetches and draws its labels, a change made meanwhile by another user over the socket
wins over an older window answer, and the replay fetches the far frame's labels as of its position.
"""

from __future__ import annotations

import uuid

from scripts.live_server import upload, write_video
from tests.server.rest import bbox, command

FRAMES = 300

# The colour of the timeline at `frame` in `object`'s row (timeline.js: HEADER 18, ROW 9).
TIMELINE_PIXEL_JS = """([object, frame]) => {
  const t = masklog.app.timeline;
  t.draw();
  const canvas = t.canvas;
  const dpr = window.devicePixelRatio || 1;
  const row = t.rows.find((r) => r.id === object);
  const x = t._x(frame, canvas.clientWidth) + 0.5;
  const y = 18 + 2 - t.scroll + row.y + 4;
  return [...canvas.getContext('2d').getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data];
}"""

# The x of `object`'s box on the canvas now, or null when it is not drawn.
DRAWN_X_JS = "(object) => masklog.shown().find((i) => i.id === object && i.shape)?.shape.x ?? null"


def save(http, media: str, object_id: str, frame: int, x: float) -> int:  # type: ignore[no-untyped-def]
    body = {"type": "label_saved", "object": object_id, "frame": frame, "shape": bbox(x=x, w=10, h=8), "source": "manual"}
    return command(http, body, media)["seq"]


def test_far_frames_load_as_the_page_goes_there(open_page, site, tmp_path):
    media = f"long-{uuid.uuid4().hex[:6]}"
    walker, other = f"walker-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    with site.http("admin") as admin:
        upload(admin, "p1", media, "video", [write_video(tmp_path / "long.mp4", frames=FRAMES)]).raise_for_status()
    with site.http("alice") as alice:
        assert alice.get(f"/api/media/{media}").json()["frames"] == FRAMES
        for object_id in (walker, other):
            command(alice, {"type": "object_created", "object": object_id, "media": media, "class_id": "box"}, media)
        save(alice, media, walker, 0, 1)
        save(alice, media, walker, 250, 10)
        before_change = save(alice, media, other, 200, 20)

    # Opened on frame 0: full labels of frames 0..127, the label on 250 a head the timeline shows.
    page = open_page("alice", media, 0)
    assert page.evaluate("masklog.model.isLoaded(0) && !masklog.model.isLoaded(250)")
    head = page.evaluate(f"masklog.model.label('{walker}', 250)")
    assert head == {"source": "manual", "actor": "user:alice", "model": None}, "a head: provenance, no shape"
    assert page.evaluate(f"masklog.model.labelFrames('{walker}')") == [0, 250]
    assert page.evaluate(DRAWN_X_JS, walker) == 1
    assert page.evaluate(TIMELINE_PIXEL_JS, [walker, 250]) != page.evaluate(TIMELINE_PIXEL_JS, [walker, 120]), "the head is on the timeline"

    # Going there fetches the window and draws the label.
    page.evaluate("masklog.goto(250)")
    page.wait_for_function(f"({DRAWN_X_JS})('{walker}') === 10")
    assert page.evaluate("masklog.model.isLoaded(250) && masklog.model.isLoaded(200)")
    page.evaluate("masklog.goto(200)")
    page.wait_for_function(f"({DRAWN_X_JS})('{other}') === 20")
    page.evaluate("masklog.goto(0)")

    # A fresh page on frame 0; another user changes the label on 250 over the socket meanwhile.
    fresh = open_page("alice", media, 0)
    assert fresh.evaluate("!masklog.model.isLoaded(250)")
    bob = open_page("bob", media, 0)
    ack = bob.evaluate(
        "([o]) => Promise.race([masklog.send({type: 'label_saved', object: o, frame: 250, shape: {type: 'bbox', x: 30, y: 1, w: 10, h: 8},"
        " source: 'manual'}), new Promise((done) => setTimeout(() => done(null), 20000))])",
        [walker],
    )
    assert ack is not None, "bob's command was not acknowledged in 20 s"
    changed = ack["seq"]
    for shown in (fresh, page):
        shown.wait_for_function(f"masklog.model.seq >= {changed}")
        shown.evaluate("masklog.goto(250)")
        shown.wait_for_function(f"({DRAWN_X_JS})('{walker}') === 30")
        assert shown.evaluate(f"masklog.model.label('{walker}', 250).actor") == "user:bob"
    fresh.wait_for_function("masklog.model.isLoaded(250)")
    fresh.wait_for_timeout(300)  # any window answer is in: the change still shows
    assert fresh.evaluate(DRAWN_X_JS, walker) == 30

    # Replay from frame 0 at a position before the change; going to 250 fetches it as of then.
    fresh.evaluate("masklog.goto(0)")
    fresh.wait_for_function("masklog.app.replay.loaded")
    fresh.evaluate(f"masklog.app.replay.show({before_change})")
    fresh.wait_for_function(f"masklog.state.replaySeq === {before_change}")
    assert fresh.evaluate("!masklog.app.replay.model.isLoaded(250)")
    fresh.evaluate("masklog.goto(250)")
    fresh.wait_for_function(f"({DRAWN_X_JS})('{walker}') === 10")
    assert fresh.evaluate(f"masklog.app.replay.model.label('{walker}', 250).actor") == "user:alice"
    fresh.click("[data-testid=replay-live]")
    fresh.wait_for_function("masklog.state.replaySeq === null")
    fresh.wait_for_function(f"({DRAWN_X_JS})('{walker}') === 30")
