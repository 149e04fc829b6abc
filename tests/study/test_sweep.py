from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from segtune.cli import main
from segtune.study.claims import ClaimBoard
from tests.study.helpers import (
    finished_per_point,
    folder_hashes,
    sqlite_url,
    trial_states,
    worker,
    write_spec,
)

GRID_2X2 = {"loss.bce_weight": [0.2, 0.8], "loss.pos_weight": [1, 10]}


def _completed_run_dirs(study: Path) -> list[Path]:
    out = []
    for summary in study.glob("runs/grid/*/summary.json"):
        if json.loads(summary.read_text())["status"] == "completed":
            out.append(summary.parent)
    return sorted(out)


def test_grid_runs_once_and_rerun_runs_nothing(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "g4", GRID_2X2)
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    counts = finished_per_point(sqlite_url(study), "g4")
    assert len(counts) == 4 and set(counts.values()) == {1}
    assert (study / "report" / "report.html").is_file()
    before = folder_hashes(study / "runs")
    capsys.readouterr()
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    out = capsys.readouterr().out
    assert "nothing to run" in out and "duplicates: 0" in out
    assert folder_hashes(study / "runs") == before
    assert trial_states(sqlite_url(study), "g4") == {"COMPLETE": 4}
    assert main(["status", str(study)]) == 0
    assert "4/4 done" in capsys.readouterr().out


def test_worker_killed_mid_run_then_resumed(demo_data: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "kill", GRID_2X2, epochs=3)
    study = tmp_path / "study"
    proc = worker(spec, study)
    board = None
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if not (study / "study.db").exists():
            continue
        board = board or ClaimBoard(sqlite_url(study), "kill")
        states = board.states("grid")
        done = [s for s in states.values() if s.state == "complete"]
        running = [
            s for s in states.values() if s.state == "running" and s.trial_number is not None
        ]
        if (
            done
            and running
            and any(
                json.loads(p.read_text()).get("epochs_done", 0) >= 1
                for p in study.glob(f"runs/grid/{running[0].trial_number:04d}-*/summary.json")
            )
        ):
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
    proc.wait()
    assert killed, "the worker finished before it could be killed mid-run"
    intact = {d.name: folder_hashes(d) for d in _completed_run_dirs(study)}
    assert intact
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    counts = finished_per_point(sqlite_url(study), "kill")
    assert len(counts) == 4 and set(counts.values()) == {1}
    for name, hashes in intact.items():
        assert folder_hashes(study / "runs" / "grid" / name) == hashes
    states = trial_states(sqlite_url(study), "kill")
    assert states["COMPLETE"] == 4 and states["FAIL"] == 1  # the killed run, marked failed


def test_worker_killed_between_runs_then_resumed(demo_data: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "between", GRID_2X2)
    study = tmp_path / "study"
    proc = worker(spec, study, SEGTUNE_FAULT_KILL_AFTER_RUNS="2")
    assert proc.wait(timeout=240) == -signal.SIGKILL
    assert len(finished_per_point(sqlite_url(study), "between")) == 2
    intact = {d.name: folder_hashes(d) for d in _completed_run_dirs(study)}
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    counts = finished_per_point(sqlite_url(study), "between")
    assert len(counts) == 4 and set(counts.values()) == {1}
    for name, hashes in intact.items():
        assert folder_hashes(study / "runs" / "grid" / name) == hashes


def test_three_workers_on_sqlite_finish_each_point_once(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = {"loss.bce_weight": [0.2, 0.5, 0.8], "loss.pos_weight": [1, 10]}
    spec = write_spec(tmp_path / "s.yaml", demo_data, "par", grid)
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study), "--workers", "3"]) == 0
    counts = finished_per_point(sqlite_url(study), "par")
    assert len(counts) == 6 and set(counts.values()) == {1}
    assert trial_states(sqlite_url(study), "par") == {"COMPLETE": 6}
    assert "duplicates: 0" in capsys.readouterr().out


def test_study_whose_runs_all_fail_exits_nonzero(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(
        tmp_path / "s.yaml",
        demo_data,
        "allfail",
        {"optim.learning_rate": [1e6, 1e7]},
        max_retries=0,
        epochs=2,
    )
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 1
    captured = capsys.readouterr()
    assert "2 failed" in captured.out and "no run completed" in captured.err
    assert trial_states(sqlite_url(study), "allfail") == {"FAIL": 2}


def test_failed_run_is_retried_at_most_max_retries(demo_data: Path, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.yaml",
        demo_data,
        "retry",
        {"optim.learning_rate": [0.003, 1e6]},
        max_retries=1,
    )
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert trial_states(sqlite_url(study), "retry") == {"COMPLETE": 1, "FAIL": 2}


def test_typo_in_spec_fails_before_any_run(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "typo", {"loss.bce_wieght": [0.2]})
    assert main(["sweep", str(spec), "--dir", str(tmp_path / "study")]) == 2
    assert "loss.bce_wieght: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


def test_tpe_stage_runs_its_trial_count(demo_data: Path, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.yaml",
        demo_data,
        "tpe",
        GRID_2X2,
        stages=[
            {
                "name": "search",
                "tpe": {
                    "n_trials": 3,
                    "ranges": {
                        "loss.bce_weight": {"low": 0.0, "high": 1.0},
                        "loss.pos_weight": {"low": 1.0, "high": 20.0, "log": True},
                    },
                },
            }
        ],
    )
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert trial_states(sqlite_url(study), "tpe", "search") == {"COMPLETE": 3}
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert trial_states(sqlite_url(study), "tpe", "search") == {"COMPLETE": 3}
