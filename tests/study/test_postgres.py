"""3 workers sharing one study on a real PostgreSQL server started by the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from segtune.cli.main import main
from tests.study.helpers import finished_per_point, trial_states, write_spec

pytestmark = pytest.mark.slow  # trains several runs (skip with -m "not slow")


@pytest.mark.postgres
def test_three_workers_on_postgres_finish_each_point_once(
    postgres_url: str, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = {"loss.bce_weight": [0.2, 0.5, 0.8], "loss.pos_weight": [1, 10]}
    spec = write_spec(tmp_path / "s.yaml", demo_data, "pg", grid)
    study = tmp_path / "study"
    assert (
        main(["sweep", str(spec), "--dir", str(study), "--storage", postgres_url, "--workers", "3"])
        == 0
    )
    counts = finished_per_point(postgres_url, "pg")
    assert len(counts) == 6 and set(counts.values()) == {1}
    assert trial_states(postgres_url, "pg") == {"COMPLETE": 6}
    assert "duplicates: 0" in capsys.readouterr().out
    assert not (study / "study.db").exists()
