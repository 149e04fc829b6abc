"""One run, top to bottom: data → model → epochs (train, evaluate, record) → summary."""

from __future__ import annotations

import math
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.utils.data import DataLoader

from segtune.core.config import RunConfig, config_to_dict, flatten
from segtune.core.errors import ConfigError
from segtune.core.faults import fault_point
from segtune.core.interrupt import check as check_stop
from segtune.core.intervals import paired_difference
from segtune.core.metrics import PictureCounts, better, describe_metric, direction_of
from segtune.core.progress import Progress, ProgressFile
from segtune.core.records import (
    INTEGER_METRICS,
    BestValue,
    Failure,
    PictureRecord,
    Provenance,
    RunFolder,
    RunRecord,
    RunStatus,
    SelectionMargin,
    Timings,
)
from segtune.core.runtime import (
    autocast_dtype,
    memory_format,
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
from segtune.engine.average import WeightAverage
from segtune.engine.loggers import Loggers
from segtune.engine.model import build_model
from segtune.engine.schedule import build_scheduler
from segtune.engine.step import batch_forward, step_gradients
from segtune.engine.validate import SplitResult, evaluate_split

# Called after each epoch with (epoch, metric values); may raise to stop the run early
# (a study's pruner raises optuna.TrialPruned).
EpochReporter = Callable[[int, dict[str, float]], None]


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
    folder = RunFolder(run_dir)
    loggers = Loggers.open(
        config.runtime.loggers,
        run_dir,
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
    train_eval = sample_subset(
        subsets.train,
        config.eval.train_eval_count(len(subsets.train), len(subsets.val)),
        subset_seed(config.data.seed, "train_eval"),
    )

    model = place_model(build_model(config.model), device, config.runtime.channels_last)
    optimizer = _optimizer(config, model)
    # With optim.ema_decay, the averaged weights are the ones evaluated, selected and kept.
    average = WeightAverage(model, config.optim.ema_decay) if config.optim.ema_decay else None
    kept_model = average.model if average else model
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    loader, sampler = page_loader(train_pictures, config, pin_memory=device.type == "cuda")
    scheduler = build_scheduler(optimizer, config.optim, len(loader))

    data = data_fingerprint(picture_stats(subsets))
    provenance = _provenance(device, data, model)
    ledger = _Ledger(folder, config, subsets, provenance, cache.reading.window)
    start_epoch = 1
    if resume:
        folder.remove_temporary_files()  # left by a write that was killed
    if resume and folder.checkpoint_path.exists():
        start_epoch = _resume(
            folder, ledger, model, optimizer, scaler, scheduler, average, len(loader)
        )
        ledger.stopped_early = ledger.stopped_after(start_epoch - 1)
    folder.write_config(config)
    ledger.write("running")
    loggers.start(flatten(config_to_dict(config)), start_epoch)
    watch = ProgressFile(
        run_dir, config.optim.epochs, len(loader), start_epoch, study.label if study else None
    )

    previews = config.eval.preview_pictures
    validate = partial(
        _evaluate,
        config,
        kept_model,
        "val",
        subsets.val,
        cache,
        device,
        amp_dtype,
        previews,
        progress,
    )
    epoch = start_epoch
    status: RunStatus = "completed"
    failure: Failure | None = None
    val: SplitResult | None = None
    last_epoch = start_epoch - 1 if ledger.stopped_early else config.optim.epochs
    try:
        for epoch in range(start_epoch, last_epoch + 1):
            t0 = time.perf_counter()
            sampler.set_epoch(epoch)
            train_loss = _train_epoch(
                config,
                model,
                optimizer,
                scaler,
                scheduler,
                average,
                loader,
                epoch,
                device,
                amp_dtype,
                progress,
                watch,
            )
            t1 = time.perf_counter()
            val = validate()
            stop = ledger.stopped_after(epoch, val.metrics)
            train_metrics: dict[str, float] = {}
            if config.eval.train_pass_due(epoch, config.optim.epochs) or stop:
                train_metrics = _evaluate(
                    config, kept_model, "train", train_eval, cache, device, amp_dtype, 0, progress
                ).metrics
            ledger.timings["train_s"] += t1 - t0
            ledger.timings["eval_s"] += time.perf_counter() - t1
            if guard is not None:
                guard()
            lr = float(optimizer.param_groups[0]["lr"])
            values = {"train/loss": train_loss, "train/lr": lr, **train_metrics, **val.metrics}
            ledger.add_epoch(epoch, values, val.pictures)
            loggers.log_epoch(epoch, values)
            if config.eval.select == "best" and ledger.selected_epoch() == epoch:
                folder.save_selected({"model": _cpu_weights(kept_model), "epoch": epoch})
            folder.save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    **({"average": average.state_dict()} if average else {}),
                    "rng": _rng_state(),
                    "epoch": epoch,
                    "config": config_to_dict(config),
                    "timings": ledger.timings,
                    "metrics": val.metrics,
                }
            )
            if progress:
                print(_epoch_line(epoch, config, values), file=sys.stderr, flush=True)
            ledger.write("running")
            if reporter is not None:
                reporter(epoch, values)
            if stop:
                ledger.stopped_early = True
                break
    except RunAbandoned:
        raise
    except (NonFiniteLoss, FloatingPointError) as exc:
        status = "failed"
        failure = Failure(epoch=epoch, step=getattr(exc, "step", None), reason=str(exc))
    except KeyboardInterrupt:
        ledger.write("interrupted")
        loggers.close("interrupted")
        watch.remove()
        raise
    except Exception as exc:
        if type(exc).__name__ != "TrialPruned":  # optuna's, raised by a study's reporter
            failure = Failure(epoch=epoch, reason=f"{type(exc).__name__}: {exc}")
            ledger.write("failed", failure)
            loggers.close("failed")
            watch.remove()
            raise
        status = "pruned"
    if val is None and status == "completed" and start_epoch > 1:
        # Resumed after its last epoch (killed while writing what follows it): the
        # checkpoint holds that epoch's weights, evaluated again (same values).
        epoch, val = start_epoch - 1, validate()
    if val is not None and status in ("completed", "pruned"):
        kept = ledger.kept_epoch()
        if kept != epoch:  # the selected epoch's weights, evaluated again (same values)
            selected = folder.load_selected()
            assert selected is not None and int(selected["epoch"]) == kept
            kept_model.load_state_dict(selected["model"])
            last, val = val, validate()
            ledger.selection_margin = _selection_margin(
                config.eval.select_key, val, last, ledger.last_epoch()
            )
            if status == "completed" and not config.eval.train_pass_due(kept, config.optim.epochs):
                # train/* of the kept weights, not only of the last epoch's: the record's
                # kept values and the report's train-against-validation columns need them
                # (a pruned run has no training-split pass at all).
                t1 = time.perf_counter()
                train_metrics = _evaluate(
                    config, kept_model, "train", train_eval, cache, device, amp_dtype, 0, progress
                ).metrics
                ledger.timings["eval_s"] += time.perf_counter() - t1
                ledger.add_values(kept, train_metrics)
                loggers.log_epoch(kept, train_metrics)
        ledger.pictures = _picture_records(val.pictures)
        # Previews, the PR curve, per-picture histograms and model.pt describe the kept
        # epoch: written once.
        _write_previews(folder, config, val, subsets.val, cache)
        if val.previews and loggers:
            from segtune.analysis.figures import overlay_row

            strip = overlay_row(run_dir, val.pictures[: len(val.previews)], config.eval.threshold)
            loggers.log_image("val/overlays", strip, kept)
        folder.write_pr_curve(val.histogram)
        folder.write_picture_histograms([p.stem for p in val.pictures], val.picture_histograms)
        folder.save_model(_model_file(kept_model, config, kept, val.metrics, cache.reading.window))
    record = ledger.write(status, failure)
    loggers.close(status)
    watch.remove()
    if record.finished and not config.records.keep_resume_state:
        folder.remove_resume_state()
    return record


