"""Does a parameter matter? Its effect on the objective against run-to-run noise.

For each parameter a grid-like stage searches (the seed excepted): the mean objective of
the stage's completed runs at each of its values (the other parameters and seeds
averaged), and the *spread*, the largest minus the smallest of those means.

All runs are scored on the same validation pictures, so picture-sample noise is judged
*paired*: the difference between the highest and the lowest value's mean is recomputed
in every bootstrap resample of the pictures (the same resamples for every run), and a
parameter matters only when that difference's 95 % interval excludes 0 and, when
configurations were trained with several seeds, the spread also exceeds the median
range over seeds (training noise). Without per-picture records the *noise floor* is the
larger of the median width of the runs' intervals and the median range over seeds. With
one seed per point the report says that training noise is unmeasured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segtune.analysis.summary import RunSummary, StudySummary
from segtune.core.intervals import Interval, interval
from segtune.study.spec import SEED_KEY, ParamValue


@dataclass(frozen=True)
class NoiseFloor:
    pictures: float | None  # median width of the objective's 95 % picture-sample interval
    seeds: float | None  # median range of the objective over seeds

    @property
    def value(self) -> float | None:
        known = [v for v in (self.pictures, self.seeds) if v is not None]
        return max(known) if known else None

    def words(self) -> str:
        parts = []
        if self.pictures is not None:
            parts.append(f"picture-sample interval width {self.pictures:.3g}")
        if self.seeds is not None:
            parts.append(f"range over seeds {self.seeds:.3g}")
        else:
            parts.append("training noise unmeasured (one seed per point)")
        return ", ".join(parts)


@dataclass(frozen=True)
class Effect:
    stage: str
    key: str
    means: list[tuple[ParamValue, float, int]]  # value, mean objective, runs
    spread: float
    floor: NoiseFloor
    paired: Interval | None = None  # of (best value's mean − worst value's mean)

    @property
    def detectable(self) -> bool | None:
        """Whether the effect stands out of the measured noise (None: none measured)."""
        if self.paired is not None:
            above_seeds = self.floor.seeds is None or self.spread > self.floor.seeds
            return not self.paired.contains(0.0) and above_seeds
        floor = self.floor.value
        return None if floor is None else self.spread > floor

    def verdict(self) -> str:
        ordered = sorted(self.means, key=lambda m: m[1])  # tied means: still two values
        lo, hi = ordered[0], ordered[-1]
        moves = (
            f"the mean moves by {self.spread:.3g} (from {lo[1]:.3g} at {lo[0]} to "
            f"{hi[1]:.3g} at {hi[0]})"
        )
        seeds = (
            f", range over seeds {self.floor.seeds:.3g}"
            if self.floor.seeds is not None
            else " (picture-sample noise only: training noise unmeasured, one seed per point)"
        )
        if self.paired is not None:
            why = f"paired 95 % interval of that difference {self.paired}{seeds}"
            if self.detectable:
                return f"matters: {moves}; {why}"
            return f"no effect detectable above run-to-run noise: {moves}; {why}"
        floor = self.floor.value
        if floor is None:
            return f"spread {self.spread:.3g}; cannot be judged: no noise was measured"
        if self.spread > floor:
            return f"matters: {moves}, above the noise floor {floor:.3g}"
        return (
            f"no effect detectable above run-to-run noise: spread {self.spread:.3g} ≤ "
            f"noise floor {floor:.3g}"
        )


def noise_floor(s: StudySummary) -> NoiseFloor:
    widths = [
        r.intervals[s.objective].high - r.intervals[s.objective].low
        for r in s.ranked()
        if s.objective in r.intervals
    ]
    spreads = s.seed_spreads()
    return NoiseFloor(
        float(np.median(widths)) if widths else None,
        float(np.median(spreads)) if spreads else None,
    )


def _paired(
    s: StudySummary, groups: dict[str, tuple[ParamValue, list[RunSummary]]]
) -> Interval | None:
    """Interval of (highest − lowest value's mean) over the same picture resamples."""
    if not all(s.objective in r.samples for _, rs in groups.values() for r in rs):
        return None
    means = {
        k: np.mean([r.samples[s.objective] for r in rs], axis=0) for k, (_, rs) in groups.items()
    }
    point = {k: float(np.mean([r.final[s.objective] for r in rs])) for k, (_, rs) in groups.items()}
    ordered = sorted(point, key=point.__getitem__)  # tied means: still two groups
    lo, hi = ordered[0], ordered[-1]
    return interval(means[hi] - means[lo])


def _group(value: ParamValue) -> str:
    """Values that are equal fall in one group: 10 (a grid's) and 10.0 (a refine's)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return repr(float(value)) if number else repr(value)


def parameter_effects(s: StudySummary) -> list[Effect]:
    """One :class:`Effect` per stage and searched parameter with at least two values."""
    floor = noise_floor(s)
    effects = []
    for stage, grid in s.searched.items():
        runs = s.stage_runs(stage)
        for key in grid:
            if key == SEED_KEY:
                continue
            groups: dict[str, tuple[ParamValue, list[RunSummary]]] = {}
            for r in runs:
                if key in r.params:
                    groups.setdefault(_group(r.params[key]), (r.params[key], []))[1].append(r)
            if len(groups) < 2:
                continue
            means = [
                (v, float(np.mean([r.final[s.objective] for r in rs])), len(rs))
                for v, rs in groups.values()
            ]
            spread = max(m for _, m, _ in means) - min(m for _, m, _ in means)
            effects.append(Effect(stage, key, means, spread, floor, _paired(s, groups)))
    return effects
