"""No study damaged by another: a study folder belongs to one study, a started stage keeps
its settings, a fixed picture can be retried, a read-only folder is one line, study.db
follows the umask, and lost tracking is said."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from segtune.cli.main import main
from tests.conftest import in_ci
from tests.study.helpers import write_spec


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    """Every file and folder under ``folder`` with its modification time and size."""
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_mtime_ns, p.stat().st_size if p.is_file() else 0)
        for p in folder.rglob("*")
    )


def test_another_studys_spec_on_a_study_folder_is_refused_and_changes_nothing(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = {"loss.bce_weight": [0.5]}
    a = write_spec(tmp_path / "a.yaml", demo_data, "a", grid)
    b = write_spec(tmp_path / "b.yaml", demo_data, "b", grid)
    tree = yaml.safe_load(b.read_text())
    tree["fixed"]["optim"]["learning_rate"] = 0.01  # what would train into a's point
    b.write_text(yaml.safe_dump(tree))
    study = tmp_path / "S"
    assert main(["sweep", str(a), "--dir", str(study), "-q"]) == 0
    before = _listing(study)
    capsys.readouterr()
    assert main(["sweep", str(b), "--dir", str(study), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {study}: holds study 'a', and {b} is study 'b'; a study folder belongs to "
        "one study: give another --dir"
    ]
    assert _listing(study) == before
    point = next((study / "runs" / "grid").iterdir())
    assert yaml.safe_load((point / "point.json").read_text())["study"] == "a"


def test_a_point_folder_of_another_study_is_never_written(tmp_path: Path) -> None:
    from segtune.core.errors import ConfigError
    from segtune.study.folders import PointFolder

    folder = PointFolder(tmp_path / "p")
    folder.path.mkdir()
    folder.write_info("p", {"loss.bce_weight": 0.5}, "f" * 20, "a")
    folder.check_study("a")
    with pytest.raises(ConfigError, match="a point of study 'a', not of study 'b'"):
        folder.check_study("b")


def test_changing_a_started_repeat_stage_is_refused_naming_the_setting(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stages = [
        {"name": "grid", "grid": {"loss.bce_weight": [0.5]}},
        {"name": "noise", "repeat": {"from": "grid", "top_k": 1, "seeds": 1}},
    ]
    spec = write_spec(tmp_path / "s.yaml", demo_data, "rep", {}, stages=stages)
    study = tmp_path / "S"
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 0
    recorded = (study / "study.json").read_text()
    stages[1]["repeat"]["seeds"] = 2
    write_spec(spec, demo_data, "rep", {}, stages=stages)
    capsys.readouterr()
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stage noise: repeat.seeds 1 → 2" in err[0], err
    assert (study / "study.json").read_text() == recorded


@pytest.mark.slow
def test_retry_failed_after_fixing_a_picture_completes_the_study(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    picture = sorted((data / "val" / "images").iterdir())[0]
    good = picture.read_bytes()
    picture.write_bytes(good[:100])  # truncated: every point fails reading it
    spec = write_spec(tmp_path / "s.yaml", data, "fix", {"loss.bce_weight": [0.5]}, max_retries=0)
    tree = yaml.safe_load(spec.read_text())
    tree["data"].pop("val_subset")  # the truncated picture is among those scored
    spec.write_text(yaml.safe_dump(tree))
    study = tmp_path / "S"
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 1
    picture.write_bytes(good)
    os.utime(picture, (1, 1))  # restored: another size and time than recorded
    capsys.readouterr()
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 2  # plain: refused
    assert "pictures changed since the study started" in capsys.readouterr().err
    assert main(["sweep", str(spec), "--dir", str(study), "-q", "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "1/1 done" in out, out
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 0  # and stays accepted


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only (a read-only bind mount: root ignores permission bits)."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            yield
        finally:
            os.chmod(folder, 0o755)
        return
    done = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if done.returncode != 0:
        message = f"cannot bind-mount read-only here: {done.stderr.decode().strip()}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True
        )
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True, capture_output=True)


def test_a_study_folder_read_only_between_two_starts_is_one_line_then_completes(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "ro", {"loss.bce_weight": [0.5]})
    study = tmp_path / "S"
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 0
    more = [
        {"name": "grid", "grid": {"loss.bce_weight": [0.5]}},
        {"name": "more", "grid": {"loss.bce_weight": [0.8]}},
    ]
    write_spec(spec, demo_data, "ro", {}, stages=more)  # a new stage: one more point
    capsys.readouterr()
    with read_only(study):
        assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {study.resolve()}/"), err
    assert err[0].endswith(": Read-only file system"), err
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 0
    assert "stage more: 1/1 done" in capsys.readouterr().out


def test_new_values_in_a_started_grid_are_refused(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "g", {"loss.bce_weight": [0.5]})
    study = tmp_path / "S"
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 0
    write_spec(spec, demo_data, "g", {"loss.bce_weight": [0.5, 0.8]})
    capsys.readouterr()
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stage grid: grid loss.bce_weight [0.5] → [0.5, 0.8]" in err[0]
    write_spec(spec, demo_data, "g", {"loss.bce_weight": [0.5]})  # as recorded: runs on
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 0


@pytest.mark.parametrize("where", ["the study folder", "its parent folder"])
def test_a_read_only_place_for_a_new_study_is_one_line(
    where: str, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "ro", {"loss.bce_weight": [0.5]})
    parent = tmp_path / "place"
    study = parent / "S"
    (study if where == "the study folder" else parent).mkdir(parents=True)
    with read_only(parent):
        assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        left = sorted(p.name for p in parent.rglob("*"))
    assert len(err) == 1 and err[0].endswith("Read-only file system"), err
    assert left == (["S"] if where == "the study folder" else [])


def test_study_db_follows_the_umask(demo_data: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "um", {"loss.bce_weight": [0.5]})
    done = subprocess.run(
        [sys.executable, "-m", "segtune", "sweep", str(spec), "--dir", str(tmp_path / "S"), "-q"],
        capture_output=True,
        preexec_fn=lambda: os.umask(0o002),  # a shared group's umask, set before start
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "S").iterdir() if p.is_file()}
    assert modes["study.db"] == 0o664 and modes["study.json"] == 0o664, modes


def _mlflow_spec(tmp_path: Path, demo_data: Path, uri: str) -> Path:
    spec = write_spec(tmp_path / "m.yaml", demo_data, "ml", {"loss.bce_weight": [0.5, 0.8]})
    tree = yaml.safe_load(spec.read_text())
    tree["fixed"]["runtime"].update({"loggers": ["mlflow"], "mlflow_uri": uri})
    spec.write_text(yaml.safe_dump(tree))
    return spec


def test_an_mlflow_file_store_is_refused_before_the_first_run_or_tracks_each_run_apart(
    demo_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "mlruns"
    spec = _mlflow_spec(tmp_path, demo_data, store.as_uri())
    study = tmp_path / "S"
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: runtime.mlflow_uri {store.as_uri()}: MLflow refuses a file store unless "
        "MLFLOW_ALLOW_FILE_STORE=true; use a database (sqlite:///PATH/mlflow.db) or set "
        "that variable"
    ]
    assert not study.exists()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 0
    assert "tracking lost" not in capsys.readouterr().err
    ids = [p.read_text().strip() for p in study.rglob("mlflow-run-id.txt")]
    assert len(set(ids)) == 2
    for run_id in ids:  # each run's overlay strip under its own MLflow run
        pngs = [p for p in store.rglob("*.png") if run_id in p.parts]
        assert len(pngs) == 1, (run_id, list(store.rglob("*.png")))


def test_tracking_lost_during_a_study_is_recorded_reported_and_warned(
    demo_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from segtune.engine.loggers import MlflowLogger

    def refuse(self: MlflowLogger, epoch: int, values: object) -> None:
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(MlflowLogger, "log_epoch", refuse)
    spec = _mlflow_spec(tmp_path, demo_data, f"sqlite:///{tmp_path / 'mlflow.db'}")
    study = tmp_path / "S"
    assert main(["sweep", str(spec), "--dir", str(study), "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("warning: tracking lost for 2 run(s) (grid#0, grid#1): "), err
    assert err[-1].endswith("mlflow: tracking server went away")
    records = [yaml.safe_load(p.read_text()) for p in study.rglob("summary.json")]
    assert all(r["tracking_lost"] == ["mlflow: tracking server went away"] for r in records)
    report = (study / "report" / "report.md").read_text()
    assert "**tracking lost for 2 run(s)** (grid#0, grid#1): mlflow: tracking server" in report
