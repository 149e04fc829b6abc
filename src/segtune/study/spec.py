"""The study spec (YAML): data, fixed run parameters, stages, objective.

Searched parameters are dotted run-config keys (``loss.bce_weight``). Unknown keys and
out-of-range values are errors naming the key; every stage's configurations are also
validated as run configs before any run starts.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segtune.core.config import (
    DataConfig,
    RunConfig,
    build_run_config,
    format_validation_error,
    load_yaml,
    merge,
    set_dotted,
)
from segtune.core.errors import ConfigError
from segtune.core.metrics import METRIC_WORDS

ParamValue = float | int | str | bool
# Every key a run records per epoch (a study may rank by any of them); no test split,
# and the loss exists for the training split only.
OBJECTIVE_KEYS = tuple(
    [f"val/{m}" for m in METRIC_WORDS if m not in ("loss", "lr")]
    + [f"train/{m}" for m in METRIC_WORDS if m != "lr"]
)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Range(_Frozen):
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.high <= self.low:
            raise ValueError(f"high ({self.high}) must be greater than low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("log ranges need low > 0")
        return self


class TpeStage(_Frozen):
    n_trials: int = Field(ge=1)
    ranges: dict[str, Range | list[ParamValue]]


class RefineSpec(_Frozen):
    from_: str = Field(alias="from")
    top_k: int = Field(3, ge=1)
    fixed: dict[str, ParamValue] = Field(default_factory=dict)


class RepeatSpec(_Frozen):
    """Re-run the ``top_k`` best configurations of an earlier stage with ``seeds`` new
    seeds (never a seed already run): the cheap way to measure training noise."""

    from_: str = Field(alias="from")
    top_k: int = Field(3, ge=1)
    seeds: int = Field(3, ge=1)


class RaceSpec(_Frozen):
    """Race the configurations of an earlier stage (segtune.core.racing): its runs are
    round 1; new seeds go only to configurations still racing, and one is dropped once
    it is worse than another with ``confidence`` (over the whole race)."""

    from_: str = Field(alias="from")
    max_seeds: int = Field(5, ge=2, le=50)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    budget_runs: int | None = Field(None, ge=1)  # runs beyond round 1, at most


def point_key(params: dict[str, ParamValue]) -> str:
    """Canonical, exact text of a configuration (used as the claim key)."""
    return ",".join(f"{k}={v!r}" for k, v in sorted(params.items()))


SEED_KEY = "runtime.seed"
STAGE_KINDS = ("grid", "refine", "tpe", "repeat", "race")


class Stage(_Frozen):
    """One stage: exactly one of ``grid``, ``refine``, ``tpe``, ``repeat`` or ``race``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    grid: dict[str, list[ParamValue]] | None = None
    refine: RefineSpec | None = None
    tpe: TpeStage | None = None
    repeat: RepeatSpec | None = None
    race: RaceSpec | None = None

    @property
    def source(self) -> str | None:
        """The earlier stage a refine, repeat or race stage derives its points from."""
        derived = self.refine or self.repeat or self.race
        return derived.from_ if derived is not None else None

    @property
    def kind(self) -> str:
        return next(k for k in STAGE_KINDS if getattr(self, k) is not None)

    @model_validator(mode="after")
    def _one_kind(self) -> Stage:
        kinds = [k for k in STAGE_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"stage {self.name!r} needs exactly one of grid, refine, tpe, repeat, race"
            )
        if self.grid is not None:
            if not self.grid:
                raise ValueError(f"stage {self.name!r}: grid needs at least one key")
            for key, values in self.grid.items():
                for value in values:
                    if isinstance(value, float) and not math.isfinite(value):
                        raise ValueError(f"grid.{key}: {value} is not a finite number")
                if not values:
                    raise ValueError(f"grid.{key}: needs at least one value")
                if len(set(map(repr, values))) != len(values):
                    raise ValueError(f"grid.{key}: repeated values {values}")
        return self


class Objective(_Frozen):
    metric: str = "val/recall"
    direction: Literal["maximize", "minimize"] = "maximize"

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in OBJECTIVE_KEYS:
            raise ValueError(
                f"{v!r} is not a metric a run records; one of {', '.join(OBJECTIVE_KEYS)}"
            )
        return v


class Heartbeat(_Frozen):
    interval_s: float = Field(10.0, gt=0)
    grace_s: float = Field(120.0, gt=0)


