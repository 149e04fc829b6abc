"""The study report: the answer first, then the top configurations, whether each
parameter matters, observations, figures, setup, every configuration and every run.

``write_report(study_dir)`` reads the study summary (run records + storage only) and
writes ``report.md``, ``report.html`` and ``figures/*.png`` into ``<study>/report``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segtune.analysis import figures as F
from segtune.analysis.answer import Answer, answer, value_words
from segtune.analysis.document import (
    Block,
    Bullets,
    Cell,
    Contents,
    Heading,
    Image,
    Link,
    Paragraph,
    Table,
    Thumbnails,
    to_html,
    to_markdown,
)
from segtune.analysis.effects import parameter_effects
from segtune.analysis.patterns import fp_word, group_configurations, share_words, tp_word
from segtune.analysis.ranking import Configuration, Ranking, configurations, same_training
from segtune.analysis.results import write_results
from segtune.analysis.summary import RunSummary, StudySummary, load_study_summary
from segtune.core.faults import fault_point
from segtune.core.intervals import RESAMPLES
from segtune.core.metrics import (
    ALMOST_NOTHING,
    OVER_PREDICTION,
    degenerate,
    describe_metric,
    trivially_maximised,
)
from segtune.core.records import atomic_write_text
from segtune.data.subsets import subset_seed
from segtune.study.spec import SEED_KEY, ParamValue

# A run's every value, in its appendix section.
RUN_COLUMNS = (
    "val/recall",
    "val/precision",
    "val/f1",
    "val/iou",
    "val/ap",
    "val/best_f1",
    "val/best_threshold",
    "val/auc",
    "train/recall",
    "train/f1",
    "train/loss",
)

# Beside the objective in the configuration tables: what a degenerate winner cannot
# fake (the rest of a run's values are in the appendix, so a table fits 1400 px).
TABLE_COLUMNS = ("val/precision", "val/f1", "val/ap", "val/best_f1")
_TOLERANT_F1 = re.compile(r"val/f1_\d+px")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _params(params: dict[str, ParamValue], keys: list[str]) -> list[str]:
    return [_fmt(params[k]) if k in params else "–" for k in keys]


def _short_key(key: str) -> str:
    """A parameter's column header: its last part (``loss.pos_weight`` → ``pos_weight``)."""
    return key.rsplit(".", 1)[-1]


def build_blocks(
    s: StudySummary, fig_dir: Path, *, figures: bool = True, found: Answer | None = None
) -> list[Block]:
    """The report as blocks, section by section; figures are drawn into ``fig_dir``.

    ``figures=False`` builds every table and text block without drawing a figure (what
    tests of the computed tables use: drawing is most of a report's time); ``found``:
    the study's answer, when the caller has computed it.
    """
    draw = FigureDrawer(fig_dir) if figures else None
    keys = [k for k in s.searched_keys if k != SEED_KEY]
    found = found or answer(s)
    return [
        Heading(1, f"Study {s.name}"),
        *_answer_blocks(s, found),
        Contents(),
        *_top_blocks(s, found.objective, keys),
        *_race_blocks(s, draw),
        *_effect_blocks(s),
        *_observation_blocks(s, found.objective, keys),
        Heading(2, "Figures"),
        *(draw([F.topk_grid(s), *F.heatmaps(s), F.pr_curves(s)]) if draw else []),
        *_setup_blocks(s),
        *_searched_blocks(s),
        *_all_configurations_blocks(s, found.objective, keys),
        *_appendix_blocks(s, draw),
    ]


def _answer_blocks(s: StudySummary, found: Answer) -> list[Block]:
    """The answer first: at most a screen of sentences (:mod:`segtune.analysis.answer`)."""
    return [Heading(2, "Answer"), Bullets(found.sentences)]


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

    def overlays(self, run: RunSummary, s: StudySummary) -> Thumbnails:
        """A run's preview overlays: a thumbnail each, linking to the full resolution."""
        items = F.save_overlays(run, self.fig_dir)
        return Thumbnails(
            [(f"figures/{thumb}", f"figures/{full}", label) for thumb, full, label in items],
            F.overlay_caption(run, s),
        )


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


