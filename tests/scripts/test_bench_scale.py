"""scripts/bench_scale.py at tiny sizes: it builds its logs, serves them in fresh processes and
prints every figure (no timing is checked: figures only have to be there and be numbers); a
second run reuses the built logs; a server over the memory limit is killed and named. And the
scale generator's logs fold to what it kept live."""

from __future__ import annotations

import json
from collections import Counter

from masklog.domain import events as ev
from masklog.domain.state import LabelState
from scripts import loggen
from scripts.bench_scale import METRICS, RATIOS
from tests.scripts.running import run_script

TINY = ["--sizes", "20000,40000", "--media", "20", "--projects", "4", "--hot-events", "2000", "--probe-events", "300", "--replays", "5"]


def run(*args: str) -> dict:
    done = run_script("bench_scale.py", args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_every_figure_is_measured_for_each_size_and_the_logs_are_reused(tmp_path):
    result = run(*TINY, "--cache", str(tmp_path))
    assert set(result["sizes"]) == {"20000", "40000"}
    for size, figures in result["sizes"].items():
        assert "outcome" not in figures, figures
        for key in METRICS:
            assert isinstance(figures[key], (int, float)) and figures[key] > 0, (size, key, figures[key])
        assert figures["events"] >= int(size)
        assert figures["hot_events"] >= 0.95 * 2000
        assert figures["open_sockets"] == 10
        assert figures["served_before"] is False
        assert result["build"][size]["build_s"] > 0
        assert result["disk"]["data_mb"][size] > 0
    assert result["ratios"]["of"] == "40000 / 20000"
    assert all(isinstance(result["ratios"][key], float) for key in RATIOS)
    assert result["disk"]["free_gb_after"] > 0

    again = run(*TINY, "--cache", str(tmp_path), "--replays", "2")
    for size, built in again["build"].items():
        assert built["build_s"] is None and built["cached_build_s"] == result["build"][size]["build_s"]
        assert again["sizes"][size]["served_before"] is True
        assert again["sizes"][size]["events"] == result["sizes"][size]["events"]


def test_a_server_over_the_memory_limit_is_killed_and_the_figures_say_so(tmp_path):
    result = run(*TINY[:1], "20000", *TINY[2:], "--cache", str(tmp_path), "--max-rss-mb", "20")
    figures = result["sizes"]["20000"]
    assert figures["outcome"] == "killed: rss over 20 MB" and figures["killed_after_s"] >= 0
    for key in ["ready_s", "rss_mb_ready", "open_media_ms", "replay_ms_p95", "rss_mb_10_open", "restart_ready_s"]:
        assert figures[key] == "killed: rss over 20 MB"
    assert isinstance(figures["verify_s"], float)
    assert result["ratios"]["ready_s"] is None


def test_the_scale_log_folds_to_the_states_the_generator_kept():
    generator = loggen.ScaleGenerator(30_000, media=20, projects=4, hot_events=3000, probe_events=500, probes=3, window=3)
    made = generator.setup()
    while len(made) < 30_000:
        made += generator.next_batch()
    full = LabelState()
    for seq, new in enumerate(made, 1):
        full.apply(ev.Event(seq=seq, id=new.id, stream=new.stream, actor=new.actor, at=0.0, body=new.body))
    per_stream = Counter(new.stream for new in made)
    assert per_stream["media:hot"] >= 0.95 * 3000 and all(per_stream[f"media:probe{i}"] >= 0.95 * 500 for i in (1, 2, 3))
    assert len([s for s in per_stream if s.startswith("media:")]) == 20 and len([s for s in per_stream if s.startswith("project:")]) == 4
    # The fixed-size items are worked on all along the log, not in one stretch.
    hot = [seq for seq, new in enumerate(made, 1) if new.stream == "media:hot"]
    assert hot[len(hot) // 10] < len(made) * 0.2 and hot[-len(hot) // 10] > len(made) * 0.8
    for media in ["hot", "probe1", "probe2", "probe3"]:  # still live in the generator
        kept = generator.states[media]
        assert kept.media_labels(media) == full.media_labels(media)
        assert {t: (i.status, i.produced) for t, i in kept.tracks.items()} == {t: (i.status, i.produced) for t, i in full.tracks.items() if i.request.media == media}
    # Only the items being worked on are kept: memory does not grow with the log.
    assert len(generator.states) <= 3 + 1 + 3
