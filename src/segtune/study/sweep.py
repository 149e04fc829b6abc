"""Running a study on Optuna: stages in order, every point exactly once, resumable.

Each stage is one Optuna study in the storage; each trial is one run whose records
live in ``<study dir>/runs/<stage>/<trial>-<params>``. Which worker runs which point is
decided by :mod:`segtune.study.claims`, not by Optuna's samplers, so a grid point ends
with exactly one finished trial however many workers run and however often they die.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from segtune.errors import ConfigError, SegtuneError
from segtune.records import write_json
from segtune.study.claims import Claim, ClaimBoard, Heartbeat, worker_id
from segtune.study.refine import refine_points
from segtune.study.spec import ParamValue, Range, Stage, StudySpec, grid_points
from segtune.study.storage import (
    default_storage,
    open_storage,
    recorded_subsets,
    stage_study_name,
    write_study_info,
)
from segtune.train import Subsets, resolve_subsets, train_run

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger("segtune.sweep")
DONE_STATES = ("complete", "pruned")


def point_key(params: dict[str, ParamValue]) -> str:
    """Canonical, exact text of a configuration (used as the claim key)."""
    return ",".join(f"{k}={v!r}" for k, v in sorted(params.items()))


def slug(params: dict[str, ParamValue]) -> str:
    """Short folder-safe name of a configuration: ``bce_weight-0.2_pos_weight-5``."""
    parts = [f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in params.items()]
    text = "_".join(parts) or "run"
    return "".join(c if c.isalnum() or c in "-_.+" else "-" for c in text)[:120]


class FixedSampler(optuna.samplers.BaseSampler):
    """Returns the parameters of the claimed point (a grid point is chosen by the claim)."""

    def __init__(self, params: dict[str, ParamValue]) -> None:
        self.params = params

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        return self.params[name]


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """segtune's pruners; settings come from bench/sweep_cost.py (see BENCHMARKS.md)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


@dataclass
class StagePoints:
    """The points of a stage: ``key → params`` (None while an earlier stage runs)."""

    stage: Stage
    points: dict[str, dict[str, ParamValue]] | None


