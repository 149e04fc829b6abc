"""The study report: setup, searched parameters, observations, top-k, figures, appendix.

``write_report(study_dir)`` reads the study summary (run records + storage only) and
writes ``report.md``, ``report.html`` and ``figures/*.png`` into ``<study>/report``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segtune.analysis import figures as F
from segtune.analysis.document import (
    Block,
    Cell,
    Heading,
    Image,
    Link,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from segtune.analysis.effects import parameter_effects
from segtune.analysis.patterns import fp_word, group_runs, tp_word
from segtune.analysis.results import write_results
from segtune.analysis.summary import RunSummary, StudySummary, load_study_summary
from segtune.core.faults import fault_point
from segtune.core.intervals import RESAMPLES, Interval
from segtune.core.metrics import OVER_PREDICTION, degenerate, describe_metric, trivially_maximised
from segtune.core.records import atomic_write_text
from segtune.data.subsets import subset_seed

RUN_COLUMNS = (
    "val/recall",
    "val/precision",
    "val/f1",
    "val/iou",
    "val/ap",
    "val/best_f1",
    "val/best_threshold",
    "train/recall",
    "train/f1",
    "train/loss",
)

# Beside the objective in the top-k table: what a degenerate winner cannot fake.
TOP_COLUMNS = (
    "val/precision",
    "val/recall",
    "val/f1",
    "val/ap",
    "val/best_f1",
    "val/best_threshold",
)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _params(run: RunSummary, keys: list[str]) -> list[str]:
    return [_fmt(run.params[k]) if k in run.params else "–" for k in keys]


def build_blocks(s: StudySummary, fig_dir: Path, *, figures: bool = True) -> list[Block]:
    """The report as blocks, section by section; figures are drawn into ``fig_dir``.

    ``figures=False`` builds every table and text block without drawing a figure (what
    tests of the computed tables use: drawing is most of a report's time).
    """
    draw = FigureDrawer(fig_dir) if figures else None
    keys = s.searched_keys
    return [
        Heading(1, f"Study {s.name}"),
        *_setup_blocks(s),
        *_searched_blocks(s),
        *_observation_blocks(s, keys),
        *_top_k_blocks(s, keys),
        *_effect_blocks(s),
        Heading(2, "Figures"),
        *(draw([F.topk_grid(s), *F.heatmaps(s), F.pr_curves(s)]) if draw else []),
        *_all_runs_blocks(s, keys),
        *_appendix_blocks(s, draw),
    ]


class FigureDrawer:
    """Saves drawn figures under ``fig_dir`` and turns them into the report's images."""

    def __init__(self, fig_dir: Path) -> None:
        self.fig_dir = fig_dir

    def __call__(self, made: Sequence[F.Figure | None]) -> list[Block]:
        blocks: list[Block] = []
        for fig in made:
            if fig is not None:
                F.save(fig, self.fig_dir)
                blocks.append(Image(f"figures/{fig.name}.png", fig.caption, fig.title))
        return blocks


def _setup_blocks(s: StudySummary) -> list[Block]:
    """What was run: subsets, masks, objective, threshold, how each split is scored."""
    objective = describe_metric(s.objective, s.threshold)
    train_eval = (
        f"a fixed sample of {s.train_eval_pictures} of the training pictures "
        f"(seed {subset_seed(s.seed, 'train_eval')})"
        if s.train_eval_pictures < s.train_pictures
        else f"all {s.train_pictures} pictures of the training subset"
    )
    train_eval += (
        f", every {s.train_every} epochs, at the last epoch and at a kept earlier one"
        if s.train_every
        else ", at the last epoch and at a kept earlier one only (eval.train_every)"
    )
    runs = (
        f"{len(s.runs)} ({sum(r.status == 'completed' for r in s.runs)} completed, "
        f"{sum(r.status == 'pruned' for r in s.runs)} pruned, "
        f"{sum(r.status == 'failed' for r in s.runs)} failed)"
    )
    rows = [
        ["Training subset", f"{s.train_pictures} pictures (seed {s.seed})"],
        ["Validation subset", _validation_subset(s)],
        ["Masks", s.masks],
        ["Objective", f"{objective}, {s.direction}"],
        ["Threshold", f"{s.threshold:g} (a pixel is positive when its probability is ≥ it)"],
        [
            "Training metrics (train/*)",
            f"evaluation pass (eval mode, no augmentation) on {train_eval}, full stitched pictures",
        ],
        ["Training loss (train/loss)", "running mean over augmented batches of the epoch"],
        [
            "Validation metrics (val/*)",
            f"all {s.val_pictures} validation pictures, full stitched pictures, pixel "
            "counts summed over the split",
        ],
        ["Epochs", str(s.epochs)],
        ["Runs", runs],
    ]
    lost = [r for r in s.runs if r.record and r.record.tracking_lost]
    if lost:
        reasons = sorted({why for r in lost if r.record for why in r.record.tracking_lost})
        rows.append(
            [
                "Tracking",
                f"**tracking lost for {len(lost)} run(s)** "
                f"({', '.join(r.label for r in lost)}): {'; '.join(reasons)}; the runs' own "
                "records are complete",
            ]
        )
    return [
        Heading(2, "Setup"),
        Table(["Item", "Value"], rows),
        Heading(3, "Fixed parameters"),
        Table(["Parameter", "Value"], [[k, _fmt(v)] for k, v in sorted(s.fixed.items())]),
    ]


def _searched_blocks(s: StudySummary) -> list[Block]:
    rows = [
        [stage, k, ", ".join(_fmt(v) for v in values)]
        for stage, grid in s.searched.items()
        for k, values in grid.items()
    ]
    return [
        Heading(2, "Searched parameters"),
        Table(["Stage", "Parameter", "Values tested"], rows),
    ]


def _observation_blocks(s: StudySummary, keys: list[str]) -> list[Block]:
    """Runs grouped by which preview pictures get true and false positives."""
    objective = describe_metric(s.objective, s.threshold)
    blocks: list[Block] = [
        Heading(2, "Observations: which validation pictures get true and false positives")
    ]
    if s.preview_stems:
        names = ", ".join(f"{i} = {stem}" for i, stem in enumerate(s.preview_stems, start=1))
        blocks.append(
            Paragraph(
                f"Preview pictures (the first {len(s.preview_stems)} of the validation subset, "
                f"sorted by file stem): {names}. Counts are pixels at threshold "
                f"{s.threshold:g} at the {s.kept_words}; top-{s.top_k} runs by {objective} "
                "are in bold."
            )
        )
    short = describe_metric(s.objective, s.threshold, short=True)
    for group in group_runs(s.runs):
        rows: list[list[Cell]] = [
            [
                r.stages_text,
                _run_link(r),
                *_params(r, keys),
                _fmt(r.final.get(s.objective, float("nan"))),
                degenerate(r.final) or "",
            ]
            for r in group.runs
        ]
        blocks += [
            Heading(3, group.title),
            Paragraph(f"{len(group.runs)} configuration(s)."),
            Table(
                ["Stage", "Trial", *keys, short, "Flag"],
                rows,
                bold=[s.is_top(r) for r in group.runs],
            ),
        ]
    return blocks


def _all_runs_blocks(s: StudySummary, keys: list[str]) -> list[Block]:
    cols = [describe_metric(k, s.threshold, short=True) for k in RUN_COLUMNS]
    rows: list[list[Cell]] = [
        [
            r.stages_text,
            _run_link(r),
            *_params(r, keys),
            r.status + (f" ({r.failure})" if r.failure else ""),
            degenerate(r.final) or "",
            *[_fmt(r.final.get(k, "")) for k in RUN_COLUMNS],
        ]
        for r in s.runs
    ]
    return [
        Heading(2, "All runs"),
        Table(
            ["Stage", "Trial", *keys, "Status", "Flag", *cols],
            rows,
            bold=[s.is_top(r) for r in s.runs],
            caption=(
                f"Values of the {s.kept_words}; threshold {s.threshold:g}; top-{s.top_k} in bold"
            ),
        ),
    ]


def _appendix_blocks(s: StudySummary, draw: FigureDrawer | None) -> list[Block]:
    """Every run: its parameters, status and folder, its preview pictures' counts and,
    when figures are drawn, its curves and overlays."""
    blocks: list[Block] = [Heading(2, "Appendix: every run")]
    metric_name = s.objective.split("/", 1)[1]
    for r in s.runs:
        params = ", ".join(f"{k} = {_fmt(v)}" for k, v in r.params.items())
        failure = f" — {r.failure}" if r.failure else ""
        blocks += [
            Heading(3, f"Run {r.label}", anchor=_run_anchor(r)),
            Paragraph(f"{params}. Status: {r.status}{failure}. Folder: {r.run_dir}"),
        ]
        if r.pictures:
            blocks.append(_picture_table(s, r))
        if draw is None:
            continue
        if r.history and metric_name not in ("loss",):
            blocks += draw([F.metric_curves(r, metric_name)])
        if r.pictures and (r.run_dir / "previews").is_dir():
            blocks += draw([F.run_strip(r, s)])
    return blocks


def _picture_table(s: StudySummary, r: RunSummary) -> Table:
    rows = [
        [
            str(p.index),
            p.stem,
            str(p.positives),
            f"{p.tp} ({tp_word(p)})",
            f"{p.fp} ({fp_word(p)})",
            str(p.fn),
        ]
        for p in r.pictures
    ]
    return Table(
        ["Picture", "Stem", "Positive pixels", "TP", "FP", "FN"],
        rows,
        caption=(
            f"Validation preview pictures, threshold {r.threshold:g}, "
            f"{s.kept_words} (epoch {r.kept_epoch or r.epochs_done})"
        ),
    )


def _run_anchor(r: RunSummary) -> str:
    return f"run-{r.stage}-{r.trial}"


def _run_link(r: RunSummary) -> Link:
    """The trial number, linked to the run's appendix section."""
    return Link(str(r.trial), f"#{_run_anchor(r)}")


def _noise_words(s: StudySummary, objective: str) -> str:
    """What the study measured of its noise, in words."""
    spreads = s.seed_spreads()
    if spreads:
        return (
            f"Training noise measured: {len(spreads)} configuration(s) were trained with "
            "several seeds; their objective's range over seeds (max − min) has median "
            f"{float(np.median(spreads)):.4g} (largest {max(spreads):.4g}). A run whose "
            "configuration's range over seeds overlaps the best's is also marked tied."
        )
    return (
        "Training noise is unmeasured: each point was trained once with one seed, and "
        "another seed or thread count can move a run by more than these intervals. Add "
        "`repeats: k`, or a stage `repeat: {from: <stage>, top_k: 5, seeds: 3}` to measure "
        "it."
    )


def _selection_words(top: list[RunSummary]) -> list[str]:
    """Top runs that kept an epoch whose lead over their last epoch is within
    picture-sample noise: their kept epoch may have been selected on noise."""
    runs, keys = [], set()
    for rank, r in enumerate(top, start=1):
        m = r.record.selection_margin if r.record else None
        if m is None or not m.within_noise:
            continue
        keys.add(r.selected_by or "")
        runs.append(
            f"#{rank} ({r.label}: epoch {r.kept_epoch} of {r.epochs_done}, "
            f"{m.kept_value - m.last_value:+.4g} {m.interval})"
        )
    if not runs:
        return []
    return [
        f"Kept epochs selected within noise: {', '.join(runs)} kept an earlier epoch than "
        f"their last for a lead by {', '.join(sorted(keys))} whose paired 95 % interval over "
        "the validation pictures contains 0, so their last epoch cannot be told apart from it."
    ]


def _effect_blocks(s: StudySummary) -> list[Block]:
    """Does a parameter matter? Its spread against the noise floor, in words."""
    effects = parameter_effects(s)
    if not effects:
        return []
    objective = describe_metric(s.objective, s.threshold)
    floor = effects[0].floor
    return [
        Heading(2, "Does a parameter matter?"),
        Paragraph(
            f"For each searched parameter: the mean {objective} of the stage's completed "
            "runs at each value (other parameters and seeds averaged) and its spread "
            "(largest minus smallest mean). It matters when the paired 95 % interval of "
            "that difference (the same resampled validation pictures for every run) "
            "excludes 0 and, with several seeds, the spread exceeds the range over seeds; "
            f"without per-picture records, against the noise floor. Measured here: "
            f"{floor.words()}."
        ),
        Table(
            ["Stage", "Parameter", "Mean per value (runs)", "Spread", "Verdict"],
            [
                [
                    e.stage,
                    e.key,
                    "; ".join(f"{_fmt(v)}: {m:.4g} ({n})" for v, m, n in e.means),
                    f"{e.spread:.3g}",
                    e.verdict(),
                ]
                for e in effects
            ],
        ),
    ]


def _top_k_blocks(s: StudySummary, keys: list[str]) -> list[Block]:
    """The top-k table with intervals, the difference to the best, ties and flags, and
    the words a reviewer needs to read it (what noise was measured, degenerate winners)."""
    top = s.top()
    epochs = sorted({r.kept_epoch or r.epochs_done for r in top})
    epoch = ("epoch " if len(epochs) == 1 else "epochs ") + ", ".join(map(str, epochs))
    objective = describe_metric(s.objective, s.threshold)
    diffs = s.differences_to_best()
    tied = s.tied_with_best()
    blocks: list[Block] = [Heading(2, f"Top {len(top)} runs")]
    words = _top_k_words(s, top, bool(diffs), len(tied))
    blocks += [Paragraph(" ".join(words))] if words else []
    cols = [describe_metric(k, s.threshold, short=True) for k in TOP_COLUMNS]
    short = describe_metric(s.objective, s.threshold, short=True)
    with_seeds = bool(s.seed_spreads())
    rows = [
        _top_k_row(s, i, r, keys, diffs.get(r.label), any(t is r for t in tied), with_seeds)
        for i, r in enumerate(top, start=1)
    ]
    blocks.append(
        Table(
            [
                "Rank",
                "Stage",
                "Trial",
                *keys,
                f"{short} [95 % interval]",
                *([f"{short} over seeds: mean ± sd (runs)"] if with_seeds else []),
                "Difference to #1 [95 %]",
                "Tied with #1",
                "Flag",
                *cols,
            ],
            rows,
            caption=f"Top {len(top)} by {objective}, {s.kept_words} ({epoch})",
        )
    )
    return blocks


def _top_k_words(s: StudySummary, top: list[RunSummary], intervals: bool, tied: int) -> list[str]:
    """What a reader needs to read the top-k table: how many runs tie with the best,
    which noise was measured, degenerate winners."""
    objective = describe_metric(s.objective, s.threshold)
    words: list[str] = []
    if top:
        n = len(top[0].record.pictures) if top[0].record else 0
        words.append(
            f"{tied - 1} of the {len(s.ranked()) - 1} other completed runs cannot be "
            f"told apart from the best by {objective}, so ranking them below it is not a "
            "finding."
        )
        words.append(
            "Picture-sample noise: the 95 % interval of a run's difference to the best "
            f"(paired bootstrap over the same {n} validation pictures, {RESAMPLES} "
            "resamples, seed 0) contains 0 for a tied run."
            if intervals
            else "No picture-sample interval is shown: the runs' records hold no "
            "per-picture counts (recorded from segtune 0.2 on)."
        )
        words.append(_noise_words(s, objective))
        words += _selection_words(top)
    trivial = trivially_maximised(s.objective)
    if trivial is not None:
        words.append(
            f"The objective can be maximised by a degenerate predictor ({trivial}): read "
            "the ranking with precision, F1 and AP; the Flag column names runs that "
            f"predict nothing or over-predict (≥ {OVER_PREDICTION:g}× the positive pixels)."
        )
    return words


def _top_k_row(
    s: StudySummary,
    rank: int,
    r: RunSummary,
    keys: list[str],
    diff: Interval | None,
    tied: bool,
    with_seeds: bool,
) -> list[Cell]:
    value = _fmt(r.final.get(s.objective, ""))
    if s.objective in r.intervals:
        value += f" {r.intervals[s.objective]}"
    seeds = s.seed_values(r)
    over_seeds = (
        [f"{np.mean(seeds):.4g} ± {np.std(seeds, ddof=1):.2g} ({len(seeds)})"]
        if with_seeds and len(seeds) > 1
        else ["one seed"]
        if with_seeds
        else []
    )
    return [
        str(rank),
        r.stages_text,
        _run_link(r),
        *_params(r, keys),
        value,
        *over_seeds,
        "—" if rank == 1 or diff is None else str(diff),
        "best" if rank == 1 else ("yes" if tied else "no"),
        degenerate(r.final) or "",
        *[_fmt(r.final.get(k, "")) for k in TOP_COLUMNS],
    ]


def write_report(
    study_dir: Path,
    out: Path | None = None,
    storage_url: str | None = None,
    summary: StudySummary | None = None,
) -> Path:
    """Write ``report.md`` / ``report.html`` / ``figures/``; returns the report folder
    (``summary``: the study's, when the caller has read it already)."""
    summary = summary or load_study_summary(study_dir, storage_url)
    out = out or study_dir / "report"
    blocks = build_blocks(summary, out / "figures")
    atomic_write_text(out / "report.md", to_markdown(blocks))
    fault_point("report")
    atomic_write_text(out / "report.html", to_html(blocks, f"segtune study {summary.name}"))
    write_results(summary, out)
    return out


def _validation_subset(s: StudySummary) -> str:
    """The validation subset's size and seed, and how many of its pictures are training
    pictures too (the same file), which no validation score can survive unremarked."""
    words = f"{s.val_pictures} pictures (seed {subset_seed(s.seed, 'val')})"
    shared = s.val_also_trained
    if shared:
        shown = ", ".join(shared[:3]) + (", …" if len(shared) > 3 else "")
        words += (
            f"; **{len(shared)} of them are training pictures too** (the same file: {shown}): "
            "their scores measure memory, not generalisation"
        )
    return words
