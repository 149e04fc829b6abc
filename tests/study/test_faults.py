"""Exactly once in every window of a point's life: a worker SIGKILLed at each boundary
(``segtune.core.faults``), restarted, and the study still ends with one COMPLETE trial and
one completed run folder per point, no RUNNING trial, and no finished run trained twice.
Also: four separate ``segtune sweep`` commands started together on a new database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from segtune.study.claims import ClaimBoard
from tests.study.helpers import (
    finished_per_point,
    folder_hashes,
    sqlite_url,
    trial_states,
    write_spec,
)

GRID = {"loss.bce_weight": [0.2, 0.8]}
KILLED = -signal.SIGKILL


def _segtune(
    args: list[str], fault: str | None = None, wait: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEGTUNE_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("SEGTUNE_FAULT", None)
    if fault:
        env["SEGTUNE_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "segtune", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Content and modification time of every file: a run trained again (even to the
    same bytes) rewrites its files."""
    hashes = folder_hashes(folder)
    return {name: (h, (folder / name).stat().st_mtime_ns) for name, h in hashes.items()}


def _run_dirs(study: Path) -> list[Path]:
    return sorted(p for p in (study / "runs" / "grid").iterdir() if p.is_dir())


def _kill_at_every_boundary(spec: Path, study: Path, storage: str) -> None:
    sweep = ["sweep", str(spec), "--dir", str(study), "--storage", storage]
    worker = [*sweep, "--worker"]
    first = _segtune(worker, "claimed")
    assert first.returncode == KILLED, first.stderr
    board = ClaimBoard(storage, "faults", create=False)
    (point,) = [k for k, row in board.states("grid").items() if row.state == "running"]

    for boundary in ("asked", "params_set", "mid_epoch"):
        result = _segtune(worker, boundary)
        assert result.returncode == KILLED, (boundary, result.stderr)
    (folder,) = _run_dirs(study)
    assert json.loads((folder / "summary.json").read_text())["epochs_done"] == 1

    result = _segtune(worker, "checkpoint_write")
    assert result.returncode == KILLED, result.stderr
    assert list(folder.glob(".checkpoint.pt.*")), "the killed write left no temporary file"

    result = _segtune(worker, "summary_written")
    assert result.returncode == KILLED, result.stderr
    assert "[resumed]" not in result.stderr  # killed before it could print
    assert not list(folder.glob(".checkpoint.pt.*")), "temporary files were not removed"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_done"] == 2
    rows = (folder / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # header + 2 epochs: no epoch recorded twice
    finished = _snapshot(folder)

    result = _segtune(worker, "told")  # records the finished run, killed before the claim
    assert result.returncode == KILLED, result.stderr

    result = _segtune(sweep, "report")
    assert result.returncode == KILLED, result.stderr
    assert f"{point}: complete (recorded by trial" in result.stderr

    result = _segtune(sweep)
    assert result.returncode == 0, result.stderr
    assert "nothing to run" in result.stdout and "duplicates: 0" in result.stdout
    assert (study / "report" / "report.html").is_file()

    counts = finished_per_point(storage, "faults")
    assert len(counts) == 2 and set(counts.values()) == {1}
    states = trial_states(storage, "faults")
    assert states["COMPLETE"] == 2 and "RUNNING" not in states
    dirs = _run_dirs(study)
    assert len(dirs) == 2
    for d in dirs:
        assert json.loads((d / "summary.json").read_text())["status"] == "completed"
    assert _snapshot(folder) == finished  # the finished run was not trained again
    status = _segtune(["status", str(study), "--storage", storage])
    assert "duplicates: 0" in status.stdout and "2/2 done" in status.stdout


@pytest.mark.slow
def test_kill_at_every_boundary_on_sqlite(demo_data: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "faults", GRID, epochs=2)
    study = tmp_path / "study"
    _kill_at_every_boundary(spec, study, sqlite_url(study))


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_at_every_boundary_on_postgres(
    demo_data: Path, tmp_path: Path, fresh_postgres: Callable[[], str]
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "faults", GRID, epochs=2)
    _kill_at_every_boundary(spec, tmp_path / "study", fresh_postgres())


def _four_at_once(spec: Path, study: Path, storage: str) -> None:
    env = {**os.environ, "SEGTUNE_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "segtune", "sweep", str(spec), "--dir", str(study)]
    cmd += ["--storage", storage]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    counts = finished_per_point(storage, "together")
    assert len(counts) == 4 and set(counts.values()) == {1}  # 0 missing, 0 duplicates
    assert trial_states(storage, "together") == {"COMPLETE": 4}


GRID_2X2 = {"loss.bce_weight": [0.2, 0.8], "loss.pos_weight": [1, 10]}


@pytest.mark.slow
def test_four_commands_started_together_on_a_new_sqlite_file(
    demo_data: Path, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "together", GRID_2X2)
    study = tmp_path / "study"
    _four_at_once(spec, study, sqlite_url(study))


@pytest.mark.slow
@pytest.mark.postgres
def test_four_commands_started_together_on_a_new_postgres_database(
    demo_data: Path, tmp_path: Path, fresh_postgres: Callable[[], str]
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "together", GRID_2X2)
    _four_at_once(spec, tmp_path / "study", fresh_postgres())


def _kill_in_a_race(spec: Path, study: Path, storage: str) -> None:
    """A worker killed in every window of a race point's life, then a clean sweep: no
    (configuration, seed) trained twice or lost, and the recorded drops are exactly what
    one replay of the finished runs decides."""
    from segtune.study.race import Race
    from segtune.study.spec import load_spec
    from segtune.study.view import StudyView

    sweep = ["sweep", str(spec), "--dir", str(study), "--storage", storage]
    worker = [*sweep, "--worker"]
    first = _segtune(worker, "claimed:3")  # the grid's 2 points, then the race's first
    assert first.returncode == KILLED, first.stderr
    board = ClaimBoard(storage, "race", create=False)
    assert [row.state for row in board.states("race").values()] == ["running"]
    boundaries = ("asked", "params_set", "mid_epoch", "checkpoint_write")
    for boundary in (*boundaries, "summary_written", "told"):
        result = _segtune(worker, boundary)
        assert result.returncode == KILLED, (boundary, result.stderr)

    result = _segtune(sweep)
    assert result.returncode == 0, result.stderr
    assert "duplicates: 0" in result.stdout
    counts = finished_per_point(storage, "race", "race")
    assert counts and set(counts.values()) == {1}
    assert "RUNNING" not in trial_states(storage, "race", "race")
    view = StudyView(load_spec(spec), study, storage)
    stage = view.spec.stage("race")
    replayed = Race(view, stage).state(record=False)
    recorded = board.drops("race")
    assert sorted(recorded) == sorted(d.name for d in replayed.drops)
    for d in replayed.drops:
        assert (recorded[d.name]["round"], recorded[d.name]["lost_to"]) == (d.round, d.lost_to)
    points = view.stage_points(stage).points or {}
    assert set(points) - set(counts) <= view.race_skipped(stage, points)  # none lost
    assert replayed.ended
    status = _segtune(["status", str(study), "--storage", storage])
    assert "duplicates: 0" in status.stdout


def _two_epoch_race(tmp_path: Path, demo_data: Path) -> Path:
    import yaml

    from tests.study.test_race import _race_spec

    spec = _race_spec(tmp_path, demo_data)
    tree = yaml.safe_load(spec.read_text())
    tree["fixed"]["optim"]["epochs"] = 2  # mid_epoch needs a second epoch
    spec.write_text(yaml.safe_dump(tree))
    return spec


@pytest.mark.slow
def test_kill_in_every_window_of_a_race_on_sqlite(demo_data: Path, tmp_path: Path) -> None:
    study = tmp_path / "study"
    _kill_in_a_race(_two_epoch_race(tmp_path, demo_data), study, sqlite_url(study))


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_in_every_window_of_a_race_on_postgres(
    demo_data: Path, tmp_path: Path, fresh_postgres: Callable[[], str]
) -> None:
    spec = _two_epoch_race(tmp_path, demo_data)
    _kill_in_a_race(spec, tmp_path / "study", fresh_postgres())