class StudyRunner:
    """One worker of a study (a sweep with ``--workers N`` starts N of them)."""

    def __init__(
        self,
        spec: StudySpec,
        study_dir: Path,
        storage_url: str | None = None,
        device: str | None = None,
        progress: bool = True,
        poll_s: float = 2.0,
    ) -> None:
        self.spec = spec
        self.dir = study_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = storage_url or default_storage(study_dir)
        self.storage = open_storage(self.url)
        self.board = ClaimBoard(self.url, spec.name, grace_s=spec.heartbeat.grace_s)
        self.device = device
        self.progress = progress
        self.poll_s = poll_s
        self.owner = worker_id()
        for stage in spec.stages:
            optuna.create_study(
                storage=self.storage,
                load_if_exists=True,
                study_name=stage_study_name(spec.name, stage.name),
                direction=spec.objective.direction,
            )
        write_study_info(
            self.dir,
            {
                "name": spec.name,
                "storage": None if self.url == default_storage(study_dir) else self.url,
                "spec": spec.model_dump(mode="json", by_alias=True),
            },
        )
        self._subsets: Subsets | None = None

    # --- what to run -------------------------------------------------------------------
    def subsets(self) -> Subsets:
        if self._subsets is None:
            self._subsets = recorded_subsets(self.dir, resolve_subsets(self.spec.run_config({})))
        return self._subsets

    def trials(self, stage: str) -> list[FrozenTrial]:
        study = optuna.load_study(
            study_name=stage_study_name(self.spec.name, stage), storage=self.storage
        )
        return study.get_trials(deepcopy=False)

    def stage_points(self, stage: Stage) -> StagePoints:
        """Grid points, sampler slots, or (once its source is done) a refined grid."""
        if stage.grid is not None:
            return StagePoints(stage, {point_key(p): p for p in grid_points(stage.grid)})
        if stage.tpe is not None:
            return StagePoints(stage, {f"slot-{i:04d}": {} for i in range(stage.tpe.n_trials)})
        assert stage.refine is not None
        saved = self.dir / "stages" / f"{stage.name}.json"
        if saved.exists():
            points = json.loads(saved.read_text())["points"]
            return StagePoints(stage, {point_key(p): p for p in points})
        source = self.spec.stage(stage.refine.from_)
        if not self.stage_finished(source):
            return StagePoints(stage, None)
        best = [t.params for t in self.ranked(source.name)[: stage.refine.top_k]]
        if not best:
            raise SegtuneError(
                f"stage {stage.name}: cannot refine, stage {source.name} has no completed run"
            )
        grid = self.stage_grid(source)
        points = refine_points(grid, best, dict(stage.refine.fixed))
        write_json(saved, {"from": source.name, "top_k": stage.refine.top_k, "points": points})
        return StagePoints(stage, {point_key(p): p for p in points})

    def stage_grid(self, stage: Stage) -> dict[str, list[ParamValue]]:
        """Per-key sorted values of a grid-like stage (used to find neighbours)."""
        if stage.grid is not None:
            return dict(stage.grid)
        sp = self.stage_points(stage)
        if sp.points is None or stage.tpe is not None:
            raise ConfigError(f"stage {stage.name}: refine.from must name a grid or refine stage")
        grid: dict[str, list[ParamValue]] = {}
        for params in sp.points.values():
            for k, v in params.items():
                if v not in grid.setdefault(k, []):
                    grid[k].append(v)
        return grid

    def ranked(self, stage: str) -> list[FrozenTrial]:
        """COMPLETE trials of a stage, best first by the objective (ties: by point)."""
        done = [
            t for t in self.trials(stage) if t.state == TrialState.COMPLETE and t.value is not None
        ]
        sign = -1.0 if self.spec.objective.direction == "maximize" else 1.0
        return sorted(done, key=lambda t: (sign * float(t.value or 0.0), point_key(t.params)))

    def stage_finished(self, stage: Stage) -> bool:
        sp = self.stage_points(stage)
        if sp.points is None:
            return False
        states = self.board.states(stage.name)
        return all(self._point_settled(states.get(k)) for k in sp.points)

    def _point_settled(self, row: Any) -> bool:
        if row is None:
            return False
        if row.state in DONE_STATES:
            return True
        return row.state == "failed" and row.attempts > self.spec.max_retries

    # --- running -----------------------------------------------------------------------
    def run(self, on_run_done: Callable[[], None] | None = None) -> None:
        """Work through every stage until each point is settled (done or out of retries)."""
        for stage in self.spec.stages:
            while True:
                sp = self.stage_points(stage)
                if sp.points is None:
                    time.sleep(self.poll_s)  # the source stage is still running elsewhere
                    continue
                claim = self._claim_next(stage, sp.points)
                if claim is not None:
                    self._run_point(stage, claim, sp.points[claim.point])
                    if on_run_done is not None:
                        on_run_done()
                    _fault_injection()
                    continue
                if self.stage_finished(stage):
                    break
                time.sleep(self.poll_s)  # others are running the remaining points

    def run_order(self, stage: Stage, points: dict[str, dict[str, ParamValue]]) -> list[str]:
        """The order points are claimed in: a permutation seeded by study, stage and seed,
        the same in every worker. A shuffled order shows a pruner (and anyone reading
        partial results) a representative sample of the grid early, instead of one corner.
        """
        keys = list(points)
        random.Random(f"{self.spec.name}:{stage.name}:{self.spec.data.seed}").shuffle(keys)
        return keys

    def _claim_next(self, stage: Stage, points: dict[str, dict[str, ParamValue]]) -> Claim | None:
        states = self.board.states(stage.name)
        for key in self.run_order(stage, points):
            row = states.get(key)
            if row is not None and (
                self._point_settled(row)
                or (row.state == "running" and not self.board.is_stale(row))
            ):
                continue
            claim = self.board.try_claim(stage.name, key, self.owner, self.spec.max_retries)
            if claim is not None:
                return claim
        return None

    def _run_point(self, stage: Stage, claim: Claim, params: dict[str, ParamValue]) -> None:
        study_name = stage_study_name(self.spec.name, stage.name)
        if claim.stale_trial is not None:
            self._fail_stale_trial(study_name, claim.stale_trial)
        sampler: optuna.samplers.BaseSampler = FixedSampler(params)
        if stage.tpe is not None:
            slot = int(claim.point.split("-")[1])
            sampler = optuna.samplers.TPESampler(
                seed=self.spec.data.seed * 7919 + slot + 97 * claim.attempts
            )
        study = optuna.load_study(
            study_name=study_name,
            storage=self.storage,
            sampler=sampler,
            pruner=make_pruner(self.spec.pruner),
        )
        trial = study.ask()
        if stage.tpe is not None:
            params = {k: _suggest(trial, k, r) for k, r in stage.tpe.ranges.items()}
        else:
            grid = self.stage_grid(stage) if stage.grid is None else stage.grid
            for key in params:
                trial.suggest_categorical(key, list(grid[key]))
        self.board.set_trial(claim, trial.number)
        run_dir = self.dir / "runs" / stage.name / f"{trial.number:04d}-{slug(params)}"
        trial.set_user_attr("point", claim.point)
        trial.set_user_attr("run_dir", str(run_dir.relative_to(self.dir)))
        trial.set_user_attr("worker", self.owner)
        config = self.spec.run_config(params)
        overrides: dict[str, Any] = {}
        if config.data.cache_dir is None:
            overrides["data"] = config.data.model_copy(update={"cache_dir": self.dir / "cache"})
        if self.device is not None:
            overrides["runtime"] = config.runtime.model_copy(update={"device": self.device})
        config = config.model_copy(update=overrides)
        metric = self.spec.objective.metric

        def report(epoch: int, values: dict[str, float]) -> None:
            value = values.get(metric)
            if value is None or math.isnan(value):
                return
            trial.report(value, epoch)
            # A run at its last epoch has done its work: keep it rather than prune it.
            if epoch < config.optim.epochs and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        try:
            with Heartbeat(self.board, claim, self.spec.heartbeat.interval_s):
                summary = train_run(
                    config, run_dir, subsets=self.subsets(), reporter=report, progress=self.progress
                )
        except KeyboardInterrupt:
            study.tell(trial, state=TrialState.FAIL)
            self.board.release(claim)
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("failure", reason)
            study.tell(trial, state=TrialState.FAIL)
            self.board.finish(claim, "failed", reason)
            log.error("run %s failed: %s", run_dir, reason)
            return
        status = summary["status"]
        value = summary["final"].get(metric)
        shown = f"{metric} {value:.4f}" if value is not None else "no value"
        seconds = sum(summary["timings"].values())
        print(
            f"[{stage.name}] trial {trial.number} {claim.point}: {status}, {shown} "
            f"({seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        if status == "completed" and metric in summary["final"]:
            study.tell(trial, summary["final"][metric])
            self.board.finish(claim, "complete")
        elif status == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
            self.board.finish(claim, "pruned")
        else:
            reason = (summary.get("failure") or {}).get("reason", f"run ended {status}")
            trial.set_user_attr("failure", reason)
            study.tell(trial, state=TrialState.FAIL)
            self.board.finish(claim, "failed", reason)

    def _fail_stale_trial(self, study_name: str, number: int) -> None:
        """Mark a dead worker's RUNNING trial FAIL so it never counts as finished."""
        study = optuna.load_study(study_name=study_name, storage=self.storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number == number:
                try:
                    self.storage.set_trial_user_attr(t._trial_id, "failure", "worker died")
                    self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                except Exception as exc:  # already finished by someone else
                    log.debug("stale trial %s: %s", number, exc)


def _fault_injection() -> None:
    """Tests only: ``SEGTUNE_FAULT_KILL_AFTER_RUNS=N`` makes this worker SIGKILL itself
    after its N-th run, i.e. between two runs (see tests/study/test_sweep.py)."""
    limit = os.environ.get("SEGTUNE_FAULT_KILL_AFTER_RUNS")
    if limit is None:
        return
    global _RUNS_DONE
    _RUNS_DONE += 1
    if int(limit) <= _RUNS_DONE:
        os.kill(os.getpid(), signal.SIGKILL)


_RUNS_DONE = 0


def _suggest(trial: optuna.Trial, key: str, spec: Range | list[ParamValue]) -> ParamValue:
    if isinstance(spec, Range):
        if spec.step is not None:
            return trial.suggest_float(key, spec.low, spec.high, step=spec.step)
        return trial.suggest_float(key, spec.low, spec.high, log=spec.log)
    value: ParamValue = trial.suggest_categorical(key, list(spec))  # type: ignore[assignment]
    return value
