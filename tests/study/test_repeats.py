"""Seeds: ``repeats: k`` trains every point with k seeds, a ``repeat`` stage re-runs the
best configurations of a stage with new seeds; each run exactly once."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from segtune.cli.main import main
from segtune.core.config import load_yaml
from segtune.core.errors import ConfigError
from segtune.study.spec import build_spec
from tests.study.helpers import sqlite_url, trial_states, write_spec


def _seeds(study: Path, stage: str) -> list[tuple[float, int]]:
    s = optuna.load_study(study_name=f"rep:{stage}", storage=sqlite_url(study))
    out = []
    for t in s.get_trials(states=[optuna.trial.TrialState.COMPLETE]):
        config = load_yaml(study / t.user_attrs["run_dir"] / "config.yaml")
        out.append((config["loss"]["bce_weight"], config["runtime"]["seed"]))
    return sorted(out)


@pytest.mark.slow
def test_repeats_and_a_repeat_stage_train_each_seed_once(demo_data: Path, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.yaml",
        demo_data,
        "rep",
        {"loss.bce_weight": [0.2, 0.8]},
        repeats=2,
        stages=[
            {"name": "grid", "grid": {"loss.bce_weight": [0.2, 0.8]}},
            {"name": "noise", "repeat": {"from": "grid", "top_k": 1, "seeds": 2}},
        ],
    )
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert _seeds(study, "grid") == [(0.2, 0), (0.2, 1), (0.8, 0), (0.8, 1)]
    noise = _seeds(study, "noise")
    assert len(noise) == 2 and {s for _, s in noise} == {2, 3}  # never a seed already run
    assert len({b for b, _ in noise}) == 1
    assert trial_states(sqlite_url(study), "rep", "noise") == {"COMPLETE": 2}
    # Resuming runs nothing again.
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert trial_states(sqlite_url(study), "rep", "grid") == {"COMPLETE": 4}
    md = (study / "report" / "report.md").read_text()
    # Two configurations, one row each (4 seeds and 2): never six rows.
    top = md.split("## Top", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in top.splitlines() if line.startswith(("| 1 |", "| 2 |", "| 3 |"))]
    assert len(rows) == 2 and any("(4 seeds)" in r for r in rows)
    assert "widened by training noise: sd over seeds" in md


def test_repeats_and_a_searched_seed_are_refused() -> None:
    tree = {
        "name": "x",
        "data": {},
        "repeats": 2,
        "stages": [{"name": "g", "grid": {"runtime.seed": [0, 1]}}],
    }
    with pytest.raises(ConfigError, match=r"runtime\.seed is searched and repeats is 2"):
        build_spec(tree, "s.yaml")
    tree["stages"] = [
        {"name": "g", "grid": {"loss.bce_weight": [0.5]}},
        {"name": "r", "repeat": {"from": "nope"}},
    ]
    with pytest.raises(ConfigError, match=r"r\.repeat\.from: 'nope' is not an earlier stage"):
        build_spec(yaml.safe_load(yaml.safe_dump(tree)), "s.yaml")
