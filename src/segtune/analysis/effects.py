"""Does a parameter matter? Its effect on the objective and on ranking quality.

For each parameter a grid-like stage searches (the seed excepted), the configurations
of the stage are grouped by the parameter's value; a value's mean is the mean of its
configurations' seed means (each configuration counts once, however many seeds it
has). The largest minus the smallest value's mean is judged with the study's one tie
rule (:func:`segtune.core.ties.compare`): the paired picture bootstrap of the two means
(the same resampled validation pictures for every run), widened by training noise when
configurations were trained with several seeds. The parameter matters for a metric when
that interval excludes 0.

It is judged on the objective *and* on the threshold-free measures, AP and best F1 over
thresholds. A parameter that moves the objective but neither of those moves the
probabilities, not the ranking quality: the verdict says so and gives each value's
validation-best threshold (where the same ranking is cut).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segtune.analysis.ranking import QUALITY, Configuration, configurations
from segtune.analysis.summary import StudySummary
from segtune.core.metrics import describe_metric, direction_of
from segtune.core.ties import Comparison, Evidence, SeedNoise, compare, pooled_seed_noise
from segtune.study.spec import SEED_KEY, ParamValue


@dataclass(frozen=True)
class MetricEffect:
    """One metric's means per value and the judged difference (highest − lowest)."""

    metric: str
    means: list[tuple[ParamValue, float, int]]  # value, mean, configurations
    spread: float
    comparison: Comparison
    high: ParamValue  # the value with the highest mean, and the lowest
    low: ParamValue

    @property
    def matters(self) -> bool | None:
        tied = self.comparison.tied
        return None if tied is None else not tied

    def words(self) -> str:
        interval = self.comparison.interval
        why = f"95 % interval {interval}" if interval is not None else "no noise measured"
        return (
            f"{describe_metric(self.metric, short=True)} {self.spread:+.3g} from "
            f"{_fmt(self.low)} to {_fmt(self.high)} ({why})"
        )


@dataclass(frozen=True)
class Effect:
    stage: str
    key: str
    objective: MetricEffect
    quality: list[MetricEffect]
    thresholds: list[tuple[ParamValue, float]]  # value, mean validation-best threshold

    @property
    def detectable(self) -> bool | None:
        return self.objective.matters

    @property
    def calibration_only(self) -> bool:
        """The objective moves, the threshold-free measures do not."""
        return (
            bool(self.objective.matters)
            and bool(self.quality)
            and not any(q.matters for q in self.quality)
        )

    def verdict(self) -> str:
        o = self.objective
        quality = "; ".join(q.words() for q in self.quality)
        if o.matters is None:
            return f"cannot be judged: no noise was measured ({o.words()})"
        thresholds = ", ".join(f"{_fmt(v)}: {t:.3g}" for v, t in self.thresholds)
        if self.calibration_only:
            return (
                f"moves the probabilities, not the ranking quality: {o.words()}; "
                f"{quality} — validation-best threshold per value {thresholds}"
            )
        if o.matters:
            return f"matters: {o.words()}" + (f"; {quality}" if quality else "")
        moved = [q for q in self.quality if q.matters]
        if moved:
            return f"matters for ranking quality, not for the objective: {o.words()}; " + "; ".join(
                q.words() for q in moved
            )
        return f"no effect detectable above noise: {o.words()}" + (
            f"; {quality}" if quality else ""
        )


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _group(value: ParamValue) -> str:
    """Values that are equal fall in one group: 10 (a grid's) and 10.0 (a refine's)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return repr(float(value)) if number else repr(value)


def _value_evidence(configs: list[Configuration], metric: str) -> Evidence:
    """A parameter value's evidence: its configurations' seed means, the mean of their
    picture samples, and the effective seed count of that mean (1/m² · Σ 1/n_j)."""
    values = tuple(c.mean(metric) for c in configs)
    per_config = [c.evidence(metric).mean_samples() for c in configs]
    samples = None
    if all(p is not None for p in per_config):
        samples = np.stack([p for p in per_config if p is not None])
    variance = sum(1 / c.n for c in configs) / len(configs) ** 2
    return Evidence(values, samples, effective_n=1 / variance)


def _metric_effect(
    groups: dict[str, tuple[ParamValue, list[Configuration]]],
    metric: str,
    noise: SeedNoise | None,
) -> MetricEffect | None:
    if not all(len(c.values(metric)) == c.n for _, cs in groups.values() for c in cs):
        return None
    evidence = {k: _value_evidence(cs, metric) for k, (_, cs) in groups.items()}
    order = sorted(evidence, key=lambda k: evidence[k].mean)  # tied means: still two
    low, high = order[0], order[-1]
    if direction_of(metric) == "minimize":
        low, high = high, low
    means = [(v, evidence[k].mean, len(cs)) for k, (v, cs) in groups.items()]
    comparison = compare(evidence[high], evidence[low], noise)
    return MetricEffect(
        metric, means, comparison.difference, comparison, groups[high][0], groups[low][0]
    )


def parameter_effects(s: StudySummary) -> list[Effect]:
    """One :class:`Effect` per stage and searched parameter with at least two values."""
    every = configurations(s.runs)
    noises = {m: pooled_seed_noise([c.evidence(m) for c in every]) for m in (s.objective, *QUALITY)}
    effects = []
    for stage in s.compared_stages():
        grid = s.searched[stage]
        configs = [c for c in every if any(r.in_stage(stage) for r in c.runs)]
        for key in grid:
            if key == SEED_KEY:
                continue
            groups: dict[str, tuple[ParamValue, list[Configuration]]] = {}
            for c in configs:
                if key in c.params:
                    groups.setdefault(_group(c.params[key]), (c.params[key], []))[1].append(c)
            if len(groups) < 2:
                continue
            objective = _metric_effect(groups, s.objective, noises[s.objective])
            if objective is None:
                continue
            quality = [
                q
                for m in QUALITY
                if m != s.objective and (q := _metric_effect(groups, m, noises[m])) is not None
            ]
            thresholds = [
                (v, float(np.mean(t)))
                for v, cs in groups.values()
                if (t := [x for c in cs for x in c.values("val/best_threshold")])
            ]
            effects.append(Effect(stage, key, objective, quality, thresholds))
    return effects
