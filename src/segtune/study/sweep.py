"""Running a study on Optuna: stages in order, every point exactly once, resumable.

Each stage is one Optuna study in the storage. Which worker runs which point is decided
by :mod:`segtune.study.claims`, not by Optuna's samplers, so a point ends with exactly
one finished trial however many workers run and however often they die. Each point has
one run folder (:mod:`segtune.study.folders`) that survives its trials: a point taken
over from a dead worker continues from the last epoch checkpoint, and a run that had
finished before its worker died is recorded without training again.

A point's life, and what a worker that claims it next finds at each boundary:

    claim → trial created (params set atomically) → claim knows the trial
          → train (epoch checkpoints) → summary written → tell → claim completed

- a COMPLETE/PRUNED trial of the point: the study was told; complete the claim.
- a RUNNING trial of the point: its worker is dead (we hold the claim); mark it FAIL.
- a finished run in the point's folder with the point's fingerprint: tell from it.
- an interrupted run with a checkpoint: resume it; a failed one: keep it as an attempt.
"""

from __future__ import annotations

import errno
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from segtune.core.config import RunConfig
from segtune.core.errors import SegtuneError
from segtune.core.faults import fault_point
from segtune.core.records import RunRecord
from segtune.data.subsets import Subsets, resolve_subsets
from segtune.study.attrs import TrialAttrs
from segtune.study.claims import Claim, Heartbeat, PointIdentity, worker_id
from segtune.study.folders import PointFolder, point_folder_name
from segtune.study.identity import fingerprint, run_identity
from segtune.study.spec import ParamValue, Range, Stage, StudySpec
from segtune.study.view import StagePoints, StudyView, point_key, stage_distributions

if TYPE_CHECKING:
    from segtune.study.race import Race

log = logging.getLogger("segtune.sweep")
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EPERM}

__all__ = ["StagePoints", "StudyEnvironmentError", "StudyRunner", "point_key"]


class StudyEnvironmentError(SegtuneError):
    """The machine, not the point, failed (full disk, read-only or forbidden folder):
    the worker stops and the point keeps its attempts."""


class ClaimLost(SegtuneError):
    """Another worker took this worker's point over (it was paused past grace_s)."""


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


@dataclass(frozen=True)
class Outcome:
    """How one point ended in this worker: its state and the line printed for it."""

    state: str  # complete | pruned | failed | interrupted
    line: str


