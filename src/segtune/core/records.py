"""Run records: the only interface between training and analysis.

A run folder holds ``config.yaml`` (resolved config), ``metrics.csv`` (one row per
epoch, one split-named column per metric: ``val/recall``), ``summary.json`` (a
:class:`RunRecord`), ``checkpoint.pt`` (weights + config + optimiser state) and
``previews/`` (probability maps of the first K validation pictures), ``model.pt`` (the
weights of the selected epoch with plain metadata: loads with
``torch.load(weights_only=True)``) and, while the run is unfinished, ``checkpoint.pt``
(the resume state: weights, optimiser, grad scaler, RNG states). :class:`RunFolder`
reads and writes them; every file is written to a temporary name and renamed, so a
killed run never leaves a half-written record.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from segtune.core.config import RunConfig, build_run_config, config_to_dict, dump_yaml, load_yaml
from segtune.core.faults import fault_point
from segtune.core.intervals import Interval
from segtune.core.metrics import ProbabilityHistogram

RECORD_VERSION = 2
_SPLIT_METRICS = (
    "tp",
    "fp",
    "fn",
    "tn",
    "precision",
    "recall",
    "f1",
    "iou",
    "ap",
    "auc",
    "best_threshold",
    "best_f1",
    "no_positive_prediction",
    "collapsed",
)
# metrics.csv: one row per epoch; every metric column is split-named, like every key.
METRIC_COLUMNS = (
    "epoch",
    "train/loss",
    "train/lr",
    *(f"train/{m}" for m in _SPLIT_METRICS),
    *(f"val/{m}" for m in _SPLIT_METRICS),
)
INTEGER_METRICS = ("tp", "fp", "fn", "tn", "no_positive_prediction", "collapsed")
RunStatus = Literal["running", "completed", "failed", "pruned", "interrupted"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Failure(_Record):
    """Why a run stopped early: at which epoch (and step) and the reason."""

    epoch: int
    step: int | None = None
    reason: str


class BestValue(_Record):
    value: float
    epoch: int


class Timings(_Record):
    train_s: float = 0.0
    eval_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s


class Provenance(_Record):
    """Where a run ran: results are bitwise reproducible only on the same device with
    the same thread count, memory format and library versions."""

    device: str
    device_name: str = ""
    threads: int
    torch: str
    smp: str
    segtune: str
    data: str | None = None  # fingerprint of the pictures (segtune.study.identity)
    channels_last: bool | None = None  # the model's memory format (None: before 0.2)


class PictureRecord(_Record):
    """TP/FP/FN pixels of one validation picture at the run's kept epoch."""

    stem: str
    tp: int
    fp: int
    fn: int
    positives: int
    # With eval.tolerance_px: predicted positives near a true one, predicted positives,
    # true positives near a prediction (segtune.core.metrics.NearCounts).
    near_correct: int | None = None
    near_marked: int | None = None
    near_found: int | None = None


class SelectionMargin(_Record):
    """How far the selected epoch is ahead of the last one by the select key, and the
    paired 95 % interval of that lead over the validation pictures (None: the key has
    no per-picture form, e.g. the loss). An interval that contains 0 means the picture
    sample cannot tell the two epochs apart: the selection may have picked noise."""

    last_epoch: int
    kept_value: float
    last_value: float
    low: float | None = None
    high: float | None = None

    @property
    def interval(self) -> Interval | None:
        return None if self.low is None or self.high is None else Interval(self.low, self.high)

    @property
    def within_noise(self) -> bool | None:
        return None if self.interval is None else self.interval.contains(0.0)


