"""Shared study folders: readable file modes, no password anywhere, a worker's GPUs,
and a dead worker's run shown as interrupted."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import segtune.study.workers as workers
from segtune.analysis.summary import load_study_summary
from segtune.cli.main import main
from segtune.core.records import atomic_write_text
from segtune.study import STORAGE_ENV
from tests.study.helpers import write_spec

pytestmark = pytest.mark.slow  # trains several runs (skip with -m "not slow")

GRID = {"loss.bce_weight": [0.2, 0.8]}


def test_records_reports_and_cache_follow_the_umask(finished_study: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    expected = 0o666 & ~mask
    files = [
        *finished_study.glob("runs/grid/*/summary.json"),
        *finished_study.glob("runs/grid/*/model.pt"),
        *finished_study.glob("runs/grid/*/previews/*.png"),
        finished_study / "study.json",
        finished_study / "report" / "report.html",
        *Path(os.environ["SEGTUNE_CACHE"]).rglob("*.npy"),
    ]
    assert len(files) > 6
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_status_and_report_leave_the_study_untouched(
    finished_study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def snapshot() -> dict[str, int]:
        return {
            str(p): p.stat().st_mtime_ns
            for p in finished_study.rglob("*")
            if p.is_file() and "report" not in p.parts
        }

    before = snapshot()
    assert main(["status", str(finished_study)]) == 0
    assert main(["report", str(finished_study)]) == 0
    assert snapshot() == before


def test_dead_workers_running_summary_reads_as_interrupted(finished_study: Path) -> None:
    run_dir = sorted(finished_study.glob("runs/grid/*"))[0]
    path = run_dir / "summary.json"
    original = path.read_text()
    try:
        atomic_write_text(path, json.dumps({**json.loads(original), "status": "running"}))
        summary = load_study_summary(finished_study)
        (run,) = [r for r in summary.runs if r.run_dir == run_dir]
        assert run.status == "interrupted"
    finally:
        atomic_write_text(path, original)


def test_password_is_never_on_a_command_line_or_in_study_json(
    demo_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    fresh_postgres: Callable[[], str],
) -> None:
    url = fresh_postgres().replace("segtune@", "segtune:s3cret-pw@")  # trust auth: any works
    started: list[dict[str, Any]] = []
    real_popen = subprocess.Popen

    def recording_popen(cmd: list[str], **kw: Any) -> Any:
        started.append({"cmd": cmd, "env": kw.get("env", {})})
        return real_popen(cmd, **kw)

    monkeypatch.setattr(workers.subprocess, "Popen", recording_popen)
    spec = write_spec(tmp_path / "s.yaml", demo_data, "secret", GRID)
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study), "--storage", url, "--workers", "2"]) == 0
    assert len(started) == 2
    for worker in started:
        assert not any("s3cret" in part for part in worker["cmd"])
        assert worker["env"][STORAGE_ENV] == url
    info = (study / "study.json").read_text()
    assert "s3cret" not in info and json.loads(info)["storage"].startswith("postgresql")
    assert main(["status", str(study)]) == 0  # the recorded URL works without the password


def test_workers_use_the_visible_devices_they_were_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    gpus = workers.visible_gpus()
    assert gpus == ["2", "3"]
    assigned = [
        workers.worker_env(i, gpus, None, "sqlite://")["CUDA_VISIBLE_DEVICES"] for i in range(4)
    ]
    assert assigned == ["2", "3", "2", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(workers, "gpu_count", lambda: 2)
    assert workers.visible_gpus() == ["0", "1"]
    assert "CUDA_VISIBLE_DEVICES" not in {
        k for k, v in workers.worker_env(0, ["0"], None, "sqlite://").items() if v == "0"
    }
