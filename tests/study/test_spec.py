from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segtune.core.errors import ConfigError
from segtune.study.refine import midpoint, neighbourhood, refine_points
from segtune.study.spec import grid_points, load_spec
from tests.conftest import ROOT


def test_reference_study_example_is_valid() -> None:
    spec = load_spec(ROOT / "examples" / "reference-study.yaml")
    grid, refined = spec.stages
    assert grid.grid is not None and len(grid_points(grid.grid)) == 72
    assert refined.grid is not None and len(grid_points(refined.grid)) == 12
    assert refined.grid["loss.dice_smooth"] == [1e-6]
    config = spec.run_config(grid_points(grid.grid)[0])
    assert (
        config.pages.page_size,
        config.pages.patch_overlap,
        config.optim.epochs,
        config.optim.batch_size,
        config.optim.learning_rate,
    ) == (2048, 0, 5, 16, 1e-4)
    assert spec.data.train_subset == 700 and spec.data.val_subset == 50
    assert spec.objective.metric == "val/recall" and spec.preview_pictures == 5


def test_the_raced_reference_study_races_the_reference_grid() -> None:
    from segtune.study.plan import stage_plans

    spec = load_spec(ROOT / "examples" / "reference-study-raced.yaml")
    grid, race, refined = spec.stages
    assert race.race is not None and race.race.from_ == grid.name == "grid"
    assert race.race.max_seeds == 5 and race.race.confidence == 0.95
    reference = load_spec(ROOT / "examples" / "reference-study.yaml")
    assert (grid, refined) == tuple(reference.stages)
    assert {p.name: p.runs for p in stage_plans(spec)}["race"] == 72 * 4  # an upper bound


def _spec(tmp_path: Path, **changes: object) -> Path:
    tree = yaml.safe_load((ROOT / "examples" / "reference-study.yaml").read_text())
    tree.update(changes)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"stages": [{"name": "g", "grid": {"loss.bce_wieght": [0.1]}}]},
            r"loss\.bce_wieght: unknown key",
        ),
        (
            {"stages": [{"name": "g", "grid": {"loss.bce_weight": [0.1, 1.5]}}]},
            r"loss\.bce_weight: .*less than or equal to 1",
        ),
        ({"objectiv": {"metric": "val/recall"}}, r"objectiv: unknown key"),
        (
            {"objective": {"metric": "recall"}},
            r"objective\.metric: 'recall' is not a metric a run records; one of val/precision",
        ),
        (
            {"stages": [{"name": "r", "refine": {"from": "nope"}}]},
            r"'nope' is not an earlier stage",
        ),
        ({"top_k": 0}, r"top_k: .*greater than or equal to 1"),
    ],
)
def test_bad_specs_name_the_key(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_spec(_spec(tmp_path, **changes))


def test_midpoints_are_geometric_across_decades() -> None:
    assert midpoint(1e-4, 1e-6) == pytest.approx(1e-5)
    assert midpoint(0.2, 0.4) == pytest.approx(0.3)
    assert midpoint(0.0, 0.2) == pytest.approx(0.1)
    assert neighbourhood(0.4, [0.0, 0.2, 0.4, 0.6]) == pytest.approx([0.3, 0.4, 0.5])
    assert neighbourhood(0.0, [0.0, 0.2]) == pytest.approx([0.0, 0.1])


def test_refine_points_union_around_best_runs() -> None:
    grid = {"a": [0.0, 0.2, 0.4], "b": [1, 10]}
    points = refine_points(grid, [{"a": 0.2, "b": 10}, {"a": 0.4, "b": 10}], fixed={})
    values_a = sorted({p["a"] for p in points})
    assert values_a == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert len(points) == len({tuple(sorted(p.items())) for p in points})
    fixed = refine_points(grid, [{"a": 0.2, "b": 10}], fixed={"b": 5})
    assert {p["b"] for p in fixed} == {5} and len(fixed) == 3