def _observation_blocks(s: StudySummary, ranked: Ranking, keys: list[str]) -> list[Block]:
    """Configurations grouped by how they do on the preview pictures, each group titled
    by what sets it apart (:mod:`segtune.analysis.patterns`)."""
    groups = group_configurations(ranked.configs)
    if not groups:
        return []
    short = describe_metric(s.objective, s.threshold, short=True)
    top = {c.label for c in ranked.configs[: s.top_k]}
    names = ", ".join(f"{i} = {stem}" for i, stem in enumerate(s.preview_stems, start=1))
    blocks: list[Block] = [
        Heading(2, "Observations: which validation pictures each configuration gets right"),
        Paragraph(
            f"Preview pictures (the first {len(s.preview_stems)} of the validation subset, "
            f"sorted by file stem): {names}. Per picture: the share of its positive pixels "
            f"found, and false-positive pixels as a share of them, at threshold "
            f"{s.threshold:g}, {s.kept_words}, mean over seeds. Configurations with alike "
            f"shares form a group; its title is what sets it apart from the others; the "
            f"top {s.top_k} by {short} are in bold."
        ),
    ]
    for g in groups:
        pictures = len(g.profiles[0].found)
        rows: list[list[Cell]] = [
            [
                _config_link(c),
                *_params(c.params, keys),
                value_words(c, s.objective),
                c.flag() or "",
                *[share_words(p, i) for i in range(pictures)],
            ]
            for c, p in zip(g.configs, g.profiles, strict=True)
        ]
        blocks += [
            Heading(3, g.title),
            Table(
                ["Configuration", *map(_short_key, keys), short, "Flag"]
                + [f"Picture {i}" for i in range(1, pictures + 1)],
                rows,
                bold=[c.label in top for c in g.configs],
            ),
        ]
    return blocks


def _lead_cells(s: StudySummary, c: Configuration, keys: list[str]) -> list[Cell]:
    """A configuration's link, parameters, objective (mean ± sd over seeds) and flag."""
    return [_config_link(c), *_params(c.params, keys), value_words(c, s.objective), c.flag() or ""]


def _tail_keys(s: StudySummary) -> list[str]:
    """TABLE_COLUMNS, and F1 with a pixel tolerance when the runs score one."""
    tolerant = sorted({k for r in s.runs for k in r.final if _TOLERANT_F1.fullmatch(k)})
    return [k for k in (*TABLE_COLUMNS, *tolerant) if k != s.objective]


def _tail_cells(s: StudySummary, c: Configuration) -> list[Cell]:
    """The values a degenerate winner cannot fake: precision, F1, AP, best F1."""
    return [_mean(c, k) for k in _tail_keys(s)]


def _mean(c: Configuration, key: str) -> str:
    values = c.values(key)
    return _fmt(float(np.mean(values))) if len(values) == c.n else ""


def _lead_headers(s: StudySummary, keys: list[str]) -> list[str]:
    short = describe_metric(s.objective, s.threshold, short=True)
    return ["Configuration", *map(_short_key, keys), f"{short} (mean ± sd, seeds)", "Flag"]


def _tail_headers(s: StudySummary) -> list[str]:
    return [describe_metric(k, s.threshold, short=True) for k in _tail_keys(s)]


def _all_configurations_blocks(s: StudySummary, ranked: Ranking, keys: list[str]) -> list[Block]:
    """Every configuration, best first, and every run that did not complete."""
    blocks: list[Block] = [
        Heading(2, "All configurations"),
        Table(
            [*_lead_headers(s, keys), *_tail_headers(s)],
            [[*_lead_cells(s, c, keys), *_tail_cells(s, c)] for c in ranked.configs],
            bold=[i < s.top_k for i in range(len(ranked.configs))],
            caption=(
                f"Means over seeds of the {s.kept_words}; threshold {s.threshold:g}; "
                f"top {s.top_k} in bold; every run's values are in the appendix"
            ),
        ),
    ]
    other = [r for r in s.runs if r.status != "completed"]
    if other:
        blocks.append(
            Table(
                ["Stage", "Run", *map(_short_key, keys), "Status"],
                [
                    [
                        r.stages_text,
                        _run_link(r),
                        *_params(r.params, keys),
                        r.status + (f" ({r.failure})" if r.failure else ""),
                    ]
                    for r in other
                ],
                caption="Runs that did not complete",
            )
        )
    return blocks


