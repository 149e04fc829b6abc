from __future__ import annotations

from pathlib import Path

import pytest

from segtune.cli.main import main
from tests.study.helpers import (
    finished_per_point,
    folder_hashes,
    sqlite_url,
    trial_states,
    write_spec,
)

pytestmark = pytest.mark.slow  # trains several runs (skip with -m "not slow")

GRID_2X2 = {"loss.bce_weight": [0.2, 0.8], "loss.pos_weight": [1, 10]}


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