class StudyRunner(StudyView):
    """One worker of a study (a sweep with ``--workers N`` starts N of them)."""

    def __init__(
        self,
        spec: StudySpec,
        study_dir: Path,
        storage_url: str | None = None,
        device: str | None = None,
        progress: bool = True,
        poll_s: float = 2.0,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(spec, study_dir, storage_url, create=True, overrides=overrides)
        self.device = device
        self.progress = progress
        self.poll_s = poll_s
        self.owner = worker_id()
        self.say_points = True  # a line per settled point on stderr (off: quiet)

    # --- running -----------------------------------------------------------------------
    def _check_device(self) -> None:
        """A device missing on this worker's machine stops the worker before it claims a
        point (the points keep their attempts; a login node can still prepare a study)."""
        import socket

        from segtune.core.runtime import resolve_device

        name = self.device or self.spec.run_config({}).runtime.device
        try:
            resolve_device(name)
        except SegtuneError as exc:
            raise SegtuneError(
                f"worker on {socket.gethostname()}: {exc}; no point was claimed"
            ) from exc

    def run(self, on_run_done: Callable[[], None] | None = None) -> None:
        """Work through every stage until each point is settled (done or out of retries)."""
        self.check_unchanged()
        self.record_spec()
        self._check_device()
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
                    continue
                if self.stage_finished(stage):
                    self.fail_orphan_trials(stage)
                    break
                time.sleep(self.poll_s)  # others are running the remaining points

    def _claim_next(self, stage: Stage, points: dict[str, dict[str, ParamValue]]) -> Claim | None:
        states = self.board.states(stage.name)
        skipped = self.race_skipped(stage, points) if stage.race is not None else set()
        for key in self.run_order(stage, points):
            if key in skipped:
                continue
            row = states.get(key)
            if row is not None and (
                self._point_settled(row)
                or (row.state == "running" and not self.board.is_stale(row))
            ):
                continue
            claim = self.board.try_claim(stage.name, key, self.owner, self.spec.max_retries)
            if claim is not None:
                fault_point("claimed")
                return claim
        return None

    def _run_point(self, stage: Stage, claim: Claim, params: dict[str, ParamValue]) -> None:
        """Settle one claimed point: finish what a dead worker left, or train it."""
        sampler: optuna.samplers.BaseSampler = FixedSampler(params)
        if stage.tpe is not None:
            slot = int(claim.point.split("-")[1])
            sampler = optuna.samplers.TPESampler(
                seed=self.spec.data.seed * 7919 + slot + 97 * claim.attempts
            )
        study = self._load_stage(stage, sampler)
        mine = [
            t for t in study.get_trials(deepcopy=False) if TrialAttrs.of(t).point == claim.point
        ]
        told = next((t for t in mine if t.state in (TrialState.COMPLETE, TrialState.PRUNED)), None)
        if told is not None:  # killed after tell, before the claim was completed
            state = "complete" if told.state == TrialState.COMPLETE else "pruned"
            self.board.finish(claim, state)
            self._say(stage, claim, f"{state} (recorded by trial {told.number})")
            return
        for t in mine:  # we hold the claim, so a RUNNING trial's worker is dead
            if t.state == TrialState.RUNNING:
                self._fail_trial(t, "worker_died")
        folder = PointFolder(
            self.dir / "runs" / stage.name / point_folder_name(claim.point, params)
        )
        folder.check_study(self.spec.name)
        if stage.tpe is not None:
            params = dict((folder.info() or {}).get("params") or {})  # a slot's earlier draw
        if params:
            config, ident = self._identity(stage, claim, params)
            if self._settled_without_training(stage, study, claim, params, folder, ident):
                return
        trial = self._new_trial(study, stage, claim, params, folder.path)
        fault_point("asked")
        if not params:
            assert stage.tpe is not None
            params = {k: _suggest(trial, k, r) for k, r in stage.tpe.ranges.items()}
            config, ident = self._identity(stage, claim, params)
        fault_point("params_set")
        self.board.set_trial(claim, trial.number)
        self.board.record_identity(ident)
        attempt = folder.prepare(ident.fingerprint)
        folder.write_info(claim.point, params, ident.fingerprint, self.spec.name)
        outcome = self._train(
            stage, study, trial, claim, config, folder, attempt.resume, params=params
        )
        self._say(stage, claim, outcome.line, trial.number)

    def _identity(
        self, stage: Stage, claim: Claim, params: dict[str, ParamValue]
    ) -> tuple[RunConfig, PointIdentity]:
        config = self.run_config(params)
        identity = run_identity(config, self.data_fingerprint())
        return config, PointIdentity(
            stage.name, claim.point, dict(params), identity, fingerprint(identity)
        )

    def _settled_without_training(
        self,
        stage: Stage,
        study: optuna.Study,
        claim: Claim,
        params: dict[str, ParamValue],
        folder: PointFolder,
        ident: PointIdentity,
    ) -> bool:
        """Record a run that already exists instead of training it again: this point's
        own finished run (its worker died before telling the study), or a completed run
        of the same identity in any stage (a refined grid holds its source's best points)."""
        summary = folder.finished(ident.fingerprint)
        if summary is not None:
            value = summary.value(self.spec.objective.metric)
            state = self._tell_recorded(study, stage, claim, params, folder.path, summary, value)
            self._say(stage, claim, f"{state}, recorded from its finished run (not retrained)")
            return True
        same = self.board.completed_with(ident.fingerprint)
        if same is None or (same.stage, same.point) == (stage.name, claim.point):
            return False
        source = self._told_trial(same.stage, same.point)
        if source is None:
            return False
        self.board.record_identity(ident)
        was = TrialAttrs.of(source)
        attrs = TrialAttrs(
            point=claim.point,
            run_dir=was.run_dir,
            worker=self.owner,
            reused_from=f"{same.stage}:{source.number}",
            flag=was.flag,
            values={k: v for k, v in was.values.items() if k.startswith("val/")},
        )
        trial = optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            value=source.value,
            params=params,
            distributions=self._distributions(study, stage, params),
            user_attrs=attrs.items(),
            intermediate_values=dict(source.intermediate_values),
        )
        study.add_trial(trial)
        fault_point("told")
        self.board.finish(claim, "complete", f"reused {same.stage}:{source.number}")
        self._say(stage, claim, f"reused the identical run {same.stage} trial {source.number}")
        return True

    def _tell_recorded(
        self,
        study: optuna.Study,
        stage: Stage,
        claim: Claim,
        params: dict[str, ParamValue],
        run_dir: Path,
        summary: RunRecord,
        value: float | None,
    ) -> str:
        completed = summary.status == "completed" and value is not None
        state = TrialState.COMPLETE if completed else TrialState.PRUNED
        history = {
            int(epoch): v
            for epoch, v in _objective_history(run_dir, self.spec.objective.metric).items()
        }
        trial = optuna.trial.create_trial(
            state=state,
            value=value if completed else None,
            params=params,
            distributions=self._distributions(study, stage, params),
            user_attrs=self._trial_attrs(claim, run_dir, summary).items(),
            intermediate_values=history,
        )
        study.add_trial(trial)
        fault_point("told")
        name = "complete" if completed else "pruned"
        self.board.finish(claim, name)
        return name

    def _new_trial(
        self,
        study: optuna.Study,
        stage: Stage,
        claim: Claim,
        params: dict[str, ParamValue],
        folder: Path,
    ) -> optuna.Trial:
        """Create the point's RUNNING trial with its parameters and owner in one write, so
        a kill can never leave a trial that no later worker recognises as this point's."""
        template = FrozenTrial(
            number=-1,
            state=TrialState.RUNNING,
            value=None,
            values=None,
            datetime_start=None,
            datetime_complete=None,
            params=dict(params),
            distributions=self._distributions(study, stage, params) if params else {},
            user_attrs=self._trial_attrs(claim, folder).items(),
            system_attrs={},
            intermediate_values={},
            trial_id=-1,
        )
        trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
        return optuna.Trial(study, trial_id)

    def _trial_attrs(
        self, claim: Claim, run_dir: Path, record: RunRecord | None = None
    ) -> TrialAttrs:
        """A trial's attributes: its point, run folder, worker and attempt, and with the
        run's ``record`` its values."""
        measured = metric_attrs(record, self.spec.objective.metric) if record else TrialAttrs()
        return replace(
            measured,
            point=claim.point,
            run_dir=str(run_dir.relative_to(self.dir)),
            worker=self.owner,
            attempt=claim.attempts,
        )

    def _distributions(
        self, study: optuna.Study, stage: Stage, params: dict[str, ParamValue]
    ) -> dict[str, BaseDistribution]:
        """The distributions of a point's parameters: those the stage's trials already
        use (a grid whose values were narrowed since keeps its recorded ones: Optuna
        refuses two distributions of one parameter), else the stage's."""
        dists = stage_distributions(stage, None if stage.tpe is not None else self.stage_grid)
        for trial in study.get_trials(deepcopy=False)[:1]:
            dists.update(trial.distributions)
        for key, value in params.items():  # a value outside a range (an older spec)
            dist = dists.get(key)
            if dist is None or not _contains(dist, value):
                dists[key] = CategoricalDistribution([value])
        return {k: dists[k] for k in params}

    def _train(
        self,
        stage: Stage,
        study: optuna.Study,
        trial: optuna.Trial,
        claim: Claim,
        config: RunConfig,
        folder: PointFolder,
        resume: bool,
        params: dict[str, ParamValue] | None = None,
    ) -> Outcome:
        from segtune.engine.train import RunAbandoned, StudyContext, train_run

        config = self._local(config)
        metric = self.spec.objective.metric
        report = _pruning_reporter(trial, folder.path, metric, config.optim.epochs, resume)
        stopped: list[str] = []  # why the race stopped this run, when it did
        if stage.race is not None and params:
            report = _race_stopper(report, self.race(stage), params, stopped, config.optim.epochs)
        heartbeat = Heartbeat(self.board, claim, self.spec.heartbeat.interval_s)

        def guard() -> None:
            if heartbeat.lost.is_set() or not self.board.owns(claim):
                raise RunAbandoned(f"point {claim.point} was taken over by another worker")

        try:
            with heartbeat:
                summary = train_run(
                    config,
                    folder.path,
                    subsets=self.subsets(),
                    reporter=report,
                    progress=self.progress,
                    resume=resume,
                    guard=guard,
                    study=StudyContext(self.spec.name, self.dir, f"{stage.name}#{trial.number}"),
                )
        except RunAbandoned as exc:
            self._fail_trial(study._storage.get_trial(trial._trial_id), "claim_lost")
            raise ClaimLost(
                f"{exc} after this worker missed heartbeats for over "
                f"{self.spec.heartbeat.grace_s:g} s (heartbeat.grace_s); stopping"
            ) from exc
        except KeyboardInterrupt:
            study.tell(trial, state=TrialState.FAIL)
            self.board.release(claim)
            raise
        except OSError as exc:
            if exc.errno not in ENVIRONMENT_ERRNOS:
                return self._failed(study, trial, claim, folder, f"{type(exc).__name__}: {exc}")
            _set_attrs(trial, TrialAttrs.failed("environment", f"environment: {exc.strerror}"))
            study.tell(trial, state=TrialState.FAIL)
            self.board.release(claim, reason=f"environment: {exc.strerror}")
            where = exc.filename or folder.path
            raise StudyEnvironmentError(
                f"{where}: {exc.strerror} (errno {errno.errorcode.get(exc.errno or 0, '?')}); "
                "the point was given back, fix this and run the same command again"
            ) from exc
        except Exception as exc:
            return self._failed(study, trial, claim, folder, f"{type(exc).__name__}: {exc}")
        fault_point("summary_written")
        return self._tell_run(study, trial, claim, folder, summary, resume, *stopped[:1])

    def _tell_run(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        claim: Claim,
        folder: PointFolder,
        summary: RunRecord,
        resume: bool,
        pruned_by: str | None = None,
    ) -> Outcome:
        """Tell the study how the point's run ended and settle its claim (``pruned_by``:
        why a run that was stopped early was, e.g. "stopped by the race at epoch 2")."""
        metric = self.spec.objective.metric
        status = summary.status
        value = summary.value(metric)
        shown = f"{metric} {value:.4f}" if value is not None else "no value"
        seconds = summary.timings.total_s
        line = f"{status}, {shown} ({seconds:.1f} s)" + (" [resumed]" if resume else "")
        if status == "completed" and value is not None:
            _set_attrs(trial, metric_attrs(summary, metric))
            study.tell(trial, value)
            fault_point("told")
            self._finish(claim, "complete")
            return Outcome("complete", line)
        if status == "pruned":
            if pruned_by is not None:
                trial.set_user_attr("stopped_by", pruned_by)
                line = f"{pruned_by} ({seconds:.1f} s)"
            study.tell(trial, state=TrialState.PRUNED)
            fault_point("told")
            self._finish(claim, "pruned", pruned_by)
            return Outcome("pruned", line)
        reason = summary.failure.reason if summary.failure else f"run ended {status}"
        return self._failed(study, trial, claim, folder, reason, line)

    def _finish(self, claim: Claim, state: str, reason: str | None = None) -> None:
        if not self.board.finish(claim, state, reason):
            raise ClaimLost(
                f"point {claim.point} was taken over by another worker while this one "
                f"finished it (paused past heartbeat.grace_s {self.spec.heartbeat.grace_s:g} s)"
            )

    def _failed(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        claim: Claim,
        folder: PointFolder,
        reason: str,
        line: str | None = None,
    ) -> Outcome:
        _set_attrs(trial, TrialAttrs.failed("run", reason))
        study.tell(trial, state=TrialState.FAIL)
        self._finish(claim, "failed", reason)
        log.error("run %s failed: %s", folder.path, reason)
        return Outcome("failed", line or f"failed: {reason}")

    def _say(self, stage: Stage, claim: Claim, text: str, trial: int | None = None) -> None:
        if not self.say_points:
            return
        which = f"trial {trial} " if trial is not None else ""
        print(f"[{stage.name}] {which}{claim.point}: {text}", file=sys.stderr, flush=True)

    def _local(self, config: RunConfig) -> RunConfig:
        """Where this worker runs the config: its device (the decoded-picture cache is
        ``data.cache_dir``, else host-local, never inside the shared study folder)."""
        overrides: dict[str, Any] = {}
        if self.device is not None:
            overrides["runtime"] = config.runtime.model_copy(update={"device": self.device})
        return config.model_copy(update=overrides)

    def subsets(self) -> Subsets:
        if self._subsets is None:
            from segtune.study.storage import recorded_subsets

            self._subsets = recorded_subsets(
                self.dir, lambda: resolve_subsets(self.spec.run_config({}).data)
            )
        return self._subsets


