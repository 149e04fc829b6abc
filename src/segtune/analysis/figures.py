"""Figures, computed from the study summary then rendered with matplotlib.

Every title, axis label, legend entry and caption names its metric through
:func:`segtune.core.metrics.describe_metric`, and every drawn artist carries its metric key
as its ``gid``; :attr:`Figure.keys` is read back from the rendered artists, so a test
can check that a caption names exactly what was drawn.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as mpatches
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from numpy.typing import NDArray

from segtune.analysis.ranking import Configuration, rank
from segtune.analysis.summary import RunSummary, StudySummary
from segtune.core.metrics import ProbabilityHistogram, better, describe_metric
from segtune.core.previews import FN_COLOUR, FP_COLOUR, TP_COLOUR, overlay
from segtune.study.spec import SEED_KEY, ParamValue

LINE_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
OVERLAY_KEYS = ("val/tp", "val/fp", "val/fn")


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    caption: str
    keys: tuple[str, ...]  # metric keys of the drawn artists (their gid)
    png: bytes


def caption_words(keys: Sequence[str], threshold: float) -> str:
    return "; ".join(describe_metric(k, threshold) for k in keys)


def _finish(fig: plt.Figure, name: str, title: str, caption: str) -> Figure:
    drawn = sorted({str(a.get_gid()) for a in fig.findobj(lambda a: a.get_gid() is not None)})
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return Figure(name, title, caption, tuple(drawn), buf.getvalue())


def _legend(ax: plt.Axes, threshold: float) -> None:
    handles = [
        mpatches.Patch(color=c, label=describe_metric(k, threshold, short=True), gid=k)
        for k, c in zip(OVERLAY_KEYS, (TP_COLOUR, FP_COLOUR, FN_COLOUR), strict=True)
    ]
    legend = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    for patch, key in zip(legend.get_patches(), OVERLAY_KEYS, strict=True):
        patch.set_gid(key)  # the legend draws copies of the handles


def topk_grid(summary: StudySummary) -> Figure | None:
    """Top-k configurations (rows: the median seed of each) × preview pictures
    (columns); picture stems above the columns, row labels left of the rows."""
    ranked = rank(summary)
    top = [(c, c.pick(summary.objective)) for c in ranked.configs[: summary.top_k]]
    top = [(c, r) for c, r in top if r.pictures]
    if not top:
        return None
    k = max(len(r.pictures) for _, r in top)
    fig, axes = plt.subplots(len(top), k, figsize=(2.0 * k + 2.4, 2.1 * len(top)), squeeze=False)
    for i, (row, (config, run)) in enumerate(zip(axes, top, strict=True)):
        for col, ax in enumerate(row):
            ax.axis("off")
            if col < len(run.pictures):
                ax.imshow(overlay(run.run_dir / "previews", run.pictures[col], run.threshold, 192))
                if i == 0:
                    ax.set_title(f"{col + 1}: {run.pictures[col].stem}", fontsize=6)
        seeds = f", {config.n} seeds" if config.n > 1 else ""
        label = row[0].text(
            -0.06,
            0.5,
            f"{config.label}\n{config.mean(summary.objective):.3f}{seeds}",
            transform=row[0].transAxes,
            rotation=90,
            ha="right",
            va="center",
            fontsize=7,
        )
        label.set_gid(summary.objective)
    _legend(axes[0][-1], summary.threshold)
    objective = describe_metric(summary.objective, summary.threshold)
    title = f"Top {len(top)} configurations by {objective}"
    fig.suptitle(title, fontsize=9)
    caption = (
        f"{title}: validation preview pictures 1–{k} (columns) of each configuration's "
        f"median seed (rows; the number is the mean over seeds), {summary.kept_words}. "
        f"Colours: {caption_words(OVERLAY_KEYS, summary.threshold)}."
    )
    return _finish(fig, "topk-grid", title, caption)


def save_overlays(run: RunSummary, folder: Path) -> list[tuple[str, str, str]]:
    """Each preview picture's overlay of ``run`` at full resolution and as a thumbnail,
    saved into ``folder``: ``(thumbnail file, full file, label)`` per picture."""
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for pic in run.pictures:
        base = f"overlay-{run.stage}-{run.trial:04d}-{pic.index:02d}"
        full = overlay(run.run_dir / "previews", pic, run.threshold, size=None)
        PILImage.fromarray(full).save(folder / f"{base}.png")
        thumb = overlay(run.run_dir / "previews", pic, run.threshold, size=150)
        PILImage.fromarray(thumb).save(folder / f"{base}-thumb.png")
        label = f"{pic.index}: {pic.stem} — TP {pic.tp} FP {pic.fp} FN {pic.fn}"
        items.append((f"{base}-thumb.png", f"{base}.png", label))
    return items


def overlay_caption(run: RunSummary, summary: StudySummary) -> str:
    return (
        f"Run {run.label}: validation preview pictures (the first {len(run.pictures)} of "
        f"the validation subset, by file stem), prediction vs ground truth at threshold "
        f"{run.threshold:g}, {summary.kept_words}; click a picture for full resolution. "
        f"Colours: {caption_words(OVERLAY_KEYS, run.threshold)}."
    )


def epoch_series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Epochs and ``key``'s values, NaN where an epoch has none (train/* is measured at
    some epochs only): a line joins consecutive measurements, never across epochs that
    were not measured."""
    values = [float(r[key]) if r.get(key) not in (None, "") else np.nan for r in history]
    return [int(r["epoch"]) for r in history], values


