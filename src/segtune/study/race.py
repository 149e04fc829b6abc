"""A race stage in a study: its contenders read from the finished runs, its drops
decided by :mod:`segtune.core.racing` and recorded in the study database.

Round 1 is the runs of the ``from`` stage; round r + 1 is each configuration's r-th new
seed (the stage's points, created when the source finishes: every configuration × the
``max_seeds − 1`` seeds the source did not use). Workers claim points round by round
(the fewest seeds first) and never start one whose configuration was dropped or after
the race ended; a run whose configuration is dropped while it trains stops at its next
epoch boundary and is recorded as pruned "stopped by the race" (not failed, never
restarted). Every worker recomputes the race from the finished runs after each run it
finishes (a pure function of those runs) and records new drops once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray
from optuna.trial import FrozenTrial, TrialState

from segtune.core.intervals import metric_samples, resample_weights
from segtune.core.metrics import metric_range
from segtune.core.racing import Contender, RaceState, round_intervals, run_race
from segtune.core.records import RunFolder
from segtune.study.attrs import TrialAttrs
from segtune.study.spec import SEED_KEY, ParamValue, Stage, point_key

if TYPE_CHECKING:
    from segtune.study.claims import ClaimBoard
    from segtune.study.spec import StudySpec


class RaceHost(Protocol):
    """What a race reads of its study (a :class:`segtune.study.view.StudyView`)."""

    spec: StudySpec
    dir: Path
    board: ClaimBoard
    writable: bool

    def trials(self, stage: str) -> list[FrozenTrial]: ...
    def stage_points(self, stage: Stage) -> Any: ...


def config_key(params: dict[str, ParamValue]) -> str:
    """A configuration's key: its point key without the seed, whole numbers as floats
    (a grid lists pos_weight 1, a run's config.yaml may hold 1.0: one configuration)."""
    return point_key(
        {
            k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in params.items()
            if k != SEED_KEY
        }
    )


@dataclass
class RaceRun:
    seed: int
    value: float
    label: str
    samples: NDArray[np.float64] | None


class Race:
    """The race of one race stage of a study, as its finished runs decide it."""

    def __init__(self, view: RaceHost, stage: Stage) -> None:
        assert stage.race is not None
        self.view, self.stage, self.spec = view, stage, stage.race
        self.metric = view.spec.objective.metric
        self._weights: NDArray[np.float64] | None = None
        # A finished run's records never change: its samples, read once per trial.
        self._read: dict[int, NDArray[np.float64] | None] = {}

    def runs(self) -> dict[str, list[RaceRun]]:
        """Finished runs per configuration (source and race stage), in seed order."""
        out: dict[str, list[RaceRun]] = {}
        for name in (self.spec.from_, self.stage.name):
            for t in self.view.trials(name):
                if t.state != TrialState.COMPLETE or t.value is None:
                    continue
                run = RaceRun(
                    int(t.params.get(SEED_KEY, self.view.spec.base_seed())),
                    float(t.value),
                    f"{name}#{t.number}",
                    self._samples(t),
                )
                out.setdefault(config_key(t.params), []).append(run)
        for runs in out.values():
            runs.sort(key=lambda r: r.seed)
        return out

    def _samples(self, t: FrozenTrial) -> NDArray[np.float64] | None:
        if t._trial_id not in self._read:
            self._read[t._trial_id] = self._read_samples(t)
        return self._read[t._trial_id]

    def _read_samples(self, t: FrozenTrial) -> NDArray[np.float64] | None:
        run_dir = TrialAttrs.of(t).run_dir
        if run_dir is None:
            return None
        folder = RunFolder(self.view.dir / str(run_dir))
        try:
            record = folder.read_record()
            hists = folder.read_picture_histograms()
        except (OSError, ValueError):
            return None
        if not record.pictures:
            return None
        if self._weights is None or self._weights.shape[1] != len(record.pictures):
            self._weights = resample_weights(len(record.pictures))
        histograms = (
            [] if hists is None else [_Hist(p, n) for p, n in zip(hists[1], hists[2], strict=True)]
        )
        return metric_samples(
            self.metric.split("/", 1)[1], record.pictures, histograms, self._weights
        )

    def contenders(self) -> list[Contender]:
        """Each configuration's runs as a contender: its source seed(s), then its race
        seeds up to the first one not finished yet (rounds are contiguous)."""
        points = self.view.stage_points(self.stage).points or {}
        race_seeds = sorted({int(p[SEED_KEY]) for p in points.values()})
        out = []
        for key, runs in self.runs().items():
            by_seed = {r.seed: r for r in runs}
            ordered = [r for r in runs if r.seed not in race_seeds][:1]  # round 1
            for seed in race_seeds:
                if seed not in by_seed:
                    break
                ordered.append(by_seed[seed])
            if not ordered:
                continue
            samples = [r.samples for r in ordered]
            stacked = None if any(s is None for s in samples) else np.stack(samples)  # type: ignore[arg-type]
            out.append(Contender(key, tuple(r.value for r in ordered), stacked))
        return sorted(out, key=lambda c: c.name)

    def state(self, record: bool = True) -> RaceState:
        """The race as the finished runs decide it; new drops recorded once."""
        contenders = self.contenders()
        state = run_race(
            contenders,
            self.spec.max_seeds,
            self.spec.confidence,
            self.view.spec.objective.direction,
            self.spec.budget_runs,
        )
        if record and self.view.writable and state.drops:
            known = self.view.board.drops(self.stage.name)
            runs = {c.name: len(c.values) for c in contenders}
            for d in state.drops:
                if d.name not in known:
                    self.view.board.record_drop(
                        self.stage.name,
                        d.name,
                        d.round,
                        {
                            "lost_to": d.lost_to,
                            "interval": [d.interval.low, d.interval.high],
                            "level": d.level,
                            "p": d.p,
                            "seeds_used": d.round,
                            "seeds_finished": runs.get(d.name),
                        },
                    )
        return state

    def skipped(self, points: dict[str, dict[str, ParamValue]]) -> set[str]:
        """Points not to start: their configuration was dropped, or the race ended."""
        state = self.state()
        settled = self.view.board.states(self.stage.name)
        out = set()
        for key, params in points.items():
            row = settled.get(key)
            if row is not None and row.state == "running":
                continue  # a worker holds it; it stops itself at its next epoch boundary
            if state.ended or state.dropped(config_key(params)) is not None:
                out.add(key)
        return out

    def is_dropped(self, params: dict[str, ParamValue]) -> bool:
        """Whether a running point's configuration has been dropped (recorded drops:
        cheap enough to ask every epoch)."""
        return config_key(params) in self.view.board.drops(self.stage.name)


@dataclass(frozen=True)
class _Hist:
    pos: NDArray[np.int64]
    neg: NDArray[np.int64]


def race_summary(view: RaceHost, stage: Stage) -> dict[str, Any]:
    """What the race recorded, for ``results.json`` and the report: per configuration its
    seeds and values, its drop (round, lost to, interval), and the survivors."""
    race = Race(view, stage)
    contenders = race.contenders()
    state = race.state(record=False)
    rounds = round_intervals(contenders, bounds=metric_range(view.spec.objective.metric))
    return {
        "stage": stage.name,
        "max_seeds": stage.race.max_seeds if stage.race else None,
        "confidence": stage.race.confidence if stage.race else None,
        "error_control": "Holm over every pair at each look; the error budget split evenly "
        "over the looks at rounds 2..max_seeds (Bonferroni over looks)",
        "survivors": state.survivors,
        "ended": state.ended,
        "configurations": [
            {
                "configuration": c.name,
                "values": list(c.values),
                "mean": float(np.mean(c.values)),
                "sd": float(np.std(c.values, ddof=1)) if len(c.values) > 1 else None,
                "rounds": [list(r) for r in rounds[c.name]],  # round, mean, 95 % low, high
                "dropped": None
                if (d := state.dropped(c.name)) is None
                else {
                    "round": d.round,
                    "lost_to": d.lost_to,
                    "interval": [d.interval.low, d.interval.high],
                    "level": d.level,
                    "p": d.p,
                },
            }
            for c in contenders
        ],
    }
