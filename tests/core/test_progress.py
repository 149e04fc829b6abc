"""Progress on long work: plain lines without duplicates, rates and ETAs, and the
running points of a study read from their runs' progress.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from segtune.core.progress import PROGRESS_FILE, Progress, ProgressFile, duration, rate_words
from segtune.engine.train import train_run
from segtune.study.monitor import StudyMonitor, running_points, study_eta
from tests.conftest import tiny_config


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line.strip() for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("total", [1, 2, 3, 7, 100])
def test_plain_lines_never_repeat_a_count(total: int, capsys: pytest.CaptureFixture[str]) -> None:
    bar = Progress(total, "study s", "runs", interval_s=3600)  # stderr is not a terminal here
    for _ in range(total):
        bar.update()
    lines = _lines(capsys)
    counts = [line.split(": ", 1)[1].split(" ")[0] for line in lines]
    assert len(counts) == len(set(counts)) == min(total, 4)  # quarters, one line each
    assert counts[-1] == f"{total}/{total}"


def test_periodic_lines_and_eta(capsys: pytest.CaptureFixture[str]) -> None:
    bar = Progress(10, "epoch 1/3", "pages", interval_s=0.0)
    bar.update(1)
    bar.update(1)
    lines = _lines(capsys)
    assert [line.split()[2] for line in lines] == ["1/10", "2/10"]
    assert "ETA" in lines[-1] and "pages/s" in lines[-1]


def test_slow_rates_read_as_seconds_per_item() -> None:
    assert rate_words(2, 90.0, "runs") == "45 s/run"
    assert rate_words(10, 2.0, "pages") == "5.0 pages/s"
    assert rate_words(0, 5.0, "run") == "– run/s"
    assert duration(185) == "3m05s" and duration(7800) == "2h10m"


def test_resumed_items_do_not_count_in_the_rate(capsys: pytest.CaptureFixture[str]) -> None:
    bar = Progress(4, "study s", "runs", interval_s=3600)
    bar.skip(3)
    assert bar.eta_seconds() is None  # nothing done in this process yet
    bar.update()
    assert _lines(capsys)[-1].startswith("study s: 4/4 runs")


def _progress(run: Path, **values: float | str) -> None:
    run.mkdir(parents=True)
    (run / PROGRESS_FILE).write_text(json.dumps(values))


def test_running_points_and_study_eta(tmp_path: Path) -> None:
    now = time.time()
    base = {"epochs": 4, "steps": 10, "elapsed_s": 30.0}
    _progress(
        tmp_path / "runs/grid/a", epoch=2, step=5, eta_s=60.0, updated=now, label="grid#3", **base
    )
    _progress(tmp_path / "runs/grid/b", epoch=1, step=1, eta_s=90.0, updated=now - 1, **base)
    _progress(tmp_path / "runs/grid/dead", epoch=1, step=1, eta_s=9.0, updated=now - 999, **base)
    points = running_points(tmp_path, now)
    assert [p.name for p in points] == ["a", "b"]  # the stale one is a dead worker's
    assert points[0].words() == "grid#3 (a): epoch 2/4 step 5/10, run ETA 1m00s"
    assert points[1].words() == "grid/b: epoch 1/4 step 1/10, run ETA 1m30s"  # no label
    # No run finished yet: a pending point costs the running ones' mean (30+60, 30+90).
    assert study_eta(points, pending=2, finished_runs=0, elapsed_s=30, workers=2) == (
        pytest.approx((60 + 90 + 2 * 105) / 2)
    )
    # Two runs finished in 100 s with 2 workers, 30 + 30 s of which went to the running
    # points: (200 - 60) / 2 = 70 s per finished run (a long current run must not
    # inflate it).
    assert study_eta(points, 1, 2, 100.0, 2) == pytest.approx((60 + 90 + 70) / 2)


def test_monitor_prints_each_running_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    _progress(
        tmp_path / "runs/grid/a",
        epoch=1, epochs=2, step=3, steps=8, eta_s=20.0, updated=now, elapsed_s=4.0,
    )  # fmt: skip
    bar = Progress(3, "study s", "runs", interval_s=3600)
    with StudyMonitor(tmp_path, bar, workers=1, poll_s=0.05, interval_s=3600):
        time.sleep(0.5)
    lines = _lines(capsys)  # the pending 2 points at 4 + 20 s each, the running one's 20 s
    assert lines == [
        "grid/a: epoch 1/2 step 3/8, run ETA 20 s",
        "study: 0/3 runs done, 1 running, ETA 1m08s",
    ]


def test_a_run_keeps_its_progress_file_while_it_trains(demo_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "grid" / "p"
    seen: list[dict[str, object]] = []

    def reporter(epoch: int, values: dict[str, float]) -> None:
        seen.append(json.loads((run / PROGRESS_FILE).read_text()))

    config = tiny_config(demo_data, optim={"epochs": 2})
    train_run(config, run, reporter=reporter, progress=False)
    assert [(s["epoch"], s["epochs"], s["step"] == s["steps"]) for s in seen] == [
        (1, 2, True),
        (2, 2, True),
    ]
    assert seen[1]["eta_s"] == 0.0
    assert not (run / PROGRESS_FILE).exists()  # gone once the run ends


def test_progress_file_eta_counts_this_attempt_only(tmp_path: Path) -> None:
    watch = ProgressFile(tmp_path, epochs=4, steps=10, start_epoch=3, every_s=0)
    watch.started -= 10.0  # 10 s into the resumed attempt, at epoch 3 step 5
    watch.step(3, 5)
    data = json.loads((tmp_path / PROGRESS_FILE).read_text())
    assert data["eta_s"] == pytest.approx(10.0 / 5 * 15, rel=0.01)


def test_a_heartbeat_speaks_while_a_silent_step_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from segtune.core.progress import Heartbeat

    with Heartbeat("exporting to onnx", every_s=0.05):
        time.sleep(0.3)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2 and all(line.startswith("exporting to onnx… ") for line in lines)
    with Heartbeat("quiet", enabled=False, every_s=0.05):
        time.sleep(0.15)
    with Heartbeat("quick", every_s=5):
        pass
    assert capsys.readouterr().err == ""
