"""``segtune plan``: counts, warnings that name the key and the numbers, the probe."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from segtune.cli.main import main
from segtune.study.plan import largest_fitting_micro_batch, make_plan
from segtune.study.spec import StudySpec, build_spec
from tests.conftest import TINY_MODEL


def _spec(data: Path, **changes: Any) -> StudySpec:
    tree: dict[str, Any] = {
        "name": "p",
        "data": {"train": str(data / "train"), "val": str(data / "val")},
        "fixed": {
            "model": dict(TINY_MODEL),
            "pages": {"page_size": 64},
            "optim": {"epochs": 2, "batch_size": 16},
            "runtime": {"device": "cpu"},
        },
        "stages": [
            {"name": "grid", "grid": {"loss.dice_smooth": [1e-6, 1e-7], "loss.pos_weight": [1, 2]}},
            {"name": "fine", "refine": {"from": "grid", "top_k": 2}},
            {"name": "noise", "repeat": {"from": "grid", "top_k": 2, "seeds": 3}},
        ],
        "objective": {"metric": "val/recall"},
        "repeats": 2,
    }
    for key, value in changes.items():
        tree["fixed"].setdefault(key, {}).update(value)
    return build_spec(tree, "spec.yaml")


def test_counts_and_warnings_name_the_keys_and_numbers(demo_data: Path) -> None:
    plan = make_plan(_spec(demo_data), measure=False)
    assert [(s.name, s.runs) for s in plan.stages] == [
        ("grid", 8),
        ("fine", 2 * 4 * 2),  # 2 best × (2 values each: its own + 1 midpoint)² × 2 seeds
        ("noise", 6),
    ]
    text = "\n".join(plan.lines())
    assert "stage grid (grid): 8 run(s) (4 points × 2 seeds)" in text
    assert "up to 16, known when grid finishes" in text
    smooth = next(w for w in plan.warnings if w.startswith("loss.dice_smooth"))
    assert "the values 1e-07, 1e-06 cannot change the loss of a batch holding positive" in smooth
    assert "batch of 16 pages of 64 px" in smooth and "float32 resolves steps of" in smooth
    assert any(
        w.startswith("objective val/recall: predicting every pixel positive") for w in plan.warnings
    )
    pos = next(w for w in plan.warnings if w.startswith("loss.pos_weight"))
    assert "the largest value 2 is far below the data's imbalance (1 − f)/f = " in pos


def test_validation_pictures_that_are_training_pictures_are_named(
    demo_data: Path, tmp_path: Path
) -> None:
    assert not any(
        "also training" in w for w in make_plan(_spec(demo_data), measure=False).warnings
    )
    shutil.copytree(demo_data / "val", tmp_path / "val")
    stems = sorted(p.stem for p in (demo_data / "train" / "images").iterdir())[:2]
    for kind in ("images", "masks"):  # two training pictures copied under new names
        for i, stem in enumerate(stems):
            source = next((demo_data / "train" / kind).glob(f"{stem}.*"))
            shutil.copy(source, tmp_path / "val" / kind / f"copy{i}{source.suffix}")
    spec = _spec(demo_data)
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"val": tmp_path / "val"})})
    leak = next(w for w in make_plan(spec, measure=False).warnings if "also training" in w)
    assert leak == (
        f"2 validation picture(s) are also training pictures (the same file: copy0 = "
        f"{stems[0]}, copy1 = {stems[1]}): scores on them measure memory, not "
        "generalisation; remove them from one side"
    )


def test_pages_larger_than_pictures_and_no_positives_are_named(
    demo_data: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    for mask in (data / "train" / "masks").iterdir():
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(mask)
    spec = _spec(data, pages={"page_size": 128}, sampling={"positive_fraction": 0.5})
    warnings = make_plan(spec, measure=False).warnings
    assert any(
        "pages.page_size 128: 12 training picture(s) are smaller than a page" in w for w in warnings
    )
    assert any("pages are 75% padding on average" in w for w in warnings)
    assert any(
        w.startswith("sampling.positive_fraction 0.5: none of the 12 sampled") for w in warnings
    )


def test_data_statistics_count_the_pixels_the_loss_counts(demo_data: Path, tmp_path: Path) -> None:
    # Masks with a "don't care" band (255 beside positives 1) and a region of interest:
    # the plan reads them (was: refused, "mask has 3 distinct values") and takes the
    # positive fraction over the pixels that count.
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    train = data / "train"
    (train / "roi").mkdir()
    roi = np.zeros((64, 64), np.uint8)
    roi[:, :40] = 255
    positives = scored = 0
    for path in sorted((train / "masks").iterdir()):
        mask = (np.asarray(Image.open(path)) > 0).astype(np.uint8)
        mask[:8] = 255
        Image.fromarray(mask).save(path)
        Image.fromarray(roi).save(train / "roi" / path.name)
        counts = (mask != 255) & (roi > 0)
        positives += int((mask[counts] == 1).sum())
        scored += int(counts.sum())
    spec = _spec(data, pages={"page_size": 32})
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"ignore_value": 255})})
    plan = make_plan(spec, measure=False)
    assert plan.data.positive_fraction == pytest.approx(positives / scored)
    assert 0 < plan.data.positive_fraction < 1


def test_masks_whose_positives_are_the_majority_are_called_likely_inverted(
    demo_data: Path, tmp_path: Path
) -> None:
    from segtune.data.io import MaskReading
    from segtune.data.pairs import check_pictures

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    for path in (data / "train" / "masks").iterdir():  # cracks drawn black on white
        Image.fromarray(np.where(np.asarray(Image.open(path)) > 0, 0, 255).astype(np.uint8)).save(
            path
        )
    plan = make_plan(_spec(data), measure=False)
    warning = f"positives are {plan.data.positive_fraction:.1%} of the pixels: if the masks"
    assert plan.data.positive_fraction > 0.5
    fix = "data.invert_masks: true (--invert-masks)"
    assert any(w.startswith(f"data: {warning}") and fix in w for w in plan.warnings)
    lines = check_pictures(data / "train").summary_lines()
    assert any(line.startswith("note: positives are ") and fix in line for line in lines)
    assert not any("invert" in line for line in check_pictures(demo_data / "train").summary_lines())
    # Said so, the masks read as the ones they were inverted from.
    spec = _spec(data)
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"invert_masks": True})})
    inverted = make_plan(spec, measure=False)
    assert (
        inverted.data.positive_fraction
        == make_plan(_spec(demo_data), measure=False).data.positive_fraction
    )
    assert not any("invert" in w for w in inverted.warnings)
    report = check_pictures(data / "train", MaskReading(invert=True))
    assert report.positive_fractions == check_pictures(demo_data / "train").positive_fractions
    assert report.summary_lines()[2].startswith("positive pixels (mask value 0): mean ")
    # Said so of masks that were not drawn black on white: the note says to leave it off.
    lines = check_pictures(demo_data / "train", MaskReading(invert=True)).summary_lines()
    assert any(
        "read with data.invert_masks (--invert-masks): if the masks draw" in x for x in lines
    )


def test_page_statistics_follow_the_resized_pages(demo_data: Path, tmp_path: Path) -> None:
    # One positive pixel at (40, 40) of a 64 px picture: at half size, one of the four
    # 16 px pages of the 32 px picture holds it (was: pages of 16 original pixels, 1 in 16).
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    for path in (data / "train" / "masks").iterdir():
        mask = np.zeros((64, 64), np.uint8)
        mask[40, 40] = 255
        Image.fromarray(mask).save(path)
    spec = _spec(data, pages={"page_size": 16, "resize": {"scale": 0.5}})
    assert make_plan(spec, measure=False).data.page_positive_share == 1 / 4


def test_the_largest_micro_batch_that_fits_is_found_by_halving() -> None:
    tried: list[int] = []

    def step(size: int) -> None:
        tried.append(size)
        if size > 4:
            raise MemoryError("fake out of memory")

    assert largest_fitting_micro_batch(step, 16) == 4 and tried == [16, 8, 4]

    def never(size: int) -> None:
        raise MemoryError

    assert largest_fitting_micro_batch(never, 8) is None


def test_plan_command_measures_time_and_memory(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    spec = {
        "name": "p",
        "data": {"train": str(demo_data / "train"), "val": str(demo_data / "val")},
        "fixed": {
            "model": dict(TINY_MODEL),
            "pages": {"page_size": 32},
            "runtime": {"device": "cpu"},
        },
        "stages": [{"name": "grid", "grid": {"loss.bce_weight": [0.2, 0.8]}}],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["plan", str(tmp_path / "s.yaml")]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "stage grid (grid): 2 run(s)" in out
    assert "memory of one step:" in out
    # A range with what it assumes, from repeated warm timings.
    line = next(x for x in out.splitlines() if x.startswith("  time with one worker: about"))
    assert "(range " in line and " per run" in line
    assert "assumes cpu, " in out and "(5 warm steps)" in out and "(3 passes)" in out
    assert "load " in out and "the high end adds 15%" in out
    disk = next(x for x in out.splitlines() if x.startswith("  disk:"))
    assert "of previews per run" in disk and "report)" in disk
    # Never silent while probing: a line for each thing timed.
    assert "plan: timing 5 training steps of 16 pages…" in captured.err
    assert not (tmp_path / "studies").exists()  # planning writes no study


def test_the_estimate_range_spans_the_repetitions_and_a_race_s_fewest_runs(
    demo_data: Path,
) -> None:
    from segtune.study.plan import UNSEEN_SHARE, Probe, run_seconds
    from segtune.study.spec import build_spec

    tree = _spec(demo_data).model_dump(mode="json", by_alias=True, exclude_none=True)
    tree["stages"] = [
        {"name": "grid", "grid": {"loss.pos_weight": [1, 2, 4]}},
        {"name": "race", "race": {"from": "grid", "max_seeds": 4}},
    ]
    tree["repeats"] = 1
    raced = build_spec(tree, "test")
    plan = make_plan(raced, measure=False)
    assert plan.runs == 3 * 4 and plan.fewest_runs == 3 * 2  # round 2 is always run
    plan.probe = Probe(
        seconds_per_step=1.0,
        seconds_per_val_megapixel=2.0,
        peak_memory_mb=1.0,
        memory_kind="x",
        step_times=[0.9, 1.0, 1.3],
        val_times=[1.5, 2.0, 2.5],
        loader_seconds=0.1,
        run_overhead_s=3.0,
        decode_s_per_mp=0.5,
        uncached_megapixels=10.0,
    )
    est = plan.estimate()
    assert est is not None
    c = raced.run_config({})
    fastest = run_seconds(c, plan.data, plan.probe, 1.0, 1.5) + 3.0
    slowest = run_seconds(c, plan.data, plan.probe, 1.4, 2.5) + 3.0
    assert est.low == pytest.approx(fastest * plan.fewest_runs + 5.0)
    assert est.high == pytest.approx(slowest * (1 + UNSEEN_SHARE) * plan.runs + 5.0)
    assert est.low < est.centre < est.high


def test_init_writes_a_commented_spec_from_the_data_that_plans(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segtune.study.spec import load_spec

    out = tmp_path / "my study.yaml"
    assert main(["init", str(demo_data / "train"), str(demo_data / "val"), "--out", str(out)]) == 0
    text = out.read_text()
    spec = load_spec(out)
    assert spec.name == "my-study" and spec.objective.metric == "val/f1"
    weights = spec.stages[0].grid["loss.pos_weight"]  # type: ignore[index]
    ratio = float(text.split("(1 - f)/f = ")[1].split(".")[0])
    assert weights[0] == 1.0 and 0.8 * ratio <= weights[-1] <= 1.2 * ratio
    assert "# The median picture's shorter side is 64 px: pages of\n    # 64 px" in text
    assert spec.run_config({}).pages.page_size == 64
    assert main(["init", str(demo_data / "train"), str(demo_data / "val"), "--out", str(out)]) == 2
    assert "exists (use --force" in capsys.readouterr().err
    assert main(["plan", str(out), "--no-probe"]) == 0
    planned = capsys.readouterr().out
    # The start measures training noise by default: it races the grid (12 configurations
    # × up to 3 new seeds).
    assert spec.stages[1].race is not None and spec.stages[1].race.from_ == "grid"
    assert "stage race (race): 36 run(s): up to 36 (12 configurations of grid" in planned


def test_init_with_an_ignore_value(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segtune.study.spec import load_spec

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    for path in (data / "train" / "masks").iterdir():
        mask = (np.asarray(Image.open(path)) > 0).astype(np.uint8)
        mask[:8] = 255  # don't care
        Image.fromarray(mask).save(path)
    out = tmp_path / "s.yaml"
    argv = ["init", str(data / "train"), str(data / "val"), "--out", str(out), "--no-probe"]
    assert main(argv) == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "mask has 3 distinct values (0, 1, 255)" in err and "--ignore-value" in err
    assert main([*argv, "--ignore-value", "255"]) == 0
    assert load_spec(out).run_config({}).data.ignore_value == 255
    assert main(["plan", str(out), "--no-probe"]) == 0


def test_sweep_prints_the_plan_once_when_a_study_starts(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.study.helpers import write_spec

    spec = write_spec(tmp_path / "s.yaml", demo_data, "once", {"loss.bce_weight": [0.5]})
    study = tmp_path / "study"
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0
    assert capsys.readouterr().out.count("plan of study once:") == 1
    assert main(["sweep", str(spec), "--dir", str(study)]) == 0  # resume: no plan
    assert "plan of study" not in capsys.readouterr().out
    assert main(["sweep", str(spec), "--dir", str(tmp_path / "quiet"), "-q"]) == 0
    assert "plan of study" not in capsys.readouterr().out


def test_the_probe_times_a_step_with_its_weight_average(demo_data: Path) -> None:
    plan = make_plan(_spec(demo_data, optim={"ema_decay": 0.99}), measure=True)
    assert plan.probe is not None and plan.probe.seconds_per_step > 0


def test_the_probe_times_the_runs_precision_and_names_an_emulated_one(
    demo_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import segtune.core.runtime
    import segtune.engine.infer
    import segtune.engine.step

    seen: list[torch.dtype | None] = []
    forward, predict = segtune.engine.step.batch_forward, segtune.engine.infer.predict_at_scales

    def spy_forward(*args: Any) -> Any:
        seen.append(args[-1])
        return forward(*args)

    def spy_predict(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["amp_dtype"])
        return predict(*args, **kwargs)

    monkeypatch.setattr(segtune.engine.step, "batch_forward", spy_forward)
    monkeypatch.setattr(segtune.engine.infer, "predict_at_scales", spy_predict)
    monkeypatch.setattr(segtune.core.runtime, "cpu_computes_bf16", lambda: False)
    plan = make_plan(_spec(demo_data, runtime={"precision": "bf16"}), measure=True)
    assert seen and set(seen) == {torch.bfloat16}  # the steps and every validation pass
    assert any(w.startswith("runtime.precision bf16 on a CPU without bf16") for w in plan.warnings)
    seen.clear()
    plan = make_plan(_spec(demo_data), measure=True)  # auto: fp32 on a CPU, nothing to say
    assert seen and set(seen) == {None}
    assert not any(w.startswith("runtime.precision") for w in plan.warnings)


@pytest.mark.parametrize(
    ("epochs", "eval_", "seconds"),
    [
        (4, {"select": "last"}, 4 * 10 * 1.0 + (4 + 1) * 10 * 2.0),
        (4, {"select": "best"}, 4 * 10 * 1.0 + (4 + 1 + 2) * 10 * 2.0),  # kept epoch again
        (1, {"select": "best"}, 1 * 10 * 1.0 + (1 + 1) * 10 * 2.0),  # one epoch: it is kept
        # 30 training pictures every 2 epochs: 2 passes of 3 validations' worth each
        (
            4,
            {"select": "last", "train_eval_pictures": "all", "train_every": 2},
            4 * 10 * 1.0 + (4 + 2 * 3) * 10 * 2.0,
        ),
    ],
)
def test_time_per_run_counts_every_evaluation_pass(
    demo_data: Path, epochs: int, eval_: dict[str, Any], seconds: float
) -> None:
    from segtune.study.plan import Probe

    plan = make_plan(
        _spec(demo_data, optim={"epochs": epochs, "batch_size": 8}, eval=eval_), measure=False
    )
    plan.data.train_pictures, plan.data.val_pictures = 30, 10
    plan.data.pages_per_epoch, plan.data.val_pixels = 80, 10_000_000  # 10 steps; 10 MP
    plan.probe = Probe(
        seconds_per_step=1.0, seconds_per_val_megapixel=2.0, peak_memory_mb=1.0, memory_kind="x"
    )
    assert plan.seconds_per_run() == pytest.approx(seconds)
