"""The study's ETA in `segtune status`: the same estimate as the live study line."""

from __future__ import annotations

from pathlib import Path

import pytest

from segtune.study.monitor import RunningPoint
from segtune.study.status import StageStatus, StudyStatus


def _status(stage: StageStatus, points: list[RunningPoint] | None = None) -> StudyStatus:
    return StudyStatus([stage], None, "val/f1", 0.5, running_points=points or [])


def test_eta_counts_the_running_points_own_etas_and_a_mean_run_for_the_rest() -> None:
    stage = StageStatus("grid", total=6, done=2, running=2, run_seconds=[100.0, 140.0])
    point = RunningPoint("grid", "a", 2, 4, 5, 10, eta_s=30.0, elapsed_s=90.0, label="grid#3")
    status = _status(stage, [point])
    # 2 pending + 1 running point without a progress file, each a mean run (120 s), plus
    # the running point's own 30 s, over the 2 running workers.
    assert status.eta_seconds() == pytest.approx((30 + 3 * 120) / 2)
    lines = status.lines()
    assert "ETA: 3.2 min" in lines
    assert "running grid#3 (a): epoch 2/4 step 5/10, run ETA 30 s" in lines


def test_eta_is_done_when_nothing_is_left_and_unknown_before_any_run_finished() -> None:
    assert _status(StageStatus("grid", total=2, done=2, run_seconds=[5.0])).eta_seconds() == 0.0
    assert "ETA: done" in _status(StageStatus("grid", total=2, done=2)).lines()
    assert _status(StageStatus("grid", total=2)).eta_seconds() is None
    assert "ETA: unknown" in _status(StageStatus("grid", total=2)).lines()


def test_eta_counts_the_planned_runs_of_stages_still_to_come() -> None:
    """A refine stage whose points are not known yet counts its plan (an upper bound),
    in `status` and in the sweep's study line alike (both read expected_total)."""
    grid = StageStatus("grid", total=4, done=2, run_seconds=[60.0, 60.0])
    refine = StageStatus("refine", total=None)
    status = StudyStatus([grid, refine], None, "val/recall", 0.5, planned={"refine": 4})
    assert status.expected_total == 8
    assert status.eta_seconds() == pytest.approx((2 + 4) * 60.0)
    lines = status.lines()
    assert "stage refine: 0/≤4 done (0 pruned), 0 running, 0 failed, ? pending, 0 duplicates" in (
        lines
    )
    assert "ETA: 6.0 min (counting ≤4 planned runs of later stages)" in lines
    # Without the plan the refine stage would not count: 2 runs left, 2 min.
    assert _status(grid).eta_seconds() == pytest.approx(2 * 60.0)


def test_a_planned_refine_stage_counts_its_local_grid(demo_data: Path) -> None:
    """The demo's shape: a 2×2×2 grid, raced (8 configurations × up to 2 new seeds), and
    refined around its best with one key fixed: 2 values for each of the 2 free keys, 4
    runs (the demo ran exactly 4)."""
    import yaml

    from segtune.cli.demo import demo_spec_text
    from segtune.study.plan import stage_plans
    from segtune.study.spec import build_spec

    tree = yaml.safe_load(demo_spec_text())
    tree["data"] = {"train": str(demo_data / "train"), "val": str(demo_data / "val")}
    plans = {p.name: p.runs for p in stage_plans(build_spec(tree, "demo.yaml"))}
    assert plans == {"grid": 8, "race": 16, "refine": 4}
