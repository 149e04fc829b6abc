"""A spec or data change that would alter recorded runs is refused before any work;
new stages run only their new points; studies from before fingerprints still resume."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from segtune.cli.main import main
from segtune.study.claims import IDENTITIES
from tests.study.helpers import sqlite_url, trial_states, write_spec

pytestmark = pytest.mark.slow  # trains several runs (skip with -m "not slow")

GRID = {"loss.bce_weight": [0.2, 0.8]}


def _edit(path: Path, **optim: object) -> None:
    tree = yaml.safe_load(path.read_text())
    tree["fixed"]["optim"].update(optim)
    path.write_text(yaml.safe_dump(tree))


@pytest.fixture
def finished(demo_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    spec = write_spec(tmp_path / "s.yaml", demo_data, "chg", GRID)
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    return spec, study


def test_changed_spec_is_refused_naming_the_keys(
    finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, study = finished
    info = (study / "study.json").stat().st_mtime_ns
    _edit(spec, epochs=2, learning_rate=0.01)
    capsys.readouterr()
    assert main(["sweep", str(spec), "--dir", str(study)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "optim.epochs 1 → 2" in err and "optim.learning_rate 0.003 → 0.01" in err
    assert "new --dir" in err
    assert (study / "study.json").stat().st_mtime_ns == info
    assert trial_states(sqlite_url(study), "chg") == {"COMPLETE": 2}


def test_where_it_runs_is_not_a_change(
    finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, study = finished
    tree = yaml.safe_load(spec.read_text())
    tree["fixed"]["runtime"].update({"threads": 1, "num_workers": 0})
    tree["preview_pictures"] = 1
    spec.write_text(yaml.safe_dump(tree))
    moved = tmp_path / "moved"
    shutil.move(study, moved)
    capsys.readouterr()
    assert main(["sweep", str(spec), "--dir", str(moved)]) == 0
    assert "nothing to run" in capsys.readouterr().out


def test_a_new_stage_runs_only_its_new_points(
    finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, study = finished
    tree = yaml.safe_load(spec.read_text())
    tree["stages"].append({"name": "more", "grid": {"loss.pos_weight": [4.0]}})
    spec.write_text(yaml.safe_dump(tree))
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert trial_states(sqlite_url(study), "chg") == {"COMPLETE": 2}
    assert trial_states(sqlite_url(study), "chg", "more") == {"COMPLETE": 1}
    assert json.loads((study / "study.json").read_text())["spec"]["stages"][-1]["name"] == "more"


def test_changed_picture_is_refused(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    spec = write_spec(tmp_path / "s.yaml", data, "pics", GRID)
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    recorded = json.loads((study / "subsets.json").read_text())
    stem = recorded["val"][0]["stem"]
    mask = Path(recorded["val"][0]["mask"])
    os.utime(mask, (mask.stat().st_atime, mask.stat().st_mtime + 100))
    capsys.readouterr()
    assert main(["sweep", str(spec), "--dir", str(study)]) == 2
    err = capsys.readouterr().err
    assert f"val/{stem} (mask modified)" in err and "pictures changed" in err


def test_study_from_before_fingerprints_is_fingerprinted_from_its_run_folders(
    finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, study = finished
    engine = sa.create_engine(sqlite_url(study))
    with engine.begin() as conn:
        conn.execute(IDENTITIES.delete())
    subsets = json.loads((study / "subsets.json").read_text())
    del subsets["stats"]
    (study / "subsets.json").write_text(json.dumps(subsets))
    capsys.readouterr()
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert "nothing to run" in capsys.readouterr().out
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(IDENTITIES)).scalar() == 2
    _edit(spec, learning_rate=0.01)
    assert main(["sweep", str(spec), "--dir", str(study)]) == 2
    assert "optim.learning_rate 0.003 → 0.01" in capsys.readouterr().err


def test_set_overrides_are_recorded_and_a_different_set_on_resume_is_refused(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from segtune.core.config import load_yaml

    spec = write_spec(tmp_path / "s.yaml", demo_data, "sets", {"loss.bce_weight": [0.5]})
    study = tmp_path / "study"
    argv = ["sweep", str(spec), "--dir", str(study)]
    assert main([*argv, "--set", "optim.learning_rate=0.01"]) == 0
    run = next(study.glob("runs/grid/*/config.yaml"))
    assert load_yaml(run)["optim"]["learning_rate"] == 0.01
    info = json.loads((study / "study.json").read_text())
    assert info["overrides"] == {"fixed": {"optim": {"learning_rate": 0.01}}}
    capsys.readouterr()
    assert main([*argv, "--set", "optim.learning_rate=0.02"]) == 2
    err = capsys.readouterr().err
    assert "optim.learning_rate 0.01 → 0.02" in err and len(err.strip().splitlines()) == 1
    assert main([*argv, "--set", "optim.learning_rate=0.01"]) == 0
    assert "nothing to run" in capsys.readouterr().out
