"""The typed study summary, read only from run records and the study storage.

Renderers (tables, figures, report) take a :class:`StudySummary`; nothing here trains,
so a report can be rebuilt at any time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from segtune.core.config import DataConfig, flatten, load_yaml
from segtune.core.intervals import (
    Interval,
    Samples,
    histogram_samples,
    interval,
    picture_samples,
    resample_weights,
)
from segtune.core.metrics import Direction, PictureCounts, ranking
from segtune.core.records import RunFolder, RunRecord, tta_words
from segtune.data.io import MaskReading
from segtune.data.pairs import shared_pictures
from segtune.data.subsets import Subsets
from segtune.study.attrs import TrialAttrs
from segtune.study.claims import ClaimBoard
from segtune.study.spec import SEED_KEY, ParamValue, StudySpec, build_spec
from segtune.study.storage import open_storage, read_study_info, read_subsets, stage_study_name


@dataclass
class RunSummary:
    """One run (the last trial of one point of one stage)."""

    stage: str
    trial: int
    run_dir: Path
    params: dict[str, ParamValue]
    status: str
    final: dict[str, float] = field(default_factory=dict)  # values of the kept epoch
    epochs_done: int = 0
    threshold: float = 0.5
    pictures: list[PictureCounts] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    pr_curve: dict[str, Any] | None = None
    failure: str | None = None
    also_in: list[str] = field(default_factory=list)  # stages that reused this very run
    record: RunRecord | None = None
    # Bootstrap over validation pictures (segtune.core.intervals): each metric key's
    # value in every resample, and its interval. Empty when the run records no
    # per-picture counts.
    samples: Samples = field(default_factory=dict)
    intervals: dict[str, Interval] = field(default_factory=dict)
    kept_epoch: int = 0  # the selected epoch (eval.select: best), else the last
    selected_by: str | None = None
    weight_average: float | None = None  # optim.ema_decay: the values are the average's
    tta: str = "none"  # eval.tta: the values are of probabilities averaged over flips
    tta_scales: list[float] = field(default_factory=lambda: [1.0])  # … and these scales

    @property
    def label(self) -> str:
        return f"{self.stage}#{self.trial}"

    @property
    def config(self) -> tuple[tuple[str, str], ...]:
        """What identifies its configuration across seeds: the parameters but the seed."""
        return tuple(sorted((k, repr(v)) for k, v in self.params.items() if k != SEED_KEY))

    def in_stage(self, stage: str) -> bool:
        """Whether ``stage`` trained this run or asked for it and reused it (same
        configuration, trained once by an earlier stage)."""
        return self.stage == stage or stage in self.also_in

    @property
    def stages_text(self) -> str:
        """``grid`` or, for a run that a later stage reused, ``grid = refine``."""
        return " = ".join([self.stage, *self.also_in])


@dataclass
class StudySummary:
    name: str
    study_dir: Path
    objective: str
    direction: Direction
    top_k: int
    threshold: float
    seed: int
    train_pictures: int
    val_pictures: int
    train_eval_pictures: int  # pictures of the training-split pass (train/*)
    train_every: int  # that pass's period in epochs (0: the last epoch only)
    masks: str  # how mask files were read (MaskReading.words) and whether ROIs were used
    preview_stems: list[str]
    fixed: dict[str, Any]
    searched: dict[str, dict[str, list[ParamValue]]]  # stage → key → values tested
    runs: list[RunSummary]
    epochs: int
    # Validation pictures whose image file is also a training picture's (same bytes):
    # "val stem = train stem", scores on them inflated (empty: none, or unknown).
    val_also_trained: list[str] = field(default_factory=list)
    # Stages that re-run earlier configurations with new seeds (``repeat``): they add
    # seeds, not parameter values (no effect or heatmap of their own).
    repeat_stages: list[str] = field(default_factory=list)
    races: list[dict[str, Any]] = field(default_factory=list)  # study.race.race_summary

    def compared_stages(self) -> list[str]:
        """The stages whose searched values are compared (all but repeat stages)."""
        return [name for name in self.searched if name not in self.repeat_stages]

    @property
    def searched_keys(self) -> list[str]:
        keys: list[str] = []
        for grid in self.searched.values():
            keys.extend(k for k in grid if k not in keys)
        return keys

    def stage_runs(self, stage: str) -> list[RunSummary]:
        """The completed runs of ``stage``, ranked, with those it reused from an earlier
        stage: every point the stage asked for that has a value."""
        return [r for r in self.ranked() if r.in_stage(stage)]

    def ranked(self) -> list[RunSummary]:
        """Runs with a value for the objective, best first (ties by stage and trial)."""
        scored = [r for r in self.runs if r.status == "completed" and self.objective in r.final]
        order = list(self.searched)
        return sorted(
            scored,
            key=lambda r: (
                ranking(r.final[self.objective], self.direction),
                order.index(r.stage) if r.stage in order else 0,
                r.trial,
            ),
        )

    @property
    def kept_words(self) -> str:
        """Which epoch the values come from: "final epoch", or "selected epoch (best by
        val/best_f1)" when the runs keep their best epoch; then ", weights averaged
        (decay 0.999)" when the runs evaluated a weight average (optim.ema_decay), and
        ", validated with test-time flips" when they evaluated with eval.tta: flips."""
        keys = sorted({r.selected_by for r in self.runs if r.selected_by})
        words = f"selected epoch (best by {', '.join(keys)})" if keys else "final epoch"
        decays = sorted({r.weight_average for r in self.runs if r.weight_average is not None})
        if decays:
            every = all(r.weight_average is not None for r in self.runs)
            some = "" if every else "some runs' "
            words += f", {some}weights averaged (decay {', '.join(f'{d:g}' for d in decays)})"
        views = [tta_words(r.tta, r.tta_scales) for r in self.runs]
        named = sorted(set(views) - {"none"})
        if named:
            some = "" if "none" not in views else "some runs "
            words += f", {some}validated with test-time {' or '.join(named)}"
        return words


def read_run(
    stage: str, trial: int, run_dir: Path, params: dict[str, ParamValue], live: bool = False
) -> RunSummary:
    """Read one run folder into a :class:`RunSummary` (missing files → status 'missing').

    The searched parameters are taken from the run's own ``config.yaml`` (what it was
    trained with); a run whose summary says ``running`` while no live worker holds it
    (``live``) is shown as ``interrupted``.
    """
    records = RunFolder(run_dir)
    if not records.summary_path.exists():
        return RunSummary(stage, trial, run_dir, params, "missing", failure="no summary.json")
    s = records.read_record()
    previews = records.read_previews()
    if records.config_path.exists():
        trained = flatten(load_yaml(records.config_path))
        params = {k: trained.get(k, v) for k, v in params.items()}
        tta = str(trained.get("eval.tta", s.tta))  # what it ran with, for older records too
        tta_scales = [float(x) for x in trained.get("eval.tta_scales", s.tta_scales)]
    else:
        tta, tta_scales = s.tta, s.tta_scales
    status: str = s.status
    if status == "running" and not live:
        status = "interrupted"
    return RunSummary(
        stage=stage,
        trial=trial,
        run_dir=run_dir,
        params=params,
        status=status,
        final=dict(s.kept),
        kept_epoch=s.kept_epoch,
        selected_by=s.selected_by,
        weight_average=s.weight_average,
        tta=tta,
        tta_scales=tta_scales,
        epochs_done=s.epochs_done,
        threshold=s.threshold,
        pictures=[
            PictureCounts(p["index"], p["stem"], p["tp"], p["fp"], p["fn"], p["positives"])
            for p in previews.get("pictures", [])
        ],
        history=records.read_metrics(),
        pr_curve=records.read_pr_curve(),
        failure=s.failure.reason if s.failure else None,
        record=s,
    )


def load_study_summary(study_dir: Path, storage_url: str | None = None) -> StudySummary:
    """Build the summary of a study from its folder and storage."""
    info = read_study_info(study_dir)
    spec: StudySpec = build_spec(info["spec"], str(study_dir / "study.json"))
    storage = open_storage(storage_url or info["storage"])
    base = spec.run_config({})
    board = ClaimBoard(storage_url or info["storage"], spec.name, create=False)
    runs: list[RunSummary] = []
    reused_runs: list[tuple[str, str]] = []
    searched: dict[str, dict[str, list[ParamValue]]] = {}
    for stage in spec.stages:
        try:
            study = optuna.load_study(
                study_name=stage_study_name(spec.name, stage.name), storage=storage
            )
        except KeyError:
            continue
        live = {k for k, row in board.states(stage.name).items() if row.state == "running"}
        last: dict[str, Any] = {}
        for t in study.get_trials(deepcopy=False):
            attrs = TrialAttrs.of(t)
            if t.state == TrialState.WAITING or attrs.run_dir is None or attrs.superseded:
                continue
            point = attrs.point or str(t.number)
            if point not in last or t.number > last[point].number:
                last[point] = t
        grid: dict[str, list[ParamValue]] = {}
        for t in sorted(last.values(), key=lambda t: t.number):
            for k, v in t.params.items():
                if v not in grid.setdefault(k, []):
                    grid[k].append(v)
            attrs = TrialAttrs.of(t)
            if attrs.reused_from is not None:
                reused_runs.append((stage.name, attrs.reused_from))
                continue
            run = read_run(
                stage.name,
                t.number,
                study_dir / str(attrs.run_dir),
                dict(t.params),
                live=t.state == TrialState.RUNNING and attrs.point in live,
            )
            if t.state == TrialState.FAIL and run.status == "completed":
                run.status = "failed"
            runs.append(run)
        searched[stage.name] = {k: sorted(v, key=_sort_key) for k, v in grid.items()}
    for stage_name, source in reused_runs:  # list a reused run once, under both stages
        src_stage, _, number = source.partition(":")
        for run in runs:
            if run.stage == src_stage and str(run.trial) == number:
                run.also_in.append(stage_name)
    attach_intervals(runs)
    subsets = read_subsets(study_dir)
    fixed = {k: v for k, v in flatten(spec.fixed).items() if k not in spec.searched_keys()}
    return StudySummary(
        name=spec.name,
        study_dir=study_dir,
        objective=spec.objective.metric,
        direction=spec.objective.direction,
        top_k=spec.top_k,
        threshold=base.eval.threshold,
        seed=spec.data.seed,
        train_pictures=len(subsets.train) if subsets else 0,
        val_pictures=len(subsets.val) if subsets else 0,
        train_eval_pictures=base.eval.train_eval_count(
            len(subsets.train) if subsets else 0, len(subsets.val) if subsets else 0
        ),
        train_every=base.eval.train_every,
        masks=mask_words(base.data, subsets),
        preview_stems=[p.stem for p in (subsets.val if subsets else [])][: spec.preview_pictures],
        fixed=fixed,
        searched=searched,
        runs=runs,
        epochs=base.optim.epochs,
        repeat_stages=[
            st.name for st in spec.stages if st.repeat is not None or st.race is not None
        ],
        races=_races(spec, study_dir, storage_url or info["storage"], runs),
        val_also_trained=[
            f"{v.stem} = {t.stem}" for v, t in shared_pictures(subsets.train, subsets.val)
        ]
        if subsets
        else [],
    )


def _races(
    spec: StudySpec, study_dir: Path, url: str | None, runs: list[RunSummary]
) -> list[dict[str, Any]]:
    """What each race stage decided (read-only), once its points exist; configurations
    named by their first run's label (``grid#3``), as every table names them."""
    stages = [st for st in spec.stages if st.race is not None]
    if not stages:
        return []
    from segtune.study.race import config_key, race_summary
    from segtune.study.view import StudyView

    labels: dict[str, str] = {}
    for r in runs:
        labels.setdefault(config_key(r.params), r.label)
    view = StudyView(spec, study_dir, url)
    out = []
    for st in stages:
        if view.stage_points(st).points is None:
            continue
        race = race_summary(view, st)
        for c in race["configurations"]:
            c["label"] = labels.get(c["configuration"], c["configuration"])
            if c["dropped"] is not None:
                c["dropped"]["lost_to"] = labels.get(
                    c["dropped"]["lost_to"], c["dropped"]["lost_to"]
                )
        race["survivors"] = [labels.get(n, n) for n in race["survivors"]]
        out.append(race)
    return out


