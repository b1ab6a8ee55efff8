"""The `masklog` command, run as a user would: a real process."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def masklog(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "masklog.server.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_user_add_prints_a_token_that_logs_in(tmp_path):
    done = masklog("user", "add", "carol", "--role", "viewer", "--data", str(tmp_path))
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert len(token) >= 40
    bad = masklog("user", "add", "../carol", "--data", str(tmp_path))
    assert bad.returncode == 2 and "not valid" in bad.stderr



def test_the_storage_is_chosen_by_name(tmp_path):
    done = masklog("user", "add", "carol", "--storage", "sqlite", "--data", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "accounts.sqlite3").exists()
    unknown = masklog("user", "tokens", "carol", "--storage", "nowhere", "--data", str(tmp_path))
    assert unknown.returncode == 2 and "invalid choice: 'nowhere'" in unknown.stderr

def test_a_missing_or_broken_checkpoint_stops_the_server_with_a_clear_error(tmp_path):
    missing = masklog("serve", "--data", str(tmp_path), "--sam2-checkpoint", str(tmp_path / "nope.pt"))
    assert missing.returncode == 2 and "file not found" in missing.stderr and "nope.pt" in missing.stderr
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    refused = masklog("serve", "--data", str(tmp_path), "--sam2-checkpoint", str(broken))
    assert refused.returncode == 2 and "not a readable PyTorch checkpoint" in refused.stderr
    unset = masklog("serve", "--data", str(tmp_path), "--backend", "sam2")
    assert unset.returncode == 2 and "no checkpoint configured" in unset.stderr


def test_the_compile_flag_is_accepted_and_a_bad_compile_variable_stops_the_server(tmp_path):
    missing = masklog("serve", "--data", str(tmp_path), "--sam2-checkpoint", str(tmp_path / "nope.pt"), "--sam2-compile", "--sam2-compile-cache", str(tmp_path / "cc"))
    assert missing.returncode == 2 and "file not found" in missing.stderr  # the flags parsed; the checkpoint is what stops it
    env = {**os.environ, "MASKLOG_SAM2_COMPILE": "maybe"}
    bad = subprocess.run([sys.executable, "-m", "masklog.server.cli", "serve", "--data", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "MASKLOG_SAM2_COMPILE must be 1/true/yes/on or 0/false/no/off, not 'maybe'" in bad.stderr


def test_eval_vos_prints_davis_scores_as_json(shared_data):
    done = masklog("eval-vos", str(shared_data / "vos"), "--sequences", "blackswan", "--max-frames", "6", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    score = result["sequences"]["blackswan"]
    assert set(score) == {"J", "F", "JF", "frames", "seconds_per_frame"} and score["frames"] == 6
    assert result["mean"]["JF"] == score["JF"] and 0.8 < score["JF"] <= 1.0
    assert "blackswan" in done.stderr  # the progress bar


def test_eval_vos_on_a_folder_without_sequences_is_an_error(tmp_path):
    done = masklog("eval-vos", str(tmp_path))
    assert done.returncode == 2 and "no DAVIS-format sequences" in done.stderr


def test_eval_clicks_prints_noc_as_json_and_as_a_table(shared_data):
    done = masklog("eval-clicks", str(shared_data / "vos"), "--sequences", "blackswan", "--every", "25", "--max-clicks", "3", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["segmenter"] == "classical/grabcut@3" and (result["every"], result["max_clicks"]) == (25, 3)
    score = result["sequences"]["blackswan"]
    assert set(score) == {"instances", "frames", "clicks", "NoC85", "NoC90", "NoF85", "NoF90", "IoU1", "IoU3", "IoU5", "seconds_per_click", "seconds_per_click_p50"}
    assert score["frames"] == score["instances"] == 2  # frames 0 and 25, one swan each
    assert 2 <= score["clicks"] <= 6 and 1 <= score["NoC85"] <= score["NoC90"] <= 3
    assert 0 < score["IoU1"] <= 1 and score["IoU5"] is None and score["seconds_per_click"] > 0
    assert result["overall"] == score
    assert "blackswan" in done.stderr  # the progress bar
    table = masklog("eval-clicks", str(shared_data / "vos"), "--sequences", "blackswan", "--every", "100", "--max-clicks", "1")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "NoC@85" in lines[1] and "s/click" in lines[1]
    assert lines[2].split()[:4] == ["blackswan", "1", "1.00", "1.00"] and lines[3].startswith("overall")


def test_eval_clicks_refuses_bad_arguments(tmp_path):
    empty = masklog("eval-clicks", str(tmp_path))
    assert empty.returncode == 2 and "no DAVIS-format sequences" in empty.stderr
    for flags, error in ((["--every", "0"], "must be a number above 0"), (["--max-clicks", "101"], "between 1 and 100"), (["--segmenter", "x"], "invalid choice")):
        refused = masklog("eval-clicks", str(tmp_path), *flags)
        assert refused.returncode == 2 and error in refused.stderr, refused.stderr
    unloaded = masklog("eval-clicks", str(tmp_path), "--segmenter", "sam2")
    assert unloaded.returncode == 2 and "cannot load the sam2 segmenter" in unloaded.stderr and "no checkpoint configured" in unloaded.stderr


def test_demo_serves_a_project_made_on_the_spot(tmp_path):
    _serve_demo_and_check(tmp_path)


def test_the_log_can_be_kept_in_postgresql(tmp_path, postgres_server):
    import asyncio

    import asyncpg

    dsn = asyncio.run(postgres_server.create_database())
    try:
        _serve_demo_and_check(tmp_path, "--database", dsn, "--no-models")
        # The log and the accounts both live in PostgreSQL: no SQLite file in the data folder.
        assert not (tmp_path / "events.sqlite3").exists() and not (tmp_path / "accounts.sqlite3").exists()

        async def fetch(sql: str) -> list[tuple[object, ...]]:
            conn = await asyncpg.connect(dsn)
            try:
                return [tuple(row) for row in await conn.fetch(sql)]
            finally:
                await conn.close()

        assert asyncio.run(fetch("SELECT count(*) FROM events"))[0][0] > 0
        users = dict(asyncio.run(fetch("SELECT name, role FROM masklog_accounts_users")))
        assert set(users) == {"admin", "alice", "bob", "viewer"} and users["admin"] == "admin"
        assert asyncio.run(fetch("SELECT count(*) FROM masklog_accounts_tokens"))[0][0] >= 4
        assert asyncio.run(fetch("SELECT count(*) FROM masklog_accounts_members"))[0][0] > 0
        # `masklog user` reaches the same accounts with the same flag.
        added = masklog("user", "add", "carol", "--role", "viewer", "--data", str(tmp_path), "--database", dsn)
        assert added.returncode == 0, added.stderr
        listed = masklog("user", "tokens", "carol", "--data", str(tmp_path), "--database", dsn)
        assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 1, listed.stderr
        assert not (tmp_path / "accounts.sqlite3").exists()
    finally:
        asyncio.run(postgres_server.drop_database(dsn))
    needs_url = masklog("serve", "--data", str(tmp_path), "--storage", "postgresql")
    assert needs_url.returncode == 2 and "needs --database" in needs_url.stderr
    user_needs_url = masklog("user", "tokens", "carol", "--data", str(tmp_path), "--storage", "postgresql")
    assert user_needs_url.returncode == 2 and "needs --database" in user_needs_url.stderr
    not_a_url = masklog("serve", "--data", str(tmp_path), "--database", "sqlite:///x.db")
    assert not_a_url.returncode == 2 and "must be a postgresql:// URL" in not_a_url.stderr


def _serve_demo_and_check(data: Path, *flags: str) -> None:
    import socket
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "masklog.server.cli", "demo", "--data", str(data), "--port", str(port), *flags],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        tokens = {}
        for line in server.stdout:
            words = line.split()
            if len(words) == 3 and words[1] == "token":
                tokens[words[0]] = words[2]
            if line.strip().startswith("page:"):
                page = line.split()[-1]
            if line.startswith("serving on"):
                break
        assert set(tokens) == {"admin", "alice", "bob", "viewer"}
        # The page link carries the token after '#' (browsers never send it to the server).
        assert page.endswith(f"/#token={tokens['alice']}") and "?token=" not in page
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {tokens['alice']}"}) as http:
            for _ in range(100):
                try:
                    projects = http.get("/api/projects").json()
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            [demo] = projects
            media = {m["media"]: m for m in demo["media"]}
            assert media["pan"]["kind"] == "video" and media["pan"]["frames"] == 90 and (media["pan"]["width"], media["pan"]["height"]) == (640, 360)
            assert media["photos"]["kind"] == "image_group" and media["photos"]["frames"] == 4
            frame = http.get("/api/media/pan/frames/45")
            assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
            assert {c["shape"] for c in demo["classes"]} >= {"bitmask", "polygon", "bbox"}
    finally:
        server.terminate()
        server.wait(timeout=10)
