"""Configurations, not runs: every ranking of a study, by one metric, with one tie rule.

A *configuration* is the searched parameters but the seed; its runs are its seeds (from
any stage: a grid's run and a repeat stage's seeds of the same point are one
configuration). Tables, heatmaps, observation groups and verdicts show one row per
configuration (mean, sd, min–max, n seeds); each seed is in the appendix. Whether a
configuration can be told apart from the best is :func:`segtune.core.ties.compare`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from segtune.analysis.summary import RunSummary, StudySummary
from segtune.core.config import LossConfig
from segtune.core.metrics import Direction, direction_of, flag_counts, ranking
from segtune.core.ties import Comparison, Evidence, pooled_seed_noise, ties_with
from segtune.engine.loss import inert_loss_settings
from segtune.study.spec import SEED_KEY, ParamValue

ConfigKey = tuple[tuple[str, str], ...]
# Threshold-free measures: ranking quality, not calibration (the Answer and the verdicts).
QUALITY = ("val/ap", "val/best_f1")
LOSS_DEFAULT = LossConfig().bce_weight


@dataclass
class Configuration:
    """The completed runs (seeds) of one configuration, in the order they were listed."""

    key: ConfigKey
    runs: list[RunSummary] = field(default_factory=list)

    @property
    def params(self) -> dict[str, ParamValue]:
        return {k: v for k, v in self.runs[0].params.items() if k != SEED_KEY}

    @property
    def label(self) -> str:
        """The first run's label (``grid#3``), which names the configuration."""
        return self.runs[0].label

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def stages_text(self) -> str:
        stages: list[str] = []
        for r in self.runs:
            stages += [s for s in (r.stage, *r.also_in) if s not in stages]
        return " = ".join(stages)

    def values(self, key: str) -> tuple[float, ...]:
        return tuple(r.final[key] for r in self.runs if key in r.final)

    def mean(self, key: str) -> float:
        values = self.values(key)
        return float(np.mean(values)) if values else float("nan")

    def sd(self, key: str) -> float | None:
        values = self.values(key)
        return float(np.std(values, ddof=1)) if len(values) > 1 else None

    def evidence(self, key: str) -> Evidence:
        """Its values of ``key`` per seed and, when every seed has them, the seeds'
        picture-bootstrap samples."""
        with_samples = all(key in r.samples for r in self.runs)
        samples = np.stack([r.samples[key] for r in self.runs]) if with_samples else None
        return Evidence(self.values(key), samples)

    def flag(self, split: str = "val") -> str | None:
        """What is wrong with its predictions at the threshold (over-, under-predicts,
        finds almost nothing, all black), from its seeds' mean pixel counts."""
        keys = [f"{split}/{k}" for k in ("tp", "fp", "fn")]
        if not all(len(self.values(k)) == self.n for k in keys):
            return None
        tp, fp, fn = (self.mean(k) for k in keys)
        return flag_counts(tp, fp, fn)

    def pick(self, key: str, which: Literal["median", "best"] = "median") -> RunSummary:
        """The run (seed) to hand out: the one whose ``key`` is the median of its seeds
        (the lower middle of an even count: never the luckiest), or the best one."""
        scored = [r for r in self.runs if key in r.final]
        if not scored:
            return self.runs[0]
        ordered = sorted(scored, key=lambda r: ranking(r.final[key], direction_of(key)))
        return ordered[0] if which == "best" else ordered[len(ordered) // 2]


def configurations(runs: Sequence[RunSummary]) -> list[Configuration]:
    """The completed runs grouped by configuration, in the runs' order."""
    groups: dict[ConfigKey, Configuration] = {}
    for r in runs:
        if r.status == "completed":
            groups.setdefault(r.config, Configuration(r.config)).runs.append(r)
    return list(groups.values())


@dataclass
class SameTraining:
    """Configurations that train identically: they differ only in settings the loss
    ignores at their other values (:func:`segtune.engine.loss.inert_loss_settings`)."""

    configs: list[Configuration]
    reason: str

    @property
    def line(self) -> str:
        return f"{' = '.join(c.label for c in self.configs)} ({self.reason})"


def same_training(configs: Sequence[Configuration], fixed: Mapping[str, Any]) -> list[SameTraining]:
    """Groups of two or more configurations whose runs are identical by construction,
    in the configurations' order; ``fixed`` holds the study's flat fixed settings."""
    groups: dict[tuple[tuple[str, str], ...], SameTraining] = {}
    for c in configs:
        bce = c.params.get("loss.bce_weight", fixed.get("loss.bce_weight", LOSS_DEFAULT))
        inert = inert_loss_settings(float(bce)) if isinstance(bce, int | float) else {}
        key = tuple(sorted((k, repr(v)) for k, v in c.params.items() if k not in inert))
        group = groups.setdefault(key, SameTraining([], "; ".join(inert.values())))
        group.configs.append(c)
    return [g for g in groups.values() if len(g.configs) > 1 and g.reason]


@dataclass
class Ranking:
    """Configurations by one metric, best first, each compared with the best."""

    metric: str
    direction: Direction
    configs: list[Configuration]
    comparisons: list[Comparison]

    @property
    def best(self) -> Configuration | None:
        return self.configs[0] if self.configs else None

    def tied(self) -> list[Configuration]:
        """The best and every configuration the tie rule cannot tell apart from it."""
        return [c for c, k in zip(self.configs, self.comparisons, strict=True) if k.tied]

    def comparison(self, config: Configuration) -> Comparison:
        return self.comparisons[self.configs.index(config)]

    def is_tied(self, config: Configuration) -> bool | None:
        return self.comparison(config).tied

    @property
    def seeds_measured(self) -> bool:
        return any(c.n > 1 for c in self.configs)

    @property
    def pictures_measured(self) -> bool:
        return bool(self.comparisons) and self.comparisons[0].pictures_measured

    def noise_words(self) -> str:
        """What the tie rule could measure, in words (every reader prints this)."""
        noise = pooled_seed_noise([c.evidence(self.metric) for c in self.configs])
        pictures = (
            "paired bootstrap over the validation pictures"
            if self.pictures_measured
            else "no per-picture records: picture-sample noise unmeasured"
        )
        if noise is None:
            return f"{pictures}; training noise unmeasured, one seed per configuration"
        several = sum(c.n > 1 for c in self.configs)
        return (
            f"{pictures}, widened by training noise: sd over seeds {noise.sd:.3g}, pooled "
            f"over {several} configuration{'s' if several > 1 else ''} with several seeds"
        )


def rank(
    s: StudySummary, metric: str | None = None, configs: list[Configuration] | None = None
) -> Ranking:
    """``configs`` (default: every configuration of the study with a value of
    ``metric``, default the objective) ranked by their mean over seeds; ties of the mean
    keep the stage order and trial number."""
    key = metric or s.objective
    direction = s.direction if key == s.objective else direction_of(key)
    pool = configs if configs is not None else configurations(s.runs)
    scored = [c for c in pool if len(c.values(key)) == c.n]
    order = list(s.searched)
    ranked = sorted(
        scored,
        key=lambda c: (
            ranking(c.mean(key), direction),
            order.index(c.runs[0].stage) if c.runs[0].stage in order else 0,
            c.runs[0].trial,
        ),
    )
    comparisons = ties_with([c.evidence(key) for c in ranked], 0) if ranked else []
    return Ranking(key, direction, ranked, comparisons)


def configuration_of(configs: Sequence[Configuration], run: RunSummary) -> Configuration | None:
    return next((c for c in configs if any(r is run for r in c.runs)), None)
