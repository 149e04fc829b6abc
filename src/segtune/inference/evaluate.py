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

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from segtune.core.config import RunConfig
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

    def lines(self, per_picture: bool = False) -> list[str]:
        """The summary a person reads: key metrics in words, how the masks compare with
        validation's (and, with ``per_picture``, one line per picture)."""
        out = [
            f"{self.split}: {len(self.pictures)} pictures, threshold {self.threshold:g} "
            f"({self.threshold_source}), test-time augmentation: "
            f"{tta_words(self.tta, self.tta_scales)}"
        ]
        tolerant = sorted(k for k in self.metrics if k.endswith("px"))
        named = [f"{self.split}/{n}" for n in ("precision", "recall", "f1", "iou")]
        named += [*tolerant, *(f"{self.split}/{n}" for n in ("ap", "auc", "best_f1"))]
        for key in named:
            if key in self.metrics:
                ci = self.intervals.get(key)
                extra = f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
                out.append(
                    f"  {describe_metric(key, self.threshold)}: {self.metrics[key]:.4f}{extra}"
                )
        out += self.shift_lines()
        if per_picture:
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
    tolerance_px: int | None = None,
    save_masks: Path | None = None,
    save_probabilities: int | None = None,
) -> Evaluation:
    """Score ``pictures`` exactly as a run's validation is scored (the same
    :func:`segtune.engine.validate.evaluate_split`, reading, regions of interest and ignore
    value), at ``threshold``; ``tolerance_px`` (default: the run's ``eval.tolerance_px``)
    adds F1 with a pixel tolerance; ``save_masks`` writes what ``segtune predict`` would
    (``<name>.png``, with ``save_probabilities`` ``<name>-prob.png``) from the same
    pass."""
    from segtune.core.runtime import autocast_dtype
    from segtune.data.cache import open_cache
    from segtune.engine.validate import evaluate_split

    config = predictor.config
    tolerance = config.eval.tolerance_px if tolerance_px is None else tolerance_px
    on_map = None
    if save_masks is not None:
        on_map = _mask_writer(save_masks, pictures, threshold, save_probabilities, config)
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
        tolerance_px=tolerance,
        on_map=on_map,
    )
    bar.close()
    rows = [
        {"stem": p.stem, "positives": p.positives, "tp": p.tp, "fp": p.fp, "fn": p.fn}
        | ({} if p.near is None else {f"near_{k}": v for k, v in asdict(p.near).items()})
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


def _mask_writer(
    out: Path,
    pictures: Sequence[Picture],
    threshold: float,
    bits: int | None,
    config: RunConfig,
) -> Callable[[Picture, NDArray[np.float32]], None]:
    """Writes each scored picture's mask (and probabilities) as ``segtune predict``
    does: named by :func:`~segtune.inference.predict.output_names`, nothing predicted
    outside a region of interest."""
    from segtune.data.io import MaskReading, read_mask
    from segtune.inference.predict import encoded, output_names, write_outputs

    out.mkdir(parents=True, exist_ok=True)
    names = output_names([p.image for p in pictures])
    roi_reading = MaskReading(threshold=config.data.mask_threshold)

    def write(pic: Picture, prob: NDArray[np.float32]) -> None:
        mask, probabilities = encoded(prob, threshold, bits)
        if pic.roi is not None:
            mask[~read_mask(pic.roi, roi_reading)] = 0
        write_outputs(out, names[pic.image], mask, probabilities)

    return write
