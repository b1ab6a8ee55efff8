"""Setting up a project in the page, without curl (issue 14, point 6), and the new-user walk.

The admin creates a project, its classes and members in the set-up dialog; uploads media by
drag and drop and with the file picker (progress bar, the server's refusal of a bad file, a PNG
named .mp4 taken as an image); exports COCO from the page. The checks read the server (REST) and
the downloaded file, not only what the page shows. The walk test starts a fresh server with one
admin and nothing else, and does a new user's first day with the page alone.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from masklog.server.accounts import Role
from tests.conftest import SHARED_DATA
from tests.server.live import LiveServer, start_server
from tests.server.rest import command
from tests.web.conftest import CLIP, page_opener


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def open_setup(page, tab: str) -> None:  # type: ignore[no-untyped-def]
    if not page.is_visible("[data-testid=setup]"):
        page.click("[data-testid=setup-open]")
    page.click(f"[data-testid=setup-tab-{tab}]")
    page.wait_for_selector(f"[data-pane={tab}]:not([hidden])")


def create_project(page, name: str, project_id: str) -> None:  # type: ignore[no-untyped-def]
    open_setup(page, "project")
    page.fill("[data-testid=project-name]", name)
    page.fill("[data-testid=project-id]", project_id)
    page.click("[data-testid=project-create]")
    # Created, it is the dialog's project and the dialog goes on to its classes.
    page.wait_for_function(f"document.querySelector('[data-testid=setup-project]').value === '{project_id}'")
    page.wait_for_selector("[data-pane=classes]:not([hidden]) [data-testid=class-form]")


def add_class(page, name: str, kind: str, colour: str) -> None:  # type: ignore[no-untyped-def]
    open_setup(page, "classes")
    page.fill("[data-testid=class-name]", name)
    page.select_option("[data-testid=class-kind]", kind)
    page.fill("[data-testid=class-color]", colour)
    page.click("[data-testid=class-add]")
    page.wait_for_function(f"[...document.querySelectorAll('[data-testid=setup-classes] b')].some(b => b.textContent === {json.dumps(name)})")


def drop_files(page, selector: str, files: list[tuple[str, bytes]]) -> None:  # type: ignore[no-untyped-def]
    """Drop files on `selector` as a person drags them from a file manager: a real DataTransfer
    holding File objects, dispatched as dragover then drop."""
    payload = [{"name": name, "data": base64.b64encode(data).decode()} for name, data in files]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def upload_row(page, number: int) -> str:  # type: ignore[no-untyped-def]
    return f"[data-testid=upload-{number}]"


def wait_upload(page, number: int, state: str = "done") -> str:  # type: ignore[no-untyped-def]
    row = upload_row(page, number)
    page.wait_for_selector(f"{row}:not([data-state=uploading])", state="attached", timeout=60_000)
    status = page.text_content(f"{row} [data-testid=upload-status]") or ""
    assert page.get_attribute(row, "data-state") == state, status
    return status


def throttle_uploads(page, bytes_per_second: int | None) -> None:  # type: ignore[no-untyped-def]
    """Chromium's network emulation: slow uploads so that the progress bar is seen part-way."""
    session = page.context.new_cdp_session(page)
    session.send("Network.enable")
    limit = -1 if bytes_per_second is None else bytes_per_second
    session.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": limit})


def png_bytes(width: int = 80, height: int = 60) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    cv2.rectangle(image, (10, 10), (50, 40), (0, 200, 255), -1)
    return cv2.imencode(".png", image)[1].tobytes()


# Chromium logs every 4xx answer as a console error; these tests ask for refusals on purpose.
REFUSAL = re.compile(r"^Failed to load resource: the server responded with a status of 4(09|13|22|03|04) ")


@pytest.fixture
def open_page(browser, site):  # type: ignore[no-untyped-def]
    """conftest's open_page that lets the server's refusals through: they are what some of these
    tests check."""
    with page_opener(browser, site, allowed_console=REFUSAL) as open_:
        yield open_


# ---- point 6 on the seeded site -------------------------------------------------------------------