def _appendix_blocks(s: StudySummary, draw: FigureDrawer | None) -> list[Block]:
    """Every run: its parameters, status and folder, all its values, its preview
    pictures' counts and, when figures are drawn, its curves and overlays (each
    thumbnail links to the full-resolution overlay)."""
    blocks: list[Block] = [Heading(2, "Appendix: every run")]
    metric_name = s.objective.split("/", 1)[1]
    for r in s.runs:
        params = ", ".join(f"{k} = {_fmt(v)}" for k, v in r.params.items())
        failure = f" — {r.failure}" if r.failure else ""
        blocks += [
            Heading(3, f"Run {r.label}", anchor=_run_anchor(r)),
            Paragraph(f"{params}. Status: {r.status}{failure}. Folder: `{r.run_dir.resolve()}`"),
        ]
        values = [k for k in RUN_COLUMNS if k in r.final]
        if values:
            blocks.append(
                Table(
                    [describe_metric(k, r.threshold, short=True) for k in values],
                    [[_fmt(r.final[k]) for k in values]],
                    caption=f"{s.kept_words} (epoch {r.kept_epoch or r.epochs_done}), "
                    f"threshold {r.threshold:g}; flag: {degenerate(r.final) or 'none'}",
                )
            )
        if r.pictures:
            blocks.append(_picture_table(s, r))
        if draw is None:
            continue
        if r.history and metric_name not in ("loss",):
            blocks += draw([F.metric_curves(r, metric_name)])
        if r.pictures and (r.run_dir / "previews").is_dir():
            blocks.append(draw.overlays(r, s))
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
    """The run's label (``grid#3``), linked to its appendix section."""
    return Link(r.label, f"#{_run_anchor(r)}")


def _config_link(c: Configuration) -> Link:
    """A configuration's label and seed count, linked to its first run's appendix
    section (its other seeds follow in the appendix)."""
    seeds = f" ({c.n} seeds)" if c.n > 1 else ""
    return Link(f"{c.label}{seeds}", f"#{_run_anchor(c.runs[0])}")


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
    """Does a parameter matter? On the objective and on ranking quality, in words."""
    effects = parameter_effects(s)
    if not effects:
        return []
    objective = describe_metric(s.objective, s.threshold)
    short = describe_metric(s.objective, s.threshold, short=True)
    quality = [describe_metric(q.metric, short=True) for q in effects[0].quality]
    return [
        Heading(2, "Does a parameter matter?"),
        Paragraph(
            f"For each searched parameter: the mean {objective} at each value (each "
            "configuration's mean over seeds, other parameters averaged), and the same for "
            f"the threshold-free {' and '.join(quality) or 'measures'}. A parameter "
            "matters for a metric when the 95 % interval of the best minus the worst "
            "value's mean excludes 0: the same tie rule as the rankings (paired bootstrap "
            "over the validation pictures, widened by training noise when seeds were "
            "repeated). A parameter that moves the objective but not the threshold-free "
            "measures moves the probabilities, not the ranking quality: another threshold "
            "gives the same trade-off."
        ),
        Table(
            ["Stage", "Parameter", f"{short} per value (configurations)", "Verdict"],
            [
                [
                    e.stage,
                    e.key,
                    "; ".join(f"{_fmt(v)}: {m:.4g} ({n})" for v, m, n in e.objective.means),
                    e.verdict(),
                ]
                for e in effects
            ],
        ),
    ]


