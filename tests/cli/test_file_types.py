"""One file type from init to train: `train` takes a study spec (its fixed settings, or
one grid point), `plan` takes a run config, and a mix-up says what to run instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segtune.cli.main import main
from segtune.core.records import RunFolder
from tests.conftest import tiny_tree
from tests.study.helpers import write_spec


def test_train_takes_one_grid_point_of_a_study_spec(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = {"loss.bce_weight": [0.2, 0.8], "loss.pos_weight": [1, 10]}
    spec = write_spec(tmp_path / "s.yaml", demo_data, "typed", grid)
    run = tmp_path / "run"
    assert main(["train", str(spec), "--point", "grid:3", "--out", str(run), "-q"]) == 0
    config = RunFolder(run).read_config()
    assert (config.loss.bce_weight, config.loss.pos_weight) == (0.8, 1)  # last key fastest
    assert config.optim.learning_rate == 0.003  # the spec's fixed settings
    assert config.data.train_subset == 6
    # --set on top of the point; and a point that does not exist is one line.
    run2 = tmp_path / "run2"
    args = ["train", str(spec), "--point", "grid:1", "--set", "loss.pos_weight=3"]
    assert main([*args, "--out", str(run2), "-q"]) == 0
    assert RunFolder(run2).read_config().loss.pos_weight == 3
    capsys.readouterr()
    assert main(["train", str(spec), "--point", "grid:5", "--out", str(tmp_path / "x")]) == 2
    assert (
        capsys.readouterr().err.strip() == "error: --point grid:5: expected grid:N with N in 1..4"
    )
    assert not (tmp_path / "x").exists()


def test_plan_takes_a_run_config_and_sweep_says_what_to_run_instead(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_config = tmp_path / "train.yaml"
    run_config.write_text(yaml.safe_dump(tiny_tree(demo_data)))
    assert main(["plan", str(run_config), "--no-probe"]) == 0
    out = capsys.readouterr().out
    assert "plan of study train:" in out and "stage run (grid): 1 run(s)" in out
    assert "objective val/recall" not in out  # a run is not ranked: no objective warning
    assert main(["sweep", str(run_config), "--dir", str(tmp_path / "st")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {run_config}: a run config (no name or stages), not a study spec: "
        f"`segtune train {run_config}` trains it, `segtune plan {run_config}` estimates it"
    )
    assert main(["train", str(run_config), "--point", "grid:1", "--out", str(tmp_path / "r")]) == 2
    assert "--point grid:1: needs a study spec" in capsys.readouterr().err
