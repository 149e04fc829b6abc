"""A race stage in a study: seeds only where the answer is open, drops recorded once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from segtune.cli.main import main
from tests.study.helpers import sqlite_url, trial_states, write_spec


def _race_spec(tmp_path: Path, demo_data: Path, **race: object) -> Path:
    """Learning rate 1e-7 learns nothing in 3 epochs (AP near the positive fraction on
    every seed); 0.01 reaches AP about 0.5: the first is clearly worse by val/ap."""
    grid = {"optim.learning_rate": [1e-7, 0.01]}
    path = write_spec(
        tmp_path / "s.yaml",
        demo_data,
        "race",
        grid,
        epochs=3,
        objective={"metric": "val/ap", "direction": "maximize"},
        stages=[
            {"name": "grid", "grid": grid},
            {"name": "race", "race": {"from": "grid", "max_seeds": 3, "confidence": 0.9, **race}},
        ],
    )
    tree = yaml.safe_load(path.read_text())
    tree["fixed"]["sampling"] = {"positive_fraction": 0.5}
    tree["data"].update(train_subset=12, val_subset=4)  # as tests.conftest.learning_config
    tree["fixed"]["pages"]["patch_overlap"] = 8
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.mark.slow
def test_a_dropped_configuration_is_never_trained_again(
    demo_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The study's mechanics around a drop (the decisions themselves are tested on fixed
    records in tests/core/test_racing.py; three epochs of the tiny model vary by seed
    from AP 0.15 to 0.55, too much for a drop at round 2): the look at round 2 drops
    learning rate 1e-7 here, whatever the values."""
    import segtune.core.racing as racing
    from segtune.core.intervals import Interval
    from segtune.study.claims import ClaimBoard

    looks: list[int] = []

    def look(contenders, rounds, alpha, direction):  # type: ignore[no-untyped-def]
        looks.append(rounds)
        assert all(len(c.values) >= rounds for c in contenders)
        assert all(c.samples is not None for c in contenders)  # read from the run folders
        worse = [c.name for c in contenders if c.name == "optim.learning_rate=1e-07"]
        return [
            racing.Drop(n, rounds, "optim.learning_rate=0.01", Interval(-0.5, -0.1), 0.99, 0.001)
            for n in worse
        ]

    monkeypatch.setattr(racing, "race_look", look)
    spec = _race_spec(tmp_path, demo_data)
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    # Round 2 for both, the look drops learning rate 1e-7, one left: the race has ended and
    # round 3 is never started.
    assert trial_states(sqlite_url(study), "race", "race") == {"COMPLETE": 2}
    drops = ClaimBoard(sqlite_url(study), "race", create=False).drops("race")
    assert list(drops) == ["optim.learning_rate=1e-07"]
    drop = drops["optim.learning_rate=1e-07"]
    assert drop["round"] == 2 and drop["lost_to"] == "optim.learning_rate=0.01"
    assert drop["interval"][1] < 0  # wholly below 0: worse with the stated confidence
    md = (study / "report" / "report.md").read_text()
    race = md.split("## Race race", 1)[1].split("\n## ", 1)[0]
    assert "Survivors: optim.learning_rate=0.01." in race
    assert "| optim.learning_rate=1e-07 | 2 |" in race and "| round 2 |" in race
    results = json.loads((study / "report" / "results.json").read_text())
    assert results["races"][0]["survivors"] == ["optim.learning_rate=0.01"]
    # Resuming trains nothing and records nothing twice.
    capsys.readouterr()
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert trial_states(sqlite_url(study), "race", "race") == {"COMPLETE": 2}
    assert main(["best", str(study), "-q"]) == 0
    assert "learning_rate-0.01" in capsys.readouterr().out


def test_changing_a_started_race_is_refused(demo_data: Path, tmp_path: Path) -> None:
    from segtune.study.spec import load_spec
    from segtune.study.view import StudyView

    spec = _race_spec(tmp_path, demo_data)
    study = tmp_path / "study"
    view = StudyView(load_spec(spec), study, create=True)
    view.record_spec()
    (study / "stages").mkdir(parents=True, exist_ok=True)
    (study / "stages" / "race.json").write_text('{"points": []}')  # the race has started
    changed = _race_spec(tmp_path, demo_data, max_seeds=4)
    assert StudyView(load_spec(changed), study).stage_setting_changes() == [
        "stage race: race.max_seeds 3 → 4"
    ]
