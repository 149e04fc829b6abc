"""What segtune writes on an Optuna trial, as one typed record.

A study's trials carry their point, run folder, worker and attempt, how they ended when
they failed, and the run's validation values (so ``optuna-dashboard`` and
``study.trials_dataframe()`` show more than the objective). :class:`TrialAttrs` reads
them (:meth:`TrialAttrs.of`) and writes them (:meth:`TrialAttrs.items`); nothing else
spells a user attribute's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from optuna.trial import FrozenTrial

# How a failed trial failed: its run failed; the machine refused (disk full, read-only:
# the point was given back); its worker died; or its claim was taken over by another
# worker. The last two are superseded by the point's next attempt.
FailureKind = Literal["run", "environment", "worker_died", "claim_lost"]
FAILURE_WORDS: dict[FailureKind, str] = {
    "run": "run failed",
    "environment": "environment",
    "worker_died": "worker died",
    "claim_lost": "claim lost",
}
_BY_WORDS = {words: kind for kind, words in FAILURE_WORDS.items()}
_NAMED = (
    "point",
    "run_dir",
    "worker",
    "attempt",
    "reused_from",
    "failure",
    "failure_kind",
    "flag",
)


@dataclass(frozen=True)
class TrialAttrs:
    point: str | None = None  # the point's claim key (grid: its parameters)
    run_dir: str | None = None  # relative to the study folder
    worker: str | None = None  # host:pid of the worker that created the trial
    attempt: int | None = None
    reused_from: str | None = None  # "stage:trial" of an identical run recorded instead
    failure: str | None = None  # in words: the run's reason, or the environment's
    failure_kind: FailureKind | None = None
    flag: str | None = None  # a degenerate run's flag ("all black", …)
    values: dict[str, Any] = field(default_factory=dict)  # val/* values, the interval

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialAttrs:
        a = trial.user_attrs
        kind = a.get("failure_kind")
        if kind is None and a.get("failure") is not None:
            # Studies recorded before failure_kind wrote the words alone.
            kind = _BY_WORDS.get(str(a["failure"]), "run")
        return cls(
            point=a.get("point"),
            run_dir=a.get("run_dir"),
            worker=a.get("worker"),
            attempt=a.get("attempt"),
            reused_from=a.get("reused_from"),
            failure=a.get("failure"),
            failure_kind=kind,
            flag=a.get("flag"),
            values={k: v for k, v in a.items() if k not in _NAMED},
        )

    @classmethod
    def failed(cls, kind: FailureKind, reason: str | None = None) -> TrialAttrs:
        """The attributes that mark a trial failed: ``reason`` or the kind's words."""
        return cls(failure=reason or FAILURE_WORDS[kind], failure_kind=kind)

    @property
    def superseded(self) -> bool:
        """A failed attempt whose point was tried again (its worker died, or lost it)."""
        return self.failure_kind in ("worker_died", "claim_lost")

    def items(self) -> dict[str, Any]:
        """The attributes to write (unset ones left out)."""
        named = {name: getattr(self, name) for name in _NAMED}
        return {**{k: v for k, v in named.items() if v is not None}, **self.values}
