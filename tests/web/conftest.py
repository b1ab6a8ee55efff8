"""Browser tests: a real server (with its inference actor) on 127.0.0.1 and Debian's Chromium
driven by Playwright (executable_path: no browser is downloaded). Skipped where Chromium is
missing, except in CI (MASKLOG_REQUIRE_BROWSER=1), where that is a failure."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server.live import LiveServer, seeded_server, upload
from tests.server.tracking_clips import Clip, Disc

SCREENSHOTS = Path(__file__).parent / "screenshots"
# A 640x360 video with a textured red disc moving right: what the tests click, track and save.
CLIP = Clip(640, 360, 30, (Disc((220, 40, 40), 160, 180, 4, 0, r=40), Disc((40, 60, 230), 470, 120, -2, 3, r=30)))


def _required(what: str) -> None:
    if os.environ.get("MASKLOG_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} is required for the browser tests but missing")
    pytest.skip(f"{what} not found: the browser tests run where it is installed (CI installs it)")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _required("Debian's chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _required("the playwright package")
    return path  # type: ignore[return-value]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[LiveServer]:
    """Project p1 (see tests.server.live.seed) plus media 'clip': CLIP as a video."""
    root = tmp_path_factory.mktemp("web")
    with seeded_server(root, run_models=True) as server:
        with server.http("admin") as admin:
            upload(admin, "p1", "clip", "video", [CLIP.write_video(root / "clip.mp4")]).raise_for_status()
        yield server


@pytest.fixture(scope="module")
def browser(chromium):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
        )
        yield browser
        browser.close()


@contextlib.contextmanager
def page_opener(browser, site, *, allowed_console: re.Pattern[str] | None = None):  # type: ignore[no-untyped-def]
    """open_(user, media, frame) -> a page logged in as `user` on `media`, the editor ready. Any
    JavaScript error on a page fails the test, and so does a console error unless it matches
    `allowed_console` (tests that ask the server for refusals on purpose)."""
    contexts, errors = [], []

    def on_console(user: str, message) -> None:  # type: ignore[no-untyped-def]
        if message.type == "error" and not (allowed_console and allowed_console.match(message.text)):
            errors.append(f"{user}: console {message.text}")

    def open_(user: str, media: str = "clip", frame: int = 0):  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport={"width": 1280, "height": 720}, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{user}: {error}"))
        page.on("console", lambda message: on_console(user, message))
        page.goto(f"{site.url}/#token={site.tokens[user]}&media={media}&frame={frame}")
        page.wait_for_function("window.masklog && window.masklog.ready", timeout=20_000)
        # evaluate() waits for a promise without a timeout: bound it, so a page that never gets
        # ready fails the test (with the page's errors) instead of hanging the suite.
        ready = page.evaluate(
            "Promise.race([window.masklog.ready.then(() => true), new Promise((done) => setTimeout(() => done(false), 20000))])"
        )
        assert ready, f"the page of {user} on {media} did not get ready in 20 s: {errors}"
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, errors


@pytest.fixture
def open_page(browser, site):  # type: ignore[no-untyped-def]
    """open_page(user, media, frame): see `page_opener`."""
    with page_opener(browser, site) as open_:
        yield open_


@pytest.fixture
def shot() -> Callable[..., Path]:
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(page, name: str) -> Path:  # type: ignore[no-untyped-def]
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take
