"""One run, top to bottom: data → model → epochs (train, validate, record) → summary.

:func:`train_run` sets a run up (:func:`_set_up`), trains its epochs
(:func:`_train_and_record`, each one :func:`train_one_epoch` then the validation pass),
and keeps the selected epoch's weights, previews and curves (:func:`_keep`). What it
records is the ledger's (:mod:`segtune.engine.ledger`); what it resumes from, the
checkpoint's (:mod:`segtune.engine.checkpoint`).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from segtune.core.config import RunConfig, config_to_dict, flatten
from segtune.core.faults import fault_point
from segtune.core.interrupt import check as check_stop
from segtune.core.interrupt import finishing
from segtune.core.previews import overlay_row, write_previews
from segtune.core.progress import Progress, ProgressFile
from segtune.core.records import Failure, RunFolder, RunRecord, RunStatus
from segtune.core.runtime import (
    autocast_dtype,
    place_model,
    precision_note,
    resolve_device,
    seed_everything,
)
from segtune.data.cache import PictureCache, open_cache
from segtune.data.intensity import resolve_reading
from segtune.data.layout import Picture
from segtune.data.pages import EpochSampler, load_split, page_loader
from segtune.data.pairs import sample_subset
from segtune.data.subsets import (
    Subsets,
    data_fingerprint,
    picture_stats,
    resolve_subsets,
    subset_seed,
)
from segtune.engine.checkpoint import (
    Learner,
    checkpoint_state,
    cpu_weights,
    model_file,
    restore,
)
from segtune.engine.ledger import Ledger, picture_records, provenance, selection_margin
from segtune.engine.loggers import Loggers
from segtune.engine.model import build_model
from segtune.engine.step import batch_forward, step_gradients
from segtune.engine.validate import SplitResult, evaluate_split

# Called after each epoch with (epoch, metric values); may raise RunPruned to stop the
# run early (a study's pruner does).
EpochReporter = Callable[[int, dict[str, float]], None]


class RunPruned(Exception):
    """Raised by an :data:`EpochReporter` to stop the run as pruned (a study's pruner)."""


class RunAbandoned(Exception):
    """The run's folder is no longer this process's to write (a study took the point
    over from a worker that was paused too long): stop at once and write nothing."""


# Called before each epoch's records are written; raises RunAbandoned to stop the run.
WriteGuard = Callable[[], None]


class NonFiniteLoss(Exception):
    """The training loss became NaN or infinite, or diverged past ``optim.max_loss``."""

    def __init__(self, reason: str, step: int) -> None:
        super().__init__(reason)
        self.step = step


def train_run(
    config: RunConfig,
    run_dir: Path,
    *,
    subsets: Subsets | None = None,
    reporter: EpochReporter | None = None,
    resume: bool = False,
    progress: bool = True,
    guard: WriteGuard | None = None,
    study: StudyContext | None = None,
) -> RunRecord:
    """Train and evaluate one configuration, writing its run records to ``run_dir``.

    Returns:
        The run's record (``summary.json``). Its ``status`` is ``completed``, ``failed``
        (non-finite loss or prediction, with epoch, step and reason), ``pruned``, or
        ``interrupted`` (Ctrl-C or SIGTERM; the exception is re-raised after recording).
        A resumed run continues from its last epoch checkpoint and ends with the same
        values as an uninterrupted one (same device and thread count).

    ``study`` is passed by a study's worker: its name and folder (the MLflow experiment
    and default database of ``runtime.loggers``) and the run's label in progress lines.
    """
    run = _set_up(config, RunFolder(run_dir), subsets, resume, progress, study)
    status: RunStatus = "completed"
    failure: Failure | None = None
    epoch, val = run.start_epoch, None
    last_epoch = run.start_epoch - 1 if run.ledger.stopped_early else config.optim.epochs
    try:
        for epoch in range(run.start_epoch, last_epoch + 1):
            val = _train_and_record(run, epoch, guard, reporter)
            if run.ledger.stopped_early:
                break
    except RunAbandoned:
        raise
    except (NonFiniteLoss, FloatingPointError) as exc:
        status = "failed"
        failure = Failure(epoch=epoch, step=getattr(exc, "step", None), reason=str(exc))
    except RunPruned:
        status = "pruned"
    except KeyboardInterrupt:
        run.end("interrupted")
        raise
    except Exception as exc:
        run.end("failed", Failure(epoch=epoch, reason=f"{type(exc).__name__}: {exc}"))
        raise
    if val is None and status == "completed" and run.start_epoch > 1:
        # Resumed after its last epoch (killed while writing what follows it): the
        # checkpoint holds that epoch's weights, evaluated again (same values).
        epoch, val = run.start_epoch - 1, run.validate()
    if val is not None and status in ("completed", "pruned"):
        _keep(run, val, epoch, status)
    record = run.end(status, failure)
    if record.finished and not config.records.keep_resume_state:
        run.folder.remove_resume_state()
    return record


@dataclass
class _Run:
    """Everything one run sets up before its first epoch."""

    config: RunConfig
    folder: RunFolder
    subsets: Subsets
    device: torch.device
    amp_dtype: torch.dtype | None
    cache: PictureCache
    train_eval: list[Picture]  # the training pictures the train/* pass scores
    learner: Learner
    loader: DataLoader[Any]
    sampler: EpochSampler
    ledger: Ledger
    loggers: Loggers
    watch: ProgressFile
    progress: bool
    start_epoch: int

    def validate(self) -> SplitResult:
        """The kept weights on every validation picture (previews kept)."""
        previews = self.config.eval.preview_pictures
        return self.evaluate("val", self.subsets.val, previews)

    def score_train(self) -> dict[str, float]:
        """train/* of the kept weights, with its time counted as evaluation."""
        t0 = time.perf_counter()
        metrics = self.evaluate("train", self.train_eval, 0).metrics
        self.ledger.timings["eval_s"] += time.perf_counter() - t0
        return metrics

    def evaluate(self, split: str, pictures: Sequence[Picture], previews: int) -> SplitResult:
        return _evaluate(
            self.config,
            self.learner.kept_model,
            split,
            pictures,
            self.cache,
            self.device,
            self.amp_dtype,
            previews,
            self.progress,
        )

    def end(self, status: RunStatus, failure: Failure | None = None) -> RunRecord:
        self.loggers.close(status)  # first: a logger failing to close is recorded too
        record = self.ledger.write(status, failure)
        self.watch.remove()
        return record


def _set_up(
    config: RunConfig,
    folder: RunFolder,
    subsets: Subsets | None,
    resume: bool,
    progress: bool,
    study: StudyContext | None,
) -> _Run:
    """Data, model, optimiser and records of a run; a resumed run's last checkpoint."""
    loggers = Loggers.open(
        config.runtime.loggers,
        folder.dir,
        config.runtime.mlflow_uri,
        study.name if study else "segtune",
        study.folder if study else None,
    )
    subsets = subsets or resolve_subsets(config.data)
    if config.runtime.threads is not None:
        torch.set_num_threads(config.runtime.threads)
    seed_everything(config.runtime.seed)
    device = resolve_device(config.runtime.device)
    amp_dtype = autocast_dtype(config.runtime.precision, device)
    note = precision_note(config.runtime.precision, device)
    if progress and note:
        print(note, file=sys.stderr, flush=True)
    cache = open_cache(config.data)
    cache = cache.with_reading(resolve_reading(config.data, subsets.train, cache.stats_dir))
    train_pictures = load_split(subsets.train, cache, config.pages)
    count = config.eval.train_eval_count(len(subsets.train), len(subsets.val))
    train_eval = sample_subset(subsets.train, count, subset_seed(config.data.seed, "train_eval"))
    model = place_model(build_model(config.model), device, config.runtime.channels_last)
    loader, sampler = page_loader(train_pictures, config, pin_memory=device.type == "cuda")
    learner = Learner.build(config, model, len(loader), amp_dtype)
    where = provenance(device, data_fingerprint(picture_stats(subsets)), model)
    ledger = Ledger(folder, config, subsets, where, cache.reading.window)
    ledger.tracking_lost = loggers.lost  # the same list: what is lost is recorded
    start_epoch = 1
    if resume:
        folder.remove_temporary_files()  # left by a write that was killed
    if resume and folder.checkpoint_path.exists():
        done, state = restore(folder, learner, len(loader))
        # metrics.csv may hold an epoch whose checkpoint write was killed: drop it.
        ledger.history = [r for r in folder.read_metrics() if int(r["epoch"]) <= done]
        ledger.timings = state.get("timings", ledger.timings)
        ledger.stopped_early = ledger.stopped_after(done)
        start_epoch = done + 1
    folder.write_config(config)
    ledger.write("running")
    loggers.start(flatten(config_to_dict(config)), start_epoch)
    label = study.label if study else None
    watch = ProgressFile(folder.dir, config.optim.epochs, len(loader), start_epoch, label)
    return _Run(
        config, folder, subsets, device, amp_dtype, cache, list(train_eval), learner,
        loader, sampler, ledger, loggers, watch, progress, start_epoch,
    )  # fmt: skip


def _train_and_record(
    run: _Run, epoch: int, guard: WriteGuard | None, reporter: EpochReporter | None
) -> SplitResult:
    """One epoch: train, validate (and score the training pictures when due), record,
    checkpoint, report. Sets ``ledger.stopped_early`` when early stopping ends the run."""
    t0 = time.perf_counter()
    run.sampler.set_epoch(epoch)
    train_loss = train_one_epoch(
        run.config,
        run.learner,
        run.loader,
        epoch,
        device=run.device,
        amp_dtype=run.amp_dtype,
        progress=run.progress,
        watch=run.watch,
    )
    with finishing():  # a SIGTERM from here on stops after this epoch's checkpoint
        return _validate_and_record(run, epoch, guard, reporter, train_loss, t0)


def _validate_and_record(
    run: _Run,
    epoch: int,
    guard: WriteGuard | None,
    reporter: EpochReporter | None,
    train_loss: float,
    t0: float,
) -> SplitResult:
    """The rest of an epoch once its training steps are done (``t0``: when they began)."""
    config, ledger, learner = run.config, run.ledger, run.learner
    fault_point("validating")
    t1 = time.perf_counter()
    val = run.validate()
    stop = ledger.stopped_after(epoch, val.metrics)
    train_metrics: dict[str, float] = {}
    if config.eval.train_pass_due(epoch, config.optim.epochs) or stop:
        train_metrics = run.evaluate("train", run.train_eval, 0).metrics
    ledger.timings["train_s"] += t1 - t0
    ledger.timings["eval_s"] += time.perf_counter() - t1
    if guard is not None:
        guard()
    lr = float(learner.optimizer.param_groups[0]["lr"])
    values = {"train/loss": train_loss, "train/lr": lr, **train_metrics, **val.metrics}
    ledger.add_epoch(epoch, values, val.pictures)
    run.loggers.log_epoch(epoch, values)
    if config.eval.select == "best" and ledger.selected_epoch() == epoch:
        run.folder.save_selected({"model": cpu_weights(learner.kept_model), "epoch": epoch})
    state = checkpoint_state(learner, epoch, config, ledger.timings, val.metrics)
    run.folder.save_checkpoint(state)
    if run.progress:
        print(_epoch_line(epoch, config, values), file=sys.stderr, flush=True)
    ledger.write("running")
    if reporter is not None:
        reporter(epoch, values)
    ledger.stopped_early = ledger.stopped_early or stop
    return val


def _keep(run: _Run, val: SplitResult, epoch: int, status: RunStatus) -> None:
    """Keep the selected epoch (evaluated again when it is not the last) and write what
    describes it once: previews, the PR curve, per-picture histograms, ``model.pt``."""
    config, ledger, folder = run.config, run.ledger, run.folder
    kept = ledger.kept_epoch()
    if kept != epoch:  # the selected epoch's weights, evaluated again (same values)
        selected = folder.load_selected()
        assert selected is not None and int(selected["epoch"]) == kept
        run.learner.kept_model.load_state_dict(selected["model"])
        last, val = val, run.validate()
        ledger.selection_margin = selection_margin(
            config.eval.select_key, val, last, ledger.last_epoch()
        )
        if status == "completed" and not config.eval.train_pass_due(kept, config.optim.epochs):
            # train/* of the kept weights, not only of the last epoch's: the record's
            # kept values and the report's train-against-validation columns need them
            # (a pruned run has no training-split pass at all).
            train_metrics = run.score_train()
            ledger.add_values(kept, train_metrics)
            run.loggers.log_epoch(kept, train_metrics)
    ledger.pictures = picture_records(val.pictures)
    _write_previews(folder, config, val, run.subsets.val, run.cache)
    if val.previews and run.loggers:
        picked = val.pictures[: len(val.previews)]
        strip = overlay_row(folder.previews_dir, picked, config.eval.threshold)
        run.loggers.log_image("val/overlays", strip, kept)
    folder.write_pr_curve(val.histogram)
    folder.write_picture_histograms([p.stem for p in val.pictures], val.picture_histograms)
    window = run.cache.reading.window
    folder.save_model(model_file(run.learner.kept_model, config, kept, val.metrics, window))


def train_one_epoch(
    config: RunConfig,
    learner: Learner,
    loader: DataLoader[Any],
    epoch: int,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    watch: ProgressFile | None = None,
) -> float:
    """One pass over every training page of ``loader`` (its sampler set to ``epoch``);
    returns the running mean loss. Raises :class:`NonFiniteLoss` on a NaN, infinite or
    diverged (``optim.max_loss``) loss."""
    o, seed = config.optim, config.runtime.seed
    model, optimizer, scaler = learner.model, learner.optimizer, learner.scaler
    torch.manual_seed(seed * 1_000 + epoch)
    micro = o.micro_batch_size or o.batch_size
    pages = len(cast(EpochSampler, loader.sampler))
    bar = Progress(pages, f"epoch {epoch}/{o.epochs}", "pages", enabled=progress)
    model.train()
    loss_sum, batches = 0.0, 0

    def backward(term: torch.Tensor) -> None:
        scaler.scale(term).backward()

    for step, (images, targets, valid) in enumerate(loader, start=1):
        check_stop()  # a Ctrl-C or SIGTERM a finalizer swallowed
        optimizer.zero_grad(set_to_none=True)
        forward = batch_forward(model, images, targets, valid, device, amp_dtype)
        batch_loss = step_gradients(model, forward, images.shape[0], micro, valid, config, backward)
        if not math.isfinite(batch_loss):
            raise NonFiniteLoss(
                f"non-finite loss ({batch_loss}) at epoch {epoch}, step {step}", step
            )
        if o.max_loss is not None and batch_loss > o.max_loss:
            raise NonFiniteLoss(
                f"diverged: loss {batch_loss:.3g} > optim.max_loss {o.max_loss:g} "
                f"at epoch {epoch}, step {step}",
                step,
            )
        if o.grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        learner.scheduler.step()
        if learner.average is not None:
            learner.average.update(model)
        loss_sum += batch_loss
        batches += 1
        bar.update(images.shape[0], loss=f"{batch_loss:.4f}")
        if watch is not None:
            watch.step(epoch, step, force=step == len(loader))
        if step == 1 and epoch >= 2:
            fault_point("mid_epoch")
    bar.close()
    return loss_sum / max(batches, 1)


def _evaluate(
    config: RunConfig,
    model: nn.Module,
    split: str,
    pictures: Sequence[Picture],
    cache: PictureCache,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    previews: int,
    progress: bool = False,
) -> SplitResult:
    bar = Progress(len(pictures), f"evaluate {split}", "pictures", enabled=progress)
    result = evaluate_split(
        model,
        split,
        pictures,
        cache,
        config.pages,
        device,
        threshold=config.eval.threshold,
        bins=config.eval.histogram_bins,
        keep_previews=previews,
        amp_dtype=amp_dtype,
        batch_pages=config.optim.micro_batch_size or config.optim.batch_size,
        tta=config.eval.tta,
        tta_scales=config.eval.tta_scales,
        tolerance_px=config.eval.tolerance_px,
        on_picture=lambda: bar.update(1),
    )
    bar.close()
    return result


def _write_previews(
    folder: RunFolder,
    config: RunConfig,
    val: SplitResult,
    pictures: Sequence[Picture],
    cache: PictureCache,
) -> None:
    if not val.previews:
        return
    picked = pictures[: len(val.previews)]
    images = [np.asarray(cache.get(p.image, "image")) for p in picked]
    masks = [np.asarray(cache.mask_of(p)).astype(bool) for p in picked]
    valids = [cache.valid(p) for p in picked]
    counts = val.pictures[: len(val.previews)]
    write_previews(
        folder.previews_dir, counts, val.previews, images, masks, config.eval.threshold, valids
    )


def _epoch_line(epoch: int, config: RunConfig, v: dict[str, float]) -> str:
    train = (
        f"train: recall {v['train/recall']:.3f} precision {v['train/precision']:.3f} "
        f"f1 {v['train/f1']:.3f}  |  "
        if "train/recall" in v
        else ""
    )
    return (
        f"epoch {epoch}/{config.optim.epochs}  train/loss {v['train/loss']:.4f}  |  {train}"
        f"val: recall {v['val/recall']:.3f} precision {v['val/precision']:.3f} "
        f"f1 {v['val/f1']:.3f} ap {v['val/ap']:.3f}  (threshold {config.eval.threshold:g})"
    )


@dataclass(frozen=True)
class StudyContext:
    """What a study's worker tells the run it starts."""

    name: str  # the study's name: MLflow experiment
    folder: Path  # the study folder: default MLflow database
    label: str  # "grid#3": stage and trial, in progress lines