SHOWN_METRICS = ("precision", "recall", "f1", "iou", "ap", "best_f1", "best_threshold")


def _pruning_reporter(
    trial: optuna.Trial, run_dir: Path, metric: str, epochs: int, resume: bool
) -> Callable[[int, dict[str, float]], None]:
    """The run's epoch reporter: each epoch's objective to the trial, and a stop
    (RunPruned) when the study's pruner says so. A resumed run's pruner sees the epochs the
    interrupted attempt ran before the epoch it resumes at (metrics.csv may hold one more,
    not checkpointed: skipped)."""
    from segtune.engine.train import RunPruned

    earlier = _objective_history(run_dir, metric) if resume else {}

    def report(epoch: int, values: dict[str, float]) -> None:
        for done in sorted(e for e in earlier if e < epoch):
            trial.report(earlier.pop(done), done)
        earlier.clear()
        value = values.get(metric)
        if value is None or math.isnan(value):
            return
        trial.report(value, epoch)
        # A run at its last epoch has done its work: keep it rather than prune it.
        if epoch < epochs and trial.should_prune():
            raise RunPruned(f"pruned at epoch {epoch}")

    return report


def _race_stopper(
    report: Callable[[int, dict[str, float]], None],
    race: Race,
    params: dict[str, ParamValue],
    stopped: list[str],
    epochs: int,
) -> Callable[[int, dict[str, float]], None]:
    """The reporter, plus a stop at the epoch boundary once the race has dropped this
    run's configuration (recorded as pruned, "stopped by the race at epoch N", in
    ``stopped``, the claim's reason and the trial's ``stopped_by``)."""
    from segtune.engine.train import RunPruned

    def report_or_stop(epoch: int, values: dict[str, float]) -> None:
        report(epoch, values)
        # A run at its last epoch has done its work: keep it (another seed of a dropped
        # configuration; the race never looks at it again).
        if epoch < epochs and race.is_dropped(params):
            stopped.append(f"stopped by the race at epoch {epoch}")
            raise RunPruned(stopped[-1])

    return report_or_stop