class RunRecord(_Record):
    """``summary.json``: the typed, versioned record of one run.

    ``version`` 1 is the untyped summary of segtune 0.1 (no ``version`` key); it loads
    with the fields it has.
    """

    version: int = RECORD_VERSION
    status: RunStatus
    epochs_done: int = 0
    epochs: int
    threshold: float
    final: dict[str, float] = Field(default_factory=dict)
    best: dict[str, BestValue] = Field(default_factory=dict)
    timings: Timings = Timings()
    failure: Failure | None = None
    provenance: Provenance | None = None
    train_pictures: list[str] = Field(default_factory=list)
    val_pictures: list[str] = Field(default_factory=list)
    pictures: list[PictureRecord] = Field(default_factory=list)
    # Raw values low..high were mapped onto 0..255 (data.intensity); None: the
    # dtype's rule (8-bit as is, 16-bit ÷ 257, floats × 255).
    intensity_window: tuple[float, float] | None = None
    # The epoch whose weights and threshold the run keeps (eval.select: best), chosen by
    # ``selected_by``, and its values; None / empty: the last epoch (eval.select: last,
    # or records of segtune 0.1). ``stopped_early``: optim.early_stop_patience ended it.
    selected_epoch: int | None = None
    selected_by: str | None = None
    selected: dict[str, float] = Field(default_factory=dict)
    stopped_early: bool = False
    # The selected epoch against the last one (None: the last was kept, or the run ended
    # without validating both in one process, or records before this field).
    selection_margin: SelectionMargin | None = None
    # optim.ema_decay: the values and kept weights are those of an exponential moving
    # average of the trained weights with this decay (None: the weights as trained).
    weight_average: float | None = None
    # eval.tta / eval.tta_scales: validation values are of probabilities averaged over
    # these test-time views and scales ("none", [1.0]: the plain prediction; also records
    # before these fields).
    tta: str = "none"
    tta_scales: list[float] = Field(default_factory=lambda: [1.0])
    metric_words: dict[str, str] = Field(default_factory=dict)
    # runtime.loggers switched off during the run ("mlflow: <reason>"): its tracking is
    # incomplete there, the run's own records are not.
    tracking_lost: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _old_versions(cls, data: Any) -> Any:
        if isinstance(data, dict) and "version" not in data:
            data = {**data, "version": 1}
        return data

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "pruned")

    def value(self, key: str) -> float | None:
        return self.kept.get(key)

    @property
    def kept(self) -> dict[str, float]:
        """The values of the kept epoch: the selected one, else the last."""
        return self.selected or self.final

    @property
    def kept_epoch(self) -> int:
        return self.selected_epoch or self.epochs_done

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        return cls.model_validate_json(path.read_text())

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")


def kept_epoch_words(record: RunRecord) -> str:
    """Which epoch a run's values, weights and threshold come from, in words, e.g.
    "epoch 5 of 6, selected by val/best_f1" (then its lead over the last epoch in
    parentheses, :func:`margin_words`) or "epoch 6 of 6 (the last)", then
    "; weights averaged (decay 0.999)" when optim.ema_decay was set, then "; validated
    with test-time flips" when eval.tta (or eval.tta_scales) was."""
    of = f"epoch {record.kept_epoch} of {record.epochs_done}"
    how = " (the last)" if record.selected_by is None else f", selected by {record.selected_by}"
    if record.selection_margin is not None:
        how += f" ({margin_words(record.selection_margin)})"
    early = f"; stopped early at epoch {record.epochs_done}" if record.stopped_early else ""
    average = (
        f"; weights averaged (decay {record.weight_average:g})"
        if record.weight_average is not None
        else ""
    )
    words = tta_words(record.tta, record.tta_scales)
    views = f"; validated with test-time {words}" if words != "none" else ""
    return f"{of}{how}{early}{average}{views}"


def margin_words(m: SelectionMargin) -> str:
    """The selected epoch's lead over the last, e.g. "0.8440 against 0.8402 at epoch 25:
    +0.0038, paired 95 % interval [-0.006, 0.013] over the validation pictures, within
    picture-sample noise"."""
    words = (
        f"{m.kept_value:.4f} against {m.last_value:.4f} at epoch {m.last_epoch}: "
        f"{m.kept_value - m.last_value:+.4f}"
    )
    if m.interval is None:
        return words
    verdict = "within picture-sample noise" if m.within_noise else "beyond picture-sample noise"
    return f"{words}, paired 95 % interval {m.interval} over the validation pictures, {verdict}"


