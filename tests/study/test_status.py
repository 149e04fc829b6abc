"""The study's ETA in `segtune status`: the same estimate as the live study line."""

from __future__ import annotations

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