def _contains(dist: BaseDistribution, value: ParamValue) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except ValueError:  # a categorical distribution without this value
        return False


def _set_attrs(trial: optuna.Trial, attrs: TrialAttrs) -> None:
    for key, value in attrs.items().items():
        trial.set_user_attr(key, value)


def metric_attrs(record: RunRecord, objective: str) -> TrialAttrs:
    """The run's final validation metrics (split-named), its flag and the objective's
    bootstrap interval: trial user attributes, so that optuna-dashboard and
    ``study.trials_dataframe()`` show more than the objective."""
    from segtune.core.intervals import interval, picture_samples
    from segtune.core.metrics import degenerate

    values: dict[str, Any] = {
        f"val/{n}": record.kept[f"val/{n}"] for n in SHOWN_METRICS if f"val/{n}" in record.kept
    }
    name = objective.split("/", 1)[1]
    if record.pictures and objective.startswith("val/") and name in SHOWN_METRICS[:4]:
        ci = interval(picture_samples(record.pictures)[name])
        values[f"{objective} 95% interval"] = [ci.low, ci.high]
    return TrialAttrs(flag=degenerate(record.kept), values=values)


def _objective_history(run_dir: Path, metric: str) -> dict[int, float]:
    """``epoch → value`` of the objective from a run folder's ``metrics.csv``."""
    from segtune.core.records import RunFolder

    rows = RunFolder(run_dir).read_metrics()
    return {int(r["epoch"]): float(r[metric]) for r in rows if metric in r}


def _suggest(trial: optuna.Trial, key: str, spec: Range | list[ParamValue]) -> ParamValue:
    if isinstance(spec, Range):
        if spec.step is not None:
            return trial.suggest_float(key, spec.low, spec.high, step=spec.step)
        return trial.suggest_float(key, spec.low, spec.high, log=spec.log)
    value: ParamValue = trial.suggest_categorical(key, list(spec))  # type: ignore[assignment]
    return value