def _top_blocks(s: StudySummary, ranked: Ranking, keys: list[str]) -> list[Block]:
    """The top configurations with the interval the tie decision used, and the words
    a reviewer needs to read them (what noise was measured, degenerate winners)."""
    top = ranked.configs[: s.top_k]
    if not top:
        return []
    objective = describe_metric(s.objective, s.threshold)
    words = [
        f"Ranked by the mean over seeds of {objective}. Tied: the 95 % interval of a "
        "configuration's difference to #1 contains 0 — the interval shown is the one the "
        f"decision used ({ranked.noise_words()}; {RESAMPLES} resamples, seed 0).",
        *_selection_words([c.pick(s.objective) for c in top]),
    ]
    trivial = trivially_maximised(s.objective)
    if trivial is not None:
        words.append(
            f"The objective can be maximised by a degenerate predictor ({trivial}): read "
            "the ranking with precision, F1 and AP; the Flag column names configurations "
            f"that over-predict (≥ {OVER_PREDICTION:g}× the positive pixels), under-predict "
            f"or find almost nothing (recall below {ALMOST_NOTHING:g})."
        )
    rows = [
        [
            str(rank),
            *_lead_cells(s, c, keys),
            "—" if rank == 1 else str(ranked.comparison(c).interval or "not measured"),
            "best" if rank == 1 else _tied_word(ranked.is_tied(c)),
            *_tail_cells(s, c),
        ]
        for rank, c in enumerate(top, start=1)
    ]
    epochs = sorted({r.kept_epoch or r.epochs_done for c in top for r in c.runs})
    epoch = ("epoch " if len(epochs) == 1 else "epochs ") + ", ".join(map(str, epochs))
    return [
        Heading(2, f"Top {len(top)} configurations"),
        Paragraph(" ".join(words)),
        Table(
            [
                "Rank",
                *_lead_headers(s, keys),
                "Difference to #1 [95 %]",
                "Tied",
                *_tail_headers(s),
            ],
            rows,
            caption=f"Top {len(top)} by {objective}, {s.kept_words} ({epoch})",
        ),
    ]


def _race_blocks(s: StudySummary, draw: FigureDrawer | None) -> list[Block]:
    """Each race: who was dropped, when, against whom, by which interval; the
    survivors."""
    blocks: list[Block] = []
    short = describe_metric(s.objective, s.threshold, short=True)
    same = same_training(configurations(s.runs), s.fixed)
    for race in s.races:
        labels = {c.get("label", c["configuration"]) for c in race["configurations"]}
        twins = [g.line for g in same if labels & {c.label for c in g.configs}]
        rows: list[list[Cell]] = []
        for c in race["configurations"]:
            d = c["dropped"]
            sd = "" if c["sd"] is None else f" ± {c['sd']:.2g}"
            rows.append(
                [
                    c.get("label", c["configuration"]),
                    str(len(c["values"])),
                    f"{c['mean']:.4g}{sd}",
                    "racing"
                    if d is None and not race["ended"]
                    else "survivor"
                    if d is None
                    else f"round {d['round']}",
                    "" if d is None else d["lost_to"],
                    ""
                    if d is None
                    else f"[{d['interval'][0]:.4g}, {d['interval'][1]:.4g}] at "
                    f"{100 * d['level']:.4g} %",
                ]
            )
        survivors = ", ".join(race["survivors"]) or "none"
        state = "ended" if race["ended"] else "still running"
        blocks += [
            Heading(2, f"Race {race['stage']}"),
            Paragraph(
                f"Race of stage {race['stage']} ({state}; up to {race['max_seeds']} seeds, "
                f"confidence {race['confidence']:g} over the whole race: "
                f"{race['error_control']}). Survivors: {survivors}."
                + (f" Identical by construction: {'; '.join(twins)}." if twins else "")
            ),
            Table(
                [
                    "Configuration",
                    "Seeds",
                    f"{short} (mean ± sd)",
                    "Dropped at",
                    "Lost to",
                    "Its difference to it [interval at the corrected level]",
                ],
                rows,
                caption=f"{describe_metric(s.objective, s.threshold)}, {s.kept_words}",
            ),
            *(draw([F.race_figure(race, s)]) if draw else []),
        ]
    return blocks


def _tied_word(tied: bool | None) -> str:
    return "not judged" if tied is None else "yes" if tied else "no"


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
    found = answer(summary)
    blocks = build_blocks(summary, out / "figures", found=found)
    atomic_write_text(out / "report.md", to_markdown(blocks))
    fault_point("report")
    atomic_write_text(out / "report.html", to_html(blocks, f"segtune study {summary.name}"))
    write_results(summary, out, found)
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
