from __future__ import annotations

from pathlib import Path

from segtune.analysis.document import to_html, to_markdown
from segtune.analysis.patterns import describe_pattern, fp_word, group_runs, pattern_of, tp_word
from segtune.analysis.report import build_blocks
from segtune.core.metrics import PictureCounts
from tests.analysis.fakes import fake_run, fake_summary


def _runs(tmp_path: Path) -> list:
    return [
        fake_run(tmp_path, 0, 0.0, [(0, 0, 5), (0, 0, 5), (0, 0, 5)]),  # all black
        fake_run(tmp_path, 1, 0.0, [(0, 3, 5), (0, 0, 5), (0, 0, 5)]),  # FP only
        fake_run(tmp_path, 2, 0.9, [(5, 0, 0), (4, 2, 1), (3, 0, 2)]),  # TP 1,2,3; FP 2
        fake_run(tmp_path, 3, 0.5, [(0, 0, 5), (4, 0, 1), (3, 0, 2)]),  # TP 2,3
        fake_run(tmp_path, 4, 0.95, [(5, 0, 0), (4, 2, 1), (3, 0, 2)]),  # same as 2
        fake_run(tmp_path, 5, 0.4, [(0, 0, 5), (4, 0, 1), (3, 0, 2)]),  # same as 3
    ]


def test_grouping_order_and_titles(tmp_path: Path) -> None:
    groups = group_runs(_runs(tmp_path))
    assert [g.title for g in groups] == [
        "True positives on pictures 1, 2, 3; false positives on picture 2",
        "True positives on pictures 2, 3; no false positives",
        "False positives only — no true positive on any preview picture; "
        "false positives on picture 1",
        "All black — no positive pixel predicted on any preview picture",
    ]
    assert [[r.trial for r in g.runs] for g in groups] == [[2, 4], [3, 5], [1], [0]]
    assert [g.pattern.kind for g in groups] == ["found", "found", "fp_only", "all_black"]


def test_pattern_of_uses_pictures_with_counts(tmp_path: Path) -> None:
    run = _runs(tmp_path)[2]
    p = pattern_of(run)
    assert p.tp_pictures == (1, 2, 3) and p.fp_pictures == (2,)
    assert describe_pattern(p).startswith("True positives on pictures 1, 2, 3")


def test_quantity_words() -> None:
    assert tp_word(PictureCounts(1, "s", tp=5, fp=0, fn=95, positives=100)) == "few"
    assert tp_word(PictureCounts(1, "s", tp=30, fp=0, fn=70, positives=100)) == "some"
    assert tp_word(PictureCounts(1, "s", tp=60, fp=0, fn=40, positives=100)) == "most"
    assert fp_word(PictureCounts(1, "s", tp=0, fp=5, fn=0, positives=100)) == "few"
    assert fp_word(PictureCounts(1, "s", tp=0, fp=150, fn=0, positives=100)) == "many"
    assert fp_word(PictureCounts(1, "s", tp=0, fp=1, fn=0, positives=0)) == "many"
    assert fp_word(PictureCounts(1, "s", tp=0, fp=0, fn=0, positives=0)) == "none"


def test_top_k_runs_are_bold_wherever_they_appear(tmp_path: Path) -> None:
    summary = fake_summary(_runs(tmp_path), top_k=2)
    assert [r.trial for r in summary.top()] == [4, 2]
    blocks = build_blocks(summary, tmp_path / "figures", figures=False)
    md = to_markdown(blocks)
    bold_rows = [line for line in md.splitlines() if line.startswith("| **")]
    # each top run: once in its observation group and once in the all-runs table
    # the trial number links to the run's appendix section
    assert sum("**[4](#run-grid-4)**" in line for line in bold_rows) == 2
    assert sum("**[2](#run-grid-2)**" in line for line in bold_rows) == 2
    assert not any("(#run-grid-3)" in line or "(#run-grid-5)" in line for line in bold_rows)
    assert '<a id="run-grid-4"></a>' in md  # the anchor they point at
    html = to_html(blocks, "t")
    assert html.count('<tr class="top">') == 4


def test_report_sections_and_top_k_header(tmp_path: Path) -> None:
    blocks = build_blocks(fake_summary(_runs(tmp_path)), tmp_path / "figures", figures=False)
    md = to_markdown(blocks)
    for heading in (
        "## Setup",
        "### Fixed parameters",
        "## Searched parameters",
        "## Observations",
        "## Top 2 runs",
        "## Figures",
        "## All runs",
        "## Appendix",
    ):
        assert heading in md
    assert "| grid | loss.bce_weight | 0, 0.1, 0.2, 0.3, 0.4, 0.5 |" in md
    assert "*Top 2 by Validation recall, pixel-level, threshold 0.5, final epoch (epoch 2)*" in md
    assert "1 = p-a, 2 = p-b, 3 = p-c" in md


def test_levels_separate_runs_when_every_run_has_tp_and_fp_on_every_picture(
    tmp_path: Path,
) -> None:
    """Real data: presence puts every run in one group; quantity words must not."""
    runs = [
        fake_run(tmp_path, 0, 0.9, [(90, 5, 10), (80, 5, 20), (70, 5, 30)]),  # most, few FP
        fake_run(tmp_path, 1, 0.9, [(95, 4, 5), (85, 3, 15), (75, 2, 25)]),  # same words
        fake_run(tmp_path, 2, 0.2, [(5, 200, 95), (3, 300, 97), (8, 150, 92)]),  # few, many
    ]
    groups = group_runs(runs)
    assert [[r.trial for r in g.runs] for g in groups] == [[0, 1], [2]]
    assert groups[0].title == (
        "True positives per picture: 1 most, 2 most, 3 most; false positives: 1 few, 2 few, 3 few"
    )
    assert groups[1].title.startswith("True positives per picture: 1 few, 2 few, 3 few")
    assert groups[1].title.endswith("false positives: 1 many, 2 many, 3 many")


def test_captions_name_the_weight_average_when_runs_evaluated_one(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    assert fake_summary(runs).kept_words == "final epoch"
    for r in runs:
        r.weight_average = 0.999
    assert fake_summary(runs).kept_words == "final epoch, weights averaged (decay 0.999)"
    runs[0].weight_average = None
    assert fake_summary(runs).kept_words == (
        "final epoch, some runs' weights averaged (decay 0.999)"
    )


def test_captions_name_test_time_flips_when_runs_were_validated_with_them(
    tmp_path: Path,
) -> None:
    runs = _runs(tmp_path)
    for r in runs:
        r.tta = "flips"
    assert fake_summary(runs).kept_words == "final epoch, validated with test-time flips"
    runs[0].tta = "none"
    assert fake_summary(runs).kept_words == "final epoch, some runs validated with test-time flips"


def test_the_setup_says_when_validation_pictures_are_training_pictures(tmp_path: Path) -> None:
    summary = fake_summary(_runs(tmp_path))
    setup = to_markdown(build_blocks(summary, tmp_path / "figures", figures=False))
    assert "| Validation subset | 3 pictures (seed 1) |" in setup
    summary.val_also_trained = ["b = t7"]
    setup = to_markdown(build_blocks(summary, tmp_path / "figures", figures=False))
    assert (
        "| Validation subset | 3 pictures (seed 1); **1 of them are training pictures too** "
        "(the same file: b = t7): their scores measure memory, not generalisation |"
    ) in setup
