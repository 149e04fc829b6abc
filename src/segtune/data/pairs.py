"""Validating and sub-sampling pictures (image + mask pairs): ``check-data``'s report,
the pixels that count, header checks before a run."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from segtune.core.errors import DataError
from segtune.data.io import (
    DEFAULT_MAX_PIXELS,
    PLAIN_MASKS,
    MaskReading,
    check_decodes,
    exif_orientation,
    image_size,
    pixel_cap_problem,
    read_ignored,
    read_mask,
)
from segtune.data.layout import MissingMasks, Picture, find_pairs_and_notes
from segtune.data.shapes import SHAPE_SUFFIX, shape_labels

# Two sets of masks whose positive share or structure width differ by more than this
# factor are called shifted: a threshold selected on one may not transfer to the other.
SHIFT_RATIO = 1.25
# Masks whose positives are most of the pixels are likely inverted (positives drawn black
# on white) for a tool built for rare positives.
MAJORITY = 0.5


def inverted_words(share: float, inverted: bool = False) -> str:
    """Why a positive share above :data:`MAJORITY` is suspicious, and the fix (masks
    read ``inverted`` or not)."""
    if inverted:
        return (
            f"positives are {share:.1%} of the pixels, read with data.invert_masks "
            "(--invert-masks): if the masks draw the positives white on black, leave it off"
        )
    return (
        f"positives are {share:.1%} of the pixels: if the masks draw the positives black on "
        "white, say so with data.invert_masks: true (--invert-masks): every non-zero mask "
        "value is read as positive"
    )


def shifted(ratio: float) -> bool:
    """Whether a ratio of two mask statistics (positive share, structure width) is
    further from 1 than :data:`SHIFT_RATIO` either way."""
    return not 1 / SHIFT_RATIO <= ratio <= SHIFT_RATIO


@dataclass
class DataReport:
    """What :func:`check_pictures` found: the usable pictures, problems and statistics."""

    pictures: list[Picture]
    problems: list[str] = field(default_factory=list)
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)
    positive_fractions: dict[str, float] = field(default_factory=dict)
    positive_pixels: int = 0
    boundary_pixels: int = 0  # positive pixels with a negative 4-neighbour
    some_not_scored: bool = False  # pixels outside a region of interest or ignored
    exif_oriented: list[str] = field(default_factory=list)  # images viewers show turned
    notes: list[str] = field(default_factory=list)  # how names were paired
    shape_labels: Counter[str] = field(default_factory=Counter)  # masks drawn as shapes
    masks: MaskReading = PLAIN_MASKS  # how the masks were read (threshold, inversion)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add_mask(self, stem: str, mask: NDArray[np.bool_], counted: int) -> None:
        """One picture's positives (:func:`counted_mask`), as a share of the ``counted``
        pixels, the share the metrics see."""
        positives = int(mask.sum())
        self.some_not_scored |= counted < mask.size
        self.positive_fractions[stem] = positives / counted if counted else 0.0
        self.positive_pixels += positives
        self.boundary_pixels += boundary_pixels(mask)

    @property
    def positive_share(self) -> float | None:
        """Mean share of positive pixels per picture (None without pictures)."""
        values = list(self.positive_fractions.values())
        return float(np.mean(values)) if values else None

    @property
    def structure_width(self) -> float | None:
        """Typical width of the positive structures in pixels: 2 × area ÷ boundary pixels
        over all pictures (a strip w pixels wide has about 2 boundary pixels per unit of
        length); None without positives."""
        if self.boundary_pixels == 0:
            return None
        return 2 * self.positive_pixels / self.boundary_pixels

    def summary_lines(self) -> list[str]:
        """Human-readable summary (count, sizes, positive-pixel fraction, structure width)."""
        fractions = np.array(list(self.positive_fractions.values()), dtype=np.float64)
        lines = [f"{len(self.pictures)} pictures", *self.notes]
        sizes = ", ".join(
            f"{w}x{h} ({n})" for (h, w), n in sorted(self.sizes.items(), key=lambda kv: -kv[1])
        )
        lines.append(f"sizes (WxH): {sizes}")
        if len(fractions):
            how = []
            threshold, inverted = self.masks.threshold, self.masks.invert
            if threshold is not None:
                how.append(f"mask value {'below' if inverted else 'at least'} {threshold:g}")
            elif inverted:
                how.append("mask value 0")
            if self.some_not_scored:
                how.append("of the pixels that count: in the region of interest, not ignored")
            qualified = f" ({'; '.join(how)})" if how else ""
            lines.append(
                f"positive pixels{qualified}: mean "
                f"{fractions.mean():.3%}, min {fractions.min():.3%}, max {fractions.max():.3%}"
            )
            if fractions.mean() > MAJORITY:
                lines.append(f"note: {inverted_words(float(fractions.mean()), inverted)}")
        if self.shape_labels:
            labels = ", ".join(
                f"{k or '(no label)'} {n}" for k, n in self.shape_labels.most_common()
            )
            lines.append(
                f"shapes (LabelMe): {labels}; every closed shape is positive, whatever its label"
            )
        if self.exif_oriented:
            turned = self.exif_oriented
            names = ", ".join(turned[:3]) + (" …" if len(turned) > 3 else "")
            lines.append(
                f"note: {len(turned)} image(s) carry an EXIF orientation ({names}): "
                "viewers and annotation tools show them turned or mirrored, segtune reads "
                "their pixels as stored; if the masks were drawn on the shown picture, save "
                "the images upright (PIL.ImageOps.exif_transpose)"
            )
        if self.structure_width is not None:
            lines.append(
                f"positive structures: typical width {self.structure_width:.1f} px "
                "(2 x area / boundary pixels)"
            )
        empty = sorted(s for s, f in self.positive_fractions.items() if f == 0.0)
        lines.append(
            f"pictures with no positives: {len(empty)}"
            + (f" ({', '.join(empty[:10])}{' …' if len(empty) > 10 else ''})" if empty else "")
        )
        return lines


def header_problem(pic: Picture, max_pixels: int) -> tuple[str | None, tuple[int, int]]:
    """From the file headers alone: the picture's problem (over ``max_pixels``, or a mask
    whose size differs from the image's) or None, and the image's ``(height, width)``."""
    image_hw = image_size(pic.image)
    too_big = pixel_cap_problem(pic.image, image_hw, max_pixels)
    if too_big is not None:
        return too_big, image_hw
    for path in (pic.mask, pic.roi):
        hw = image_size(path) if path is not None else image_hw
        if path is not None and hw != image_hw:
            turned = exif_orientation(pic.image)
            hint = (
                f" (the image's EXIF orientation {turned} shows it turned, as {hw[1]}x{hw[0]}: "
                "segtune reads pixels as stored; save the image upright, e.g. with "
                "PIL.ImageOps.exif_transpose)"
                if turned is not None and turned >= 5 and hw == image_hw[::-1]
                else ""
            )
            return (
                f"{path}: size {hw[1]}x{hw[0]} does not match image "
                f"{pic.image.name} {image_hw[1]}x{image_hw[0]}{hint}"
            ), image_hw
    return None, image_hw


def check_pictures(
    source: Path, masks: MaskReading = PLAIN_MASKS, missing_masks: MissingMasks = "refuse"
) -> DataReport:
    """Find and fully decode every picture (and region of interest), collecting every
    problem (one line each)."""
    pictures, problems, notes = find_pairs_and_notes(source, missing_masks)
    report = DataReport(pictures=[], problems=problems, notes=notes, masks=masks)
    for pic in pictures:
        try:
            problem, image_hw = header_problem(pic, DEFAULT_MAX_PIXELS)
            if problem is not None:
                raise DataError(problem)
            check_decodes(pic.image)  # channels are chosen per run
            mask, counted = counted_mask(pic, masks)
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        report.pictures.append(pic)
        report.sizes[image_hw] = report.sizes.get(image_hw, 0) + 1
        report.add_mask(pic.stem, mask, counted)
        if pic.mask is not None and pic.mask.suffix.lower() == SHAPE_SUFFIX:
            report.shape_labels.update(shape_labels(pic.mask))
        if exif_orientation(pic.image) is not None:
            report.exif_oriented.append(pic.image.name)
    return report


def counted_mask(pic: Picture, masks: MaskReading) -> tuple[NDArray[np.bool_], int]:
    """A picture's positives among the pixels that count (inside its region of interest,
    not holding the ignore value), and how many pixels count: as the loss and the metrics
    see them."""
    if pic.mask is not None:
        mask = read_mask(pic.mask, masks)
    else:  # no mask file: no positives (data.missing_masks: empty)
        mask = np.zeros(image_size(pic.image), bool)
    counts = read_mask(pic.roi, masks.for_roi()) if pic.roi is not None else None
    if masks.ignore_value is not None and pic.mask is not None:
        kept = ~read_ignored(pic.mask, masks)
        counts = kept if counts is None else counts & kept
    if counts is None:
        return mask, mask.size
    return mask & counts, int(counts.sum())


def boundary_pixels(mask: NDArray[np.bool_]) -> int:
    """Positive pixels with at least one negative 4-neighbour (the picture's edge counts
    as negative)."""
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = (
        mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    )
    return int(mask.sum() - inner.sum())


def compare_reports(reference: tuple[str, DataReport], other: tuple[str, DataReport]) -> list[str]:
    """How ``other``'s masks compare with ``reference``'s (positive share, structure
    width), and a note when either differs by more than a quarter: a threshold selected
    on pictures like one may not transfer to the other; and one when pictures of
    ``other`` are files of ``reference`` (:func:`shared_pictures`)."""
    (ref_name, ref), (name, rep) = reference, other
    ratios: list[tuple[str, float]] = []
    for what, a, b in (
        ("positive share", ref.positive_share, rep.positive_share),
        ("structure width", ref.structure_width, rep.structure_width),
    ):
        if a and b is not None:
            ratios.append((what, b / a))
    lines = []
    shared = shared_pictures(ref.pictures, rep.pictures)
    if shared:
        lines.append(f"note: {shared_words(shared, name, ref_name)}")
    if not ratios:
        return lines
    lines.insert(0, f"{name} vs {ref_name}: " + ", ".join(f"{w} x{r:.2f}" for w, r in ratios))
    differing = [w for w, r in ratios if shifted(r)]
    if differing:
        lines.append(
            f"note: {' and '.join(differing)} differ by more than x{SHIFT_RATIO:g}: the masks "
            "(or what they annotate) differ between the two, so a threshold selected on "
            "one may not transfer to the other"
        )
    return lines


def shared_pictures(
    reference: Sequence[Picture], other: Sequence[Picture]
) -> list[tuple[Picture, Picture]]:
    """``(other picture, reference picture)`` pairs whose image files hold the same bytes
    (copies, links, the same file listed twice): validation pictures the model trains
    on, say, whose scores would be inflated. Only files of equal size are read; missing
    files are skipped."""
    by_size: dict[int, list[Picture]] = {}
    for pic in reference:
        size = _size(pic.image)
        if size is not None:
            by_size.setdefault(size, []).append(pic)
    digests: dict[Path, str] = {}

    def digest(path: Path) -> str:
        if path not in digests:
            sha = hashlib.sha1()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(block)
            digests[path] = sha.hexdigest()
        return digests[path]

    shared = []
    for pic in other:
        size = _size(pic.image)
        for candidate in by_size.get(size, []) if size is not None else []:
            if digest(pic.image.resolve()) == digest(candidate.image.resolve()):
                shared.append((pic, candidate))
                break
    return shared


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def shared_words(shared: list[tuple[Picture, Picture]], other: str, reference: str) -> str:
    """A note on :func:`shared_pictures`: how many, which, and why it matters."""
    shown = ", ".join(f"{a.stem} = {b.stem}" for a, b in shared[:3])
    return (
        f"{len(shared)} {other} picture(s) are also {reference} pictures (the same file: "
        f"{shown}{', …' if len(shared) > 3 else ''}): scores on them measure memory, not "
        "generalisation; remove them from one side"
    )


def check_sizes(pictures: Sequence[Picture], max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse pictures whose mask size differs from the image's, or that exceed
    ``max_pixels`` (header sizes only, no decode): a study must never train on
    misaligned labels, nor run out of memory half-way."""
    bad = [p for p in (header_problem(pic, max_pixels)[0] for pic in pictures) if p]
    if bad:
        more = f" (and {len(bad) - 1} more; run `segtune check-data`)" if len(bad) > 1 else ""
        raise DataError(bad[0] + more)


def sample_subset(pictures: Sequence[Picture], n: int | None, seed: int) -> list[Picture]:
    """Sample ``n`` pictures reproducibly, whatever the file-system order.

    Pictures are sorted by stem, sampled with ``random.Random(seed)``, and the sample is
    returned sorted by stem: that order is what analysis calls "the first K pictures".

    Raises:
        DataError: when ``n`` exceeds the number of pictures available.
    """
    ordered = sorted(pictures)
    if n is None or n == len(ordered):
        return ordered
    if n > len(ordered):
        raise DataError(f"subset of {n} pictures requested but only {len(ordered)} are available")
    if n < 1:
        raise DataError(f"subset size must be at least 1 (got {n})")
    return sorted(random.Random(seed).sample(ordered, n))
