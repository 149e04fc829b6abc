"""What a run has recorded so far: ``metrics.csv`` rows, the typed ``summary.json``
(:class:`~segtune.core.records.RunRecord`) with its selected epoch, the per-picture counts
and where the run ran (provenance)."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from segtune.core.config import RunConfig
from segtune.core.intervals import paired_difference
from segtune.core.metrics import PictureCounts, better, describe_metric, direction_of
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
from segtune.core.runtime import memory_format
from segtune.core.version import VERSION
from segtune.data.subsets import Subsets
from segtune.engine.validate import SplitResult


@dataclass
class Ledger:
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
    tracking_lost: list[str] = field(default_factory=list)  # the run's Loggers.lost

    def add_epoch(
        self, epoch: int, values: dict[str, float], val_pictures: Sequence[PictureCounts]
    ) -> None:
        self.history.append({"epoch": epoch, **row_values(values)})
        self.pictures = picture_records(val_pictures)
        self.folder.write_metrics(self.history)

    def add_values(self, epoch: int, values: dict[str, float]) -> None:
        """Values measured after ``epoch``'s row was written (the kept epoch's train/*)."""
        row = next(r for r in self.history if int(r["epoch"]) == epoch)
        row.update(row_values(values))
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
            tracking_lost=list(self.tracking_lost),
        )
        self.folder.write_record(record)
        return record


def row_values(values: dict[str, float]) -> dict[str, Any]:
    """A history row's values: counts as integers."""
    return {
        key: int(value) if key.split("/", 1)[1] in INTEGER_METRICS else value
        for key, value in values.items()
    }


def provenance(device: torch.device, data: str, model: nn.Module) -> Provenance:
    """Where the run runs: results are bitwise reproducible only on the same device with
    the same thread count, memory format and library versions."""
    import segmentation_models_pytorch as smp

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return Provenance(
        device=str(device),
        device_name=name or platform.machine(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        smp=getattr(smp, "__version__", "unknown"),
        segtune=VERSION,
        data=data,
        channels_last=memory_format(model) == torch.channels_last,
    )


def selection_margin(
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


def picture_records(pictures: Sequence[PictureCounts]) -> list[PictureRecord]:
    return [
        PictureRecord(
            stem=p.stem,
            tp=p.tp,
            fp=p.fp,
            fn=p.fn,
            positives=p.positives,
            near_correct=None if p.near is None else p.near.correct,
            near_marked=None if p.near is None else p.near.marked,
            near_found=None if p.near is None else p.near.found,
        )
        for p in pictures
    ]
