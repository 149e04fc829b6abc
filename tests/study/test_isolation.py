"""Stage isolation: a run's config is the defaults, then ``fixed``, then its own stage's
point — never another stage's values — and ``study.json`` holds the spec as written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from segtune.analysis.summary import load_study_summary
from segtune.cli.main import main
from segtune.core.config import LossConfig
from segtune.study.spec import load_spec
from tests.study.helpers import write_spec

DEFAULT = LossConfig()
FIXED_LOSS = {"bce_weight": 0.5}


def _spec(tmp_path: Path, data: Path, name: str, stages: list[dict[str, Any]]) -> Path:
    path = write_spec(tmp_path / "s.yaml", data, name, {}, stages=stages)
    tree = yaml.safe_load(path.read_text())
    tree["fixed"]["loss"] = dict(FIXED_LOSS)
    path.write_text(yaml.safe_dump(tree))
    return path


def _runs(study: Path) -> dict[str, list[dict[str, Any]]]:
    """stage → the loss section of each run's config.yaml."""
    out: dict[str, list[dict[str, Any]]] = {}
    for config in sorted(study.glob("runs/*/*/config.yaml")):
        stage = config.parent.parent.name
        out.setdefault(stage, []).append(yaml.safe_load(config.read_text())["loss"])
    return out


def _check(study: Path, spec_path: Path, searched: dict[str, str]) -> None:
    """Every run: its stage's key varies, every other loss key is fixed or default."""
    runs = _runs(study)
    assert set(runs) == set(searched)
    for stage, key in searched.items():
        for loss in runs[stage]:
            assert loss["bce_weight"] == FIXED_LOSS["bce_weight"]
            for other in ("dice_smooth", "pos_weight"):
                if other != key:
                    assert loss[other] == getattr(DEFAULT, other), (stage, other, loss)
    info = json.loads((study / "study.json").read_text())
    assert info["spec"] == load_spec(spec_path).model_dump(mode="json", by_alias=True)
    assert info["spec"]["fixed"]["loss"] == FIXED_LOSS  # not polluted by searched values
    summary = load_study_summary(study)
    fixed_keys = set(summary.fixed)
    assert "loss.bce_weight" in fixed_keys
    assert not fixed_keys & {f"loss.{k}" for k in searched.values()}


def test_building_run_configs_leaves_the_spec_untouched(demo_data: Path, tmp_path: Path) -> None:
    path = _spec(
        tmp_path,
        demo_data,
        "pure",
        [{"name": "a", "grid": {"loss.dice_smooth": [0.0, 0.001]}}],
    )
    spec = load_spec(path)
    config = spec.run_config({"loss.pos_weight": 7.0})
    assert config.loss.pos_weight == 7.0
    assert spec.fixed["loss"] == FIXED_LOSS
    assert spec.run_config({}).loss.pos_weight == DEFAULT.pos_weight


def test_one_stage_runs_take_fixed_and_own_values(demo_data: Path, tmp_path: Path) -> None:
    stages = [{"name": "a", "grid": {"loss.dice_smooth": [0.0, 0.001]}}]
    spec = _spec(tmp_path, demo_data, "one", stages)
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    _check(study, spec, {"a": "dice_smooth"})
    assert sorted(r["dice_smooth"] for r in _runs(study)["a"]) == [0.0, 0.001]


@pytest.mark.slow
def test_two_stages_do_not_leak_into_each_other(demo_data: Path, tmp_path: Path) -> None:
    stages = [
        {"name": "a", "grid": {"loss.dice_smooth": [0.0, 0.001]}},
        {"name": "b", "grid": {"loss.pos_weight": [3.0]}},
    ]
    spec = _spec(tmp_path, demo_data, "two", stages)
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    _check(study, spec, {"a": "dice_smooth", "b": "pos_weight"})
    assert [r["pos_weight"] for r in _runs(study)["b"]] == [3.0]


@pytest.mark.slow
def test_grid_tpe_and_refine_stages_stay_isolated_and_reuse_identical_runs(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stages = [
        {"name": "a", "grid": {"loss.dice_smooth": [0.0, 0.001]}},
        {
            "name": "b",
            "tpe": {"n_trials": 1, "ranges": {"loss.pos_weight": {"low": 2.0, "high": 4.0}}},
        },
        {"name": "c", "refine": {"from": "a", "top_k": 1}},
    ]
    spec = _spec(tmp_path, demo_data, "three", stages)
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    out = capsys.readouterr()
    _check(study, spec, {"a": "dice_smooth", "b": "pos_weight", "c": "dice_smooth"})
    assert 2.0 <= _runs(study)["b"][0]["pos_weight"] <= 4.0
    # The refined grid holds a's best point itself: recorded as reused, not trained again.
    assert "reused the identical run a trial" in out.err
    assert "1 reused" in out.out
    refined = json.loads((study / "stages" / "c.json").read_text())["points"]
    assert len(_runs(study)["c"]) == len(refined) - 1
    summary = load_study_summary(study)
    shared = [r for r in summary.runs if r.also_in]
    assert len(shared) == 1 and shared[0].stage == "a" and shared[0].also_in == ["c"]
    assert shared[0].stages_text == "a = c"
    labels = [(r.stage, r.trial) for r in summary.runs]
    assert len(labels) == len(set(labels)) == 2 + 1 + len(refined) - 1
