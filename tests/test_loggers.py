"""``runtime.loggers``: TensorBoard and MLflow mirror a run's records, live."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from segtune.cli import main
from segtune.errors import ConfigError
from segtune.loggers import MLFLOW_RUN_ID_FILE
from segtune.train import train_run
from tests.conftest import tiny_config, tiny_tree


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_tensorboard_and_mlflow_mirror_every_epoch(demo_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tiny_config(
        demo_data,
        optim={"epochs": 2},
        runtime={"loggers": ["tensorboard", "mlflow"], "mlflow_uri": uri},
    )
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
        assert [(s, pytest.approx(v, rel=1e-6)) for s, v in scalars[key]] == expected, key
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


def test_a_broken_tracking_server_does_not_fail_the_run(
    demo_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_config(
        demo_data, runtime={"loggers": ["mlflow"], "mlflow_uri": "nosuchscheme://nowhere"}
    )
    assert train_run(config, tmp_path / "run", progress=False).status == "completed"
    assert "logger MlflowLogger failed and is switched off for this run" in caplog.text


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
