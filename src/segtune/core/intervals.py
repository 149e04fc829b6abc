"""How much a run's validation values depend on which pictures were sampled.

A bootstrap over validation pictures: each resample draws as many pictures as the split
has, with replacement, and sums their pixel counts (and probability histograms) before
computing the metric, exactly as the metric itself is computed over the split. Every run
of a study is scored on the same pictures, so the same resamples serve all runs, and the
difference of two runs is taken resample by resample (a paired bootstrap): a difference
whose interval contains 0 cannot be told apart from noise of the picture sample.

What this does not measure is training noise (another seed, another thread count): a
study with one run per point has none to measure, and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from segtune.core.metrics import COLLAPSE_F1, COLLAPSE_MARKED, binned_average_precision

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
# Metrics whose interval comes from per-picture counts at the threshold, and from
# per-picture probability histograms (threshold-free).
COUNT_BASED = ("precision", "recall", "f1", "iou")
HISTOGRAM_BASED = ("ap", "best_f1")

Samples = dict[str, NDArray[np.float64]]  # metric name → its value in each resample


class PictureLike(Protocol):
    """One picture's pixel counts at the threshold (a record or an evaluation row)."""

    @property
    def tp(self) -> int: ...
    @property
    def fp(self) -> int: ...
    @property
    def fn(self) -> int: ...


class HistogramLike(Protocol):
    """One picture's probability histograms of positive and negative pixels."""

    @property
    def pos(self) -> NDArray[np.int64]: ...
    @property
    def neg(self) -> NDArray[np.int64]: ...


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"[{self.low:.4g}, {self.high:.4g}]"


def resample_weights(
    pictures: int, resamples: int = RESAMPLES, seed: int = SEED
) -> NDArray[np.float64]:
    """``(resamples, pictures)``: how often each picture is drawn in each resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, pictures, size=(resamples, pictures))
    weights = np.zeros((resamples, pictures))
    np.add.at(weights, (np.arange(resamples)[:, None], draws), 1.0)
    return weights


def _ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def count_samples(
    tp: NDArray[np.int64], fp: NDArray[np.int64], fn: NDArray[np.int64], w: NDArray[np.float64]
) -> Samples:
    """Precision, recall, F1 and IoU of every resample from per-picture counts."""
    t, f, n = w @ tp.astype(np.float64), w @ fp.astype(np.float64), w @ fn.astype(np.float64)
    precision, recall = _ratio(t, t + f), _ratio(t, t + n)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "iou": _ratio(t, t + f + n),
    }


def picture_samples(pictures: Sequence[PictureLike], resamples: int = RESAMPLES) -> Samples:
    """:func:`count_samples` of per-picture records (anything with ``tp``, ``fp``, ``fn``),
    resampled with the study's fixed seed."""
    return count_samples(
        np.array([p.tp for p in pictures]),
        np.array([p.fp for p in pictures]),
        np.array([p.fn for p in pictures]),
        resample_weights(len(pictures), resamples),
    )


def histogram_samples(
    pos: NDArray[np.int64], neg: NDArray[np.int64], w: NDArray[np.float64]
) -> Samples:
    """AP and best F1 of every resample from per-picture probability histograms (the
    same bin rule as :class:`segtune.core.metrics.ProbabilityHistogram`)."""
    p = w @ pos.astype(np.float64)  # (resamples, bins)
    n = w @ neg.astype(np.float64)
    tp = np.cumsum(p[:, ::-1], axis=1)[:, ::-1]
    fp = np.cumsum(n[:, ::-1], axis=1)[:, ::-1]
    positives = p.sum(axis=1, keepdims=True)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, np.broadcast_to(positives, tp.shape))
    ap = binned_average_precision(p, n)
    f1 = _ratio(2 * precision * recall, precision + recall)
    if f1.shape[1] < 2:
        return {"ap": ap, "best_f1": np.zeros(len(f1))}
    # Threshold 0 (every pixel positive) is never a best threshold, as in the split's own;
    # a resample collapsed at its best edge scores 0 (ProbabilityHistogram.collapsed).
    at = 1 + np.argmax(f1[:, 1:], axis=1)
    rows = np.arange(len(f1))
    best = f1[rows, at]
    total = positives[:, 0] + n.sum(axis=1)
    share = _ratio(positives[:, 0], total)
    marked = tp[rows, at] + fp[rows, at]
    collapsed = (
        (best <= 0)
        | (marked > COLLAPSE_MARKED * positives[:, 0])
        | (best <= COLLAPSE_F1 * _ratio(2 * share, 1 + share))
    )
    return {"ap": ap, "best_f1": np.where(collapsed, 0.0, best)}


def metric_samples(
    metric: str,
    pictures: Sequence[PictureLike],
    histograms: Sequence[HistogramLike],
    weights: NDArray[np.float64],
) -> NDArray[np.float64] | None:
    """One metric's value in every resample of one evaluation of a split's pictures
    (``metric`` without the split: "f1", "best_f1"), or None for one that has no
    per-picture form (the loss) or whose histograms are missing."""
    if metric in COUNT_BASED:
        tp, fp, fn = (np.array([getattr(p, k) for p in pictures]) for k in ("tp", "fp", "fn"))
        return count_samples(tp, fp, fn, weights)[metric]
    if metric in HISTOGRAM_BASED and len(histograms) == len(pictures) > 0:
        pos = np.stack([h.pos for h in histograms])
        neg = np.stack([h.neg for h in histograms])
        return histogram_samples(pos, neg, weights)[metric]
    return None


def paired_difference(
    metric: str,
    first: tuple[Sequence[PictureLike], Sequence[HistogramLike]],
    second: tuple[Sequence[PictureLike], Sequence[HistogramLike]],
) -> Interval | None:
    """The interval of ``first − second`` for two evaluations of the same pictures in the
    same order (two epochs of one run), resampled with the same draws (paired); None when
    the metric has no per-picture form."""
    weights = resample_weights(len(first[0]))
    a = metric_samples(metric, *first, weights)
    b = metric_samples(metric, *second, weights)
    if a is None or b is None:
        return None
    return interval(a - b)


def interval(samples: NDArray[np.float64], level: float = LEVEL) -> Interval:
    """The central ``level`` percentile interval of bootstrap samples."""
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(low), float(high))
