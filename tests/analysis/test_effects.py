"""Does a parameter matter? A real effect is named, noise is called noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from segtune.analysis.document import to_markdown
from segtune.analysis.effects import noise_floor, parameter_effects
from segtune.analysis.report import build_blocks
from segtune.analysis.summary import StudySummary
from segtune.core.intervals import Interval
from tests.analysis.fakes import fake_run, fake_summary


def _study(tmp_path: Path, seeds: bool = False) -> StudySummary:
    """bce_weight moves recall by 0.3; pos_weight by 0.004 (its values only reshuffle
    noise); every run's picture-sample interval is 0.05 wide."""
    runs = []
    trial = 0
    for bce, base in ((0.2, 0.5), (0.8, 0.8)):
        for pos, wiggle in ((1.0, 0.002), (10.0, -0.002)):
            for seed in (0, 1) if seeds else (0,):
                recall = base + wiggle + 0.01 * seed
                params = {"loss.bce_weight": bce, "loss.pos_weight": pos}
                if seeds:
                    params["runtime.seed"] = seed
                run = fake_run(tmp_path, trial, recall, [(5, 1, 1)] * 3, params)
                run.intervals = {"val/recall": Interval(recall - 0.025, recall + 0.025)}
                runs.append(run)
                trial += 1
    summary = fake_summary(runs)
    if seeds:
        summary.searched["grid"]["runtime.seed"] = [0, 1]
    return summary


def test_a_real_effect_and_a_null_one_are_told_apart(tmp_path: Path) -> None:
    summary = _study(tmp_path)
    effects = {e.key: e for e in parameter_effects(summary)}
    assert set(effects) == {"loss.bce_weight", "loss.pos_weight"}
    assert effects["loss.bce_weight"].detectable is True
    assert effects["loss.pos_weight"].detectable is False
    assert effects["loss.bce_weight"].verdict().startswith("matters: the mean moves by 0.3 ")
    assert effects["loss.pos_weight"].verdict() == (
        "no effect detectable above run-to-run noise: spread 0.004 ≤ noise floor 0.05"
    )
    md = to_markdown(build_blocks(summary, tmp_path / "figs", figures=False))
    section = md.split("## Does a parameter matter?", 1)[1].split("\n## ", 1)[0]
    assert "training noise unmeasured (one seed per point)" in section
    assert "| grid | loss.pos_weight | 1: 0.652 (2); 10: 0.648 (2) | 0.004 |" in section


def test_seed_repeats_enter_the_noise_floor_and_the_ties(tmp_path: Path) -> None:
    summary = _study(tmp_path, seeds=True)
    floor = noise_floor(summary)
    assert floor.seeds is not None and abs(floor.seeds - 0.01) < 1e-9
    assert floor.value == floor.pictures  # 0.05 > 0.01
    assert "runtime.seed" not in {e.key for e in parameter_effects(summary)}
    tied = {r.label for r in summary.tied_with_best()}
    best = summary.ranked()[0]
    assert best.label in tied
    md = to_markdown(build_blocks(summary, tmp_path / "figs", figures=False))
    assert "Training noise measured: 4 configuration(s)" in md
    assert "over seeds: mean ± sd (runs)" in md


def test_paired_resamples_find_an_effect_the_unpaired_widths_would_hide(tmp_path: Path) -> None:
    """Every run shares the picture-sample variation (wide intervals, 0.2): bce_weight
    adds 0.05 on every resample, pos_weight only independent jitter."""
    import numpy as np

    rng = np.random.default_rng(0)
    pictures = rng.normal(0.7, 0.05, 1000)  # the same resampled pictures for every run
    runs = []
    for trial, (bce, pos) in enumerate([(0.2, 1.0), (0.2, 10.0), (0.8, 1.0), (0.8, 10.0)]):
        params = {"loss.bce_weight": bce, "loss.pos_weight": pos}
        gain = 0.05 if bce == 0.8 else 0.0
        run = fake_run(tmp_path, trial, 0.7 + gain, [(5, 1, 1)] * 3, params)
        run.samples = {"val/recall": pictures + gain + rng.normal(0, 0.002, 1000)}
        run.intervals = {"val/recall": Interval(0.6 + gain, 0.8 + gain)}
        runs.append(run)
    effects = {e.key: e for e in parameter_effects(fake_summary(runs))}
    assert effects["loss.bce_weight"].detectable is True
    assert effects["loss.bce_weight"].spread < effects["loss.bce_weight"].floor.value  # type: ignore[operator]
    assert effects["loss.pos_weight"].detectable is False
    assert "paired 95 % interval of that difference" in effects["loss.pos_weight"].verdict()
    assert effects["loss.bce_weight"].verdict().startswith("matters: the mean moves by 0.05")
    # One seed per point: the verdict says the interval covers the pictures only.
    assert (
        effects["loss.bce_weight"]
        .verdict()
        .endswith("(picture-sample noise only: training noise unmeasured, one seed per point)")
    )


def test_tied_means_are_compared_as_two_values_not_one_with_itself(tmp_path: Path) -> None:
    """Two values whose means tie exactly (0.5: 0.6 and 0.8; 0.8: 0.7, as in a demo's
    refine stage): the paired interval is of 0.8's runs against 0.5's, not [0, 0]."""
    import numpy as np

    rng = np.random.default_rng(1)
    runs = []
    for trial, (bce, recall) in enumerate([(0.5, 0.6), (0.5, 0.8), (0.8, 0.7)]):
        params = {"loss.bce_weight": bce, "loss.pos_weight": 1.0}
        run = fake_run(tmp_path, trial, recall, [(5, 1, 1)] * 3, params)
        run.samples = {"val/recall": recall + rng.normal(0, 0.02, 1000)}
        run.intervals = {"val/recall": Interval(recall - 0.05, recall + 0.05)}
        runs.append(run)
    (effect,) = parameter_effects(fake_summary(runs))
    assert effect.spread == 0.0 and effect.paired is not None
    assert effect.paired.low < 0.0 < effect.paired.high
    assert "(from 0.7 at 0.5 to 0.7 at 0.8)" in effect.verdict()


def test_a_later_stage_counts_the_runs_it_reused(tmp_path: Path) -> None:
    """A refine stage asks for (0.8, 10.0), which the grid trained as (0.8, 10): that run
    is one of refine's points, in its means (one group with 10.0) and in its heatmap."""
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
    summary = fake_summary(runs)
    summary.searched["refine"] = {
        "loss.bce_weight": [0.5, 0.8],
        "loss.pos_weight": [3.162, 10.0],
    }
    refine = {e.key: e for e in parameter_effects(summary) if e.stage == "refine"}
    for key, expected in (
        ("loss.pos_weight", [(3.162, 0.65, 2), (10.0, 0.85, 2)]),
        ("loss.bce_weight", [(0.5, 0.7, 2), (0.8, 0.8, 2)]),
    ):
        means = sorted(refine[key].means)
        assert [(v, n) for v, _, n in means] == [(v, n) for v, _, n in expected], key
        assert [m for _, m, _ in means] == pytest.approx([m for _, m, _ in expected]), key
    # The heatmaps draw a stage's runs from the same list: no empty (0.8, 10) cell.
    assert [r.label for r in summary.stage_runs("refine")] == [
        "grid#3",
        "refine#0",
        "refine#3",
        "refine#2",
    ]