def _resume(
    folder: RunFolder,
    ledger: _Ledger,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    average: WeightAverage | None,
    steps_per_epoch: int,
) -> int:
    """Restore the last epoch checkpoint; returns the epoch to continue with."""
    state = folder.load_checkpoint()
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    if (average is None) != ("average" not in state):
        what = (
            f"optim.ema_decay is {average.decay:g} but the checkpoint holds no weight average"
            if average
            else "the checkpoint holds a weight average but optim.ema_decay is not set"
        )
        raise ConfigError(
            f"{folder.checkpoint_path}: {what}; resume with the run's own optim.ema_decay"
        )
    if average is not None:
        average.load_state_dict(state["average"])
    done = int(state["epoch"])
    if "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    else:  # a checkpoint from before schedules: put the schedule where it would be
        for _ in range(done * steps_per_epoch):
            scheduler.step()
    # metrics.csv may hold an epoch whose checkpoint write was killed: drop it.
    ledger.history = [r for r in folder.read_metrics() if int(r["epoch"]) <= done]
    ledger.timings = state.get("timings", ledger.timings)
    _set_rng_state(state.get("rng"))
    return done + 1


def _selection_margin(
    key: str, kept: SplitResult, last: SplitResult, last_epoch: int
) -> SelectionMargin | None:
    """The kept epoch's lead over the last epoch by ``key``, with its paired interval
    over the validation pictures (both evaluations score the same pictures in order)."""
    if key not in kept.metrics or key not in last.metrics:  # e.g. a train/* key
        return None
    metric = key.split("/", 1)[1]
    first = (kept.pictures, kept.picture_histograms)
    ci = paired_difference(metric, first, (last.pictures, last.picture_histograms))
    return SelectionMargin(
        last_epoch=last_epoch,
        kept_value=kept.metrics[key],
        last_value=last.metrics[key],
        low=None if ci is None else ci.low,
        high=None if ci is None else ci.high,
    )


