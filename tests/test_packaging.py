"""masklog installed the way a user installs it (`pip install .`, not editable) into a fresh
virtual environment: one import package, `masklog`, that carries the page, and `masklog demo`
serving that page from the installed copy, away from the source tree."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_plain_install_is_one_package_and_serves_the_page(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    # The dependencies come from the environment running the tests (nothing is downloaded);
    # masklog itself only from this install.
    (site / "dependencies.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", str(ROOT)],
        check=True, cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    installed = {p.name for p in site.iterdir()}
    assert "masklog" in installed
    assert not installed & {"domain", "server", "inference", "web"}, "no generic top-level names"
    assert (site / "masklog" / "web" / "index.html").is_file()
    # Away from the source tree: no PYTHONPATH into it either (a developer's shell may set one).
    plain = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    where = subprocess.run([python, "-c", "import masklog.server.app as app; print(app.WEB_DIR)"], cwd=tmp_path, capture_output=True, text=True, check=True, env=plain)
    assert Path(where.stdout.strip()).resolve() == (site / "masklog" / "web").resolve(), "the page comes from the installed copy"

    port = _free_port()
    server = subprocess.Popen(
        [venv / "bin" / "masklog", "demo", "--data", str(tmp_path / "data"), "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=plain,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, "the installed server exited"
                assert time.monotonic() < deadline, "the installed server did not start"
                time.sleep(0.2)
        assert page.status_code == 200 and page.text == (ROOT / "web" / "index.html").read_text()
        script = httpx.get(f"http://127.0.0.1:{port}/js/app.js", timeout=5)
        assert script.status_code == 200 and script.text == (ROOT / "web" / "js" / "app.js").read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_every_package_folder_is_installed_under_masklog():
    """A new subpackage (a folder with an __init__.py) must be listed in pyproject.toml, or a
    plain install would leave it out."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {
        "masklog." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("domain", "inference", "server", "web")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert listed == folders
    assert set(config["package-dir"]) == {f"masklog.{top}" for top in ("domain", "inference", "server", "web")}
