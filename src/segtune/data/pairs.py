"""Finding, validating and sub-sampling pictures (image + mask pairs)."""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

import numpy as np
from numpy.typing import NDArray

from segtune.data.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    PLAIN_MASKS,
    MaskReading,
    exif_orientation,
    image_size,
    pixel_cap_problem,
    read_ignored,
    read_mask,
    read_raw_image,
)
from segtune.errors import DataError

# Two sets of masks whose positive share or structure width differ by more than this
# factor are called shifted: a threshold selected on one may not transfer to the other.
SHIFT_RATIO = 1.25
# Masks whose positives are most of the pixels are likely inverted (positives drawn black
# on white) for a tool built for rare positives.
MAJORITY = 0.5


def inverted_words(share: float) -> str:
    """Why a positive share above :data:`MAJORITY` is suspicious, and the fix."""
    return (
        f"positives are {share:.1%} of the pixels: if the masks draw the positives black on "
        "white, invert them (every non-zero mask value is positive)"
    )


def shifted(ratio: float) -> bool:
    """Whether a ratio of two mask statistics (positive share, structure width) is
    further from 1 than :data:`SHIFT_RATIO` either way."""
    return not 1 / SHIFT_RATIO <= ratio <= SHIFT_RATIO


@dataclass(frozen=True, order=True)
class Picture:
    """One input image with its binary mask and, optionally, its region of interest (a
    binary picture: pixels outside it never count); ordered (and identified) by stem."""

    stem: str
    image: Path
    mask: Path
    roi: Path | None = field(default=None, compare=False)


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
    mask_threshold: float | None = None  # masks binarised at this value (data.mask_threshold)

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
            if self.mask_threshold is not None:
                how.append(f"mask values at least {self.mask_threshold:g}")
            if self.some_not_scored:
                how.append("of the pixels that count: in the region of interest, not ignored")
            qualified = f" ({'; '.join(how)})" if how else ""
            lines.append(
                f"positive pixels{qualified}: mean "
                f"{fractions.mean():.3%}, min {fractions.min():.3%}, max {fractions.max():.3%}"
            )
            if fractions.mean() > MAJORITY:
                lines.append(f"note: {inverted_words(float(fractions.mean()))}")
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


def pictures_by_stem(folder: Path, problems: list[str]) -> dict[str, list[Path]]:
    """The picture files of ``folder`` by stem (a dangling link is a problem)."""
    found: dict[str, list[Path]] = {}
    for path in folder.iterdir():
        if path.is_symlink() and not path.exists():
            problems.append(f"{path}: symbolic link loop or dangling link")
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(path.stem, []).append(path)
    return found


# Where a name's tag may start: "ISIC_0000000" + "_segmentation", "123" + "_sat".
_SEPARATORS = "_-. "


def _shared_suffixes(stems: Iterable[str]) -> list[str]:
    """ "" and the tags every stem ends with (each starting at a separator)."""
    names = sorted(stems)
    first = names[0]
    tags = [first[i:] for i in range(1, len(first)) if first[i] in _SEPARATORS]
    return [""] + [t for t in tags if all(n.endswith(t) and len(n) > len(t) for n in names)]


def match_by_tags(left: Iterable[str], right: Iterable[str]) -> dict[str, str] | None:
    """``{left stem: right stem}`` when no stem is on both sides but every left stem
    pairs one to one with a right stem once a tag shared by all of its side is dropped
    (ISIC's ``x.jpg`` / ``x_segmentation.png``, DeepGlobe's ``n_sat.jpg`` /
    ``n_mask.png``, DRIVE's ``21_training.tif`` / ``21_manual1.gif``); else None."""
    lefts, rights = set(left), set(right)
    if not lefts or len(lefts) != len(rights) or lefts & rights:
        return None
    pairings = set()
    for a in _shared_suffixes(lefts):
        for b in _shared_suffixes(rights):
            keyed_l = {n[: len(n) - len(a)]: n for n in lefts}
            keyed_r = {n[: len(n) - len(b)]: n for n in rights}
            if len(keyed_l) == len(lefts) and keyed_l.keys() == keyed_r.keys():
                pairings.add(frozenset((keyed_l[k], keyed_r[k]) for k in keyed_l))
    if len(pairings) != 1:  # none, or tags that pair differently: ambiguous
        return None
    return dict(next(iter(pairings)))


