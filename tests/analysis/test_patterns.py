from __future__ import annotations

from pathlib import Path

from segtune.analysis.document import to_html, to_markdown
from segtune.analysis.patterns import MAX_GROUPS, fp_word, group_configurations, tp_word
from segtune.analysis.ranking import rank
from segtune.analysis.report import build_blocks
from segtune.core.metrics import PictureCounts, flag_counts
from tests.analysis.fakes import fake_run, fake_summary


def _runs(tmp_path: Path) -> list:
    return [
        fake_run(tmp_path, 0, 0.0, [(0, 0, 5), (0, 0, 5), (0, 0, 5)]),  # all black
        fake_run(tmp_path, 1, 0.0, [(0, 3, 5), (0, 0, 5), (0, 0, 5)]),  # FP only
        fake_run(tmp_path, 2, 0.9, [(5, 0, 0), (4, 2, 1), (3, 0, 2)]),  # finds picture 1
        fake_run(tmp_path, 3, 0.5, [(0, 0, 5), (4, 0, 1), (3, 0, 2)]),  # misses picture 1
        fake_run(tmp_path, 4, 0.95, [(5, 0, 0), (4, 2, 1), (3, 0, 2)]),  # same as 2
        fake_run(tmp_path, 5, 0.4, [(0, 0, 5), (4, 0, 1), (3, 0, 2)]),  # same as 3
    ]


def _configs(runs: list) -> list:
    return rank(fake_summary(runs)).configs


def test_groups_are_titled_by_what_sets_them_apart(tmp_path: Path) -> None:
    groups = group_configurations(_configs(_runs(tmp_path)))
    assert [g.kind for g in groups] == ["found", "found", "almost nothing", "all black"]
    assert [sorted(c.runs[0].trial for c in g.configs) for g in groups] == [
        [2, 4],
        [3, 5],
        [1],
        [0],
    ]
    assert groups[0].title == (
        "Finds more on picture 1: 100 % of its positives, the others 0 % (2 configurations)"
    )
    assert groups[1].title.startswith("Misses picture 1: finds 0 % of its positives")
    assert groups[2].title == "Finds almost nothing: recall below 5 % (1 configuration)"
    assert groups[3].title == "All black: no positive pixel predicted (1 configuration)"


def test_seeds_of_one_configuration_stay_together_and_at_most_six_groups(
    tmp_path: Path,
) -> None:
    """Twelve configurations, each found share different by 0.08, two seeds each: the
    seeds are one row, and the groups never outnumber MAX_GROUPS."""
    runs = []
    for k in range(12):
        for seed in (0, 1):
            tp = 10 + 8 * k + seed  # out of 100 on every picture
            params = {"loss.bce_weight": 0.1 * k, "loss.pos_weight": 1.0, "runtime.seed": seed}
            run = fake_run(tmp_path, 2 * k + seed, tp / 100, [(tp, 5, 100 - tp)] * 3, params)
            runs.append(run)
    groups = group_configurations(_configs(runs))
    assert len(groups) <= MAX_GROUPS
    assert sum(len(g.configs) for g in groups) == 12
    assert all(c.n == 2 for g in groups for c in g.configs)


def test_no_group_claims_positives_it_barely_found(tmp_path: Path) -> None:
    """A configuration that finds 3 % of picture 1 while the others find 90 % is said to
    miss it, not to have true positives on it."""
    runs = [
        fake_run(tmp_path, 0, 0.9, [(90, 5, 10), (90, 5, 10), (90, 5, 10)]),
        fake_run(tmp_path, 1, 0.6, [(3, 5, 97), (90, 5, 10), (90, 5, 10)]),
    ]
    groups = group_configurations(_configs(runs))
    titles = [g.title for g in groups]
    assert "Misses picture 1: finds 3 % of its positives, the others 90 % (1 configuration)" in (
        titles
    )
    assert not any("true positives on picture 1" in t.lower() for t in titles)


def test_the_measured_degenerate_runs_are_flagged() -> None:
    """The issue's cases: recall 0.0027 finds almost nothing; 1.6x the positives
    over-predicts (precision 0.60); a cautious model under-predicts."""
    assert flag_counts(27, 10, 9973) == "finds almost nothing (recall 0.0027)"
    assert flag_counts(9644, 6510, 356) == "over-predicts ×1.6"
    assert flag_counts(500, 10, 500) == "under-predicts ×2.0"
    assert flag_counts(900, 150, 100) is None
    assert flag_counts(0, 0, 100) == "all black"


def test_quantity_words() -> None:
    assert tp_word(PictureCounts(1, "s", tp=5, fp=0, fn=95, positives=100)) == "few"
    assert tp_word(PictureCounts(1, "s", tp=30, fp=0, fn=70, positives=100)) == "some"
    assert tp_word(PictureCounts(1, "s", tp=60, fp=0, fn=40, positives=100)) == "most"
    assert fp_word(PictureCounts(1, "s", tp=0, fp=5, fn=0, positives=100)) == "few"
    assert fp_word(PictureCounts(1, "s", tp=0, fp=150, fn=0, positives=100)) == "many"
    assert fp_word(PictureCounts(1, "s", tp=0, fp=1, fn=0, positives=0)) == "many"
    assert fp_word(PictureCounts(1, "s", tp=0, fp=0, fn=0, positives=0)) == "none"


def test_top_k_configurations_are_bold_wherever_they_appear(tmp_path: Path) -> None:
    summary = fake_summary(_runs(tmp_path), top_k=2)
    assert [c.label for c in rank(summary).configs[:2]] == ["grid#4", "grid#2"]
    blocks = build_blocks(summary, tmp_path / "figures", figures=False)
    md = to_markdown(blocks)
    bold_rows = [line for line in md.splitlines() if line.startswith("| **")]
    # each top configuration: once in its observation group and once in the table of
    # all configurations; its label links to its first run's appendix section
    assert sum("**[grid#4](#run-grid-4)**" in line for line in bold_rows) == 2
    assert sum("**[grid#2](#run-grid-2)**" in line for line in bold_rows) == 2
    assert not any("(#run-grid-3)" in line or "(#run-grid-5)" in line for line in bold_rows)
    assert '<a id="run-grid-4"></a>' in md  # the anchor they point at
    html = to_html(blocks, "t")
    assert html.count('<tr class="top">') == 4


def test_report_sections_and_top_k_header(tmp_path: Path) -> None:
    blocks = build_blocks(fake_summary(_runs(tmp_path)), tmp_path / "figures", figures=False)
    md = to_markdown(blocks)
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Answer",
        "## Top 2 configurations",
        "## Does a parameter matter?",
        "## Observations: which validation pictures each configuration gets right",
        "## Figures",
        "## Setup",
        "## Searched parameters",
        "## All configurations",
        "## Appendix: every run",
    ]
    assert md.index("**Contents:**") > md.index("## Answer")  # the answer comes first
    assert "| grid | loss.bce_weight | 0, 0.1, 0.2, 0.3, 0.4, 0.5 |" in md
    assert "*Top 2 by Validation recall, pixel-level, threshold 0.5, final epoch (epoch 2)*" in md
    assert "1 = p-a, 2 = p-b, 3 = p-c" in md


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
