"""Race decisions on fixed records: drops, the order they come in, the error guarantee."""

from __future__ import annotations

import numpy as np
import pytest

from segtune.core.racing import Contender, look_alpha, race_look, run_race

RESAMPLES = 400


def _contenders(
    means: list[float],
    seeds: int,
    seed_sd: float,
    rng: np.random.Generator,
    picture_sd: float = 0.01,
) -> list[Contender]:
    """Configurations with ``seeds`` runs each: value = mean + seed noise; every run's
    bootstrap samples share the same picture resamples (paired) plus a little jitter."""
    pictures = rng.normal(0, picture_sd, RESAMPLES)
    out = []
    for i, mean in enumerate(means):
        values = tuple(float(v) for v in mean + rng.normal(0, seed_sd, seeds))
        samples = np.stack([v + pictures + rng.normal(0, 0.002, RESAMPLES) for v in values])
        out.append(Contender(f"c{i}", values, samples))
    return out


def test_a_clearly_worse_configuration_is_dropped_at_the_first_look() -> None:
    rng = np.random.default_rng(0)
    racers = _contenders([0.80, 0.80, 0.60], seeds=2, seed_sd=0.01, rng=rng)
    drops = race_look(racers, 2, look_alpha(0.95, 5), "maximize")
    assert [d.name for d in drops] == ["c2"] and drops[0].round == 2
    assert drops[0].lost_to in ("c0", "c1")
    assert drops[0].interval.high < 0  # its difference to the winner, wholly below 0
    state = run_race(racers, max_seeds=5, confidence=0.95, direction="maximize")
    assert state.survivors == ["c0", "c1"] and not state.ended  # round 3 not run yet


def test_the_race_ends_with_one_survivor_when_one_is_clearly_best() -> None:
    rng = np.random.default_rng(1)
    racers = _contenders([0.9, 0.7, 0.72, 0.65], seeds=3, seed_sd=0.01, rng=rng)
    state = run_race(racers, max_seeds=5, confidence=0.95, direction="maximize")
    assert state.survivors == ["c0"] and state.ended
    assert {d.name for d in state.drops} == {"c1", "c2", "c3"}


def test_minimised_objectives_drop_the_larger() -> None:
    rng = np.random.default_rng(2)
    racers = _contenders([0.2, 0.5], seeds=2, seed_sd=0.01, rng=rng)
    (drop,) = race_look(racers, 2, 0.05, "minimize")
    assert drop.name == "c1" and drop.lost_to == "c0" and drop.interval.low > 0


def test_drops_use_only_the_looked_at_rounds() -> None:
    """A fourth seed that finished early does not change the look at round 3."""
    rng = np.random.default_rng(3)
    racers = _contenders([0.8, 0.78, 0.7], seeds=4, seed_sd=0.02, rng=rng)
    three = [
        Contender(c.name, c.values[:3], None if c.samples is None else c.samples[:3])
        for c in racers
    ]
    assert race_look(racers, 3, 0.05, "maximize") == race_look(three, 3, 0.05, "maximize")


@pytest.mark.slow
def test_equal_configurations_are_rarely_dropped_over_the_whole_race() -> None:
    """Many races of configurations equal in distribution: the share of races that ever
    drop one stays at or below 1 − confidence plus Monte Carlo error."""
    rng = np.random.default_rng(4)
    confidence, races = 0.8, 300
    ever = 0
    for _ in range(races):
        racers = _contenders([0.7] * 4, seeds=5, seed_sd=0.02, rng=rng)
        state = run_race(racers, max_seeds=5, confidence=confidence, direction="maximize")
        ever += bool(state.drops)
    bound = (1 - confidence) + 3 * np.sqrt(0.2 * 0.8 / races)
    assert ever / races <= bound, (ever, races)


def test_a_spent_budget_ends_the_race() -> None:
    """budget_runs counts the runs beyond round 1: 3 configurations with 2 seeds each
    have spent 3; a budget of 3 ends the race, 4 does not."""
    rng = np.random.default_rng(6)
    racers = _contenders([0.7, 0.7, 0.7], seeds=2, seed_sd=0.02, rng=rng)
    assert run_race(racers, 5, 0.95, "maximize", budget_runs=3).ended
    assert not run_race(racers, 5, 0.95, "maximize", budget_runs=4).ended


def test_a_round_interval_of_a_share_stays_inside_0_and_1() -> None:
    """One seed of c1 collapses (recall 0.1): the pooled seed noise is large, and the
    interval of a mean recall near 0.97 would reach past 1 — cut to the metric's range."""
    from segtune.core.metrics import metric_range
    from segtune.core.racing import round_intervals

    contenders = [
        Contender("c0", (0.96, 0.97, 0.98)),
        Contender("c1", (0.95, 0.96, 0.10)),
    ]
    free = round_intervals(contenders)
    assert max(high for _, _, _, high in free["c0"]) > 1.0  # what the figure drew before
    bounded = round_intervals(contenders, bounds=metric_range("val/recall"))
    for name in ("c0", "c1"):
        assert all(0.0 <= low <= mean <= high <= 1.0 for _, mean, low, high in bounded[name])
    assert metric_range("val/loss") is None and metric_range("test/f1_2px") == (0.0, 1.0)
