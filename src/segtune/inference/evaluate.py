"""``segtune evaluate``: score a trained checkpoint on a labelled set (a test split).

Metrics are split-named (``test/f1``, …) and computed as validation computes them:
pixel counts summed over all pictures at the threshold, AP and best F1 from the same
fixed-bin histogram. ``--threshold best`` is the threshold selected on the *validation*
split when the run was trained, never one tuned on the pictures being scored. Every
picture's counts are kept, so the JSON also holds 95 % bootstrap intervals over the
pictures.

A threshold selected on validation transfers only to pictures like the validation ones.
The summary therefore compares the scored masks' share of positive pixels with the
validation masks' share (recorded in ``model.pt``) and says when they differ by more than
a quarter, next to the scored split's own F1-best threshold (for diagnosis, never for
selection).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segtune.core.errors import DataError
from segtune.core.intervals import interval, picture_samples
from segtune.core.metrics import (
    COUNT_METRICS,
    ProbabilityHistogram,
    describe_metric,
)
from segtune.core.progress import Progress
from segtune.core.records import tta_words
from segtune.data.layout import MissingMasks, Picture, load_pictures, named_apart
from segtune.data.pairs import check_sizes, shifted
from segtune.inference.predict import Predictor


def pixel_shares(metrics: dict[str, float], split: str) -> tuple[float, float] | None:
    """(positive share of the masks, share marked positive at the threshold) from a
    split's pixel counts (inside the region of interest); None without counts."""
    try:
        tp, fp, fn, tn = (metrics[f"{split}/{name}"] for name in COUNT_METRICS)
    except KeyError:
        return None
    total = tp + fp + fn + tn
    return ((tp + fn) / total, (tp + fp) / total) if total > 0 else None


@dataclass
class Evaluation:
    split: str
    threshold: float
    threshold_source: str
    tta: str
    metrics: dict[str, float]
    pictures: list[dict[str, Any]] = field(default_factory=list)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    histogram: ProbabilityHistogram | None = None
    validation: dict[str, float] = field(default_factory=dict)  # the run's, kept epoch
    tta_scales: list[float] = field(default_factory=lambda: [1.0])

    def shares(self) -> dict[str, float]:
        """Positive shares of the scored and validation masks, and the scored share marked
        positive at the threshold (keys absent where counts are missing)."""
        out: dict[str, float] = {}
        scored = pixel_shares(self.metrics, self.split)
        if scored is not None:
            out["positives"], out["marked"] = scored
        val = pixel_shares(self.validation, "val")
        if val is not None:
            out["validation_positives"] = val[0]
        return out

    def shift_lines(self) -> list[str]:
        """How the scored masks compare with the validation masks, and a note when the
        threshold selected on validation may not transfer to them."""
        shares = self.shares()
        if "positives" not in shares or shares["positives"] == 0:
            return []
        pos, marked = shares["positives"], shares["marked"]
        line = f"  positive pixels: {pos:.2%} of the scored pixels"
        ratio = None
        if shares.get("validation_positives"):
            ratio = pos / shares["validation_positives"]
            line += f" (validation: {shares['validation_positives']:.2%}, x{ratio:.2f})"
        line += (
            f"; marked positive at threshold {self.threshold:g}: {marked:.2%}"
            f" (x{marked / pos:.2f} the masks)"
        )
        out = [line]
        if ratio is not None and shifted(ratio):
            own = self.metrics.get(f"{self.split}/best_threshold")
            out.append(
                f"  note: these masks hold x{ratio:.2f} the validation masks' share of positive "
                "pixels: the pictures or their annotation differ from the validation split, so "
                "a threshold selected there may not transfer"
                + (
                    f" (this split's own F1-best threshold is {own:.3g}: for diagnosis, never "
                    "for selection)"
                    if own is not None
                    else ""
                )
            )
        return out

    def lines(self) -> list[str]:
        """The summary a person reads: key metrics in words, how the masks compare with
        validation's, then one line per picture."""
        out = [
            f"{self.split}: {len(self.pictures)} pictures, threshold {self.threshold:g} "
            f"({self.threshold_source}), test-time augmentation: "
            f"{tta_words(self.tta, self.tta_scales)}"
        ]
        for name in ("precision", "recall", "f1", "iou", "ap", "best_f1"):
            key = f"{self.split}/{name}"
            if key in self.metrics:
                ci = self.intervals.get(key)
                extra = f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
                out.append(
                    f"  {describe_metric(key, self.threshold)}: {self.metrics[key]:.4f}{extra}"
                )
        out += self.shift_lines()
        out.append("  picture  positives  TP  FP  FN")
        out += [
            f"  {p['stem']}  {p['positives']}  {p['tp']}  {p['fp']}  {p['fn']}"
            for p in self.pictures
        ]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "tta": self.tta,
            "tta_scales": self.tta_scales,
            "metrics": self.metrics,
            "intervals_95": {k: list(v) for k, v in self.intervals.items()},
            "pixel_shares": self.shares(),
            "pictures": self.pictures,
        }


def find_labelled(sources: Sequence[Path], missing_masks: MissingMasks = "refuse") -> list[Picture]:
    """Pictures with masks from folders (images/ + masks/) or CSV manifests (images
    without one: ``missing_masks``); sizes are checked from the headers before anything
    is predicted."""
    pictures = [p for source in sources for p in load_pictures(source, missing_masks)]
    images = [p.image.resolve() for p in pictures]
    if len(set(images)) < len(images):
        twice = next(i for i in images if images.count(i) > 1)
        raise DataError(f"{twice}: given twice (in more than one of the inputs)")
    pictures = named_apart(pictures)  # one name in several inputs: named by folder
    check_sizes(pictures)
    return sorted(pictures)


def evaluate_checkpoint(
    predictor: Predictor,
    pictures: Sequence[Picture],
    *,
    split: str,
    threshold: float,
    threshold_source: str,
    progress: bool = True,
) -> Evaluation:
    """Score ``pictures`` exactly as a run's validation is scored (the same
    :func:`segtune.engine.validate.evaluate_split`, reading, regions of interest and ignore
    value), at ``threshold``."""
    from segtune.core.runtime import autocast_dtype
    from segtune.data.cache import open_cache
    from segtune.engine.validate import evaluate_split

    config = predictor.config
    bar = Progress(len(pictures), f"evaluate {split}", "pictures", enabled=progress)
    scored = evaluate_split(
        predictor.model,
        split,
        pictures,
        open_cache(config.data, predictor.reading),
        config.pages,
        predictor.device,
        threshold=threshold,
        bins=config.eval.histogram_bins,
        amp_dtype=autocast_dtype(config.runtime.precision, predictor.device),
        batch_pages=config.optim.micro_batch_size or config.optim.batch_size,
        on_picture=lambda: bar.update(1),
        tta=predictor.tta,
        tta_scales=predictor.tta_scales,
    )
    bar.close()
    rows = [
        {"stem": p.stem, "positives": p.positives, "tp": p.tp, "fp": p.fp, "fn": p.fn}
        for p in scored.pictures
    ]
    result = Evaluation(
        split,
        threshold,
        threshold_source,
        predictor.tta,
        scored.metrics,
        rows,
        histogram=scored.histogram,
        validation=predictor.validation,
        tta_scales=list(predictor.tta_scales),
    )
    samples = picture_samples(scored.pictures)
    for name, values in samples.items():
        ci = interval(values)
        result.intervals[f"{split}/{name}"] = (ci.low, ci.high)
    return result
