"""A study as recorded: its spec, storage, claims, stage points and run identities.

:class:`StudyView` only reads (``segtune status`` and ``segtune report`` use it with
``create=False`` and change no file and no table); the worker,
:class:`segtune.study.sweep.StudyRunner`, builds on it with ``create=True``.
"""

from __future__ import annotations

import json
import logging
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from segtune.core.config import RunConfig
from segtune.core.errors import ConfigError, SegtuneError
from segtune.core.metrics import ranking
from segtune.core.records import write_json
from segtune.data.subsets import Subsets, data_fingerprint, picture_stats
from segtune.study.attrs import FailureKind, TrialAttrs
from segtune.study.claims import ClaimBoard, PointIdentity, PointState
from segtune.study.identity import (
    changed_keys,
    changed_pictures,
    changed_stems,
    fingerprint,
    run_identity,
)
from segtune.study.refine import refine_points
from segtune.study.spec import (
    SEED_KEY,
    ParamValue,
    Range,
    Stage,
    StudySpec,
    grid_points,
    point_key,
)

if TYPE_CHECKING:
    from segtune.study.race import Race
from segtune.study.storage import (
    accept_fixed_pictures,
    default_storage,
    init_lock,
    open_storage,
    read_study_info,
    read_subsets,
    recorded_data_fingerprint,
    recorded_stats,
    retry_on_race,
    stage_study_name,
    without_password,
    write_study_info,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger("segtune.study")
DONE_STATES = ("complete", "pruned")


@dataclass
class StagePoints:
    """The points of a stage: ``key → params`` (None while an earlier stage runs)."""

    stage: Stage
    points: dict[str, dict[str, ParamValue]] | None


def _distinct_configs(ranked: list[dict[str, ParamValue]], k: int) -> list[dict[str, ParamValue]]:
    """The first ``k`` distinct configurations (parameters without the seed), best first."""
    out: list[dict[str, ParamValue]] = []
    for params in ranked:
        config = {key: v for key, v in params.items() if key != SEED_KEY}
        if config not in out:
            out.append(config)
    return out[:k]


def stage_distributions(stage: Stage, grid_of: Any = None) -> dict[str, BaseDistribution]:
    """Optuna distributions of a stage's searched keys (``grid_of(stage)`` gives the grid
    of a refine stage)."""
    if stage.grid is not None and grid_of is None:
        return {k: CategoricalDistribution(list(v)) for k, v in stage.grid.items()}
    if stage.tpe is not None:
        out: dict[str, BaseDistribution] = {}
        for key, rng in stage.tpe.ranges.items():
            if isinstance(rng, Range):
                out[key] = FloatDistribution(rng.low, rng.high, log=rng.log, step=rng.step)
            else:
                out[key] = CategoricalDistribution(list(rng))
        return out
    grid = grid_of(stage) if grid_of is not None else {}
    return {k: CategoricalDistribution(list(v)) for k, v in grid.items()}


def _pictures_used(run_dir: Path) -> set[str]:
    """The stems of the pictures a run's record lists (training and validation)."""
    try:
        record = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return set()
    return {*record.get("train_pictures", []), *record.get("val_pictures", [])}


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """segtune's pruners; settings come from bench/sweep_cost.py (see BENCHMARKS.md)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


class StudyView:
    """Reads a study: spec, storage, claims and run folders. With ``create=True`` (a
    worker) it also creates the study's tables and writes ``study.json``."""

    def __init__(
        self,
        spec: StudySpec,
        study_dir: Path,
        storage_url: str | None = None,
        *,
        create: bool = False,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.dir = study_dir
        self.url = storage_url or default_storage(study_dir)
        self.writable = create
        self._subsets: Subsets | None = None
        self._races: dict[str, Race] = {}
        self._data_fp: str | None = None
        self._overrides = overrides
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)
            with init_lock(self.url, spec.name):
                self.storage = retry_on_race(lambda: open_storage(self.url))
                self.board = retry_on_race(
                    lambda: ClaimBoard(self.url, spec.name, grace_s=spec.heartbeat.grace_s)
                )
                for stage in spec.stages:
                    study = retry_on_race(
                        lambda stage=stage: optuna.create_study(  # type: ignore[misc]
                            storage=self.storage,
                            load_if_exists=True,
                            study_name=stage_study_name(spec.name, stage.name),
                            direction=spec.objective.direction,
                        )
                    )
                    if study.metric_names != [spec.objective.metric]:
                        with warnings.catch_warnings():  # experimental in Optuna
                            warnings.simplefilter("ignore")
                            study.set_metric_names([spec.objective.metric])
        else:
            self.storage = open_storage(self.url)
            self.board = ClaimBoard(
                self.url, spec.name, grace_s=spec.heartbeat.grace_s, create=False
            )

    # --- the spec's runs -----------------------------------------------------------------
    def run_config(self, params: dict[str, ParamValue]) -> RunConfig:
        return self.spec.run_config(params)

    def subsets(self) -> Subsets:
        if self._subsets is None:
            recorded = read_subsets(self.dir)
            if recorded is None:
                raise SegtuneError(f"{self.dir}: the study has no recorded subsets yet")
            self._subsets = recorded
        return self._subsets

    def data_fingerprint(self) -> str:
        """Fingerprint of the study's pictures as recorded (checked against the files by
        :meth:`check_unchanged` before any work)."""
        if self._data_fp is None:
            kept = recorded_data_fingerprint(self.dir)
            stats = recorded_stats(self.dir) or picture_stats(self.subsets())
            self._data_fp = kept or data_fingerprint(stats)
        return self._data_fp

    # --- stages --------------------------------------------------------------------------
    def trials(self, stage: str) -> list[FrozenTrial]:
        try:
            study = optuna.load_study(
                study_name=stage_study_name(self.spec.name, stage), storage=self.storage
            )
        except KeyError:
            return []
        return study.get_trials(deepcopy=False)

    def _load_stage(self, stage: Stage, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
        return optuna.load_study(
            study_name=stage_study_name(self.spec.name, stage.name),
            storage=self.storage,
            sampler=sampler,
            pruner=make_pruner(self.spec.pruner),
        )

    def stage_points(self, stage: Stage) -> StagePoints:
        """Grid points, sampler slots, or (once its source is done) a refined grid or the
        repeats of the source's best configurations."""
        if stage.grid is not None:
            points = self.spec.with_seeds(grid_points(stage.grid))
            return StagePoints(stage, {point_key(p): p for p in points})
        if stage.tpe is not None:
            return StagePoints(stage, {f"slot-{i:04d}": {} for i in range(stage.tpe.n_trials)})
        saved = self.dir / "stages" / f"{stage.name}.json"
        if saved.exists():
            points = json.loads(saved.read_text())["points"]
            return StagePoints(stage, {point_key(p): p for p in points})
        assert stage.source is not None
        source = self.spec.stage(stage.source)
        if not self.stage_finished(source):
            return StagePoints(stage, None)
        ranked = self.ranked(source.name)
        if not ranked:
            raise SegtuneError(
                f"stage {stage.name}: stage {source.name} has no completed run to start from"
            )
        if stage.refine is not None:
            best = _distinct_configs([t.params for t in ranked], stage.refine.top_k)
            grid = {k: v for k, v in self.stage_grid(source).items() if k != SEED_KEY}
            points = self.spec.with_seeds(refine_points(grid, best, dict(stage.refine.fixed)))
            record = {"from": source.name, "top_k": stage.refine.top_k, "points": points}
        elif stage.repeat is not None:
            best = _distinct_configs([t.params for t in ranked], stage.repeat.top_k)
            seeds = self._new_seeds(ranked, stage.repeat.seeds)
            points = [{**config, SEED_KEY: seed} for config in best for seed in seeds]
            record = {"from": source.name, "top_k": stage.repeat.top_k, "points": points}
        else:  # a race: every configuration of the source, each seed one round
            assert stage.race is not None
            configs = _distinct_configs([t.params for t in ranked], len(ranked))
            seeds = self._new_seeds(ranked, stage.race.max_seeds - 1)
            points = [{**config, SEED_KEY: seed} for seed in seeds for config in configs]
            record = {"from": source.name, "max_seeds": stage.race.max_seeds, "points": points}
        if self.writable:
            write_json(saved, record)
        return StagePoints(stage, {point_key(p): p for p in points})

    def _new_seeds(self, ranked: list[FrozenTrial], count: int) -> range:
        """``count`` seeds no run of the source used."""
        used = [int(t.params.get(SEED_KEY, self.spec.base_seed())) for t in ranked]
        first = max([*used, self.spec.base_seed()]) + 1
        return range(first, first + count)

    def stage_grid(self, stage: Stage) -> dict[str, list[ParamValue]]:
        """Per-key values of a grid-like stage (used to find neighbours)."""
        if stage.grid is not None:
            seeds = self.spec.with_seeds([{}])  # [{}], or one {seed} per repeat
            return {**stage.grid, **({SEED_KEY: [p[SEED_KEY] for p in seeds]} if seeds[0] else {})}
        sp = self.stage_points(stage)
        if sp.points is None or stage.tpe is not None:
            raise ConfigError(
                f"stage {stage.name}: refine.from must name a grid, refine or repeat stage"
            )
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
        direction = self.spec.objective.direction
        return sorted(
            done, key=lambda t: (ranking(float(t.value or 0.0), direction), point_key(t.params))
        )

    def stage_finished(self, stage: Stage) -> bool:
        sp = self.stage_points(stage)
        if sp.points is None:
            return False
        states = self.board.states(stage.name)
        skipped = self.race_skipped(stage, sp.points) if stage.race is not None else set()
        return all(k in skipped or self._point_settled(states.get(k)) for k in sp.points)

    def race(self, stage: Stage) -> Race:
        """The race of a race stage, as its finished runs decide it (drops recorded): one
        per stage, so each finished run's records are read once."""
        from segtune.study.race import Race

        if stage.name not in self._races:
            self._races[stage.name] = Race(self, stage)
        return self._races[stage.name]

    def race_skipped(self, stage: Stage, points: dict[str, dict[str, ParamValue]]) -> set[str]:
        """Points of a race no worker should start: their configuration was dropped, or
        the race has ended (one left, max_seeds reached, or budget_runs spent)."""
        return self.race(stage).skipped(points)

    def _point_settled(self, row: PointState | None) -> bool:
        if row is None:
            return False
        if row.state in DONE_STATES:
            return True
        return row.state == "failed" and row.attempts > self.spec.max_retries

    def run_order(self, stage: Stage, points: dict[str, dict[str, ParamValue]]) -> list[str]:
        """The order points are claimed in: a permutation seeded by study, stage and seed,
        the same in every worker. A shuffled order shows a pruner (and anyone reading
        partial results) a representative sample of the grid early, instead of one corner.
        """
        keys = list(points)
        random.Random(f"{self.spec.name}:{stage.name}:{self.spec.data.seed}").shuffle(keys)
        if stage.race is not None:  # the fewest seeds first: a round before the next
            order = sorted({int(p.get(SEED_KEY, 0)) for p in points.values()})
            keys.sort(key=lambda k: order.index(int(points[k].get(SEED_KEY, 0))))
        return keys

    def _told_trial(self, stage: str, point: str) -> FrozenTrial | None:
        for t in self.trials(stage):
            if TrialAttrs.of(t).point == point and t.state == TrialState.COMPLETE:
                return t
        return None

    def live_claims(self, stage: str) -> dict[str, PointState]:
        """Points of a stage whose worker is alive and running them."""
        return {
            k: row
            for k, row in self.board.states(stage).items()
            if row.state == "running" and not self.board.is_stale(row)
        }

    # --- spec changes --------------------------------------------------------------------
    def recorded_changes(self, retry_failed: bool = False) -> list[str]:
        """Recorded points whose identity the current spec (or data) would change.
        ``retry_failed``: pictures changed since the study started are accepted when
        failed points named each of them and no completed run used one (a fixed
        picture)."""
        problems = []
        stats = recorded_stats(self.dir)
        if stats is not None:
            now = picture_stats(self.subsets())
            moved = changed_pictures(stats, now)
            fixed = retry_failed and moved and self._only_failures_read(stats, now)
            if fixed and self.writable:
                data_fp = self.data_fingerprint()
                accept_fixed_pictures(self.dir, now, data_fp)
            elif moved:
                problems.append("pictures changed since the study started: " + ", ".join(moved))
                return problems
        stages = {s.name for s in self.spec.stages}
        grids = {  # a value no longer in a grid: that run is simply not reported
            s.name: {point_key(p) for p in grid_points(s.grid)}
            for s in self.spec.stages
            if s.grid is not None
        }
        data_fp = self.data_fingerprint()
        for ident in self.board.identities():
            if ident.stage not in stages or ident.point not in grids.get(
                ident.stage, {ident.point}
            ):
                continue
            now = run_identity(self.run_config(ident.params), data_fp)
            if fingerprint(now) != ident.fingerprint:
                problems.append(
                    f"stage {ident.stage} point {ident.point or '(defaults)'}: "
                    + changed_keys(ident.identity, now)
                )
        return problems

    def _only_failures_read(
        self, recorded: dict[str, list[dict[str, Any]]], now: dict[str, list[dict[str, Any]]]
    ) -> bool:
        """Whether every changed picture is named by a recorded failure of this study and
        no completed run lists it among its pictures."""
        subsets = self.subsets()
        files = {
            (split, p.stem): [str(f) for f in (p.image, p.mask, p.roi) if f is not None]
            for split, pictures in (("train", subsets.train), ("val", subsets.val))
            for p in pictures
        }
        failures, used = [], set()
        for stage in self.spec.stages:
            for t in self.trials(stage.name):
                attrs = TrialAttrs.of(t)
                if t.state == TrialState.FAIL and attrs.failure:
                    failures.append(attrs.failure)
                if t.state == TrialState.COMPLETE and attrs.run_dir:
                    used |= _pictures_used(self.dir / attrs.run_dir)
        for split, stem, _ in changed_stems(recorded, now):
            named = any(f in text for f in files.get((split, stem), []) for text in failures)
            if not named or stem in used:
                return False
        return True

    def backfill_identities(self) -> int:
        """Fingerprint the runs of a study written before identities existed, from each
        run folder's ``config.yaml``; returns how many were recorded."""
        if self.board.identities():
            return 0
        from segtune.core.records import RunFolder

        count = 0
        data_fp = self.data_fingerprint()
        for stage in self.spec.stages:
            claims = self.board.states(stage.name)
            for t in self.trials(stage.name):
                attrs = TrialAttrs.of(t)
                row = claims.get(attrs.point) if attrs.point else None
                if row is None or row.trial_number != t.number or attrs.run_dir is None:
                    continue
                records = RunFolder(self.dir / attrs.run_dir)
                if not records.config_path.exists():
                    continue
                identity = run_identity(records.read_config(), data_fp)
                self.board.record_identity(
                    PointIdentity(
                        stage.name,
                        str(attrs.point),
                        dict(t.params),
                        identity,
                        fingerprint(identity),
                    )
                )
                count += 1
        return count

    def record_spec(self) -> None:
        """Write ``study.json`` (the spec, the storage URL without its password, and any
        command-line overrides); called once :meth:`check_unchanged` has passed."""
        local = self.url == default_storage(self.dir)
        info: dict[str, Any] = {
            "name": self.spec.name,
            "storage": None if local else without_password(self.url),
            "spec": self.spec.model_dump(mode="json", by_alias=True),
        }
        if self._overrides:
            info["overrides"] = self._overrides
        write_study_info(self.dir, info)

    def stage_setting_changes(self) -> list[str]:
        """Settings of a refine or repeat stage that has saved its points (its source
        finished) and that the spec now gives otherwise: ``stage s: repeat.seeds 2 → 3``.
        Its points were chosen by the recorded settings: the new ones would be ignored."""
        try:
            recorded = read_study_info(self.dir)["spec"]
        except (SegtuneError, KeyError):
            return []
        before = {s.get("name"): s for s in recorded.get("stages", [])}
        changes = []
        for stage in self.spec.stages:
            old_grid = before.get(stage.name, {}).get("grid")
            if stage.grid is not None and old_grid and self.trials(stage.name):
                for key, values in stage.grid.items():
                    added = [v for v in values if v not in old_grid.get(key, [])]
                    if added:
                        changes.append(
                            f"stage {stage.name}: grid {key} {old_grid.get(key)} → {values}"
                        )
            if not (self.dir / "stages" / f"{stage.name}.json").exists():
                continue
            for kind in ("refine", "repeat", "race"):
                now = getattr(stage, kind)
                if now is None:
                    continue
                old = before.get(stage.name, {}).get(kind) or {}
                new = now.model_dump(mode="json", by_alias=True)
                changes += [
                    f"stage {stage.name}: {kind}.{key} {old.get(key)} → {new.get(key)}"
                    for key in sorted(set(old) | set(new))
                    if old.get(key) != new.get(key)
                ]
        return changes

    def check_unchanged(self, retry_failed: bool = False) -> None:
        """Stop before any work if the spec or the pictures would change recorded runs, or
        a started stage's settings changed (``retry_failed``: see
        :meth:`recorded_changes`)."""
        changed = self.stage_setting_changes()
        if changed:
            raise ConfigError(
                f"study {self.spec.name} ({self.dir}): {changed[0]}, but the stage has "
                "started with the recorded settings; run it in a new --dir, or add a new stage"
            )
        self.subsets()
        if self.writable:
            self.backfill_identities()
        problems = self.recorded_changes(retry_failed)
        if problems:
            more = f" (and {len(problems) - 1} more recorded points)" if len(problems) > 1 else ""
            raise ConfigError(
                f"study {self.spec.name} ({self.dir}): the spec or data would change recorded "
                f"runs: {problems[0]}{more}; run it in a new --dir, or put new settings in a "
                "new stage"
            )

    # --- trials --------------------------------------------------------------------------
    def _fail_trial(self, trial: FrozenTrial, kind: FailureKind) -> None:
        try:
            for key, value in TrialAttrs.failed(kind).items().items():
                self.storage.set_trial_user_attr(trial._trial_id, key, value)
            self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except Exception as exc:  # already finished by someone else
            log.debug("trial %s: %s", trial.number, exc)

    def fail_orphan_trials(self, stage: Stage) -> int:
        """Mark FAIL every RUNNING trial of ``stage`` that no live claim owns (its worker
        died between creating it and recording it in the claim)."""
        live = self.live_claims(stage.name)
        count = 0
        for t in self.trials(stage.name):
            if t.state != TrialState.RUNNING:
                continue
            attrs = TrialAttrs.of(t)
            row = live.get(attrs.point or "")
            if row is not None and row.owner == attrs.worker:
                continue
            self._fail_trial(t, "worker_died")
            count += 1
        return count