def metric_curves(run: RunSummary, metric: str) -> Figure:
    """``train/<metric>`` and ``val/<metric>`` over epochs with validation precision and
    AP beside them (what a degenerate objective cannot fake), the kept epoch marked;
    ``train/loss`` on the right."""
    keys = [f"train/{metric}", f"val/{metric}"]
    keys += [k for k in ("val/precision", "val/ap") if k not in keys]
    keys = [k for k in keys if any(k in r for r in run.history)]
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(8.5, 3), gridspec_kw={"wspace": 0.35})
    for key, colour in zip(keys, LINE_COLOURS, strict=False):
        ax.plot(
            *epoch_series(run.history, key),
            marker="o",
            markersize=3,
            color=colour,
            label=describe_metric(key, run.threshold, short=True),
            gid=key,
        )
    kept = run.kept_epoch or run.epochs_done
    for a in (ax, ax_loss):
        a.axvline(kept, color="#888888", linestyle="--", linewidth=1)
    ax.set_xlabel("epoch (dashed: the kept epoch)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("value")
    ax.legend(fontsize=7)
    loss_rows = [r for r in run.history if "train/loss" in r]
    ax_loss.plot(
        [r["epoch"] for r in loss_rows],
        [float(r["train/loss"]) for r in loss_rows],
        marker="o",
        markersize=3,
        color=LINE_COLOURS[len(keys) % len(LINE_COLOURS)],
        gid="train/loss",
        label=describe_metric("train/loss", short=True),
    )
    ax_loss.set_xlabel("epoch")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set_ylabel(describe_metric("train/loss", short=True))
    ax_loss.legend(fontsize=7)
    words = describe_metric(f"val/{metric}", run.threshold).replace("Validation ", "", 1)
    title = f"Run {run.label}: {words}, per epoch, with validation precision and AP"
    fig.suptitle(title, fontsize=9)
    selected = f"selected by {run.selected_by}" if run.selected_by else "the last"
    caption = (
        f"{title}. Left: {caption_words(keys, run.threshold)}. Right: "
        f"{caption_words(('train/loss',), run.threshold)}. Dashed line: the kept epoch "
        f"{kept} ({selected})."
    )
    return _finish(fig, f"curves-{run.stage}-{run.trial:04d}", title, caption)


@dataclass(frozen=True)
class HeatmapPanel:
    """One panel of a heatmap: the objective per (a, b) cell at one facet value (the best
    run of each cell), and which cells hold a run tied with the best."""

    facet_value: ParamValue | None
    values: NDArray[np.float64]  # rows: a's values, columns: b's; NaN: no completed run
    tied: NDArray[np.bool_]


@dataclass(frozen=True)
class Heatmap:
    """What a heatmap shows, computed from the summary (:func:`heatmap_data`), drawn by
    :func:`draw_heatmap`."""

    stage: str
    a: str  # rows
    b: str  # columns
    facet: str | None  # one panel per value
    a_values: list[ParamValue]
    b_values: list[ParamValue]
    panels: list[HeatmapPanel]
    low: float  # the colour scale spans the stage's values
    high: float
    best_over: list[str]  # the parameters each cell takes the best over


def heatmap_data(summary: StudySummary) -> list[Heatmap]:
    """The objective (each configuration's mean over seeds) over each pair of searched
    parameters of a stage, faceted by a third (other parameters: the best value over
    them)."""
    out = []
    ranked = rank(summary)
    tied = {c.label for c in ranked.tied()}
    for stage in summary.compared_stages():
        grid = summary.searched[stage]
        names = [k for k, v in grid.items() if len(v) > 1 and k != SEED_KEY]
        configs = [c for c in ranked.configs if any(r.in_stage(stage) for r in c.runs)]
        if len(names) < 2 or not configs:
            continue
        values = [v for c in configs if np.isfinite(v := c.mean(summary.objective))] or [1.0]
        low, high = float(np.min(values)), float(np.max(values))
        high = high if high > low else low + 1e-9
        for a, b in itertools.combinations(names, 2):
            rest = [n for n in names if n not in (a, b)]
            facet = rest[0] if rest else None
            panels = [
                _panel(summary, configs, grid[a], grid[b], (a, b), facet, fv, tied)
                for fv in (grid[facet] if facet else [None])
            ]
            best_over = [n for n in rest if n != facet]
            out.append(Heatmap(stage, a, b, facet, grid[a], grid[b], panels, low, high, best_over))
    return out


def _panel(
    summary: StudySummary,
    configs: Sequence[Configuration],
    rows: list[ParamValue],
    cols: list[ParamValue],
    keys: tuple[str, str],
    facet: str | None,
    facet_value: ParamValue | None,
    tied: set[str],
) -> HeatmapPanel:
    table = np.full((len(rows), len(cols)), np.nan)
    marked = np.zeros(table.shape, bool)
    for c in configs:
        if facet and c.params.get(facet) != facet_value:
            continue
        if c.params.get(keys[0]) not in rows or c.params.get(keys[1]) not in cols:
            continue
        i, j = rows.index(c.params[keys[0]]), cols.index(c.params[keys[1]])
        v = c.mean(summary.objective)
        if np.isnan(table[i, j]) or better(v, table[i, j], summary.direction):
            table[i, j], marked[i, j] = v, c.label in tied
    return HeatmapPanel(facet_value, table, marked)


def draw_heatmap(h: Heatmap, summary: StudySummary) -> Figure:
    """One heatmap figure: a panel per facet value, cell values written in, hatched cells
    tied with the best, the colour bar naming its metric and span."""
    key = summary.objective
    n = len(h.panels)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 1, 3.2), squeeze=False)
    image = None
    for ax, panel in zip(axes[0], h.panels, strict=True):
        for i, j in zip(*np.nonzero(panel.tied), strict=True):  # hatched: tied with the best
            ax.add_patch(
                mpatches.Rectangle(
                    (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="white", lw=0
                )
            )
        image = ax.imshow(
            panel.values, cmap="viridis", vmin=h.low, vmax=h.high, aspect="auto", gid=key
        )
        for (i, j), v in np.ndenumerate(panel.values):
            if not np.isnan(v):
                # white on the colour map's dark half (viridis: low values)
                dark = (v - h.low) / (h.high - h.low) < 0.5
                colour = "white" if dark else "black"
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(h.b_values)), [tick_label(v) for v in h.b_values], fontsize=7)
        ax.set_yticks(range(len(h.a_values)), [tick_label(v) for v in h.a_values], fontsize=7)
        ax.set_xlabel(h.b, fontsize=8)
        ax.set_ylabel(h.a, fontsize=8)
        if h.facet:
            ax.set_title(f"{h.facet} = {panel.facet_value}", fontsize=8)
    assert image is not None
    bar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    bar.set_label(
        f"{describe_metric(key, summary.threshold, short=True)} "
        f"(colours span the data: {h.low:.3g}–{h.high:.3g})",
        fontsize=8,
    )
    title = f"{describe_metric(key, summary.threshold)} over {h.a} × {h.b} (stage {h.stage})"
    fig.suptitle(title, fontsize=9)
    more = f", one panel per {h.facet}" if h.facet else ""
    best = f"; best over {', '.join(h.best_over)}" if h.best_over else ""
    caption = (
        f"{title}{more}{best}. Each cell: a configuration's mean over seeds of the "
        f"{summary.kept_words}; empty cells: no completed run; hatched cells: "
        "configurations that cannot be told apart from the best (the Answer's tie rule)."
    )
    return _finish(fig, f"heatmap-{h.stage}-{h.a}-{h.b}".replace(".", "_"), title, caption)