# A mask's name in a folder holding images and masks together: the image's name (or
# one pairing with it by tag) and one of these tags, then an optional number (BUSI's
# second mask of a picture: "benign (4)_mask_1"). DeepGlobe: 104_sat.jpg / 104_mask.png;
# GlaS: train_1.bmp / train_1_anno.bmp; CHASE_DB1: Image_01L.jpg / Image_01L_1stHO.png.
MASK_TAGS = (
    "mask",
    "masks",
    "segmentation",
    "seg",
    "label",
    "labels",
    "gt",
    "anno",
    "annotation",
    "manual1",
    "1stho",
    "2ndho",
)
_MASK_NAME = re.compile(rf"(.+?)[_-]({'|'.join(MASK_TAGS)})([_-]\d+)?$", re.IGNORECASE)
_LOSSY = (".jpg", ".jpeg")


def flat_folder(
    folder: Path, problems: list[str]
) -> tuple[dict[str, list[Path]], dict[str, list[Path]], str] | None:
    """Images and masks (keyed by their image's stem) of a folder holding both, and how
    they were told apart; None when its names do not say which is which. A mask's name
    is its image's (or pairs with it by tag) plus a mask tag (:data:`MASK_TAGS`); without
    any, a stem found twice as a JPEG and a lossless file (Crack500's ``x.jpg`` /
    ``x.png``) is a JPEG image with its mask."""
    found = pictures_by_stem(folder, problems)
    images: dict[str, list[Path]] = {}
    by_base: dict[str, list[Path]] = {}
    for stem, paths in found.items():
        named = _MASK_NAME.match(stem)
        if named:
            by_base.setdefault(named.group(1), []).extend(paths)
        else:
            images[stem] = paths
    if by_base and images:
        tags = None if set(by_base) <= set(images) else match_by_tags(images, by_base)
        masks = by_base if tags is None else {i: by_base[b] for i, b in tags.items()}
        paired = sorted((s, m[0].name) for s, m in masks.items() if s in images)
        example = f": image {paired[0][0]} with {paired[0][1]}, and so on" if paired else ""
        return (
            images,
            masks,
            (
                "images and masks in one folder, told apart by the masks' tag "
                f"({len(paired)} paired){example}"
            ),
        )
    if found and all(
        len(paths) == 2 and sum(p.suffix.lower() in _LOSSY for p in paths) == 1
        for paths in found.values()
    ):
        images = {s: [p for p in paths if p.suffix.lower() in _LOSSY] for s, paths in found.items()}
        masks = {
            s: [p for p in paths if p.suffix.lower() not in _LOSSY] for s, paths in found.items()
        }
        return (
            images,
            masks,
            (
                f"images and masks in one folder ({len(found)}), told apart by format: each "
                "stem's JPEG file is the image, its lossless file the mask"
            ),
        )
    return None


def _paired_note(kind: str, table: dict[str, str]) -> str:
    image, other = sorted(table.items())[0]
    return (
        f"{kind} paired by name ({len(table)}): image {image} with {other}, and so on (the "
        "stems differ by a tag that every name on each side carries)"
    )


def find_pairs(source: Path) -> tuple[list[Picture], list[str]]:
    """Find pictures in ``source/images`` + ``source/masks`` (by stem) or a CSV manifest.

    A manifest has ``image`` and ``mask`` columns; relative paths are resolved against
    the manifest's folder.

    Returns:
        The pictures sorted by stem, and a list of one-line problems (each naming a file).

    Raises:
        DataError: when the folder or manifest itself is missing or malformed.
    """
    pictures, problems, _ = _pairs_and_notes(source)
    return pictures, problems


