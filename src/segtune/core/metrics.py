"""Pixel counts, derived metrics, histogram AP, and metric keys in words.

Every metric key is ``<split>/<name>`` (``val/recall``, ``train/loss``). Counts are
summed over all pictures of a split on full stitched pictures; a pixel is predicted
positive when its probability is >= the threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

SPLIT_WORDS = {"train": "Training", "val": "Validation", "test": "Test"}
METRIC_WORDS = {
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "iou": "IoU",
    "ap": "average precision",
    "auc": "ROC AUC",
    "best_f1": "best F1 over thresholds",
    "best_threshold": "threshold of best F1",
    "loss": "loss",
    "lr": "learning rate (end of epoch)",
    "tp": "true-positive pixels",
    "fp": "false-positive pixels",
    "fn": "false-negative pixels",
    "tn": "true-negative pixels",
    "collapsed": "collapsed (no threshold separates the positives: see COLLAPSE_*)",
}
THRESHOLD_FREE = {"ap", "auc", "best_f1", "best_threshold", "collapsed"}
# F1 with a pixel tolerance: "f1_2px" (eval.tolerance_px: 2), as precision_2px, recall_2px.
_TOLERANT = re.compile(r"(precision|recall|f1)_(\d+)px")
LOWER_IS_BETTER = {"loss", "fp", "fn", "no_positive_prediction", "collapsed"}
Direction = Literal["maximize", "minimize"]
COUNT_METRICS = ("tp", "fp", "fn", "tn")
DERIVED_METRICS = ("precision", "recall", "f1", "iou")


def split_of(key: str) -> str:
    """The split part of a metric key; raises if the key names none."""
    split, sep, name = key.partition("/")
    if not sep or split not in SPLIT_WORDS or not name:
        raise ValueError(
            f"metric key {key!r} must be '<split>/<name>' with split in {list(SPLIT_WORDS)}"
        )
    return split


def direction_of(key: str) -> Direction:
    """Whether a larger value of a metric key is better (``maximize``) or worse."""
    return "minimize" if key.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "maximize"


def better(a: float, b: float, direction: Direction) -> bool:
    """Whether value ``a`` is strictly better than ``b`` in ``direction``."""
    return a > b if direction == "maximize" else a < b


def ranking(value: float, direction: Direction) -> float:
    """A sort key that puts the best value first (ascending sort)."""
    return -value if direction == "maximize" else value


# Metrics that are shares (precision … AUC, and their pixel-tolerance forms): a mean of
# them, and so an honest interval for it, lies in [0, 1].
_SHARES = {"precision", "recall", "f1", "iou", "ap", "auc", "best_f1", "best_threshold"}


def metric_range(key: str) -> tuple[float, float] | None:
    """The values a metric can take, when bounded (``val/recall``: (0, 1)); None for
    counts and the loss."""
    name = key.split("/", 1)[-1]
    if name in _SHARES or _TOLERANT.fullmatch(name):
        return 0.0, 1.0
    return None


def describe_metric(key: str, threshold: float | None = 0.5, *, short: bool = False) -> str:
    """The one way a metric key is put into words (tables, titles, axes, captions).

    >>> describe_metric("val/recall", 0.5)
    'Validation recall, pixel-level, threshold 0.5'
    >>> describe_metric("train/loss")
    'Training loss (running mean over augmented batches)'
    """
    split = split_of(key)
    name = key.split("/", 1)[1]
    words = f"{SPLIT_WORDS[split]} {METRIC_WORDS.get(name, name)}"
    if tolerant := _TOLERANT.fullmatch(name):
        base, k = tolerant.groups()
        words = f"{SPLIT_WORDS[split]} {METRIC_WORDS[base]}, {k}-px tolerance"
    if short:
        return words
    if name == "loss":
        return f"{words} (running mean over augmented batches)"
    if name == "lr":
        return words
    if name in THRESHOLD_FREE:
        return f"{words}, pixel-level, threshold-free"
    if threshold is None:
        return f"{words}, pixel-level"
    return f"{words}, pixel-level, threshold {threshold:g}"


_TRIVIAL = {
    "recall": "predicting every pixel positive gives recall 1",
    "fn": "predicting every pixel positive gives no false negative",
    "precision": "predicting only a few surest pixels positive gives precision near 1",
    "fp": "predicting nothing positive gives no false positive",
}


def trivially_maximised(key: str) -> str | None:
    """Why a degenerate predictor scores best on a metric key, or None (F1, IoU, AP and
    best F1 need both precision and recall). Shared by the report and ``plan``."""
    return _TRIVIAL.get(key.split("/", 1)[-1])


# Flags at the threshold a table uses (documented in docs/report.md): a run over-predicts
# when it marks at least OVER_PREDICTION times the true positive pixels, under-predicts
# when the true positive pixels are at least UNDER_PREDICTION times what it marks, and
# finds almost nothing when its recall is below ALMOST_NOTHING.
OVER_PREDICTION = 1.5
UNDER_PREDICTION = 1.5
ALMOST_NOTHING = 0.05


def flag_counts(tp: float, fp: float, fn: float) -> str | None:
    """Names what is wrong with predictions of these pixel counts: "all black" (nothing
    predicted), "finds almost nothing (recall 0.0027)", "over-predicts ×1.6" (predicted
    / true positive pixels) or "under-predicts ×2.1" (true / predicted); None otherwise."""
    predicted, positives = tp + fp, tp + fn
    if positives <= 0:  # nothing to find: no flag says more than the counts
        return None
    if predicted == 0:
        return "all black"
    recall = tp / positives
    if recall < ALMOST_NOTHING:
        return f"finds almost nothing (recall {recall:.2g})"
    if predicted >= OVER_PREDICTION * positives:
        return f"over-predicts ×{predicted / positives:.1f}"
    if positives >= UNDER_PREDICTION * predicted:
        return f"under-predicts ×{positives / predicted:.1f}"
    return None


def degenerate(final: dict[str, float], split: str = "val") -> str | None:
    """:func:`flag_counts` of a run's final pixel counts of ``split`` (None without
    them)."""
    tp, fp, fn = (final.get(f"{split}/{k}") for k in ("tp", "fp", "fn"))
    if tp is None or fp is None or fn is None:
        return None
    return flag_counts(tp, fp, fn)


@dataclass
class Counts:
    """Pixel confusion counts at one threshold."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.tn += other.tn
        return self


