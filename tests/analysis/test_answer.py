"""The Answer: computed from a study's records, configurations not runs, one tie rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from segtune.analysis.answer import answer
from segtune.analysis.document import to_markdown
from segtune.analysis.ranking import rank
from segtune.analysis.report import build_blocks
from segtune.analysis.results import write_results
from segtune.analysis.summary import StudySummary, load_study_summary
from segtune.cli.main import main
from tests.analysis.fakes import fake_run, fake_summary

# The demo's 11 runs as `segtune demo` recorded them (summaries, per-picture counts and
# histograms, the study database; no weights): tests/fixtures/demo-study.
DEMO = Path(__file__).parents[1] / "fixtures" / "demo-study"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> StudySummary:
    folder = tmp_path_factory.mktemp("demo") / "study"
    shutil.copytree(DEMO, folder)
    return load_study_summary(folder)


def test_the_demo_answer_names_the_recall_winner_as_over_predicting(demo: StudySummary) -> None:
    found = answer(demo)
    best, tied, quality, disagreement, model = found.sentences
    assert best.startswith(
        "Best configuration by Validation recall, pixel-level, threshold 0.5: **grid#5** "
        "(loss.bce_weight = 0.8, loss.dice_smooth = 0.0001, loss.pos_weight = 10): 0.9644 "
        "(one seed)."
    )
    assert tied.startswith("Every other configuration (10) is worse beyond noise")
    assert "training noise unmeasured, one seed per configuration" in tied
    assert quality == (
        "Threshold-free (ranking quality): Validation average precision: best grid#2 0.9194 "
        "(one seed), 8 of 11 tied with it; Validation best F1 over thresholds: best grid#2 "
        "0.8398 (one seed), 7 of 11 tied with it."
    )
    assert disagreement == (
        "By Validation recall the best is grid#5, which over-predicts ×1.6 and has the lowest "
        "Validation F1 of the 11 configurations (0.7375); by Validation average precision and "
        "Validation best F1 over thresholds it is among the best."
    )
    assert model.startswith(
        "Model to use: `"
    ) and "runs/grid/bce_weight-0.8_dice_smooth-0.0001" in (model)
    assert "threshold 0.845 (F1-best on validation for this model; the tables use 0.5)" in model
    assert len(found.sentences) <= 15
    # The sets behind the sentences: the tie rule's own verdicts.
    assert [c.label for c in found.objective.tied()] == ["grid#5"]
    assert len(found.quality[0].tied()) == 8 and found.quality[0].best.label == "grid#2"  # type: ignore[union-attr]


def test_the_demo_report_opens_with_its_answer(demo: StudySummary, tmp_path: Path) -> None:
    md = to_markdown(build_blocks(demo, tmp_path / "figures", figures=False))
    lines = md.splitlines()
    assert lines[0] == "# Study demo" and lines[2] == "## Answer"
    assert lines[4].startswith("- Best configuration by Validation recall")
    groups = md.split("## Observations", 1)[1].split("\n## ", 1)[0].count("\n### ")
    assert 1 <= groups <= 6


def test_results_json_holds_the_same_answer(demo: StudySummary, tmp_path: Path) -> None:
    write_results(demo, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["answer"]["sentences"] == answer(demo).sentences
    assert results["answer"]["by_objective"]["best"]["configuration"] == "grid#5"
    assert results["answer"]["model"]["threshold"] == pytest.approx(0.845, abs=1e-3)
    assert results["intervals"]["training_noise_measured"] is False
    assert len(results["configurations"]) == 11


def _repeat_study(tmp_path: Path) -> StudySummary:
    """2 configurations × 3 seeds, fixed per-picture records: A's seeds 0.80, 0.70, 0.75;
    B's 0.72, 0.71, 0.73 (A's luckiest seed is the best single run)."""
    rng = np.random.default_rng(3)
    pictures = rng.normal(0, 0.02, 1000)
    runs = []
    trial = 0
    for pos, values in ((10.0, (0.80, 0.70, 0.75)), (1.0, (0.72, 0.71, 0.73))):
        for seed, value in enumerate(values):
            params = {"loss.bce_weight": 0.5, "loss.pos_weight": pos, "runtime.seed": seed}
            run = fake_run(tmp_path, trial, value, [(5, 1, 1)] * 3, params)
            run.samples = {"val/recall": value + pictures}
            runs.append(run)
            trial += 1
    summary = fake_summary(runs, top_k=3)
    summary.searched["grid"]["runtime.seed"] = [0, 1, 2]
    return summary


def test_a_repeat_study_ranks_configurations_and_its_ties_agree_with_their_intervals(
    tmp_path: Path,
) -> None:
    summary = _repeat_study(tmp_path)
    ranked = rank(summary)
    assert [c.label for c in ranked.configs] == ["grid#0", "grid#3"]  # 2 rows, never 6
    assert [c.n for c in ranked.configs] == [3, 3]
    assert ranked.configs[0].mean("val/recall") == pytest.approx(0.75)
    second = ranked.comparison(ranked.configs[1])
    assert second.seeds_measured and second.interval is not None
    assert second.tied is (second.interval.low <= 0 <= second.interval.high)
    assert second.tied  # 0.75 vs 0.72 with sd 0.03 over 3 seeds: not told apart
    md = to_markdown(build_blocks(summary, tmp_path / "figs", figures=False))
    top = md.split("## Top", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in top.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 2
    assert "0.75 ± 0.05 (3 seeds)" in rows[0] and "| yes |" in rows[1]
    assert str(second.interval) in rows[1]  # the interval shown is the one decided by
    write_results(summary, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["intervals"]["training_noise_measured"] is True
    assert "widened by training noise" in results["intervals"]["measures"]
    assert "widened by training noise" in top
    # The model to use is the median seed (0.75), not the luckiest (0.80).
    found = answer(summary)
    assert found.model is not None and found.model.run.final["val/recall"] == 0.75
    assert answer(summary, "best").model.run.final["val/recall"] == 0.80  # type: ignore[union-attr]


def test_best_prints_a_path_that_works_from_another_folder(
    finished_study: Path,
    tmp_path: Path,
    demo_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["best", str(finished_study), "-q"]) == 0
    out = capsys.readouterr()
    path, threshold, epoch = out.out.strip().split("\t")
    assert Path(path).is_absolute() and Path(path).is_file() and out.err == ""
    assert int(epoch) >= 1
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    pictures = next((demo_data / "val" / "images").iterdir())
    if threshold == "none":  # two epochs of a tiny model may separate nothing: collapsed
        assert main(["predict", path, str(pictures), "--out", "masks", "--threshold", "best"]) == 2
        assert "its model collapsed on validation" in capsys.readouterr().err
        threshold = "0.5"
    assert main(["predict", path, str(pictures), "--out", "masks", "--threshold", threshold]) == 0
    assert (tmp_path / "elsewhere" / "masks" / f"{pictures.stem}.png").is_file()
    assert main(["best", str(finished_study), "--by", "val/nope"]) == 2
    assert "--by val/nope: no completed run records it" in capsys.readouterr().err


def test_configurations_that_train_identically_are_named_as_such(tmp_path: Path) -> None:
    """bce_weight 0 multiplies the BCE term (pos_weight's only use) by 0: its two
    pos_weights are one training under two names; at 0.5 they are not."""
    counts = [(5, 1, 1), (4, 2, 2), (6, 0, 1)]
    runs = [
        fake_run(tmp_path, t, 0.7, counts, {"loss.bce_weight": bce, "loss.pos_weight": pw})
        for t, (bce, pw) in enumerate([(0.0, 1.0), (0.0, 10.0), (0.5, 1.0), (0.5, 10.0)])
    ]
    found = answer(fake_summary(runs))
    (group,) = found.same_training
    assert [c.label for c in group.configs] == ["grid#0", "grid#1"]
    sentence = next(s for s in found.sentences if s.startswith("Identical by construction"))
    assert "grid#0 = grid#1 (loss.bce_weight 0 makes loss.pos_weight irrelevant)" in sentence
    assert found.to_json()["same_training"] == [
        {
            "configurations": ["grid#0", "grid#1"],
            "reason": "loss.bce_weight 0 makes loss.pos_weight irrelevant",
        }
    ]
    # A fixed bce_weight of 1 makes a searched dice_smooth irrelevant.
    for r, smooth in zip(runs[2:], (1e-5, 1.0), strict=True):
        r.params = {"loss.dice_smooth": smooth}
    summary = fake_summary(runs[:2])
    summary.runs = runs[2:]
    summary.fixed["loss.bce_weight"] = 1.0
    (group,) = answer(summary).same_training
    assert group.reason == "loss.bce_weight 1 makes loss.dice_smooth irrelevant"
    summary.fixed["loss.bce_weight"] = 0.9
    assert answer(summary).same_training == []
