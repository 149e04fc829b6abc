from __future__ import annotations

from pathlib import Path

import yaml

from segtune.cli.demo import demo_spec_text
from segtune.cli.main import main
from segtune.study.spec import build_spec, grid_points


def test_embedded_demo_spec_has_the_reference_shape(tmp_path: Path) -> None:
    tree = yaml.safe_load(demo_spec_text())
    spec = build_spec(tree, "demo")
    grid, race, refine = spec.stages
    assert grid.grid is not None and set(grid.grid) == {
        "loss.bce_weight",
        "loss.dice_smooth",
        "loss.pos_weight",
    }
    assert len(grid_points(grid.grid)) == 8
    assert refine.refine is not None and refine.refine.from_ == "grid"
    assert race.race is not None and race.race.from_ == "grid"  # noise measured by default
    config = spec.run_config({})
    assert config.pages.patch_overlap > 0 and config.optim.epochs >= 2
    assert spec.objective.metric == "val/recall"


def test_make_demo_data_cli(tmp_path: Path) -> None:
    assert (
        main(["make-demo-data", str(tmp_path), "--pictures", "8", "--size", "48", "--seed", "2"])
        == 0
    )
    assert len(list((tmp_path / "train" / "images").glob("*.png"))) == 6
    assert len(list((tmp_path / "val" / "masks").glob("*.png"))) == 2
    assert main(["check-data", str(tmp_path / "train"), str(tmp_path / "val")]) == 0
