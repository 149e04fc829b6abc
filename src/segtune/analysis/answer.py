"""The answer a study is run for: which loss settings to use, and how sure we are.

Computed from the study summary (never written for one study): the best configuration
by the objective and the set the tie rule cannot tell apart from it; the same
configurations by threshold-free measures (AP, best F1 over thresholds); one sentence
when the two disagree; and the model to use, with its threshold and epoch and where each
was chosen. The report opens with it, ``results.json`` holds it under ``answer`` and
``segtune best`` prints its model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from segtune.analysis.ranking import (
    QUALITY,
    Configuration,
    Ranking,
    SameTraining,
    configurations,
    rank,
    same_training,
)
from segtune.analysis.summary import RunSummary, StudySummary
from segtune.core.metrics import describe_metric
from segtune.core.records import RunFolder
from segtune.study.spec import SEED_KEY


@dataclass(frozen=True)
class ModelChoice:
    """The model to hand out: a run of the chosen configuration, its threshold and
    epoch, and where each was chosen."""

    config: Configuration
    run: RunSummary
    path: Path  # absolute: works from any folder
    threshold: float | None  # None: collapsed on validation, no threshold to offer
    threshold_source: str
    epoch: int
    epoch_source: str
    which: str  # "median" or "best" of its seeds
    seeds: str  # which seed it is, in words

    def line(self) -> str:
        """``segtune best``'s one line: path, threshold, epoch (tab-separated)."""
        threshold = "none" if self.threshold is None else f"{self.threshold:.6g}"
        return f"{self.path}\t{threshold}\t{self.epoch}"


def choose_model(
    config: Configuration, key: str, which: Literal["median", "best"] = "median"
) -> ModelChoice:
    """The run of ``config`` whose ``key`` is the median of its seeds (``which="best"``:
    the best seed), with the threshold selected on validation for that very model."""
    run = config.pick(key, which)
    threshold = run.final.get("val/best_threshold")
    source = (
        "F1-best on validation for this model"
        if threshold is not None
        else "none: the model collapsed on validation (no threshold separates the positives)"
    )
    seeds = (
        f"the {'median' if which == 'median' else 'best'} of its {config.n} seeds by {key}"
        if config.n > 1
        else "its only seed"
    )
    epoch_source = f"selected by {run.selected_by}" if run.selected_by else "the last epoch"
    return ModelChoice(
        config=config,
        run=run,
        path=RunFolder(run.run_dir.resolve()).model_path,
        threshold=threshold,
        threshold_source=source,
        epoch=run.kept_epoch or run.epochs_done,
        epoch_source=epoch_source,
        which=which,
        seeds=seeds,
    )


@dataclass
class Answer:
    """The Answer section's content (:func:`answer`)."""

    objective: Ranking
    quality: list[Ranking]  # by val/ap and val/best_f1, when the runs record them
    model: ModelChoice | None
    sentences: list[str] = field(default_factory=list)
    same_training: list[SameTraining] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def ranking_json(r: Ranking) -> dict[str, Any]:
            return {
                "metric": r.metric,
                "best": _config_json(r.best, r) if r.best else None,
                "tied_with_best": [_config_json(c, r) for c in r.tied()],
                "training_noise_measured": r.seeds_measured,
                "picture_noise_measured": r.pictures_measured,
            }

        model = self.model
        return {
            "sentences": self.sentences,
            "by_objective": ranking_json(self.objective),
            "by_quality": [ranking_json(r) for r in self.quality],
            "same_training": [
                {"configurations": [c.label for c in g.configs], "reason": g.reason}
                for g in self.same_training
            ],
            "model": None
            if model is None
            else {
                "path": str(model.path),
                "configuration": model.config.label,
                "run": model.run.label,
                "seed": model.run.params.get(SEED_KEY),
                "threshold": model.threshold,
                "threshold_source": model.threshold_source,
                "epoch": model.epoch,
                "epoch_source": model.epoch_source,
            },
        }