def confusion_counts(
    prob: NDArray[np.floating],
    target: NDArray[np.bool_],
    threshold: float,
    valid: NDArray[np.bool_] | None = None,
) -> Counts:
    """Counts at ``threshold`` (``prob >= threshold`` is positive) over valid pixels."""
    pred = prob >= threshold
    if valid is not None:
        pred, target = pred[valid], target[valid]
    tp = int(np.count_nonzero(pred & target))
    fp = int(np.count_nonzero(pred & ~target))
    fn = int(np.count_nonzero(~pred & target))
    return Counts(tp, fp, fn, int(pred.size) - tp - fp - fn)


def derived_metrics(c: Counts) -> dict[str, float]:
    """Precision, recall, F1, IoU from counts; 0 where a denominator is 0.

    ``no_positive_prediction`` is 1.0 when nothing was predicted positive (precision is
    then reported as 0 and the value flagged).
    """
    precision = c.tp / (c.tp + c.fp) if c.tp + c.fp else 0.0
    recall = c.tp / (c.tp + c.fn) if c.tp + c.fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    iou = c.tp / (c.tp + c.fp + c.fn) if c.tp + c.fp + c.fn else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "iou": iou,
        "no_positive_prediction": float(c.tp + c.fp == 0),
    }


@dataclass(frozen=True)
class NearCounts:
    """Pixel counts with a tolerance of ``k`` px (the CrackForest convention): a
    predicted positive is ``correct`` when a true positive lies within Euclidean distance
    k of it, a true positive is ``found`` when a predicted positive lies within k."""

    correct: int = 0
    marked: int = 0  # predicted positives
    found: int = 0
    positives: int = 0

    def __add__(self, other: NearCounts) -> NearCounts:
        return NearCounts(
            self.correct + other.correct,
            self.marked + other.marked,
            self.found + other.found,
            self.positives + other.positives,
        )


def near_counts(
    pred: NDArray[np.bool_], truth: NDArray[np.bool_], k: int, valid: NDArray[np.bool_] | None
) -> NearCounts:
    """:class:`NearCounts` of a thresholded picture (no thinning); pixels outside
    ``valid`` count neither as predictions nor as positives."""
    from scipy.ndimage import distance_transform_edt

    if valid is not None:
        pred, truth = pred & valid, truth & valid

    def within(marks: NDArray[np.bool_]) -> NDArray[np.bool_]:
        if not marks.any():
            return np.zeros_like(marks)
        return np.asarray(distance_transform_edt(~marks) <= k)

    return NearCounts(
        correct=int(np.count_nonzero(pred & within(truth))),
        marked=int(np.count_nonzero(pred)),
        found=int(np.count_nonzero(truth & within(pred))),
        positives=int(np.count_nonzero(truth)),
    )


