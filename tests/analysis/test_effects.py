"""Does a parameter matter? A real effect is named, noise is called noise, and a shift of
the probabilities is not mistaken for better ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segtune.analysis.document import to_markdown
from segtune.analysis.effects import parameter_effects
from segtune.analysis.report import build_blocks
from segtune.analysis.summary import RunSummary, StudySummary
from tests.analysis.fakes import fake_run, fake_summary

RNG = np.random.default_rng(0)
PICTURES = RNG.normal(0.0, 0.05, 1000)  # the same resampled pictures for every run


def _run(
    tmp_path: Path,
    trial: int,
    params: dict[str, float],
    values: dict[str, float],
    jitter: float = 0.002,
) -> RunSummary:
    """A run whose every metric in ``values`` moves with the shared picture resamples
    (paired), plus its own small jitter."""
    run = fake_run(tmp_path, trial, values["val/recall"], [(5, 1, 1)] * 3, params)
    run.final.update(values)
    run.samples = {
        k: v + PICTURES + RNG.normal(0, jitter, PICTURES.size) for k, v in values.items()
    }
    return run


def test_a_real_effect_and_a_null_one_are_told_apart(tmp_path: Path) -> None:
    """bce_weight adds 0.05 to recall and AP on every resample; pos_weight only jitter.
    The picture intervals are wide (±0.1): only pairing finds the effect."""
    runs = [
        _run(
            tmp_path,
            trial,
            {"loss.bce_weight": bce, "loss.pos_weight": pos},
            {"val/recall": 0.7 + gain, "val/ap": 0.6 + gain, "val/best_f1": 0.5 + gain},
        )
        for trial, (bce, pos, gain) in enumerate(
            [(0.2, 1.0, 0.0), (0.2, 10.0, 0.0), (0.8, 1.0, 0.05), (0.8, 10.0, 0.05)]
        )
    ]
    effects = {e.key: e for e in parameter_effects(fake_summary(runs))}
    bce, pos = effects["loss.bce_weight"], effects["loss.pos_weight"]
    assert bce.detectable is True and not bce.calibration_only
    assert pos.detectable is False
    assert bce.objective.spread == pytest.approx(0.05)
    assert bce.verdict().startswith("matters: Validation recall +0.05 from 0.2 to 0.8 (95 %")
    assert pos.verdict().startswith("no effect detectable above noise: Validation recall")
    interval = bce.objective.comparison.interval
    assert interval is not None and 0.04 < interval.low < interval.high < 0.06
    md = to_markdown(build_blocks(fake_summary(runs), tmp_path / "figs", figures=False))
    section = md.split("## Does a parameter matter?", 1)[1].split("\n## ", 1)[0]
    assert "| grid | loss.pos_weight | 1: 0.725 (2); 10: 0.725 (2) | no effect" in section


def test_a_calibration_shift_moves_the_probabilities_not_the_ranking_quality(
    tmp_path: Path,
) -> None:
    """pos_weight 10 raises recall at 0.5 by 0.1 (probabilities shifted up) while AP and
    best F1, threshold-free, stay within jitter; the best threshold moves instead."""
    runs = []
    for trial, (bce, pos) in enumerate([(0.2, 1.0), (0.2, 10.0), (0.8, 1.0), (0.8, 10.0)]):
        shift = 0.1 if pos == 10.0 else 0.0
        run = _run(
            tmp_path,
            trial,
            {"loss.bce_weight": bce, "loss.pos_weight": pos},
            {"val/recall": 0.7 + shift, "val/ap": 0.6, "val/best_f1": 0.55},
        )
        run.final["val/best_threshold"] = 0.85 if pos == 10.0 else 0.6
        runs.append(run)
    effects = {e.key: e for e in parameter_effects(fake_summary(runs))}
    pos = effects["loss.pos_weight"]
    assert pos.calibration_only
    verdict = pos.verdict()
    assert verdict.startswith("moves the probabilities, not the ranking quality: ")
    assert verdict.endswith("validation-best threshold per value 1: 0.6, 10: 0.85")
    assert not effects["loss.bce_weight"].calibration_only


def test_a_real_quality_difference_is_not_called_calibration(tmp_path: Path) -> None:
    runs = []
    for trial, (bce, pos) in enumerate([(0.2, 1.0), (0.2, 10.0), (0.8, 1.0), (0.8, 10.0)]):
        gain = 0.1 if pos == 10.0 else 0.0
        runs.append(
            _run(
                tmp_path,
                trial,
                {"loss.bce_weight": bce, "loss.pos_weight": pos},
                {"val/recall": 0.7 + gain, "val/ap": 0.6 + gain, "val/best_f1": 0.55 + gain},
            )
        )
    pos = {e.key: e for e in parameter_effects(fake_summary(runs))}["loss.pos_weight"]
    assert not pos.calibration_only and pos.verdict().startswith("matters: ")
    assert all(q.matters for q in pos.quality)


def test_training_noise_widens_the_verdict(tmp_path: Path) -> None:
    """Two seeds per configuration whose values differ by 0.08: a 0.05 effect, clear on
    the picture resamples alone, is within training noise."""
    runs = []
    trial = 0
    for bce, gain in ((0.2, 0.0), (0.8, 0.05)):
        for pos in (1.0, 10.0):
            for seed in (0, 1):
                wobble = 0.04 if seed else -0.04
                values = {k: v + gain + wobble for k, v in (("val/recall", 0.7), ("val/ap", 0.6))}
                params = {"loss.bce_weight": bce, "loss.pos_weight": pos, "runtime.seed": seed}
                runs.append(_run(tmp_path, trial, params, values))
                trial += 1
    summary = fake_summary(runs)
    summary.searched["grid"]["runtime.seed"] = [0, 1]
    effects = {e.key: e for e in parameter_effects(summary)}
    assert "runtime.seed" not in effects
    bce = effects["loss.bce_weight"]
    assert bce.objective.comparison.seeds_measured
    assert bce.detectable is False  # sd 0.057 over 2 seeds × 2 configurations per value
    assert [n for _, _, n in bce.objective.means] == [2, 2]  # configurations, not runs


def test_tied_means_are_compared_as_two_values_not_one_with_itself(tmp_path: Path) -> None:
    """Two values whose means tie exactly (0.5: 0.6 and 0.8; 0.8: 0.7): the interval is
    of one value's configurations against the other's, not [0, 0]."""
    runs = [
        _run(tmp_path, trial, {"loss.bce_weight": bce, "loss.pos_weight": 1.0}, {"val/recall": r})
        for trial, (bce, r) in enumerate([(0.5, 0.6), (0.5, 0.8), (0.8, 0.7)])
    ]
    for run in runs:  # each configuration its own jitter: not identical resamples
        run.samples["val/recall"] = run.final["val/recall"] + RNG.normal(0, 0.02, 1000)
    (effect,) = parameter_effects(fake_summary(runs))
    interval = effect.objective.comparison.interval
    assert effect.objective.spread == pytest.approx(0.0, abs=1e-12) and interval is not None
    assert interval.low < 0.0 < interval.high


def test_a_later_stage_counts_the_runs_it_reused(tmp_path: Path) -> None:
    """A refine stage asks for (0.8, 10.0), which the grid trained as (0.8, 10): that run
    is one of refine's configurations, in its means (one group with 10.0)."""
    runs = []
    grid_points = [(0.2, 1, 0.5), (0.2, 10, 0.6), (0.8, 1, 0.7), (0.8, 10, 0.9)]
    for trial, (bce, pos, recall) in enumerate(grid_points):
        params = {"loss.bce_weight": bce, "loss.pos_weight": pos}
        runs.append(fake_run(tmp_path, trial, recall, [(5, 1, 1)] * 3, params))
    runs[3].also_in.append("refine")  # refine#1 reused grid#3
    refine_points = [(0.5, 10.0, 0.8), (0.5, 3.162, 0.6), (0.8, 3.162, 0.7)]
    for trial, (bce, pos, recall) in zip((0, 2, 3), refine_points, strict=True):
        params = {"loss.bce_weight": bce, "loss.pos_weight": pos}
        runs.append(fake_run(tmp_path, trial, recall, [(5, 1, 1)] * 3, params, stage="refine"))
    summary: StudySummary = fake_summary(runs)
    summary.searched["refine"] = {
        "loss.bce_weight": [0.5, 0.8],
        "loss.pos_weight": [3.162, 10.0],
    }
    refine = {e.key: e for e in parameter_effects(summary) if e.stage == "refine"}
    for key, expected in (
        ("loss.pos_weight", [(3.162, 0.65, 2), (10.0, 0.85, 2)]),
        ("loss.bce_weight", [(0.5, 0.7, 2), (0.8, 0.8, 2)]),
    ):
        means = sorted(refine[key].objective.means)
        assert [(v, n) for v, _, n in means] == [(v, n) for v, _, n in expected], key
        assert [m for _, m, _ in means] == pytest.approx([m for _, m, _ in expected]), key