def _cpu_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _picture_records(pictures: Sequence[PictureCounts]) -> list[PictureRecord]:
    return [
        PictureRecord(stem=p.stem, tp=p.tp, fp=p.fp, fn=p.fn, positives=p.positives)
        for p in pictures
    ]


def _model_file(
    model: nn.Module,
    config: RunConfig,
    epoch: int,
    val: dict[str, float],
    window: tuple[float, float] | None,
) -> dict[str, Any]:
    """``model.pt``: the weights and what is needed to use them without segtune."""
    from segtune import __version__
    from segtune.engine.model import IMAGENET_MEAN, IMAGENET_STD

    best = val.get("val/best_threshold")
    return {
        "model": _cpu_weights(model),
        "config": config_to_dict(config),
        "epoch": epoch,
        "threshold": config.eval.threshold,
        "best_threshold": None if best is None else float(best),
        # The kept epoch's validation values: evaluate compares a scored split with them.
        "metrics": {k: float(v) for k, v in val.items()},
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 255},
        # Raw values low..high map onto 0..255 before that normalisation (None: 8-bit
        # pictures as they are, 16-bit ones divided by 257, floats in [0, 1] times 255).
        "intensity_window": None if window is None else list(window),
        "pages": config_to_dict(config.pages),
        "segtune": __version__,
    }


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain values, so the checkpoint loads weights-only."""
    name, keys, pos, has_gauss, gauss = cast(
        "tuple[str, NDArray[np.uint32], int, int, float]", np.random.get_state(legacy=True)
    )
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict[str, Any] | None) -> None:
    if not state:
        return
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])


def _optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = config.optim
    cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=o.learning_rate, weight_decay=o.weight_decay)


def _train_epoch(
    config: RunConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    average: WeightAverage | None,
    loader: DataLoader[Any],
    epoch: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    progress: bool,
    watch: ProgressFile,
) -> float:
    """One pass over every training page; returns the running mean loss."""
    o, seed = config.optim, config.runtime.seed
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
        scheduler.step()
        if average is not None:
            average.update(model)
        loss_sum += batch_loss
        batches += 1
        bar.update(images.shape[0], loss=f"{batch_loss:.4f}")
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
        on_picture=lambda: bar.update(1),
    )
    bar.close()
    return result


def _write_previews(
    records: RunFolder,
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
    records.write_previews(counts, val.previews, images, masks, config.eval.threshold, valids)


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


@dataclass
class _Ledger:
    """What a run has recorded so far; writes ``metrics.csv`` and ``summary.json``."""

    folder: RunFolder
    config: RunConfig
    subsets: Subsets
    provenance: Provenance
    intensity_window: tuple[float, float] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    timings: dict[str, float] = field(default_factory=lambda: {"train_s": 0.0, "eval_s": 0.0})
    pictures: list[PictureRecord] = field(default_factory=list)
    selection_margin: SelectionMargin | None = None

    def add_epoch(
        self, epoch: int, values: dict[str, float], val_pictures: Sequence[PictureCounts]
    ) -> None:
        self.history.append({"epoch": epoch, **_row_values(values)})
        self.pictures = _picture_records(val_pictures)
        self.folder.write_metrics(self.history)

    def add_values(self, epoch: int, values: dict[str, float]) -> None:
        """Values measured after ``epoch``'s row was written (the kept epoch's train/*)."""
        row = next(r for r in self.history if int(r["epoch"]) == epoch)
        row.update(_row_values(values))
        self.folder.write_metrics(self.history)

    def selected_epoch(self, pending: dict[str, Any] | None = None) -> int | None:
        """The best epoch so far by ``eval.select_key`` (the earliest on ties), counting
        ``pending``, an epoch's row not yet recorded."""
        key = self.config.eval.select_key
        best: tuple[float, int] | None = None
        for row in [*self.history, *([pending] if pending else [])]:
            if key in row and (best is None or better(float(row[key]), best[0], direction_of(key))):
                best = (float(row[key]), int(row["epoch"]))
        return None if best is None else best[1]

    def last_epoch(self) -> int:
        return max((int(r["epoch"]) for r in self.history), default=0)

    def kept_epoch(self) -> int:
        """The epoch the run keeps: the selected one (eval.select: best), else the last."""
        selected = self.selected_epoch() if self.config.eval.select == "best" else None
        return selected or self.last_epoch()

    def stopped_after(self, epoch: int, values: dict[str, float] | None = None) -> bool:
        """Whether ``optim.early_stop_patience`` epochs have passed since the select key's
        best, after ``epoch``: its ``values`` while the loop decides, its recorded row on
        resume."""
        patience = self.config.optim.early_stop_patience
        pending = {"epoch": epoch, **values} if values is not None else None
        best = self.selected_epoch(pending)
        return patience is not None and best is not None and epoch - best >= patience

    def _selection(self) -> dict[str, Any]:
        """The record's selection fields (eval.select: best)."""
        if self.config.eval.select != "best":
            return {"stopped_early": self.stopped_early}
        epoch = self.selected_epoch()
        row = next((r for r in self.history if int(r["epoch"]) == epoch), {})
        return {
            "selected_epoch": epoch,
            "selected_by": self.config.eval.select_key,
            "selected": {k: float(v) for k, v in row.items() if k != "epoch"},
            "selection_margin": self.selection_margin,
            "stopped_early": self.stopped_early,
        }

    def write(self, status: RunStatus, failure: Failure | None = None) -> RunRecord:
        """summary.json: status, last-epoch values, best values (with epoch), timings."""
        final: dict[str, float] = {}
        best: dict[str, BestValue] = {}
        last_epoch = self.last_epoch()
        for row in self.history:
            for key, value in row.items():
                if key == "epoch" or value in ("", None):
                    continue
                number = float(value)
                if row["epoch"] == last_epoch:
                    final[key] = number
                previous = best.get(key)
                if previous is None or better(number, previous.value, direction_of(key)):
                    best[key] = BestValue(value=number, epoch=int(row["epoch"]))
        threshold = self.config.eval.threshold
        record = RunRecord(
            status=status,
            epochs_done=last_epoch,
            epochs=self.config.optim.epochs,
            threshold=threshold,
            final=final,
            best=best,
            timings=Timings(**{k: round(v, 3) for k, v in self.timings.items()}),
            failure=failure,
            provenance=self.provenance,
            train_pictures=[p.stem for p in self.subsets.train],
            val_pictures=[p.stem for p in self.subsets.val],
            pictures=self.pictures,
            intensity_window=self.intensity_window,
            **self._selection(),
            weight_average=self.config.optim.ema_decay,
            tta=self.config.eval.tta,
            tta_scales=list(self.config.eval.tta_scales),
            metric_words={k: describe_metric(k, threshold) for k in sorted(final)},
        )
        self.folder.write_record(record)
        return record


def _row_values(values: dict[str, float]) -> dict[str, Any]:
    """A history row's values: counts as integers."""
    return {
        key: int(value) if key.split("/", 1)[1] in INTEGER_METRICS else value
        for key, value in values.items()
    }


def _provenance(device: torch.device, data: str, model: nn.Module) -> Provenance:
    """Where the run runs: results are bitwise reproducible only on the same device with
    the same thread count, memory format and library versions."""
    import segmentation_models_pytorch as smp

    from segtune import __version__

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return Provenance(
        device=str(device),
        device_name=name or platform.machine(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        smp=getattr(smp, "__version__", "unknown"),
        segtune=__version__,
        data=data,
        channels_last=memory_format(model) == torch.channels_last,
    )