def near_metrics(c: NearCounts, k: int) -> dict[str, float]:
    """``precision_{k}px``, ``recall_{k}px``, ``f1_{k}px`` (0 where undefined)."""
    precision = c.correct / c.marked if c.marked else 0.0
    recall = c.found / c.positives if c.positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {f"precision_{k}px": precision, f"recall_{k}px": recall, f"f1_{k}px": f1}


@dataclass(frozen=True)
class PictureCounts:
    """TP/FP/FN pixels of one preview picture (numbered 1..K in the subset's order),
    and its counts with a pixel tolerance when the run scores one."""

    index: int
    stem: str
    tp: int
    fp: int
    fn: int
    positives: int
    near: NearCounts | None = None


# A collapsed model (ProbabilityHistogram.collapsed) gets no best threshold.
COLLAPSE_MARKED = 10.0
COLLAPSE_F1 = 1.1
LOGIT_RANGE = 16.0  # histogram bins span logits −16 … 16 (probabilities 1.1e-7 … 1 − 1.1e-7)


@dataclass
class ProbabilityHistogram:
    """Fixed-bin histograms of probabilities of positive and negative pixels.

    Bins are equal in *logit* space over ``[−LOGIT_RANGE, LOGIT_RANGE]`` (the ends take
    everything beyond), so a confident model's probabilities near 0 and 1 are resolved
    as finely as those near 0.5 and AP agrees with the exact (sorted) estimator within
    5e-4 (:func:`binned_average_precision`), at a memory that does not grow with the
    data. Bin ``j``'s lower edge is the
    threshold ``thresholds()[j]`` (bin 0's is 0: every pixel).
    """

    bins: int = 1000
    pos: NDArray[np.int64] = field(init=False)
    neg: NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.pos = np.zeros(self.bins, dtype=np.int64)
        self.neg = np.zeros(self.bins, dtype=np.int64)

    def add(
        self,
        prob: NDArray[np.floating],
        target: NDArray[np.bool_],
        valid: NDArray[np.bool_] | None = None,
    ) -> None:
        if valid is not None:
            prob, target = prob[valid], target[valid]
        p = prob.astype(np.float64)
        with np.errstate(divide="ignore"):
            logit = np.log(p) - np.log1p(-p)
        scaled = (np.clip(logit, -LOGIT_RANGE, LOGIT_RANGE) + LOGIT_RANGE) / (2 * LOGIT_RANGE)
        idx = np.clip((scaled * self.bins).astype(np.int64), 0, self.bins - 1)
        self.pos += np.bincount(idx[target], minlength=self.bins)
        self.neg += np.bincount(idx[~target], minlength=self.bins)

    def thresholds(self) -> NDArray[np.float64]:
        """The probability at each bin's lower edge (0 for the first bin)."""
        edges = -LOGIT_RANGE + np.arange(self.bins) * (2 * LOGIT_RANGE / self.bins)
        out = 1.0 / (1.0 + np.exp(-edges))
        out[0] = 0.0
        return out

    def curve(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Bin-edge thresholds with precision and recall at each (a pixel is positive
        when its probability reaches the threshold)."""
        tp = np.cumsum(self.pos[::-1])[::-1].astype(np.float64)
        fp = np.cumsum(self.neg[::-1])[::-1].astype(np.float64)
        positives = float(self.pos.sum())
        predicted = tp + fp
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        recall = tp / positives if positives else np.zeros_like(tp)
        return self.thresholds(), precision, recall

    def average_precision(self) -> float:
        """AP from the bins (:func:`binned_average_precision`)."""
        return float(binned_average_precision(self.pos, self.neg))

    def roc_auc(self) -> float:
        """ROC AUC from the bins (:func:`binned_roc_auc`)."""
        return float(binned_roc_auc(self.pos, self.neg))

    def _best(self) -> tuple[int, float, bool]:
        """The bin edge above 0 maximising F1 (lowest on ties), its F1, and whether the
        model is collapsed there (:attr:`collapsed`)."""
        _, precision, recall = self.curve()
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        if len(f1) < 2 or f1[1:].max() <= 0.0:
            return 0, 0.0, True
        best = 1 + int(np.argmax(f1[1:]))
        positives = float(self.pos.sum())
        total = positives + float(self.neg.sum())
        marked = float(self.pos[best:].sum() + self.neg[best:].sum())
        share = positives / total  # π: F1 of marking every pixel positive is 2π/(1+π)
        trivial = 2 * share / (1 + share)
        collapsed = marked > COLLAPSE_MARKED * positives or f1[best] <= COLLAPSE_F1 * trivial
        return best, float(f1[best]), collapsed

    def best_f1(self) -> tuple[float | None, float]:
        """``(threshold, F1)`` maximising F1 over the bin edges above 0 (lowest threshold
        on ties). Threshold 0 marks every pixel positive, a trivial predictor, and is
        never selected; a collapsed model (:attr:`collapsed`) has no best threshold and
        no usable F1: ``(None, 0.0)`` (so selecting an epoch by best F1 never prefers
        one that separates nothing)."""
        best, f1, collapsed = self._best()
        return (None, 0.0) if collapsed else (float(self.thresholds()[best]), f1)

    @property
    def collapsed(self) -> bool:
        """The model separates nothing: no probability reaches the first bin edge, or
        thresholding at its best-F1 edge marks more than ``COLLAPSE_MARKED`` times the
        positive pixels, or that best F1 is at most ``COLLAPSE_F1`` times the F1 of
        marking every pixel positive (2π/(1+π), π the positive fraction)."""
        return self._best()[2]


def binned_average_precision(
    pos: NDArray[np.floating] | NDArray[np.int64], neg: NDArray[np.floating] | NDArray[np.int64]
) -> NDArray[np.float64]:
    """Average precision (as sklearn's ``average_precision_score``: Σ ΔR · P over the
    ranked pixels) from per-bin counts of positive and negative pixels (last axis: bins
    in ascending probability; leading axes: e.g. bootstrap resamples).

    A bin's pixels are taken as spread evenly over it, positives and negatives
    interleaved, rather than all at its lower edge (which credits every positive of a bin
    with the bin's lowest precision: 4.7e-3 low on mid-range probabilities at 1000
    bins). With ``a`` positives and ``c`` pixels ranked above a bin of ``p`` positives and
    ``d`` pixels, its i-th positive comes after ``i·d/p`` of its pixels, at precision
    ``(a + i) / (c + i·d/p)``; their sum has the closed form
    ``(p + (a − s)(ψ(s + p + 1) − ψ(s + 1))) · p/d`` with ``s = c·p/d`` (ψ: digamma), so
    the estimate costs one pass over the bins. A bin holding one pixel, or ties at one
    probability first in the ranking, gives the exact value.
    """
    from scipy.special import digamma

    p = np.asarray(pos, np.float64)[..., ::-1]  # highest probability first
    d = p + np.asarray(neg, np.float64)[..., ::-1]
    a = np.cumsum(p, axis=-1) - p  # positives ranked above each bin
    c = np.cumsum(d, axis=-1) - d  # pixels ranked above each bin
    has = p > 0
    ratio = np.divide(p, d, out=np.zeros_like(p), where=has)  # p/d
    s = c * ratio
    term = (p + (a - s) * (digamma(s + p + 1) - digamma(s + 1))) * ratio
    total = np.where(has, term, 0.0).sum(axis=-1)
    positives = p.sum(axis=-1)
    return np.divide(total, positives, out=np.zeros_like(total), where=positives > 0)


def binned_roc_auc(
    pos: NDArray[np.floating] | NDArray[np.int64], neg: NDArray[np.floating] | NDArray[np.int64]
) -> NDArray[np.float64]:
    """ROC AUC (the probability that a random positive pixel outscores a random negative
    one, ties counting one half, as sklearn's ``roc_auc_score``) from per-bin counts (last
    axis: bins in ascending probability). A positive and a negative in the same bin are
    taken as tied: the expected value of their order when both are spread evenly over the
    bin. 0.5 where a split has no positive or no negative pixel."""
    p = np.asarray(pos, np.float64)
    n = np.asarray(neg, np.float64)
    below = np.cumsum(n, axis=-1) - n  # negatives in lower bins
    pairs = (p * (below + 0.5 * n)).sum(axis=-1)
    total = p.sum(axis=-1) * n.sum(axis=-1)
    return np.divide(pairs, total, out=np.full_like(pairs, 0.5), where=total > 0)


def split_metrics(
    split: str,
    counts: Counts,
    hist: ProbabilityHistogram,
    near: tuple[NearCounts, int] | None = None,
) -> dict[str, float]:
    """All metric values of one split, keyed ``<split>/<name>`` (``near``: counts with a
    pixel tolerance and its k)."""
    values: dict[str, float] = {name: float(getattr(counts, name)) for name in COUNT_METRICS}
    values.update(derived_metrics(counts))
    if near is not None:
        values.update(near_metrics(*near))
    values["ap"] = hist.average_precision()
    values["auc"] = hist.roc_auc()
    threshold, values["best_f1"] = hist.best_f1()
    if threshold is not None:
        values["best_threshold"] = threshold
    values["collapsed"] = float(hist.collapsed)
    return {f"{split}/{name}": value for name, value in values.items()}
