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
    results = json.loads((study / "report" / "results.json").read_text())
    (winner,) = results["races"][0]["survivors"]  # named as every table names it
    entries = {c["configuration"]: c for c in results["races"][0]["configurations"]}
    assert entries["optim.learning_rate=0.01"]["label"] == winner
    loser = entries["optim.learning_rate=1e-07"]
    assert loser["dropped"]["round"] == 2 and loser["dropped"]["lost_to"] == winner
    assert f"Survivors: {winner}." in race
    assert f"| {loser['label']} | 2 |" in race and "| round 2 |" in race
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


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_three_workers_race_each_point_once_and_record_what_the_runs_decide(
    demo_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    backend: str,
) -> None:
    """Three worker processes on one study database (SQLite; PostgreSQL): every
    (configuration, seed) trained at most once, none lost; the recorded drops are exactly
    what a single replay of the finished runs decides (a pure function of them)."""
    from segtune.study.claims import ClaimBoard
    from segtune.study.race import Race
    from segtune.study.spec import load_spec
    from segtune.study.view import StudyView
    from tests.study.helpers import finished_per_point

    url = request.getfixturevalue("fresh_postgres")() if backend == "postgres" else None
    spec = _race_spec(tmp_path, demo_data)
    tree = yaml.safe_load(spec.read_text())
    tree["fixed"]["optim"]["epochs"] = 1  # what is tested is who trains what, once
    spec.write_text(yaml.safe_dump(tree))
    study = tmp_path / "study"
    storage = ["--storage", url] if url else []
    assert main(["sweep", str(spec), "--dir", str(study), "--workers", "3", *storage]) == 0
    assert "duplicates: 0" in capsys.readouterr().out
    db = url or sqlite_url(study)
    counts = finished_per_point(db, "race", "race")
    assert set(counts.values()) <= {1}
    assert set(trial_states(db, "race", "race")) <= {"COMPLETE", "PRUNED"}  # pruned: stopped
    view = StudyView(load_spec(spec), study, url)
    race_stage = view.spec.stage("race")
    replayed = Race(view, race_stage).state(record=False)
    recorded = ClaimBoard(db, "race", create=False).drops("race")
    assert sorted(recorded) == sorted(d.name for d in replayed.drops)
    for d in replayed.drops:
        assert recorded[d.name]["round"] == d.round and recorded[d.name]["lost_to"] == d.lost_to
    # Every point not trained was skipped for a reason: dropped, or the race ended.
    points = view.stage_points(race_stage).points or {}
    untrained = set(points) - set(counts)
    assert untrained <= view.race_skipped(race_stage, points)
    assert replayed.ended


@pytest.mark.slow
def test_a_run_whose_configuration_is_dropped_stops_at_its_next_epoch_boundary(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if another worker's look had dropped learning rate 1e-7 while this worker
    trains one of its seeds: the run stops after its first epoch, is recorded as pruned
    "stopped by the race at epoch 1" (not failed) and is never restarted."""
    import optuna

    from segtune.study.claims import ClaimBoard
    from segtune.study.race import Race

    monkeypatch.setattr(
        Race, "is_dropped", lambda self, params: params.get("optim.learning_rate") == 1e-7
    )
    spec = _race_spec(tmp_path, demo_data)
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    trials = optuna.load_study(study_name="race:race", storage=sqlite_url(study)).get_trials()
    stopped = [t for t in trials if t.params.get("optim.learning_rate") == 1e-7]
    assert stopped and {t.state.name for t in stopped} == {"PRUNED"}
    assert {t.user_attrs["stopped_by"] for t in stopped} == {"stopped by the race at epoch 1"}
    rows = ClaimBoard(sqlite_url(study), "race", create=False).states("race")
    assert {rows[t.user_attrs["point"]].reason for t in stopped} == {
        "stopped by the race at epoch 1"
    }
    # Resuming restarts none of them.
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    again = optuna.load_study(study_name="race:race", storage=sqlite_url(study)).get_trials()
    assert len(again) == len(trials)
