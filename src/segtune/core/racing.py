"""Race decisions: which configurations a race drops, as a pure function of runs.

A race (F-race, irace) trains every configuration with one seed, then adds seeds only to
the configurations that might still be the best, and drops one once it is worse than
another with the stated confidence. Here:

* **Rounds and looks.** Round r is each configuration's r-th seed (round 1: the runs of
  the stage the race starts from). The race looks at the end of each round r ≥ 2 — when
  every configuration still racing has finished its first r seeds — using exactly those
  runs (later seeds that finished early are not used until their round ends), so a
  drop depends only on the set of finished runs of rounds ≤ r: the same drops in any
  finish order, with one worker or many.
* **One look.** Every pair (c, d) of configurations still racing is compared with the
  study's tie rule (:func:`segtune.core.ties.compare`: paired picture bootstrap, widened
  by the training noise pooled over the racing configurations' seeds), its picture part
  the normal interval from the bootstrap's standard deviation (a race's corrected levels
  lie beyond what 1000 resamples resolve; :func:`segtune.core.ties.pair_p_values`). Holm's step-down
  procedure over all those pairs, at the look's error budget, decides which differences
  are real; a configuration is dropped when it is worse than some other in a pair Holm
  rejects. Comparing all pairs (not only with the current best, which is itself chosen
  by the data) keeps the guarantee when the best is a lucky one.
* **The whole race.** The error budget ``1 − confidence`` is split evenly over the
  ``max_seeds − 1`` looks (Bonferroni over looks, an alpha-spending scheme with equal
  shares). So the probability that the race ever drops a configuration that is in truth
  as good as the best — at any look — is at most ``1 − confidence`` (given valid tests
  at each level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from segtune.core.intervals import Interval
from segtune.core.metrics import Direction
from segtune.core.ties import Evidence, compare, pair_p_values, pooled_seed_noise


@dataclass(frozen=True)
class Contender:
    """One configuration's runs in seed order (round 1 first): its objective value per
    seed and, when recorded, each seed's picture-bootstrap samples."""

    name: str
    values: tuple[float, ...]
    samples: NDArray[np.float64] | None = None  # (seeds, resamples)

    def first(self, rounds: int) -> Evidence:
        samples = None if self.samples is None else self.samples[:rounds]
        return Evidence(self.values[:rounds], samples)


@dataclass(frozen=True)
class Drop:
    """A configuration the race dropped: at which round's look, worse than which, by
    which interval, at which (corrected) level."""

    name: str
    round: int
    lost_to: str
    interval: Interval
    level: float
    p: float


def look_alpha(confidence: float, max_seeds: int) -> float:
    """Each look's share of the race's error budget (Bonferroni over the looks)."""
    return (1.0 - confidence) / max(max_seeds - 1, 1)


def race_look(
    contenders: Sequence[Contender], rounds: int, alpha: float, direction: Direction
) -> list[Drop]:
    """The drops of the look at the end of round ``rounds`` among ``contenders`` (those
    still racing, each with at least ``rounds`` seeds), by Holm over every pair at
    ``alpha``. A contender is dropped at the first rejected pair where it is the worse."""
    evidence = [c.first(rounds) for c in contenders]
    noise = pooled_seed_noise(evidence)
    pairs = [(i, j) for i in range(len(evidence)) for j in range(i + 1, len(evidence))]
    p = pair_p_values(evidence, pairs, noise)
    m = len(pairs)
    dropped: dict[int, Drop] = {}
    for k, index in enumerate(np.argsort(p, kind="stable")):
        if p[index] > alpha / (m - k):  # Holm: the k-th smallest against alpha/(m − k)
            break
        i, j = pairs[index]
        level = 1.0 - alpha / (m - k)
        found = compare(evidence[i], evidence[j], noise, level, normal=True)
        assert found.interval is not None
        i_worse = (found.difference < 0) == (direction == "maximize")
        worse, better = (i, j) if i_worse else (j, i)
        if worse in dropped:
            continue
        shown = (
            found.interval if worse == i else Interval(-found.interval.high, -found.interval.low)
        )
        name, winner = contenders[worse].name, contenders[better].name
        dropped[worse] = Drop(name, rounds, winner, shown, level, float(p[index]))
    return [dropped[i] for i in sorted(dropped)]


@dataclass
class RaceState:
    """Where a race stands after the looks its finished runs allow."""

    drops: list[Drop] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    looked: int = 1  # the last round looked at
    ended: bool = False

    def dropped(self, name: str) -> Drop | None:
        return next((d for d in self.drops if d.name == name), None)


def run_race(
    contenders: Sequence[Contender],
    max_seeds: int,
    confidence: float,
    direction: Direction,
    budget_runs: int | None = None,
) -> RaceState:
    """Every look the contenders' runs allow, in order (a pure function of the runs):
    round r is looked at once every contender still racing has ``r`` seeds. The race
    ends when one is left, every survivor has ``max_seeds``, or ``budget_runs`` runs are
    spent (runs beyond round 1)."""
    alpha = look_alpha(confidence, max_seeds)
    alive = list(contenders)
    state = RaceState()
    for rounds in range(2, max_seeds + 1):
        if len(alive) <= 1 or any(len(c.values) < rounds for c in alive):
            break
        state.drops += race_look(alive, rounds, alpha, direction)
        gone = {d.name for d in state.drops}
        alive = [c for c in alive if c.name not in gone]
        state.looked = rounds
    state.survivors = [c.name for c in alive]
    spent = sum(max(len(c.values) - 1, 0) for c in contenders)
    state.ended = (
        len(alive) <= 1
        or state.looked >= max_seeds
        or (budget_runs is not None and spent >= budget_runs)
    )
    return state


def round_intervals(
    contenders: Sequence[Contender],
    level: float = 0.95,
    bounds: tuple[float, float] | None = None,
) -> dict[str, list[tuple[int, float, float, float]]]:
    """Each contender's ``(round, mean, low, high)`` after each round it reached: the
    mean of its first r seeds and its ``level`` interval (picture bootstrap of that
    mean, widened by t·s_seed/√r with s_seed pooled over the contenders at round r) —
    what the race figure draws. ``bounds``: the metric's range (a recall's mean lies in
    [0, 1]), to which the interval is cut (it covers the mean at least as often)."""
    out: dict[str, list[tuple[int, float, float, float]]] = {c.name: [] for c in contenders}
    for rounds in range(1, max((len(c.values) for c in contenders), default=0) + 1):
        at = [c for c in contenders if len(c.values) >= rounds]
        evidence = {c.name: c.first(rounds) for c in at}
        noise = pooled_seed_noise(list(evidence.values()))
        widen = 0.0 if noise is None else noise.t(level) * noise.sd / np.sqrt(rounds)
        for c in at:
            e = evidence[c.name]
            samples = e.mean_samples()
            tail = (1 - level) / 2 * 100
            low, high = (
                (e.mean, e.mean)
                if samples is None
                else tuple(float(x) for x in np.percentile(samples, [tail, 100 - tail]))
            )
            low, high = low - widen, high + widen
            if bounds is not None:
                low, high = max(low, bounds[0]), min(high, bounds[1])
            out[c.name].append((rounds, e.mean, low, high))
    return out