class StudySpec(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    data: DataConfig
    fixed: dict[str, Any] = Field(default_factory=dict)
    stages: list[Stage] = Field(min_length=1)
    objective: Objective = Objective()
    top_k: int = Field(5, ge=1)
    preview_pictures: int = Field(5, ge=0)
    pruner: Literal["none", "median", "successive_halving"] = "none"
    max_retries: int = Field(1, ge=0)
    heartbeat: Heartbeat = Heartbeat()
    # Every point of the grid and refine stages is trained with this many seeds
    # (runtime.seed, runtime.seed + 1, …), each exactly once like any point.
    repeats: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _stage_refs(self) -> StudySpec:
        seen: list[str] = []
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"stages: duplicate stage name {stage.name!r}")
            kind = stage.kind
            if stage.source is not None and stage.source not in seen:
                raise ValueError(
                    f"stages.{stage.name}.{kind}.from: {stage.source!r} is not an earlier stage"
                )
            if self.repeats > 1 and SEED_KEY in (stage.grid or {}):
                raise ValueError(
                    f"stages.{stage.name}.grid: {SEED_KEY} is searched and repeats is "
                    f"{self.repeats}; use one or the other"
                )
            seen.append(stage.name)
        return self

    def base_seed(self) -> int:
        return self.run_config({}).runtime.seed

    def with_seeds(self, points: list[dict[str, ParamValue]]) -> list[dict[str, ParamValue]]:
        """Each point once per seed of ``repeats`` (unchanged when ``repeats`` is 1, so a
        study's point names do not change)."""
        if self.repeats == 1:
            return points
        base = self.base_seed()
        return [{**p, SEED_KEY: base + i} for p in points for i in range(self.repeats)]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ConfigError(f"no stage named {name!r}")

    def searched_keys(self) -> set[str]:
        """Every key some stage searches (a refine stage searches its source's keys)."""
        keys: set[str] = set()
        for stage in self.stages:
            if stage.grid is not None:
                keys.update(stage.grid)
            elif stage.tpe is not None:
                keys.update(stage.tpe.ranges)
            elif stage.refine is not None:
                keys.update(stage.refine.fixed)
            if stage.repeat is not None or stage.race is not None or self.repeats > 1:
                keys.add(SEED_KEY)
        return keys

    def base_tree(self) -> dict[str, Any]:
        """Run-config tree shared by every run: fixed parameters, data and previews."""
        tree = merge({}, self.fixed)
        tree["data"] = merge(
            self.data.model_dump(mode="json", exclude_none=True), tree.get("data", {})
        )
        set_dotted(tree, "eval.preview_pictures", self.preview_pictures)
        return tree

    def run_config(self, params: dict[str, ParamValue]) -> RunConfig:
        """The run config of one configuration (fixed parameters + searched ones)."""
        tree = self.base_tree()
        for key, value in params.items():
            set_dotted(tree, key, value)
        key_list = ", ".join(f"{k}={v}" for k, v in params.items())
        where = f"study {self.name}" + (f" ({key_list})" if key_list else "")
        return build_run_config(tree, where)


def grid_points(grid: dict[str, list[ParamValue]]) -> list[dict[str, ParamValue]]:
    """Every combination of a grid, in a stable order (last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


# Top-level keys only a study spec has (a run config's are its sections: data, pages, …).
STUDY_KEYS = {"name", "stages", "fixed", "objective", "top_k", "repeats", "pruner"}


def is_study_tree(tree: dict[str, Any]) -> bool:
    return bool(STUDY_KEYS & set(tree))


def run_config_as_spec(tree: dict[str, Any], name: str) -> dict[str, Any]:
    """A run config as a one-run study (``segtune plan RUN.yaml``): its data section is
    the study's data, the rest its fixed settings, one point at its own seed."""
    from segtune.core.config import RuntimeConfig
    from segtune.core.metrics import direction_of

    fixed = merge({}, tree)
    data = fixed.pop("data", {})
    runtime = fixed.get("runtime") or {}
    seed = runtime.get("seed", RuntimeConfig().seed)
    evaluation = fixed.get("eval") or {}
    previews = evaluation.get("preview_pictures", 5)
    select = evaluation.get("select_key", "val/best_f1")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", name) or "run"
    return {
        "name": safe,
        "data": data,
        "fixed": fixed,
        "stages": [{"name": "run", "grid": {SEED_KEY: [seed]}}],
        "preview_pictures": previews,
        "objective": {"metric": select, "direction": direction_of(select)},
    }


def point_of(spec: StudySpec, point: str) -> dict[str, ParamValue]:
    """``--point grid:3``: the third point (from 1) of grid stage ``grid``, in the order
    the stage trains them."""
    stage_name, _, number = point.partition(":")
    try:
        stage = spec.stage(stage_name)
    except ConfigError:
        names = ", ".join(s.name for s in spec.stages if s.grid is not None)
        raise ConfigError(
            f"--point {point}: no grid stage {stage_name!r} (grids: {names})"
        ) from None
    if stage.grid is None:
        raise ConfigError(
            f"--point {point}: stage {stage_name} is a {stage.kind} stage; its points come "
            "from a study's runs: give the settings with --set KEY=VALUE"
        )
    points = grid_points(stage.grid)
    if not number.isdigit() or not 1 <= int(number) <= len(points):
        raise ConfigError(f"--point {point}: expected {stage_name}:N with N in 1..{len(points)}")
    return points[int(number) - 1]


def load_spec(
    path: Path, overrides: dict[str, Any] | None = None, *, run_config: bool = False
) -> StudySpec:
    """Load and fully validate a study spec; relative data paths resolve against it.
    ``run_config``: a run config is taken as a one-run study (:func:`run_config_as_spec`);
    otherwise one is refused in one line that says what to run instead."""
    tree = load_yaml(path)
    if not is_study_tree(tree):
        if not run_config:
            raise ConfigError(
                f"{path}: a run config (no name or stages), not a study spec: "
                f"`segtune train {path}` trains it, `segtune plan {path}` estimates it"
            )
        tree = run_config_as_spec(tree, path.stem)
    if overrides:
        tree = merge(tree, overrides)
    data = tree.get("data")
    if isinstance(data, dict):
        for key in ("train", "val", "cache_dir"):
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str((path.parent / data[key]).resolve())
    return build_spec(tree, str(path))


def build_spec(tree: dict[str, Any], source: str) -> StudySpec:
    try:
        spec = StudySpec.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{source}: ")) from exc
    # Validate every run config the spec can produce before anything starts.
    spec.run_config({})
    for stage in spec.stages:
        if stage.grid is not None:
            for point in grid_points(stage.grid):
                spec.run_config(point)
        elif stage.tpe is not None:
            for key, rng in stage.tpe.ranges.items():
                probe = rng.low if isinstance(rng, Range) else rng[0]
                spec.run_config({key: probe})
    return spec