def _config_json(c: Configuration, r: Ranking) -> dict[str, Any]:
    k = r.comparison(c)
    return {
        "configuration": c.label,
        "params": c.params,
        "mean": c.mean(r.metric),
        "sd": c.sd(r.metric),
        "seeds": c.n,
        "difference_to_best": k.difference,
        "interval": None if k.interval is None else [k.interval.low, k.interval.high],
    }


def answer(s: StudySummary, which: Literal["median", "best"] = "median") -> Answer:
    """The answer of a study (module docstring); empty sentences without a completed
    run."""
    configs = configurations(s.runs)
    objective = rank(s, configs=configs)
    quality = [
        rank(s, key, configs)
        for key in QUALITY
        if key != s.objective and all(len(c.values(key)) == c.n for c in configs)
    ]
    best = objective.best
    if best is None:
        return Answer(objective, quality, None, ["No configuration has completed a run yet."])
    model = choose_model(best, s.objective, which)
    same = same_training(configs, s.fixed)
    out = Answer(objective, quality, model, same_training=same)
    out.sentences = [
        _best_sentence(s, objective),
        _tied_sentence(objective),
        *([_same_sentence(same)] if same else []),
        *[_race_sentence(race) for race in s.races],
        *([_quality_sentence(quality)] if quality else []),
        *_disagreement(s, objective, quality, configs),
        _model_sentence(s, model),
    ]
    return out


def value_words(c: Configuration, key: str) -> str:
    """``0.912 ± 0.012 (3 seeds)`` or ``0.912 (one seed)``."""
    sd = c.sd(key)
    if sd is None:
        return f"{c.mean(key):.4g} (one seed)"
    return f"{c.mean(key):.4g} ± {sd:.2g} ({c.n} seeds)"


def params_words(c: Configuration) -> str:
    return ", ".join(f"{k} = {_fmt(v)}" for k, v in c.params.items())


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _best_sentence(s: StudySummary, r: Ranking) -> str:
    best = r.best
    assert best is not None
    return (
        f"Best configuration by {describe_metric(s.objective, s.threshold)}: "
        f"**{best.label}** ({params_words(best)}): {value_words(best, r.metric)}."
    )


def _labels(configs: list[Configuration], limit: int = 6) -> str:
    names = [c.label for c in configs]
    return ", ".join(names[:limit]) + (
        f" and {len(names) - limit} more" if len(names) > limit else ""
    )


def _tied_sentence(r: Ranking) -> str:
    others = len(r.configs) - 1
    tied = r.tied()[1:]
    noise = r.noise_words()
    if not r.comparisons or r.comparisons[0].tied is None:
        return f"Whether others can be told apart from it cannot be judged: {noise}."
    if others == 0:
        return f"It is the only configuration with a completed run ({noise})."
    add = (
        ""
        if r.seeds_measured
        else " To measure training noise, add `repeats: 3` or a stage `race: {from: "
        "<stage>}` to the spec and run the same sweep again (finished runs are kept)."
    )
    if not tied:
        return f"Every other configuration ({others}) is worse beyond noise ({noise}).{add}"
    count = f"All {others}" if len(tied) == others else f"{len(tied)} of the {others}"
    return f"{count} other configurations cannot be told apart from it ({noise}): {_labels(tied)}."


def _same_sentence(groups: list[SameTraining]) -> str:
    """Configurations that are one training under two names: a tie between them is no
    evidence about the setting that tells them apart."""
    return (
        "Identical by construction (their runs train the same network, so ties between "
        "them say nothing about the setting that differs): "
        + "; ".join(g.line for g in groups)
        + "."
    )


