"""``runtime.loggers``: TensorBoard and MLflow mirror a run's records, live."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from segtune.cli.main import main
from segtune.core.config import RunConfig
from segtune.core.errors import ConfigError
from segtune.engine.loggers import MLFLOW_RUN_ID_FILE
from segtune.engine.train import train_run
from tests.conftest import tiny_config, tiny_tree


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def _tracked(demo_data: Path, tmp_path: Path, epochs: int) -> tuple[RunConfig, str]:
    """A tiny run config with both loggers, and its MLflow store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tiny_config(
        demo_data,
        optim={"epochs": epochs},
        runtime={"loggers": ["tensorboard", "mlflow"], "mlflow_uri": uri},
    )
    return config, uri


def test_tensorboard_and_mlflow_mirror_every_epoch(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may land in the folder the run is started from
    run = tmp_path / "run"
    config, uri = _tracked(demo_data, tmp_path, epochs=2)
    live: list[set[str]] = []

    def reporter(epoch: int, values: dict[str, float]) -> None:  # during training
        live.append({t for t, v in _scalars(run).items() if v and v[-1][0] == epoch})

    record = train_run(config, run, reporter=reporter, progress=False)
    assert record.status == "completed"
    assert "val/f1" in live[0] and "train/lr" in live[0]  # epoch 1 visible before epoch 2
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    scalars = _scalars(run)
    client = MlflowClient(uri)
    run_id = (run / MLFLOW_RUN_ID_FILE).read_text().strip()
    for key in ("train/loss", "train/lr", "val/f1", "val/ap", "val/recall", "train/f1"):
        expected = [(int(r["epoch"]), float(r[key])) for r in rows if r[key] != ""]
        assert expected, key
        # sorted: a kept earlier epoch's train/* are logged after the last epoch's
        assert [(s, pytest.approx(v, rel=1e-6)) for s, v in sorted(scalars[key])] == expected, key
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert history == [(s, pytest.approx(v)) for s, v in expected], key
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    image = events.Images("val/overlays")[-1]
    assert image.step == record.kept_epoch and image.width > image.height > 0
    mlrun = client.get_run(run_id)
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["loss.bce_weight"] == str(config.loss.bce_weight)
    assert mlrun.info.run_name == "run"
    assert not (tmp_path / "mlruns").exists()
    # The overlay strip, beside the database, under this run's id (not in ./mlruns).
    assert list((tmp_path / "mlflow-artifacts" / run_id).rglob("*.png"))


def test_a_broken_tracking_server_does_not_fail_the_run(
    demo_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_config(
        demo_data, runtime={"loggers": ["mlflow"], "mlflow_uri": "nosuchscheme://nowhere"}
    )
    record = train_run(config, tmp_path / "run", progress=False)
    assert record.status == "completed"
    assert "logger mlflow failed and is switched off for this run" in caplog.text
    assert len(record.tracking_lost) == 1 and record.tracking_lost[0].startswith("mlflow: ")


def test_missing_package_or_unknown_logger_is_refused_before_anything_is_written(
    demo_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import yaml

    with pytest.raises(ConfigError, match=r"runtime\.loggers"):
        tiny_config(demo_data, runtime={"loggers": ["wandb2"]})
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump(tiny_tree(demo_data, runtime={"loggers": ["tensorboard"]})))
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: runtime.loggers: tensorboard needs the tensorboard package, which is not "
        "installed (pip install 'segtune[tensorboard]')"
    ]
    assert not out.exists()


def test_a_resumed_run_continues_its_tracking(demo_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config, uri = _tracked(demo_data, tmp_path, epochs=3)

    def stop_after_first(epoch: int, values: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, run, reporter=stop_after_first, progress=False)
    run_id = (run / MLFLOW_RUN_ID_FILE).read_text().strip()
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "KILLED"
    assert train_run(config, run, resume=True, progress=False).status == "completed"
    assert (run / MLFLOW_RUN_ID_FILE).read_text().strip() == run_id  # the same MLflow run
    assert [s for s, _ in _scalars(run)["val/f1"]] == [1, 2, 3]  # no epoch twice
    history = sorted(m.step for m in client.get_metric_history(run_id, "val/f1"))
    assert history == [1, 2, 3]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