def tta_words(tta: str, scales: Sequence[float]) -> str:
    """eval.tta and eval.tta_scales in words: "none", "flips", "flips and transposes at
    scales ×0.75, ×1, ×1.25", "scales ×0.5, ×1"."""
    views = {"none": "", "flips": "flips", "dihedral": "flips and transposes"}[tta]
    at = "" if list(scales) == [1.0] else "scales " + ", ".join(f"×{s:g}" for s in scales)
    return " at ".join(w for w in (views, at) if w) or "none"


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Files are created with the process umask (e.g. 0644), not mkstemp's private 0600, so
# colleagues sharing a study folder can read its records.
FILE_MODE = 0o666 & ~_process_umask()


def check_out_dir(path: Path, option: str = "--out") -> None:
    """Refuse an output folder that cannot be made, before any work: one line naming the
    path (it is a file, it lies under a file, or its first existing folder is read-only)."""
    from segtune.core.errors import SegtuneError

    if path.exists() and not path.is_dir():
        raise SegtuneError(f"{option} {path}: is a file, not a folder")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SegtuneError(f"{option} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SegtuneError(f"{option} {path}: {ancestor} is not writable")


def check_out_file(path: Path, option: str = "--out") -> None:
    """Refuse an output file that cannot be written, before any work: it is a folder, or
    its folder cannot be made (:func:`check_out_dir`)."""
    from segtune.core.errors import SegtuneError

    if path.is_dir():
        raise SegtuneError(f"{option} {path}: is a folder; give a file name")
    check_out_dir(path.parent, option)


def atomic_write_bytes(path: Path, data: bytes, boundary: str | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if boundary is not None:
            fault_point(boundary)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


class RunFolder:
    """Reads and writes the record files of one run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir

    # paths
    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.csv"

    @property
    def summary_path(self) -> Path:
        return self.dir / "summary.json"

    @property
    def checkpoint_path(self) -> Path:
        """The resume state (deleted when the run completes, unless kept)."""
        return self.dir / "checkpoint.pt"

    @property
    def model_path(self) -> Path:
        """Weights of the selected epoch plus plain metadata (what predict takes)."""
        return self.dir / "model.pt"

    @property
    def previews_dir(self) -> Path:
        return self.dir / "previews"

    # writing
    def write_config(self, config: RunConfig) -> None:
        atomic_write_text(self.config_path, dump_yaml(config_to_dict(config)))

    def write_metrics(self, rows: Sequence[dict[str, Any]]) -> None:
        """One row per epoch: ``{"epoch": 1, "train/loss": …, "val/recall": …}``."""
        buf = io.StringIO()
        extra = sorted({k for row in rows for k in row} - set(METRIC_COLUMNS))  # val/f1_2px
        columns = (*METRIC_COLUMNS, *extra)
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k, "")) for k in columns})
        atomic_write_text(self.metrics_path, buf.getvalue())

    def write_record(self, record: RunRecord) -> None:
        record.save(self.summary_path)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.checkpoint_path, buf.getvalue(), boundary="checkpoint_write")

    def save_model(self, state: dict[str, Any]) -> None:
        """Write ``model.pt``: tensors and plain Python values only, so that it loads
        with ``torch.load(path, weights_only=True)``."""
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.model_path, buf.getvalue())

    @property
    def selected_path(self) -> Path:
        """Weights of the best epoch so far (eval.select: best), while the run lasts."""
        return self.dir / "selected.pt"

    def save_selected(self, state: dict[str, Any]) -> None:
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.selected_path, buf.getvalue())

    def load_selected(self) -> dict[str, Any] | None:
        import torch

        if not self.selected_path.exists():
            return None
        return dict(torch.load(self.selected_path, map_location="cpu", weights_only=True))

    def remove_resume_state(self) -> None:
        self.checkpoint_path.unlink(missing_ok=True)
        self.selected_path.unlink(missing_ok=True)

    def remove_temporary_files(self) -> list[Path]:
        """Delete what killed writes left behind (``.<name>.<random>`` beside a record)."""
        removed: list[Path] = []
        if not self.dir.is_dir():
            return removed
        for folder in (self.dir, self.previews_dir):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.is_file() and entry.name.startswith("."):
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
        return removed

    def write_pr_curve(self, hist: ProbabilityHistogram, points: int = 101) -> None:
        """Validation precision/recall at ``points`` evenly spaced thresholds."""
        thresholds, precision, recall = hist.curve()
        pick = np.unique(np.linspace(0, len(thresholds) - 1, points).round().astype(int))
        write_json(
            self.dir / "pr_curve.json",
            {
                "split": "val",
                "threshold": thresholds[pick].tolist(),
                "precision": precision[pick].tolist(),
                "recall": recall[pick].tolist(),
            },
        )

    # reading
    @property
    def picture_histograms_path(self) -> Path:
        return self.dir / "pictures.npz"

    def write_picture_histograms(
        self, stems: Sequence[str], hists: Sequence[ProbabilityHistogram]
    ) -> None:
        """``pictures.npz``: the probability histograms of positive and negative pixels of
        every validation picture (final state), so that intervals of threshold-free
        metrics are computed from records (compressed: most bins are empty)."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            stems=np.asarray(list(stems)),
            pos=np.stack([h.pos for h in hists]) if hists else np.zeros((0, 0), np.int64),
            neg=np.stack([h.neg for h in hists]) if hists else np.zeros((0, 0), np.int64),
        )
        atomic_write_bytes(self.picture_histograms_path, buf.getvalue())

    def read_picture_histograms(
        self,
    ) -> tuple[list[str], NDArray[np.int64], NDArray[np.int64]] | None:
        """``(stems, pos, neg)`` with one row per validation picture, or None."""
        if not self.picture_histograms_path.exists():
            return None
        with np.load(self.picture_histograms_path) as data:
            return [str(s) for s in data["stems"]], data["pos"], data["neg"]

    def read_pr_curve(self) -> dict[str, Any] | None:
        path = self.dir / "pr_curve.json"
        return dict(json.loads(path.read_text())) if path.exists() else None

    def read_config(self) -> RunConfig:
        return build_run_config(load_yaml(self.config_path), str(self.config_path))

    def read_metrics(self) -> list[dict[str, Any]]:
        """Rows of ``metrics.csv`` (one per epoch, split-named keys, empty cells left out);
        the one-row-per-epoch-and-split layout of segtune 0.1 is read into the same form."""
        if not self.metrics_path.exists():
            return []
        with self.metrics_path.open(newline="") as fh:
            raw = list(csv.DictReader(fh))
        if raw and "split" in raw[0]:
            return _from_long_rows(raw)
        return [{k: _parse(v) for k, v in row.items() if v != ""} for row in raw]

    def read_record(self) -> RunRecord:
        return RunRecord.load(self.summary_path)

    def read_previews(self) -> dict[str, Any]:
        path = self.previews_dir / "previews.json"
        return dict(json.loads(path.read_text())) if path.exists() else {"pictures": []}

    def load_checkpoint(self) -> dict[str, Any]:
        import torch

        return dict(torch.load(self.checkpoint_path, map_location="cpu", weights_only=True))


def _from_long_rows(raw: list[dict[str, str]]) -> list[dict[str, Any]]:
    by_epoch: dict[int, dict[str, Any]] = {}
    for row in raw:
        epoch = int(row["epoch"])
        out = by_epoch.setdefault(epoch, {"epoch": epoch})
        for name, value in row.items():
            if name not in ("epoch", "split") and value != "":
                out[f"{row['split']}/{name}"] = _parse(value)
    return [by_epoch[e] for e in sorted(by_epoch)]


def _fmt(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value


def _parse(value: str) -> Any:
    if value == "":
        return ""
    try:
        number = float(value)
    except ValueError:
        return value
    return int(value) if value.lstrip("-").isdigit() else number