def _race_sentence(race: dict[str, Any]) -> str:
    """A race's outcome: how many were dropped, and the survivors as its answer."""
    configs = race["configurations"]
    dropped = sum(c["dropped"] is not None for c in configs)
    survivors = race["survivors"]
    seeds = sorted({len(c["values"]) for c in configs if c["dropped"] is None})
    each = (
        f"{seeds[0]} seeds each"
        if len(seeds) == 1
        else f"{seeds[0]}–{seeds[-1]} seeds"
        if seeds
        else "no seeds"
    )
    state = "the race ended" if race["ended"] else "the race is still running"
    head = f"Race {race['stage']} (confidence {race['confidence']:g} over the whole race): "
    if not dropped:
        return (
            f"{head}no configuration was worse than another beyond noise; all "
            f"{len(configs)} survived ({each}; {state})."
        )
    names = ", ".join(survivors[:6]) + (
        f" and {len(survivors) - 6} more" if len(survivors) > 6 else ""
    )
    return (
        f"{head}{dropped} of {len(configs)} configurations dropped, each worse than "
        f"another; {len(survivors)} survivor{'s' if len(survivors) != 1 else ''} ({each}; "
        f"{state}): {names}."
    )


def _quality_sentence(quality: list[Ranking]) -> str:
    parts = []
    for r in quality:
        best = r.best
        if best is None:
            continue
        n = len(r.configs)
        tied = len(r.tied())
        parts.append(
            f"{describe_metric(r.metric, short=True)}: best {best.label} "
            f"{value_words(best, r.metric)}, {'all' if tied == n else tied} of {n} tied with it"
        )
    return "Threshold-free (ranking quality): " + "; ".join(parts) + "."


def _disagreement(
    s: StudySummary, objective: Ranking, quality: list[Ranking], configs: list[Configuration]
) -> list[str]:
    """One sentence naming where the objective's winner and the threshold-free measures
    part ways (a flag, the lowest F1, not among the best by quality); none when they
    agree."""
    best = objective.best
    assert best is not None
    faults = []
    flag = best.flag()
    if flag:
        faults.append(flag)
    f1 = [(c.mean("val/f1"), c) for c in configs if len(c.values("val/f1")) == c.n]
    if s.objective != "val/f1" and len(f1) > 2 and min(f1, key=lambda x: x[0])[1] is best:
        faults.append(
            f"has the lowest {describe_metric('val/f1', s.threshold, short=True)} of the "
            f"{len(f1)} configurations ({best.mean('val/f1'):.4g})"
        )
    behind = [r for r in quality if r.best is not None and not r.is_tied(best)]
    all_tied = bool(quality) and all(len(r.tied()) == len(r.configs) > 1 for r in quality)
    names = " and ".join(describe_metric(r.metric, short=True) for r in quality)
    if all_tied:
        verdict = (
            f"by {names} all {len(configs)} configurations are tied: within these ranges "
            "the searched settings do not change ranking quality; the threshold sets the "
            "trade-off between precision and recall"
        )
    elif behind:
        verdict = "; ".join(
            f"by {describe_metric(r.metric, short=True)} it is behind {r.best.label} beyond "
            f"noise ({r.comparison(best).interval} for its difference)"
            for r in behind
            if r.best is not None
        )
    else:
        verdict = f"by {names} it is among the best" if quality else ""
    if not faults and (not behind or not quality):
        return [verdict[0].upper() + verdict[1:] + "."] if all_tied else []
    short = describe_metric(s.objective, s.threshold, short=True)
    which = " and ".join(faults) if faults else "ranks differently"
    return [f"By {short} the best is {best.label}, which {which}; {verdict}."]


def _model_sentence(s: StudySummary, m: ModelChoice) -> str:
    threshold = (
        f"threshold {m.threshold:.3g} ({m.threshold_source}; the tables use {s.threshold:g})"
        if m.threshold is not None
        else f"no threshold of its own ({m.threshold_source}; the tables use {s.threshold:g})"
    )
    return (
        f"Model to use: `{m.path}` — run {m.run.label} ({m.seeds}), epoch {m.epoch} "
        f"({m.epoch_source}), {threshold}. `segtune best {s.study_dir.resolve()}` prints it."
    )