def test_admin_creates_a_project_classes_and_a_member(open_page, site, shot):
    admin = open_page("admin")
    # A project id that is taken: the server's 409 and its message, and nothing is made.
    open_setup(admin, "project")
    admin.fill("[data-testid=project-name]", "Another P1")
    admin.fill("[data-testid=project-id]", "p1")
    admin.click("[data-testid=project-create]")
    admin.wait_for_selector("[data-testid=setup-error]:not([hidden])")
    taken = admin.text_content("[data-testid=setup-error]") or ""
    assert "p1" in taken and "already_exists" in taken, taken
    project_id = fresh("streets")
    create_project(admin, "Street scenes", project_id)
    shot(admin, "p6-project")
    add_class(admin, "Car", "bitmask", "#e6194b")
    add_class(admin, "Pedestrian", "bbox", "#3cb44b")
    # A skeleton class from a points list and edges by name.
    admin.fill("[data-testid=class-name]", "Cyclist")
    admin.select_option("[data-testid=class-kind]", "skeleton")
    admin.fill("[data-testid=class-points]", "head, hip, foot")
    admin.fill("[data-testid=class-edges]", "head-hip, 1-2")
    admin.click("[data-testid=class-add]")
    admin.wait_for_selector("[data-testid=setup-class-cyclist]")
    shot(admin, "p6-classes")
    # A refusal shows the server's message: a class id that exists (409) is not possible from the
    # form (ids are made free), so ask for a skeleton edge to nowhere, which the page refuses, then
    # a member who does not exist, which the server refuses.
    open_setup(admin, "members")
    admin.wait_for_selector("[data-testid=member-admin]")
    admin.fill("[data-testid=member-user]", "nobody-here")
    admin.click("[data-testid=member-add]")
    admin.wait_for_selector("[data-testid=setup-error]:not([hidden])")
    refusal = admin.text_content("[data-testid=setup-error]") or ""
    assert "nobody-here" in refusal, refusal
    admin.fill("[data-testid=member-user]", "bob")
    admin.select_option("[data-testid=member-role]", "viewer")
    admin.click("[data-testid=member-add]")
    admin.wait_for_selector("[data-testid=member-bob]")
    assert admin.input_value("[data-testid=member-role-bob]") == "viewer"
    shot(admin, "p6-members")

    with site.http("admin") as http:
        project = http.get(f"/api/projects/{project_id}").json()
        assert project["name"] == "Street scenes"
        classes = {c["name"]: c for c in project["classes"]}
        assert {n: (c["shape"], c["color"]) for n, c in classes.items()} == {
            "Car": ("bitmask", "#e6194b"), "Pedestrian": ("bbox", "#3cb44b"), "Cyclist": ("skeleton", "#4363d8"),
        }  # fmt: skip
        assert classes["Cyclist"]["skeleton"] == {"points": ["head", "hip", "foot"], "edges": [[0, 1], [1, 2]]}
        assert http.get(f"/api/projects/{project_id}/members").json() == {"admin": "admin", "bob": "viewer"}

    # The other user: bob now sees the project as a viewer, and the page offers him no controls.
    bob = open_page("bob")
    open_setup(bob, "project")
    assert bob.locator("[data-testid=project-form]").count() == 0
    bob.select_option("[data-testid=setup-project]", project_id)
    open_setup(bob, "members")
    bob.wait_for_selector("[data-testid=member-bob]")
    assert bob.locator("[data-testid=member-form]").count() == 0
    assert bob.is_disabled("[data-testid=member-role-bob]")
    open_setup(bob, "media")
    assert bob.locator("[data-testid=drop-zone]").count() == 0
    # The admin changes bob's role and then removes him: the server agrees each time.
    admin.select_option("[data-testid=member-role-bob]", "annotator")
    admin.wait_for_function("document.querySelector('[data-testid=member-role-bob]')?.value === 'annotator'")
    with site.http("admin") as http:
        assert http.get(f"/api/projects/{project_id}/members").json()["bob"] == "annotator"
    admin.click("[data-testid=member-remove-bob]")
    admin.wait_for_selector("[data-testid=member-bob]", state="detached")
    with site.http("bob") as http:
        assert http.get(f"/api/projects/{project_id}").status_code == 404


