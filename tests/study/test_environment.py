"""Failures caused by the machine are not the point's fault; failed points can be run
again; preemption (SIGTERM) and lost claims stop a worker cleanly."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import segtune.core.records
import segtune.engine.train
from segtune.cli.main import main
from segtune.study.claims import CLAIMS, ClaimBoard
from tests.study.helpers import sqlite_url, trial_states, write_spec

GRID = {"loss.bce_weight": [0.2, 0.8]}


def test_full_disk_stops_the_worker_without_using_up_the_point(
    demo_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "disk", GRID, max_retries=0)
    study = tmp_path / "study"
    real = segtune.core.records.atomic_write_bytes

    def full(path: Path, data: bytes, boundary: str | None = None) -> None:
        if path.name == "metrics.csv":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data, boundary)

    monkeypatch.setattr(segtune.core.records, "atomic_write_bytes", full)
    assert main(["sweep", str(spec), "--dir", str(study)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "metrics.csv: No space left on device" in err
    assert "ENOSPC" in err
    rows = ClaimBoard(sqlite_url(study), "disk").states("grid")
    assert [(r.state, r.attempts) for r in rows.values()] == [("failed", 0)]  # not an attempt
    monkeypatch.setattr(segtune.core.records, "atomic_write_bytes", real)
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    states = trial_states(sqlite_url(study), "disk")
    assert states["COMPLETE"] == 2


def test_retry_failed_runs_failed_points_again_keeping_the_attempt(
    demo_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "again", GRID, max_retries=0)
    study = tmp_path / "study"
    real = segtune.engine.train.train_run

    def broken_picture(config: Any, run_dir: Path, **kw: Any) -> Any:
        if config.loss.bce_weight == 0.8:
            raise ValueError("val/0003.png: cannot decode")
        return real(config, run_dir, **kw)

    monkeypatch.setattr(segtune.engine.train, "train_run", broken_picture)
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert "1 failed" in capsys.readouterr().out
    monkeypatch.setattr(segtune.engine.train, "train_run", real)  # the picture was fixed
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert "nothing to run" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--dir", str(study), "--retry-failed"]) == 0
    assert "0 failed" in capsys.readouterr().out
    assert trial_states(sqlite_url(study), "again") == {"COMPLETE": 2, "FAIL": 1}
    (folder,) = study.glob("runs/grid/bce_weight-0.8-*")
    assert json.loads((folder / "summary.json").read_text())["status"] == "completed"
    assert (folder / "attempts" / "01" / "point.json").is_file()


def _wait_for(predicate: Any, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def _epochs_done(study: Path) -> int:
    for path in study.glob("runs/grid/*/summary.json"):
        try:
            return int(json.loads(path.read_text()).get("epochs_done", 0))
        except ValueError:
            continue
    return 0


def _start_worker(spec: Path, study: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "SEGTUNE_THREADS": "1"}
    cmd = [sys.executable, "-m", "segtune", "sweep", str(spec), "--dir", str(study), "--worker"]
    return subprocess.Popen(
        cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )


@pytest.mark.slow
def test_sigterm_is_an_interrupt_and_the_point_resumes_from_its_checkpoint(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "term", {"loss.bce_weight": [0.5]}, epochs=12)
    study = tmp_path / "study"
    proc = _start_worker(spec, study)
    _wait_for(lambda: _epochs_done(study) >= 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err
    (folder,) = study.glob("runs/grid/*")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    done = summary["epochs_done"]
    rows = ClaimBoard(sqlite_url(study), "term").states("grid")
    assert [(r.state, r.reason, r.attempts) for r in rows.values()] == [
        ("failed", "interrupted", 0)
    ]
    assert main(["status", str(study)]) == 0
    assert "(1 interrupted)" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert "[resumed]" in capsys.readouterr().err
    final = json.loads((folder / "summary.json").read_text())
    assert final["status"] == "completed" and final["epochs_done"] == 12
    epochs = [int(r.split(",")[0]) for r in (folder / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, 13)) and done >= 1


@pytest.mark.slow
def test_a_worker_that_lost_its_claim_stops_with_one_line(demo_data: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "lost", {"loss.bce_weight": [0.5]}, epochs=30)
    study = tmp_path / "study"
    proc = _start_worker(spec, study)
    _wait_for(lambda: _epochs_done(study) >= 1)
    engine = sa.create_engine(sqlite_url(study))
    with engine.begin() as conn:  # as if another machine took the point over
        conn.execute(CLAIMS.update().values(owner="elsewhere:1:abc", heartbeat=time.time()))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "taken over by another worker" in lines[0]
    assert "Traceback" not in err


def test_a_database_that_refuses_writes_is_one_line(
    demo_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "ro", GRID)

    def read_only(*args: Any, **kw: Any) -> Any:
        raise sa.exc.OperationalError(
            "UPDATE …", {}, Exception("attempt to write a readonly database")
        )

    monkeypatch.setattr(ClaimBoard, "try_claim", read_only)
    assert main(["sweep", str(spec), "--dir", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: study database: attempt to write a readonly database (check that the study "
        "folder and database are writable)"
    ]


def test_a_device_missing_on_the_workers_machine_is_one_line_and_claims_nothing(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    spec = write_spec(tmp_path / "s.yaml", demo_data, "nogpu", {"loss.bce_weight": [0.5]})
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "runtime.device: 'cuda' requested but CUDA is not available" in err
    assert "no point was claimed" in err
    # The study is prepared (a login node can do that) and its point untouched.
    assert (study / "study.json").exists() and (study / "subsets.json").exists()
    assert not list(study.glob("runs/*/*"))
    assert main(["sweep", str(spec), "--dir", str(study), "--device", "cpu"]) == 0
    assert trial_states(sqlite_url(study), "nogpu") == {"COMPLETE": 1}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_sigterm_after_an_epoch_trained_never_trains_it_again(
    workers: int,
    demo_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A SIGTERM while an epoch is being validated (its training done) stops the run after
    that epoch's checkpoint: the resumed run continues with the next epoch."""
    grid = {"loss.bce_weight": [0.2, 0.8]}
    spec = write_spec(tmp_path / "s.yaml", demo_data, "term2", grid, epochs=3)
    study = tmp_path / "study"
    monkeypatch.setenv("SEGTUNE_THREADS", "1")
    argv = ["sweep", str(spec), "--dir", str(study), "--workers", str(workers), "-q"]
    fault = {**os.environ, "SEGTUNE_FAULT": "validating:1:term"}  # each process, epoch 1
    done = subprocess.run(
        [sys.executable, "-m", "segtune", *argv], env=fault, capture_output=True, text=True
    )
    assert done.returncode == (143 if workers == 1 else 1), done.stderr[-2000:]
    interrupted = [json.loads(p.read_text()) for p in study.glob("runs/grid/*/summary.json")]
    assert interrupted and all(s["status"] == "interrupted" for s in interrupted)
    assert all(s["epochs_done"] == 1 for s in interrupted), interrupted  # epoch 1 kept
    assert main(["sweep", str(spec), "--dir", str(study), "--workers", str(workers)]) == 0
    for folder in study.glob("runs/grid/*"):
        final = json.loads((folder / "summary.json").read_text())
        assert final["status"] == "completed" and final["epochs_done"] == 3
        rows = (folder / "metrics.csv").read_text().splitlines()[1:]
        assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]
        assert not list(folder.glob("attempts/*")), "an attempt was started over"
