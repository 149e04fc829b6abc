"""``segtune init``: a commented starting spec written from the data's own statistics."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from segtune.data.io import PLAIN_MASKS, MaskReading, image_size
from segtune.data.layout import MissingMasks, Picture, load_pictures
from segtune.data.pairs import counted_mask
from segtune.study.budget import Start

MASK_SAMPLE = 20


def _round(value: float) -> float:
    """Two significant digits."""
    return float(f"{value:.2g}")


def positive_fraction(pictures: list[Picture], masks: MaskReading = PLAIN_MASKS) -> float:
    """The positive share of the pixels that count, over a sample of up to MASK_SAMPLE
    pictures' masks (as the loss counts them)."""
    sample = pictures[:: max(1, len(pictures) // MASK_SAMPLE)][:MASK_SAMPLE]
    positives = counted = 0
    for pic in sample:
        mask, pixels = counted_mask(pic, masks)
        positives += int(mask.sum())
        counted += pixels
    return positives / max(counted, 1)


def _mask_settings(
    masks: MaskReading, missing_masks: MissingMasks, train_pics: list[Picture]
) -> str:
    """The spec's data lines that say how masks are read, each with its comment."""
    lines = ""
    if masks.ignore_value is not None:
        lines += (
            f"\n  # Mask value {masks.ignore_value} marks pixels that never count (loss, "
            f"metrics).\n  ignore_value: {masks.ignore_value}"
        )
    if masks.invert:
        lines += (
            "\n  # Masks draw positives black on white: positive where the mask is 0.\n"
            "  invert_masks: true"
        )
    if masks.threshold is not None:
        lines += (
            "\n  # Masks with grey edges: a pixel is positive when its value is at least this.\n"
            f"  mask_threshold: {masks.threshold:g}"
        )
    if missing_masks == "empty":
        unlabelled = sum(p.mask is None for p in train_pics)
        lines += (
            f"\n  # {unlabelled} of {len(train_pics)} training images have no mask: no "
            "positives.\n  missing_masks: empty"
        )
    return lines


@dataclass(frozen=True)
class Facts:
    """What the data says, for the spec's comments."""

    train: int
    val: int
    median_side: int
    positive_fraction: float


def default_start(
    train_pics: list[Picture], masks: MaskReading = PLAIN_MASKS
) -> tuple[Start, Facts]:
    """The start the data suggests before any budget: pages covering the median picture,
    pos_weight from 1 to the imbalance, ResNet-34, 5 epochs, a race of up to 4 seeds."""
    sides = [min(image_size(p.image)) for p in train_pics]
    median_side = int(statistics.median(sides))
    page = max(64, min(512, 2 ** int(math.log2(max(median_side, 64)))))
    f = positive_fraction(train_pics, masks)
    ratio = (1 - f) / f if f > 0 else 100.0
    top = max(ratio, 1.0)
    weights = tuple(sorted({_round(top ** (i / 3)) for i in range(4)}))
    start = Start(
        encoder="resnet34",
        page_size=page,
        scale=None,
        epochs=5,
        pages_per_epoch=None,
        pos_weights=weights,
        bce_weights=(0.2, 0.5, 0.8),
        max_seeds=4,
    )
    return start, Facts(len(train_pics), 0, median_side, f)


def starting_spec(
    train: Path,
    val: Path,
    name: str,
    masks: MaskReading = PLAIN_MASKS,
    missing_masks: MissingMasks = "refuse",
    start: Start | None = None,
    why: dict[str, str] | None = None,
    device: str | None = None,
) -> str:
    """The YAML text of a starting spec for the pictures in ``train`` and ``val``, whose
    masks are read with ``masks`` (written as ``data.ignore_value`` and
    ``data.mask_threshold``) and ``missing_masks`` (``data.missing_masks``); ``start``
    (default: :func:`default_start`) with ``why`` (a comment per changed choice: encoder,
    scale, epochs, pages_per_epoch, grid, race) and ``device`` (``runtime.device``)."""
    train_pics = load_pictures(train, missing_masks)
    val_pics = load_pictures(val, missing_masks)
    suggested, facts = default_start(train_pics, masks)
    start = start or suggested
    why = why or {}
    f = facts.positive_fraction
    ignore = _mask_settings(masks, missing_masks, train_pics)
    ratio = (1 - f) / f if f > 0 else 100.0
    train_subset = min(len(train_pics), 500)
    val_subset = min(len(val_pics), 50)

    def note(key: str, default: str) -> str:
        return f"# {why[key]}" if key in why else f"# {default}"

    resize = (
        f"\n    {note('scale', 'pictures scaled before tiling')}\n"
        f"    resize: {{scale: {start.scale:g}}}"
        if start.scale
        else ""
    )
    pages_cap = (
        f"\n    {note('pages_per_epoch', 'a seeded share of the pages every epoch')}\n"
        f"    pages_per_epoch: {start.pages_per_epoch}"
        if start.pages_per_epoch
        else ""
    )
    runtime = f"\n  runtime:\n    device: {device}" if device else ""
    return f"""# segtune study spec written by `segtune init` from the data's own statistics.
# Check it with `segtune plan {name}.yaml`, then run it with `segtune sweep {name}.yaml`.
name: {name}
data:
  train: {train.resolve()}
  val: {val.resolve()}
  # {len(train_pics)} training pictures: a seeded subset of {train_subset} keeps a run's
  # cost bounded (raise it once the study says which settings matter).
  train_subset: {train_subset}
  # {len(val_pics)} validation pictures: {val_subset} score every run (intervals in the
  # report come from resampling these pictures).
  val_subset: {val_subset}
  seed: 0{ignore}
fixed:
  model:
    {note("encoder", "a U-Net on ResNet-34 (random init; no download)")}
    encoder: {start.encoder}
  pages:
    # The median picture's shorter side is {facts.median_side} px: pages of
    # {start.page_size} px (a power of two, 64 - 512) cover it with little padding.
    page_size: {start.page_size}
    patch_overlap: {start.page_size // 8}
    blend: gaussian{resize}
  sampling:
    # Positive pixels are {f:.3%} of the sampled masks: a quarter of each batch are pages
    # holding positives, so every batch has some.
    positive_fraction: 0.25
  optim:
    {note("epochs", "epochs of every training page")}
    epochs: {start.epochs}
    batch_size: 8
    # Random initial weights (nothing downloaded): Adam at 1e-3, as bench/deepcrack.py
    # trains (the run config's default 1e-4 suits pretrained encoders).
    learning_rate: 0.001{pages_cap}{runtime}
stages:
  - name: grid
    grid:
      # Positives are rare: (1 - f)/f = {ratio:.3g}. pos_weight spans 1 to that
      # imbalance on a log scale.{_extra(why, "grid")}
      loss.pos_weight: {list(start.pos_weights)}
      loss.bce_weight: {list(start.bce_weights)}
  # Then race them: new seeds only for configurations that might still be the best,
  # one dropped once it is worse than another with 95 % confidence (training noise
  # measured on the way; the report's Answer names the survivors).{_extra(why, "race", "  ")}
  - name: race
    race: {{from: grid, max_seeds: {start.max_seeds}, confidence: 0.95}}
# F1 needs both precision and recall (recall alone is maximised by predicting every
# pixel positive); the report shows recall, precision, AP and best F1 beside it.
objective: {{metric: val/f1, direction: maximize}}
top_k: 5
preview_pictures: 5
"""


def _extra(why: dict[str, str], key: str, indent: str = "      ") -> str:
    return f"\n{indent}# {why[key]}" if key in why else ""
