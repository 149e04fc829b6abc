"""A trial's user attributes as one typed record, and studies recorded before it."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from segtune.study.attrs import TrialAttrs


def _trial(attrs: dict[str, object]) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=attrs)


def test_attributes_written_are_read_back() -> None:
    attrs = TrialAttrs(
        point="p1",
        run_dir="runs/grid/p1",
        worker="host:1",
        attempt=2,
        flag="all black",
        values={"val/f1": 0.5},
    )
    assert TrialAttrs.of(_trial(attrs.items())) == attrs
    assert "failure" not in attrs.items()  # unset attributes are not written


def test_a_failed_attempt_says_how_it_failed() -> None:
    died = TrialAttrs.of(_trial(TrialAttrs.failed("worker_died").items()))
    assert died.failure_kind == "worker_died" and died.superseded
    assert died.failure == "worker died"  # the words optuna-dashboard shows
    failed = TrialAttrs.of(_trial(TrialAttrs.failed("run", "diverged").items()))
    assert failed.failure == "diverged" and not failed.superseded


def test_trials_recorded_before_failure_kinds_are_read_by_their_words() -> None:
    assert TrialAttrs.of(_trial({"failure": "claim lost"})).failure_kind == "claim_lost"
    old_run = TrialAttrs.of(_trial({"failure": "ValueError: worker died"}))
    assert old_run.failure_kind == "run" and not old_run.superseded