def heatmaps(summary: StudySummary) -> list[Figure]:
    """Every heatmap of the study, computed then drawn."""
    return [draw_heatmap(h, summary) for h in heatmap_data(summary)]


def tick_label(v: ParamValue) -> str:
    """A parameter value as an axis tick, formatted like the tables (``3.162``)."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def pr_curves(summary: StudySummary) -> Figure | None:
    """Validation precision vs validation recall over thresholds for the top-k
    configurations (the median seed of each)."""
    top = [c.pick(summary.objective) for c in rank(summary).configs[: summary.top_k]]
    top = [r for r in top if r.pr_curve]
    if not top:
        return None
    fig, ax = plt.subplots(figsize=(5, 4))
    for run, colour in zip(top, LINE_COLOURS, strict=False):
        assert run.pr_curve is not None
        ap = run.final.get("val/ap", float("nan"))
        ax.plot(
            run.pr_curve["recall"],
            run.pr_curve["precision"],
            color=colour,
            label=f"{run.label} (AP {ap:.3f})",
            gid="val/precision",
        )
    ax.set_xlabel(describe_metric("val/recall", None))
    ax.xaxis.label.set_gid("val/recall")
    ax.set_ylabel(describe_metric("val/precision", None))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    legend = ax.legend(
        fontsize=7, title="AP: " + describe_metric("val/ap", short=True), title_fontsize=7
    )
    legend.get_title().set_gid("val/ap")
    title = (
        f"Precision–recall curves of the top {len(top)} configurations' median seeds "
        f"(validation, {summary.kept_words})"
    )
    ax.set_title(title, fontsize=9)
    caption = (
        f"{title}: {describe_metric('val/precision', None)} against "
        f"{describe_metric('val/recall', None)}, over thresholds 0–1; legend: "
        f"{describe_metric('val/ap')}."
    )
    return _finish(fig, "pr-curves", title, caption)


def split_pr_curve(
    hist: ProbabilityHistogram,
    split: str,
    threshold: float,
    label: str,
    *,
    views: str,
    threshold_source: str,
) -> Figure:
    """Precision against recall of one split over the histogram's thresholds, with the
    operating point at ``threshold`` marked (``segtune evaluate --pr-curve``); ``views``
    names the test-time augmentation the probabilities were made with (``tta_words``),
    ``threshold_source`` where the threshold comes from."""
    thresholds, precision, recall = hist.curve()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision, color=LINE_COLOURS[0], gid=f"{split}/precision")
    at = int(np.searchsorted(thresholds, threshold, side="right")) - 1
    point = f"threshold {threshold:g} ({threshold_source})"
    ax.plot(recall[at], precision[at], "o", color=LINE_COLOURS[1], label=point)
    ax.set_xlabel(describe_metric(f"{split}/recall", None))
    ax.xaxis.label.set_gid(f"{split}/recall")
    ax.set_ylabel(describe_metric(f"{split}/precision", None))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ap = f"{describe_metric(f'{split}/ap', short=True)} {hist.average_precision():.3f}"
    augmented = "no test-time augmentation" if views == "none" else f"test-time {views}"
    drawn = f"Precision–recall curve of {label}\n({ap}, {augmented})"
    ax.set_title(drawn, fontsize=9)
    title = drawn.replace("\n", " ")
    caption = (
        f"{title}: {describe_metric(f'{split}/precision', None)} "
        f"against {describe_metric(f'{split}/recall', None)} over thresholds; the dot is the "
        f"operating {point}."
    )
    return _finish(fig, f"pr-curve-{split}", title, caption)


def race_figure(race: dict[str, Any], summary: StudySummary) -> Figure | None:
    """A race: each configuration's mean with its 95 % interval after each round it ran;
    dropped configurations in grey, ending at the round they left; survivors coloured."""
    configs = [c for c in race["configurations"] if c.get("rounds")]
    if not configs:
        return None
    key = summary.objective
    fig, ax = plt.subplots(figsize=(6.5, 4))
    colours = itertools.cycle(LINE_COLOURS)
    for i, c in enumerate(configs):
        rounds = np.array(c["rounds"], dtype=np.float64)
        dropped = c["dropped"] is not None
        colour = "#bbbbbb" if dropped else next(colours)
        x = rounds[:, 0] + (i - len(configs) / 2) * 0.02  # side by side, not on top
        ax.errorbar(
            x,
            rounds[:, 1],
            yerr=[rounds[:, 1] - rounds[:, 2], rounds[:, 3] - rounds[:, 1]],
            color=colour,
            marker="o",
            markersize=3,
            linewidth=1,
            capsize=2,
            zorder=1 if dropped else 2,
            label=None if dropped else c.get("label", c["configuration"]),
            gid=key,
        )
        if dropped:
            ax.plot(x[-1], rounds[-1, 1], "x", color="#888888", markersize=6)
    ax.set_xlabel("round (seeds per configuration)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(describe_metric(key, summary.threshold, short=True))
    if any(c["dropped"] is None for c in configs):
        ax.legend(fontsize=6, title="survivors", title_fontsize=7)
    words = describe_metric(key, summary.threshold)
    title = f"Race {race['stage']}: {words}, mean over seeds per round"
    ax.set_title(title, fontsize=8)
    caption = (
        f"{title}, {summary.kept_words}: each configuration's mean of its first r seeds "
        "with its 95 % interval (picture bootstrap widened by the training noise); dropped "
        "configurations in grey, their last point (×) the round they left; survivors in "
        f"colour. {race['error_control']}."
    )
    return _finish(fig, f"race-{race['stage']}", title, caption)


def save(fig: Figure, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{fig.name}.png"
    path.write_bytes(fig.png)
    return path