def test_upload_by_drop_and_picker_with_progress_refusal_and_content(open_page, site, shot, tmp_path):
    admin = open_page("admin")
    open_setup(admin, "media")
    video = CLIP.write_video(tmp_path / "street.mp4").read_bytes()

    # Drag and drop: the video lands, its progress bar fills and it is in the media picker.
    drop_files(admin, "[data-testid=drop-zone]", [("dropped street.mp4", video)])
    status = wait_upload(admin, 1)
    assert "video, 30 frames, 640×360" in status, status
    assert admin.evaluate("document.querySelector('[data-testid=upload-1] progress').value") == 1
    dropped = admin.get_attribute(upload_row(admin, 1), "data-media")
    admin.wait_for_selector(f"[data-testid=media-select] option[value='{dropped}']", state="attached")

    # The picker, with uploads slowed down: the bar is seen part-way, then done.
    throttle_uploads(admin, 64 * 1024)
    admin.set_input_files("[data-testid=upload-files]", files=[{"name": "picked.mp4", "mimeType": "video/mp4", "buffer": video}])
    admin.wait_for_selector(f"{upload_row(admin, 2)}[data-partial]", timeout=30_000)
    part = admin.evaluate("document.querySelector('[data-testid=upload-2] progress').value")
    assert 0 < part < 1
    shot(admin, "p6-upload-progress")
    throttle_uploads(admin, None)
    wait_upload(admin, 2)
    picked = admin.get_attribute(upload_row(admin, 2), "data-media")
    admin.wait_for_selector(f"[data-testid=media-select] option[value='{picked}']", state="attached")

    # A corrupt file: the server's refusal is shown, and nothing is added.
    admin.set_input_files("[data-testid=upload-files]", files=[{"name": "broken.mp4", "mimeType": "video/mp4", "buffer": video[: len(video) // 3]}])
    refusal = wait_upload(admin, 3, "refused")
    admin.wait_for_selector("[data-testid=setup-error]:not([hidden])")
    assert "invalid_media" in (admin.text_content("[data-testid=setup-error]") or "")
    broken = admin.get_attribute(upload_row(admin, 3), "data-media")
    shot(admin, "p6-refusal")

    # A PNG named x.mp4 is an image: its content says so, not its name.
    drop_files(admin, "[data-testid=drop-zone]", [("x.mp4", png_bytes())])
    status = wait_upload(admin, 4)
    assert "image, 1 frame, 80×60" in status, status
    png = admin.get_attribute(upload_row(admin, 4), "data-media")

    with site.http("admin") as http:
        kinds = {m["media"]: m["kind"] for m in http.get("/api/projects/p1").json()["media"]}
        assert (kinds[dropped], kinds[picked], kinds[png]) == ("video", "video", "image")
        assert broken not in kinds
        assert http.get(f"/api/media/{broken}").status_code == 404
    assert refusal.startswith("refused: ") and len(refusal) > len("refused: ") + 10, refusal
    # The media tab lists them all; a click opens one.
    admin.click(f"[data-testid=setup-media-{png}] button")
    admin.wait_for_function(f"masklog.model.media && masklog.model.media.media === '{png}'", timeout=20_000)


def test_upload_an_image_folder_and_a_dicom_series(open_page, site, tmp_path):
    from tests.inference.frames.test_dicom import dicom_slice, write_dicom

    admin = open_page("admin")
    open_setup(admin, "media")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        (folder / f"frame{i + 1:02d}.png").write_bytes(png_bytes())
    (folder / ".DS_Store").write_bytes(b"junk a file manager leaves")  # skipped, not a frame
    # A folder, as an image sequence chosen by the user: one media item, its files in name order.
    admin.select_option("[data-testid=upload-kind]", "image_sequence")
    admin.set_input_files("[data-testid=upload-folder]", str(folder))
    status = wait_upload(admin, 1)
    assert "image sequence, 3 frames, 80×60" in status, status
    sequence = admin.get_attribute(upload_row(admin, 1), "data-media")
    assert sequence.startswith("frames")
    # DICOM slices (any names), the kind left to the server: a series.
    admin.select_option("[data-testid=upload-kind]", "")
    slices = [write_dicom(tmp_path / f"IM{i:04d}", dicom_slice(np.full((48, 64), i * 100, np.int16), position=(0.0, 0.0, float(i)), instance=i + 1)) for i in range(3)]
    admin.set_input_files("[data-testid=upload-files]", [str(p) for p in slices])
    status = wait_upload(admin, 2)
    assert "DICOM series, 3 frames, 64×48" in status, status
    series = admin.get_attribute(upload_row(admin, 2), "data-media")
    with site.http("admin") as http:
        assert http.get(f"/api/media/{sequence}").json()["kind"] == "image_sequence"
        assert http.get(f"/api/media/{series}").json()["kind"] == "dicom_series"


def test_export_coco_from_the_page(open_page, site, shot, tmp_path):
    from pycocotools.coco import COCO

    object_id = fresh("disc")
    with site.http("alice") as http:
        command(http, {"type": "object_created", "object": object_id, "media": "clip", "class_id": "mask"}, "clip")
        for frame in (0, 1):
            command(http, {"type": "label_saved", "object": object_id, "frame": frame, "shape": CLIP.bitmask(0, frame), "source": "manual"}, "clip")
    page = open_page("alice")  # an annotator may export: it reads only
    open_setup(page, "export")
    page.select_option("[data-testid=export-format]", "coco")
    page.check("[data-testid=export-only-media]")
    with page.expect_download() as info:
        page.click("[data-testid=export-run]")
    download = info.value
    assert download.suggested_filename.startswith("p1-")
    path = tmp_path / "export.json"
    download.save_as(path)
    page.wait_for_function("document.querySelector('[data-testid=export-status]').textContent.startsWith('saved ')")
    shot(page, "p6-export")
    coco = COCO(str(path))
    images = {img["id"]: img["masklog"] for img in coco.loadImgs(coco.getImgIds())}
    assert {image["media"] for image in images.values()} == {"clip"}, "only the open media item"
    mine = {images[a["image_id"]]["frame"]: a for a in coco.loadAnns(coco.getAnnIds()) if a["masklog"]["object"] == object_id}
    assert sorted(mine) == [0, 1]
    for frame, annotation in mine.items():
        assert annotation["masklog"]["source"] == "manual" and annotation["masklog"]["actor"] == "user:alice"
        expected = CLIP.discs[0].mask(frame, CLIP.height, CLIP.width).astype(bool)
        assert np.array_equal(coco.annToMask(annotation).astype(bool), expected), frame
    # The event log too: one JSON event a line, its first the project's creation.
    page.select_option("[data-testid=export-format]", "events")
    with page.expect_download() as info:
        page.click("[data-testid=export-run]")
    log = tmp_path / "events.jsonl"
    info.value.save_as(log)
    first = json.loads(log.read_text().splitlines()[0])
    assert first["body"]["type"] == "project_created"


# ---- the new user's walk ------------------------------------------------------------------------------


@pytest.fixture
def empty_server(tmp_path, chromium) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """A fresh data folder, one admin user, no project, no media; the classical models run."""
    server = start_server(tmp_path / "data", users={"admin": Role.ADMIN}, run_models=True)
    try:
        yield server
    finally:
        server.stop()


def shared_bedroom() -> Path:
    path = SHARED_DATA / "demo" / "sam2_bedroom.mp4"
    if not path.is_file():
        import os

        if os.environ.get("MASKLOG_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"shared data is required but {path} is missing")
        pytest.skip(f"the walk uploads {path}, which is missing (only our CI has ../shared/data)")
    return path


def test_new_user_walk(browser, empty_server, tmp_path):  # type: ignore[no-untyped-def]
    from pycocotools.coco import COCO

    from tests.web.conftest import SCREENSHOTS

    video = shared_bedroom().read_bytes()
    SCREENSHOTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 720}, accept_downloads=True)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    def shot(name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    try:
        # 1. The page alone, on a server with nothing: it says what to do first.
        page.goto(f"{empty_server.url}/#token={empty_server.tokens['admin']}")
        page.wait_for_selector("[data-testid=empty-create-project]")
        shot("walk-1")
        page.click("[data-testid=empty-create-project]")
        page.fill("[data-testid=project-name]", "Bedroom")
        page.click("[data-testid=project-create]")  # the id follows the name
        page.wait_for_selector("[data-pane=classes]:not([hidden]) [data-testid=class-form]")
        add_class(page, "Person", "bitmask", "#e6194b")
        add_class(page, "Bed", "polygon", "#4363d8")
        shot("walk-2")

        # 2. Upload the video by dropping it on the page (the empty stage): the set-up dialog shows
        # its progress; with no media open yet, it opens when it is in.
        page.click("[data-testid=setup-close]")
        drop_files(page, "#empty-stage", [("sam2_bedroom.mp4", video)])
        page.wait_for_selector("[data-pane=media]:not([hidden]) [data-testid=upload-1]")
        status = wait_upload(page, 1)
        assert "video" in status, status
        page.wait_for_function("masklog.model.media && masklog.model.media.kind === 'video'", timeout=30_000)
        page.evaluate("masklog.ready")
        media = page.evaluate("masklog.model.media")
        assert media["project"] == "bedroom" and media["frames"] > 10
        shot("walk-3")

        # 3. Segment with a SAM click (the server's classical segmenter) and save.
        page.click("[data-testid=class-person]")
        page.click("[data-testid=wand-person]")
        point = page.evaluate(f"masklog.editor.imageToClient({media['width'] * 0.41}, {media['height'] * 0.38})")  # the girl's dress
        page.mouse.click(point["x"], point["y"])
        page.wait_for_function("[...masklog.model.segments.values()].some(s => s.event.actor.startsWith('model:'))", timeout=30_000)
        page.keyboard.press("Enter")
        page.wait_for_function("masklog.model.labelsAt(0).some(e => e.label.source === 'sam')", timeout=20_000)
        [object_id] = page.evaluate("masklog.model.labelsAt(0).map(e => e.object)")
        shot("walk-4")

        # 4. Track it five frames on (the classical tracker) and accept the review.
        page.keyboard.press("Escape")  # leave SAM mode
        page.click("[data-testid=settings-open]")
        page.fill("[data-testid=setting-range]", "6")
        page.select_option("[data-testid=setting-tracker]", "classical")
        page.keyboard.press("Escape")
        page.click(f"[data-testid='object-{object_id}']")
        page.keyboard.press("Shift+T")
        page.wait_for_selector("[data-testid=review-accept]", timeout=120_000)
        shot("walk-5")
        page.click("[data-testid=review-accept]")
        page.wait_for_function(f"masklog.model.labelsAt(5).some(e => e.object === '{object_id}' && e.label.source === 'tracked')", timeout=20_000)

        # 5. Export COCO from the page; pycocotools reads it and every mask decodes.
        open_setup(page, "export")
        page.select_option("[data-testid=export-format]", "coco")
        with page.expect_download() as info:
            page.click("[data-testid=export-run]")
        path = tmp_path / "bedroom-coco.json"
        info.value.save_as(path)
        page.wait_for_function("document.querySelector('[data-testid=export-status]').textContent.startsWith('saved ')")
        shot("walk-6")
    finally:
        context.close()
    assert not errors, errors

    coco = COCO(str(path))
    annotations = coco.loadAnns(coco.getAnnIds())
    assert len(annotations) == 6, [a["image_id"] for a in annotations]  # frame 0 and the five tracked
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} >= {"Person"}
    for annotation in annotations:
        mask = coco.annToMask(annotation)
        assert mask.shape == (media["height"], media["width"]) and mask.sum() > 0


def test_a_file_over_the_upload_limit_shows_the_servers_refusal(browser, tmp_path):  # type: ignore[no-untyped-def]
    """A server that takes at most 50 kB an upload: the page says the server's 413, not a
    network failure (the server answers before it has read the body)."""
    server = start_server(tmp_path / "data", users={"admin": Role.ADMIN}, max_upload_bytes=50_000)
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        with server.http("admin") as http:
            http.post("/api/projects", json={"id": "small", "name": "Small"}).raise_for_status()
        page = context.new_page()
        page.goto(f"{server.url}/#token={server.tokens['admin']}")
        page.wait_for_selector("[data-testid=empty-upload]")  # the project has no media: upload some
        page.click("[data-testid=empty-upload]")
        page.wait_for_selector("[data-pane=classes]:not([hidden])")  # no classes yet: those first
        open_setup(page, "media")
        video = CLIP.write_video(tmp_path / "big.mp4").read_bytes()
        assert len(video) > 50_000
        page.set_input_files("[data-testid=upload-files]", files=[{"name": "big.mp4", "mimeType": "video/mp4", "buffer": video}])
        refusal = wait_upload(page, 1, "refused")
        assert "50000" in refusal and "over" in refusal, refusal
        with server.http("admin") as http:
            assert http.get("/api/projects/small").json()["media"] == []
    finally:
        context.close()
        server.stop()
