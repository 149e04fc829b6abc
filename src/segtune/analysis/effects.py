"""Does a parameter matter? Its effect on the objective against the noise floor.

For each parameter a grid-like stage searches (the seed excepted): the mean objective of
the stage's completed runs at each of its values (the other parameters and seeds
averaged), and the *spread*, the largest minus the smallest of those means. The *noise
floor* is what the study measured of run-to-run noise: the median width of the runs'
95 % picture-sample intervals of the objective and, when configurations were trained
with several seeds, the median range of the objective over seeds; the larger of the two.
A spread at or below the floor is reported as "no effect detectable above run-to-run
noise". With one seed per point the floor holds picture-sample noise only, and the
report says that training noise is unmeasured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segtune.analysis.summary import StudySummary
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

    @property
    def detectable(self) -> bool | None:
        """Whether the spread exceeds the noise floor (None: no noise was measured)."""
        floor = self.floor.value
        return None if floor is None else self.spread > floor

    def verdict(self) -> str:
        floor = self.floor.value
        if floor is None:
            return f"spread {self.spread:.3g}; cannot be judged: no noise was measured"
        if self.spread > floor:
            lo = min(self.means, key=lambda m: m[1])
            hi = max(self.means, key=lambda m: m[1])
            return (
                f"matters: the mean moves by {self.spread:.3g} (from {lo[1]:.3g} at "
                f"{lo[0]} to {hi[1]:.3g} at {hi[0]}), above the noise floor {floor:.3g}"
            )
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


def parameter_effects(s: StudySummary) -> list[Effect]:
    """One :class:`Effect` per stage and searched parameter with at least two values."""
    floor = noise_floor(s)
    effects = []
    for stage, grid in s.searched.items():
        runs = [r for r in s.ranked() if r.stage == stage]
        for key in grid:
            if key == SEED_KEY:
                continue
            groups: dict[str, tuple[ParamValue, list[float]]] = {}
            for r in runs:
                if key in r.params:
                    value = r.params[key]
                    groups.setdefault(repr(value), (value, []))[1].append(r.final[s.objective])
            if len(groups) < 2:
                continue
            means = [(v, float(np.mean(xs)), len(xs)) for v, xs in groups.values()]
            spread = max(m for _, m, _ in means) - min(m for _, m, _ in means)
            effects.append(Effect(stage, key, means, spread, floor))
    return effects