def mask_words(data: DataConfig, subsets: Subsets | None) -> str:
    """How the study read its masks (the report's setup) and, when pictures have regions
    of interest, that only pixels inside them count."""
    reading = MaskReading(data.ignore_value, data.mask_threshold, data.invert_masks)
    pictures = [*subsets.train, *subsets.val] if subsets else []
    words = reading.words()
    with_roi = sum(p.roi is not None for p in pictures)
    if with_roi:
        words += (
            f"; only pixels inside a region of interest count ({with_roi} of "
            f"{len(pictures)} pictures have one)"
        )
    unlabelled = [p for p in pictures if p.mask is None]
    if unlabelled:
        words += (
            f"; {len(unlabelled)} of {len(pictures)} pictures have no mask and count as "
            "having no positives (data.missing_masks: empty)"
        )
    return words


def attach_intervals(runs: list[RunSummary]) -> None:
    """Bootstrap samples and intervals of every completed run's validation metrics. All
    runs are resampled with the same draws of the same pictures (paired), so only runs
    whose records list the same validation pictures get them."""
    scored = [r for r in runs if r.status == "completed" and r.record and r.record.pictures]
    if not scored:
        return
    stems = [p.stem for p in scored[0].record.pictures]  # type: ignore[union-attr]
    weights = resample_weights(len(stems))
    for run in scored:
        pictures = run.record.pictures  # type: ignore[union-attr]
        if [p.stem for p in pictures] != stems:
            continue
        samples = picture_samples(pictures)
        hists = RunFolder(run.run_dir).read_picture_histograms()
        if hists is not None and hists[0] == stems:
            samples.update(histogram_samples(hists[1], hists[2], weights))
        run.samples = {f"val/{name}": values for name, values in samples.items()}
        run.intervals = {key: interval(values) for key, values in run.samples.items()}


def _sort_key(v: ParamValue) -> tuple[int, float, str]:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))
