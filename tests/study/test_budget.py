"""``segtune init --budget``: the ladder of cuts, on a fixed cost model, and end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from segtune.cli.main import main
from segtune.core.config import build_run_config
from segtune.core.errors import ConfigError
from segtune.study.budget import (
    CostModel,
    EncoderCost,
    Start,
    biggest_cuts,
    fit,
    parse_duration,
)

START = Start("resnet34", 256, None, 5, None, (1.0, 3.0, 10.0, 30.0), (0.2, 0.5, 0.8), 4)


def _model() -> CostModel:
    """300 pictures of 544 × 384 (DeepCrack's), 30 validation pictures; a resnet34 step
    of 8 pages of 128 px takes 0.4 s, resnet18 0.25 s, mobilenet_v2 0.15 s."""
    config = build_run_config({"data": {"train": "t", "val": "v"}, "optim": {"batch_size": 8}})
    costs = {
        "resnet34": EncoderCost(0.4, 3.0, 1.0),
        "resnet18": EncoderCost(0.25, 2.0, 1.0),
        "mobilenet_v2": EncoderCost(0.15, 1.5, 1.0),
    }
    return CostModel(config, [(384, 544)] * 300, [(384, 544)] * 30, costs)


def test_durations() -> None:
    assert parse_duration("2h") == 7200 and parse_duration("30m") == 1800
    assert parse_duration("1h30m") == 5400 and parse_duration("90min") == 5400
    assert parse_duration("1.5h") == 5400
    for bad in ("soon", "30", "2 parsecs", "10s"):
        with pytest.raises(ConfigError, match="--budget"):
            parse_duration(bad)


@pytest.mark.parametrize("budget", [24 * 3600.0, 3 * 3600.0, 1800.0])
def test_the_fitted_start_fits_and_every_cut_is_a_line(budget: float) -> None:
    model = _model()
    fitted = fit(START, model, budget)
    assert fitted.fits and fitted.seconds <= budget
    assert fitted.seconds == pytest.approx(model.study_seconds(fitted.start))
    times = [model.study_seconds(START)]
    for key, words in fitted.lines:
        assert key in {"encoder", "pages_per_epoch", "race", "grid", "scale", "epochs"}
        before, after = words.split(": ", 1)[1].split(" → ")
        assert before and after
    # Cuts only ever make it cheaper, and a bigger budget never gets a smaller study.
    times.append(fitted.seconds)
    assert times[-1] <= times[0]
    bigger = fit(START, model, budget * 2)
    assert bigger.seconds >= fitted.seconds


def test_a_budget_too_small_ends_at_the_smallest_start_and_says_so() -> None:
    fitted = fit(START, _model(), 60.0)
    assert not fitted.fits
    s = fitted.start
    assert (s.encoder, s.epochs, s.configs, s.max_seeds) == ("mobilenet_v2", 2, 4, 2)
    assert s.pages_per_epoch == 32  # MIN_PAGES_PER_EPOCH: four batches


def test_a_budget_the_start_already_fits_changes_nothing() -> None:
    model = _model()
    fitted = fit(START, model, model.study_seconds(START) + 1)
    assert fitted.start == START and fitted.lines == []


def test_the_biggest_cuts_are_ordered_by_what_they_save() -> None:
    model = _model()
    cuts = biggest_cuts(START, model)
    assert len(cuts) == 3
    unit = {"s": 1, "min": 60, "h": 3600}
    seconds = [
        float(w.split()[0]) * unit[w.split()[1]] for w in (c.rsplit(" → ", 1)[1] for c in cuts)
    ]
    assert seconds == sorted(seconds)


def test_init_with_a_budget_writes_a_spec_that_plans_within_it(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segtune.study.plan import make_plan
    from segtune.study.spec import load_spec

    spec = tmp_path / "quick.yaml"
    args = ["init", str(demo_data / "train"), str(demo_data / "val"), "--out", str(spec)]
    assert main([*args, "--budget", "1m", "--device", "cpu", "-q"]) == 0
    printed = capsys.readouterr().out.splitlines()
    cuts = [line for line in printed if line.startswith("--budget 1m on cpu: ")]
    assert cuts, printed
    text = spec.read_text()
    comments = [line for line in text.splitlines() if line.strip().startswith("# --budget 1m: ")]
    assert comments and all(c.strip()[2:].replace(": ", " on cpu: ", 1) in cuts for c in comments)
    loaded = load_spec(spec)
    assert loaded.run_config({}).runtime.device == "cpu"
    plan = make_plan(loaded, measure=False)
    assert plan.runs <= 12 * 4
    # Without a budget: the estimate, one line.
    assert main([*args, "--force", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("estimated ")
