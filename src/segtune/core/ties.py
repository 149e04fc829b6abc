"""The one tie rule: can configuration c be told apart from the best configuration b?

Every ranking of a study (the report, ``results.json``, ``segtune best``, a race) asks
this through :func:`compare`, so a "tied" flag never contradicts the interval printed
beside it.

Each configuration is a set of runs, one per seed, scored on the same validation
pictures. Two noise sources separate a measured difference from a real one:

* **picture sample** — which validation pictures happened to be drawn. The paired
  bootstrap (:mod:`segtune.core.intervals`) resamples the same pictures for every run; a
  configuration's resampled value is the mean over its seeds, and the difference
  ``mean_c − mean_b`` is taken resample by resample. Its central 95 % interval is the
  picture part.
* **training noise** — seed, batch order, thread count. With ``s_seed`` the standard
  deviation of one run around its configuration's mean, pooled over every
  configuration trained with at least two seeds (``dof`` degrees of freedom), the
  interval is widened on both sides by ``t · s_seed · √(1/n_c + 1/n_b)`` (Student's t at
  the same level).

c is tied with b when that interval contains 0. At levels whose tails hold fewer than
``MIN_TAIL`` resamples (a race's corrected levels), the picture part is the normal
interval from the resamples' standard deviation (:func:`picture_interval`).

With one seed everywhere training noise is unmeasured: the interval is the picture part
alone, and :attr:`Comparison.seeds_measured` says so (every reader of it prints that).
Without per-picture records but with seeds, the interval is the seed part alone around
the difference of means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from segtune.core.intervals import LEVEL, Interval, interval

MIN_TAIL = 5  # resamples a percentile tail needs; beyond: the normal interval


@dataclass(frozen=True)
class Evidence:
    """One configuration's values of one metric: a value per seed and, when its runs
    record per-picture counts, each seed's bootstrap samples (``(seeds, resamples)``,
    the study's shared resamples)."""

    values: tuple[float, ...]
    samples: NDArray[np.float64] | None = None
    # Seeds behind the mean, for the training-noise term: len(values) for one
    # configuration; for a mean over configurations (a parameter value's), the n whose
    # 1/n is that mean's variance in units of one run's (1/m² · Σ 1/n_j).
    effective_n: float | None = None

    @property
    def n(self) -> float:
        return self.effective_n if self.effective_n is not None else len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def sd(self) -> float | None:
        """Standard deviation over seeds (None with one seed)."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None

    def mean_samples(self) -> NDArray[np.float64] | None:
        """The seed mean in every picture resample."""
        return None if self.samples is None else self.samples.mean(axis=0)


@dataclass(frozen=True)
class SeedNoise:
    """Training noise pooled over configurations with at least two seeds."""

    sd: float
    dof: int

    def t(self, level: float = LEVEL) -> float:
        from scipy.stats import t

        return float(t.ppf((1 + level) / 2, self.dof))


def pooled_seed_noise(evidence: Sequence[Evidence]) -> SeedNoise | None:
    """The pooled within-configuration standard deviation, or None when no
    configuration has two seeds (training noise unmeasured)."""
    squares, dof = 0.0, 0
    for e in evidence:
        if len(e.values) > 1:
            squares += float(np.sum((np.asarray(e.values) - e.mean) ** 2))
            dof += len(e.values) - 1
    return SeedNoise(math.sqrt(squares / dof), dof) if dof else None


@dataclass(frozen=True)
class Comparison:
    """``c − b`` of one metric: the difference of seed means, the interval the decision
    used, and the decision (None: nothing measured to decide by)."""

    difference: float
    interval: Interval | None
    seeds_measured: bool
    pictures_measured: bool

    @property
    def tied(self) -> bool | None:
        return None if self.interval is None else self.interval.contains(0.0)

    def words(self) -> str:
        """Which noise the interval covers, for a caption."""
        parts = [
            *(["picture sample"] if self.pictures_measured else []),
            *(["training noise"] if self.seeds_measured else []),
        ]
        return " and ".join(parts) if parts else "no noise measured"


def compare(
    c: Evidence, b: Evidence, noise: SeedNoise | None, level: float = LEVEL, normal: bool = False
) -> Comparison:
    """The tie rule (module docstring): the ``level`` interval of ``mean_c − mean_b``
    (``normal``: the picture part always the normal interval, as a race's many
    corrected levels use it, see :func:`pair_p_values`)."""
    difference = c.mean - b.mean
    sc, sb = c.mean_samples(), b.mean_samples()
    widen = 0.0
    if noise is not None:
        widen = noise.t(level) * noise.sd * math.sqrt(1 / c.n + 1 / b.n)
    if sc is not None and sb is not None:
        picture = picture_interval(sc - sb, level, normal)
        # The bootstrap interval is of the resampled difference; the point estimate is
        # the difference of the recorded values (identical when the records agree).
        found = Interval(picture.low - widen, picture.high + widen)
        return Comparison(difference, found, noise is not None, True)
    if noise is not None:
        return Comparison(difference, Interval(difference - widen, difference + widen), True, False)
    return Comparison(difference, None, False, False)


def picture_interval(samples: NDArray[np.float64], level: float, normal: bool = False) -> Interval:
    """The bootstrap percentile interval; beyond what the resamples resolve (fewer than
    ``MIN_TAIL`` resamples in a tail: the multiple-comparison levels of a race), the
    normal interval from their mean and standard deviation instead of their extremes."""
    tail = (1.0 - level) / 2
    if not normal and tail * len(samples) >= MIN_TAIL:
        return interval(samples, level)
    from scipy.stats import norm

    half = float(norm.ppf(1 - tail)) * float(np.std(samples, ddof=1))
    centre = float(np.mean(samples))
    return Interval(centre - half, centre + half)


def pair_p_values(
    evidence: Sequence[Evidence], pairs: Sequence[tuple[int, int]], noise: SeedNoise | None
) -> NDArray[np.float64]:
    """The two-sided p-value of every pair ``(a, b)``: the smallest ``1 − level`` at
    which :func:`compare`'s interval (``normal=True``) of ``a − b`` excludes 0, for all
    pairs at once (bisection on the level, vectorised)."""
    from scipy.stats import norm, t

    if not pairs:
        return np.zeros(0)
    a = np.array([i for i, _ in pairs])
    b = np.array([j for _, j in pairs])
    means = [e.mean_samples() for e in evidence]
    with_samples = all(m is not None for m in means)
    if with_samples:
        stacked = np.stack([m for m in means if m is not None])
        diffs = stacked[a] - stacked[b]
        centre = diffs.mean(axis=1)
        sd = diffs.std(axis=1, ddof=1)
    else:
        centre = np.array([evidence[i].mean - evidence[j].mean for i, j in pairs])
        sd = np.zeros(len(pairs))
    n = np.array([e.n for e in evidence], dtype=np.float64)
    unit = 0.0 if noise is None else noise.sd * np.sqrt(1 / n[a] + 1 / n[b])
    low, high = np.full(len(pairs), 1e-16), np.ones(len(pairs))  # alpha bounds
    gap = np.abs(centre)

    def excludes(alpha: NDArray[np.float64]) -> NDArray[np.bool_]:
        half = norm.isf(alpha / 2) * sd
        if noise is not None:
            half = half + t.isf(alpha / 2, noise.dof) * unit
        return gap > half

    never = ~excludes(np.full(len(pairs), 1.0 - 1e-12))
    for _ in range(60):
        mid = np.sqrt(low * high)  # geometric: p-values span many decades
        ok = excludes(mid)
        high = np.where(ok, mid, high)
        low = np.where(ok, low, mid)
    return np.where(never, 1.0, high)


def ties_with(evidence: Sequence[Evidence], best: int, level: float = LEVEL) -> list[Comparison]:
    """Every configuration compared with ``evidence[best]`` under one pooled seed noise
    (the best's own comparison: difference 0, tied)."""
    noise = pooled_seed_noise(evidence)
    return [compare(e, evidence[best], noise, level) for e in evidence]