def _pairs_and_notes(source: Path) -> tuple[list[Picture], list[str], list[str]]:
    """:func:`find_pairs`, and how names were paired when their stems differ."""
    if source.is_file() and source.suffix.lower() == ".csv":
        return (*_pairs_from_manifest(source), [])
    if not source.is_dir():
        raise DataError(f"{source}: no such folder or CSV manifest")
    images_dir, masks_dir = source / "images", source / "masks"
    problems: list[str] = []
    notes: list[str] = []
    if not images_dir.is_dir() and not masks_dir.is_dir():
        flat = flat_folder(source, problems)
        if flat is None:
            raise DataError(
                f"{source}: no images/ and masks/ folders, and no mask names carrying a tag "
                f"such as _mask beside the images (expected {source}/images and "
                f"{source}/masks, or a CSV manifest)"
            )
        images, masks, note = flat
        notes.append(note)
        no_image, no_mask = f"{source}/<stem>.*", "no mask named <stem>_mask or the like"
        reported: set[str] = set()
    else:
        for sub in (images_dir, masks_dir):
            if not sub.is_dir():
                raise DataError(
                    f"{sub}: folder missing (expected {source}/images and {source}/masks)"
                )
        images = pictures_by_stem(images_dir, problems)
        masks = pictures_by_stem(masks_dir, problems)
        if not images and not masks:
            raise DataError(f"{source}: empty folder (no pictures in images/ or masks/)")
        tags = match_by_tags(images, masks)
        if tags is not None:  # masks keyed by their image's stem from here on
            masks = {image: masks[mask] for image, mask in tags.items()}
            notes.append(_paired_note("masks", tags))
        no_image, no_mask = f"{images_dir}/<stem>.*", f"no {masks_dir}/<stem>.*"
        reported = _unsupported_masks(masks_dir, set(images) - set(masks), problems)
    for stem in sorted({*images, *masks}):
        for kind, table in (("image", images), ("mask", masks)):
            if len(table.get(stem, [])) > 1:
                names = ", ".join(p.name for p in sorted(table[stem]))
                problems.append(
                    f"{stem}: several {kind} files share this stem ({names}); keep one, or "
                    "list the pairs in a CSV manifest"
                )
    for stem in sorted(set(images) - set(masks) - reported):
        missing = no_mask.replace("<stem>", stem)
        problems.append(f"{images[stem][0]}: image without mask ({missing})")
    for stem in sorted(set(masks) - set(images)):
        missing = no_image.replace("<stem>", stem)
        problems.append(f"{masks[stem][0]}: mask without image (no {missing})")
    rois = _rois(source / "roi", images, problems, notes)
    pictures = [
        Picture(s, images[s][0], masks[s][0], rois.get(s))
        for s in sorted(set(images) & set(masks))
        if len(images[s]) == 1 and len(masks[s]) == 1
    ]
    return pictures, problems, notes


def _unsupported_masks(masks_dir: Path, stems: set[str], problems: list[str]) -> set[str]:
    """The ``stems`` whose file in ``masks_dir`` is in a format segtune does not read,
    each reported as such."""
    unsupported = {p.stem: p for p in masks_dir.iterdir() if p.is_file() and p.stem in stems}
    for other in sorted(unsupported.values()):
        problems.append(
            f"{other}: unsupported mask format {other.suffix or '(none)'} "
            f"(supported: {', '.join(IMAGE_SUFFIXES)})"
        )
    return set(unsupported)


def _rois(
    folder: Path, images: dict[str, list[Path]], problems: list[str], notes: list[str]
) -> dict[str, Path]:
    """``roi/<stem>.*`` beside images/ and masks/ (or named by a tag, like masks): when
    the folder exists, every picture needs its region of interest."""
    if not folder.is_dir():
        return {}
    found = pictures_by_stem(folder, problems)
    tags = match_by_tags(images, found)
    if tags is not None:
        found = {image: found[roi] for image, roi in tags.items()}
        notes.append(_paired_note("regions of interest", tags))
    for stem in sorted(set(images) - set(found)):
        problems.append(
            f"{images[stem][0]}: image without region of interest (no {folder}/{stem}.*)"
        )
    return {stem: paths[0] for stem, paths in found.items() if stem in images}


