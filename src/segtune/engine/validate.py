"""Per-split evaluation on full stitched pictures (prediction: :mod:`segtune.engine.infer`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from segtune.core.config import PagesConfig
from segtune.core.interrupt import check as check_stop
from segtune.core.metrics import (
    Counts,
    NearCounts,
    PictureCounts,
    ProbabilityHistogram,
    confusion_counts,
    near_counts,
    split_metrics,
)
from segtune.data.cache import PictureCache
from segtune.data.layout import Picture
from segtune.engine.infer import probability_bands


@dataclass
class SplitResult:
    """Evaluation of one split: metric values, counts and probability histograms of
    every picture, preview maps (the first ``keep_previews`` pictures)."""

    metrics: dict[str, float]
    histogram: ProbabilityHistogram
    pictures: list[PictureCounts] = field(default_factory=list)
    picture_histograms: list[ProbabilityHistogram] = field(default_factory=list)
    previews: list[NDArray[np.float32]] = field(default_factory=list)


def evaluate_split(
    model: nn.Module,
    split: str,
    pictures: Sequence[Picture],
    cache: PictureCache,
    pages: PagesConfig,
    device: torch.device,
    *,
    threshold: float,
    bins: int,
    keep_previews: int = 0,
    amp_dtype: torch.dtype | None = None,
    batch_pages: int = 8,
    on_picture: Callable[[], None] | None = None,
    tta: str = "none",
    tta_scales: Sequence[float] = (1.0,),
    tolerance_px: int | None = None,
    on_map: Callable[[Picture, NDArray[np.float32]], None] | None = None,
) -> SplitResult:
    """Evaluate full stitched pictures at their original size.

    Probabilities are computed on the resized picture (at each test-time scale) and
    resized back, then compared with the original mask. The first ``keep_previews``
    probability maps are kept. With ``tolerance_px`` each picture's thresholded map is
    kept whole (one byte a pixel) to count predictions near a true positive; with
    ``on_map`` every picture's probability map is handed to it (``evaluate
    --save-masks``: what ``predict`` would write, from the same pass).
    """
    counts = Counts()
    hist = ProbabilityHistogram(bins)
    result = SplitResult(metrics={}, histogram=hist)
    near_total = NearCounts()
    for i, pic in enumerate(pictures):
        check_stop()  # a Ctrl-C or SIGTERM a finalizer swallowed
        mask = np.asarray(cache.mask_of(pic)).astype(bool)
        valid = cache.valid(pic)  # at the original size, like the mask

        def image_at(factor: float, path: Path = pic.image) -> NDArray[np.uint8]:
            return np.asarray(cache.get(path, "image", *pages.resize_at(factor)))

        bands = probability_bands(
            model,
            image_at,
            mask.shape,
            pages,
            device,
            scales=tta_scales,
            amp_dtype=amp_dtype,
            batch_pages=batch_pages,
            tta=tta,
        )
        # Counted band by band (a huge picture never holds its whole map), kept whole
        # only for a preview.
        whole = i < keep_previews or on_map is not None
        prob = np.empty(mask.shape, np.float32) if whole else None
        marked = np.zeros(mask.shape, bool) if tolerance_px else None
        c = Counts()
        own = ProbabilityHistogram(bins)  # per picture: intervals of AP and best F1
        for y, band in bands:
            if not np.all(np.isfinite(band)):
                raise FloatingPointError(f"non-finite prediction on {split} picture {pic.stem}")
            rows = slice(y, y + band.shape[0])
            part = None if valid is None else valid[rows]
            c += confusion_counts(band, mask[rows], threshold, part)
            own.add(band, mask[rows], part)
            if prob is not None:
                prob[rows] = band
            if marked is not None:
                marked[rows] = band >= threshold
        counts += c
        near = None
        if marked is not None and tolerance_px:
            near = near_counts(marked, mask, tolerance_px, valid)
            near_total = near_total + near
        hist.pos += own.pos
        hist.neg += own.neg
        result.picture_histograms.append(own)
        positives = int((mask & valid).sum()) if valid is not None else int(mask.sum())
        result.pictures.append(PictureCounts(i + 1, pic.stem, c.tp, c.fp, c.fn, positives, near))
        if prob is not None and on_map is not None:
            on_map(pic, prob)
        if prob is not None and i < keep_previews:
            result.previews.append(prob)
        if on_picture is not None:
            on_picture()
    tolerant = (near_total, tolerance_px) if tolerance_px else None
    result.metrics = split_metrics(split, counts, hist, tolerant)
    return result