def manifest_rows(manifest: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV manifest that must have ``columns``; a non-UTF-8
    file or a missing column is a one-line DataError naming the CSV (and line)."""
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = manifest.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{manifest}: line {line}: not UTF-8 text ({exc.reason})") from exc
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
        raise DataError(f"{manifest}: manifest needs {' and '.join(map(repr, columns))} columns")
    return list(enumerate(reader, start=2))


def manifest_path(manifest: Path, value: str) -> Path:
    """A path listed in a manifest, relative to the manifest's folder; one written on
    Windows (``images\\0001.jpg``) is read with its backslashes as separators."""
    path = manifest.parent / value
    if "\\" in value and not path.exists():
        path = manifest.parent / PureWindowsPath(value).as_posix()
    return path.resolve()


def _pairs_from_manifest(manifest: Path) -> tuple[list[Picture], list[str]]:
    problems: list[str] = []
    pictures: dict[str, Picture] = {}
    for line, row in manifest_rows(manifest, ("image", "mask")):
        if not row.get("image") or not row.get("mask"):
            problems.append(f"{manifest}: line {line}: missing image or mask field")
            continue
        image = manifest_path(manifest, row["image"])
        mask = manifest_path(manifest, row["mask"])
        for kind, path in (("image", image), ("mask", mask)):
            if not path.is_file():
                problems.append(f"{path}: {kind} listed on line {line} of {manifest} not found")
        if image.stem in pictures:
            problems.append(f"{manifest}: line {line}: duplicate stem {image.stem!r}")
        elif image.is_file() and mask.is_file():
            roi = manifest_path(manifest, row["roi"]) if row.get("roi") else None
            if roi is not None and not roi.is_file():
                problems.append(f"{roi}: roi listed on line {line} of {manifest} not found")
                continue
            pictures[image.stem] = Picture(image.stem, image, mask, roi)
    if not pictures and not problems:
        raise DataError(f"{manifest}: empty manifest")
    return sorted(pictures.values()), problems


def header_problem(pic: Picture, max_pixels: int) -> tuple[str | None, tuple[int, int]]:
    """From the file headers alone: the picture's problem (over ``max_pixels``, or a mask
    whose size differs from the image's) or None, and the image's ``(height, width)``."""
    image_hw, mask_hw = image_size(pic.image), image_size(pic.mask)
    too_big = pixel_cap_problem(pic.image, image_hw, max_pixels)
    if too_big is not None:
        return too_big, image_hw
    for path in (pic.mask, pic.roi):
        hw = mask_hw if path == pic.mask else image_size(path) if path else image_hw
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


def check_pictures(source: Path, masks: MaskReading = PLAIN_MASKS) -> DataReport:
    """Find and fully decode every picture (and region of interest), collecting every
    problem (one line each)."""
    pictures, problems, notes = _pairs_and_notes(source)
    report = DataReport(pictures=[], problems=problems, notes=notes, mask_threshold=masks.threshold)
    for pic in pictures:
        try:
            problem, image_hw = header_problem(pic, DEFAULT_MAX_PIXELS)
            if problem is not None:
                raise DataError(problem)
            read_raw_image(pic.image, "mean")  # decodes; channels are chosen per run
            mask, counted = counted_mask(pic, masks)
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        report.pictures.append(pic)
        report.sizes[image_hw] = report.sizes.get(image_hw, 0) + 1
        report.add_mask(pic.stem, mask, counted)
        if exif_orientation(pic.image) is not None:
            report.exif_oriented.append(pic.image.name)
    return report


def counted_mask(pic: Picture, masks: MaskReading) -> tuple[NDArray[np.bool_], int]:
    """A picture's positives among the pixels that count (inside its region of interest,
    not holding the ignore value), and how many pixels count: as the loss and the metrics
    see them."""
    mask = read_mask(pic.mask, masks)
    counts = read_mask(pic.roi, masks.for_roi()) if pic.roi is not None else None
    if masks.ignore_value is not None:
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
    on pictures like one may not transfer to the other."""
    (ref_name, ref), (name, rep) = reference, other
    ratios: list[tuple[str, float]] = []
    for what, a, b in (
        ("positive share", ref.positive_share, rep.positive_share),
        ("structure width", ref.structure_width, rep.structure_width),
    ):
        if a and b is not None:
            ratios.append((what, b / a))
    if not ratios:
        return []
    lines = [f"{name} vs {ref_name}: " + ", ".join(f"{w} x{r:.2f}" for w, r in ratios)]
    differing = [w for w, r in ratios if shifted(r)]
    if differing:
        lines.append(
            f"note: {' and '.join(differing)} differ by more than x{SHIFT_RATIO:g}: the masks "
            "(or what they annotate) differ between the two, so a threshold selected on "
            "one may not transfer to the other"
        )
    return lines


def check_sizes(pictures: Sequence[Picture], max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse pictures whose mask size differs from the image's, or that exceed
    ``max_pixels`` (header sizes only, no decode): a study must never train on
    misaligned labels, nor run out of memory half-way."""
    bad = [p for p in (header_problem(pic, max_pixels)[0] for pic in pictures) if p]
    if bad:
        more = f" (and {len(bad) - 1} more; run `segtune check-data`)" if len(bad) > 1 else ""
        raise DataError(bad[0] + more)


def load_pictures(source: Path) -> list[Picture]:
    """Find pictures and raise on the first structural problem (missing partner files)."""
    pictures, problems = find_pairs(source)
    if problems:
        extra = f" (and {len(problems) - 1} more; run `segtune check-data {source}`)"
        raise DataError(problems[0] + (extra if len(problems) > 1 else ""))
    if not pictures:
        raise DataError(f"{source}: no pictures found")
    return pictures


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
