"""Where a split's pictures are and how their files pair.

A split is a folder with ``images/`` and ``masks/`` (and optionally ``roi/``) paired by
stem, or by a tag every name on a side carries; a folder holding images and masks
together, told apart by the masks' names (or, without tags, by format); or a CSV
manifest with ``image``, ``mask`` and optional ``roi`` columns. Problems are collected
as one line each, naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from segtune.core.errors import DataError
from segtune.data.io import IMAGE_SUFFIXES, MASK_SUFFIXES
from segtune.data.manifests import manifest_path, manifest_rows
from segtune.data.names import (
    distinct_names,
    pictures_by_key,
    pictures_by_stem,
    rekeyed,
    tag_pairing,
)
from segtune.data.shapes import SHAPE_SUFFIX

# What an image without a mask is: a problem (the default), or a picture without
# positives (``data.missing_masks: empty``: defect-free pictures shipped without a mask,
# as MVTec AD's ``good/`` and most inspection datasets' negatives are).
MissingMasks = Literal["refuse", "empty"]


@dataclass(frozen=True, order=True)
class Picture:
    """One input image with its binary mask (None: no mask file, so no positives, under
    ``data.missing_masks: empty``) and, optionally, its region of interest (a binary
    picture: pixels outside it never count); ordered (and identified) by stem."""

    stem: str
    image: Path
    mask: Path | None
    roi: Path | None = field(default=None, compare=False)


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
    ``x.png``) is a JPEG image with its mask. LabelMe's ``x.json`` beside ``x.jpg`` is
    its mask, drawn as shapes."""
    found = pictures_by_stem(folder, problems, MASK_SUFFIXES)
    if any(p.suffix.lower() == SHAPE_SUFFIX for paths in found.values() for p in paths):
        return _beside_their_shapes(found)  # LabelMe saves a picture's shapes beside it
    images: dict[str, list[Path]] = {}
    by_base: dict[str, list[Path]] = {}
    for stem, paths in found.items():
        named = _MASK_NAME.match(stem)
        if named:
            by_base.setdefault(named.group(1), []).extend(paths)
        else:
            images[stem] = paths
    if by_base and images:
        tags = None if set(by_base) <= set(images) else tag_pairing(images, by_base)
        masks = by_base if tags is None else rekeyed(tags, by_base)
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


def _beside_their_shapes(
    found: dict[str, list[Path]],
) -> tuple[dict[str, list[Path]], dict[str, list[Path]], str]:
    """A folder's pictures and the LabelMe shape files beside them, by stem."""
    images: dict[str, list[Path]] = {}
    masks: dict[str, list[Path]] = {}
    for stem, paths in found.items():
        for path in paths:
            side = masks if path.suffix.lower() == SHAPE_SUFFIX else images
            side.setdefault(stem, []).append(path)
    paired = len(images.keys() & masks.keys())
    return images, masks, f"LabelMe shape files beside their images ({paired} paired)"


def _paired_note(kind: str, table: dict[str, str]) -> str:
    image, other = sorted(table.items())[0]
    return (
        f"{kind} paired by name ({len(table)}): image {image} with {other}, and so on (the "
        "stems differ by a tag that every name on each side carries)"
    )


def find_pairs(
    source: Path, missing_masks: MissingMasks = "refuse"
) -> tuple[list[Picture], list[str]]:
    """Find pictures in ``source/images`` + ``source/masks`` (by stem) or a CSV manifest.

    A manifest has ``image`` and ``mask`` columns; relative paths are resolved against
    the manifest's folder. An image without a mask (file, or manifest field) is a
    problem, or with ``missing_masks="empty"`` a picture without positives.

    Returns:
        The pictures sorted by stem, and a list of one-line problems (each naming a file).

    Raises:
        DataError: when the folder or manifest itself is missing or malformed.
    """
    pictures, problems, _ = find_pairs_and_notes(source, missing_masks)
    return pictures, problems


def find_pairs_and_notes(
    source: Path, missing_masks: MissingMasks = "refuse"
) -> tuple[list[Picture], list[str], list[str]]:
    """:func:`find_pairs`, and how names were paired when their stems differ."""
    if source.is_file() and source.suffix.lower() == ".csv":
        listed, listing_problems = _pairs_from_manifest(source, missing_masks)
        return listed, listing_problems, _empty_note(listed)
    if not source.is_dir():
        raise DataError(f"{source}: no such folder or CSV manifest")
    images_dir, masks_dir = source / "images", source / "masks"
    if images_dir.is_dir() or masks_dir.is_dir():
        for sub in (images_dir, masks_dir):
            if not sub.is_dir():
                raise DataError(
                    f"{sub}: folder missing (expected {source}/images and {source}/masks"
                    f"{_other_folders(source)})"
                )
        return pairs_in_folders(images_dir, masks_dir, source / "roi", missing_masks)
    problems: list[str] = []
    flat = flat_folder(source, problems)
    if flat is None:
        folders = _subfolders(source)
        found = f"; found {folders}" if folders else ""
        raise DataError(
            f"{source}: no images/ and masks/ folders, and no mask names carrying a tag "
            f"such as _mask beside the images (expected {source}/images and "
            f"{source}/masks, or a CSV manifest: segtune manifest IMAGES MASKS --out "
            f"FILE.csv writes one{found})"
        )
    images, masks, note = flat
    missing = (f"{source}/<stem>.*", "no mask named <stem>_mask or the like")
    return _assemble(images, masks, set(), missing, source / "roi", missing_masks, problems, [note])


def pairs_in_folders(
    images_dir: Path,
    masks_dir: Path,
    roi_dir: Path | None = None,
    missing_masks: MissingMasks = "refuse",
) -> tuple[list[Picture], list[str], list[str]]:
    """The pictures of a folder of images and one of masks (and, when it exists, one of
    regions of interest), paired by stem, by path under them, or by tag; their
    problems; and how names were paired."""
    problems: list[str] = []
    notes: list[str] = []
    images = pictures_by_key(images_dir, problems)
    masks = pictures_by_key(masks_dir, problems, MASK_SUFFIXES)
    if not images and not masks:
        where = images_dir.parent if images_dir.parent == masks_dir.parent else images_dir
        raise DataError(
            f"{where}: empty folder (no pictures in {images_dir.name}/ or {masks_dir.name}/)"
        )
    tags = tag_pairing(images, masks)
    if tags is not None:  # masks keyed by their image's stem from here on
        masks = rekeyed(tags, masks)
        notes.append(_paired_note("masks", tags.pairs))
    reported = _unsupported(masks_dir, "mask", set(images) - set(masks), problems)
    reported |= _unsupported(images_dir, "image", set(masks) - set(images), problems)
    missing = (f"{images_dir}/<stem>.*", f"no {masks_dir}/<stem>.*")
    return _assemble(images, masks, reported, missing, roi_dir, missing_masks, problems, notes)


def _assemble(
    images: dict[str, list[Path]],
    masks: dict[str, list[Path]],
    reported: set[str],
    missing: tuple[str, str],
    roi_dir: Path | None,
    missing_masks: MissingMasks,
    problems: list[str],
    notes: list[str],
) -> tuple[list[Picture], list[str], list[str]]:
    """Pictures from images and masks keyed alike (``reported``: keys whose partner is
    in an unsupported format, already a problem; ``missing``: how to name an absent
    image and an absent mask, ``<stem>`` standing for the key)."""
    no_image, no_mask = missing
    for stem in sorted({*images, *masks}):
        for kind, table in (("image", images), ("mask", masks)):
            if len(table.get(stem, [])) > 1:
                names = ", ".join(p.name for p in sorted(table[stem]))
                problems.append(
                    f"{stem}: several {kind} files share this stem ({names}); keep one, or "
                    "list the pairs in a CSV manifest"
                )
    unlabelled = set(images) - set(masks) - reported
    if missing_masks == "refuse":
        for stem in sorted(unlabelled):
            absent = no_mask.replace("<stem>", stem)
            problems.append(
                f"{images[stem][0]}: image without mask ({absent}; if it has no positives: "
                "data.missing_masks: empty)"
            )
        unlabelled = set()
    for stem in sorted(set(masks) - set(images) - reported):
        absent = no_image.replace("<stem>", stem)
        problems.append(f"{masks[stem][0]}: mask without image (no {absent})")
    rois = regions_of_interest(roi_dir, images, problems, notes)
    pictures = [
        Picture(s, images[s][0], masks[s][0] if s in masks else None, rois.get(s))
        for s in sorted((set(images) & set(masks)) | unlabelled)
        if len(images[s]) == 1 and len(masks.get(s, [None])) == 1
    ]
    return pictures, problems, notes + _empty_note(pictures)


def _empty_note(pictures: list[Picture]) -> list[str]:
    """How many pictures have no mask file and are read as having no positives."""
    unlabelled = [p.stem for p in pictures if p.mask is None]
    if not unlabelled:
        return []
    shown = ", ".join(unlabelled[:3]) + (", …" if len(unlabelled) > 3 else "")
    return [
        f"{len(unlabelled)} image(s) without a mask, read as having no positives "
        f"(data.missing_masks: empty): {shown}"
    ]


def _other_folders(source: Path) -> str:
    """The folders beside images/ or masks/ that may be the missing one under another
    name (DRIVE's 1st_manual/, DeepCrack's train_lab/), and what to do."""
    shown = _subfolders(source)
    if not shown:
        return ""
    return (
        f"; found {shown}: rename the folder of masks to masks/ (a region of interest's to "
        "roi/), or list the pairs in a CSV manifest: segtune manifest IMAGES MASKS --out "
        "FILE.csv writes one"
    )


def _subfolders(source: Path) -> str:
    """The visible folders of ``source`` other than images/, masks/ and roi/ (at most
    five named), or ""."""
    names = sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    others = [n for n in names if n not in ("images", "masks", "roi")]
    return ", ".join(f"{n}/" for n in others[:5]) + (" …" if len(others) > 5 else "")


def _unsupported(folder: Path, kind: str, keys: set[str], problems: list[str]) -> set[str]:
    """The ``keys`` (stems, or paths under ``folder`` without suffix) whose file in
    ``folder`` (of ``kind``: image or mask) is in a format segtune does not read, each
    reported as such rather than as a missing partner."""
    by_folder: dict[Path, set[str]] = {}
    for key in keys:
        sub, _, stem = key.rpartition("/")
        by_folder.setdefault(folder / sub, set()).add(stem)
    unsupported: dict[str, Path] = {}
    for where, stems in by_folder.items():
        if not where.is_dir():
            continue
        for path in where.iterdir():
            if path.is_file() and path.stem in stems and not path.name.startswith("."):
                unsupported[path.relative_to(folder).with_suffix("").as_posix()] = path
    for other in sorted(unsupported.values()):
        problems.append(
            f"{other}: unsupported {kind} format {other.suffix or '(none)'} "
            f"(supported: {', '.join(IMAGE_SUFFIXES if kind == 'image' else MASK_SUFFIXES)})"
            f"{_CONVERT.get(other.suffix.lower(), '')}"
        )
    return set(unsupported)


# What to do with masks in the formats annotation tools and scripts often leave.
_CONVERT = {
    ".npy": "; save each array as a PNG (0 and 255)",
    ".npz": "; save each array as a PNG (0 and 255)",
    ".mat": "; save each array as a PNG (0 and 255)",
}


def regions_of_interest(
    folder: Path | None, images: dict[str, list[Path]], problems: list[str], notes: list[str]
) -> dict[str, Path]:
    """``roi/<stem>.*`` beside images/ and masks/ (or named by a tag, like masks): when
    the folder exists, every picture needs its region of interest."""
    if folder is None or not folder.is_dir():
        return {}
    found = pictures_by_key(folder, problems, MASK_SUFFIXES)
    tags = tag_pairing(images, found)
    if tags is not None:
        found = rekeyed(tags, found)
        notes.append(_paired_note("regions of interest", tags.pairs))
    for stem in sorted(set(images) - set(found)):
        problems.append(
            f"{images[stem][0]}: image without region of interest (no {folder}/{stem}.*)"
        )
    return {stem: paths[0] for stem, paths in found.items() if stem in images}


def _pairs_from_manifest(
    manifest: Path, missing_masks: MissingMasks
) -> tuple[list[Picture], list[str]]:
    problems: list[str] = []
    pictures: dict[Path, Picture] = {}
    for line, row in manifest_rows(manifest, ("image", "mask")):
        if not row.get("image") or not (row.get("mask") or missing_masks == "empty"):
            problems.append(f"{manifest}: line {line}: missing image or mask field")
            continue
        image = manifest_path(manifest, row["image"])
        mask = manifest_path(manifest, row["mask"]) if row.get("mask") else None
        for kind, path in (("image", image), ("mask", mask)):
            if path is not None and not path.is_file():
                problems.append(f"{path}: {kind} listed on line {line} of {manifest} not found")
        if image in pictures:
            problems.append(f"{manifest}: line {line}: {image} is listed twice")
        elif image.is_file() and (mask is None or mask.is_file()):
            roi = manifest_path(manifest, row["roi"]) if row.get("roi") else None
            if roi is not None and not roi.is_file():
                problems.append(f"{roi}: roi listed on line {line} of {manifest} not found")
                continue
            pictures[image] = Picture(image.stem, image, mask, roi)
    if not pictures and not problems:
        raise DataError(f"{manifest}: empty manifest")
    # Images of one stem in several folders (a nested dataset listed) are named by them.
    return sorted(named_apart(list(pictures.values()))), problems


def named_apart(pictures: list[Picture]) -> list[Picture]:
    """``pictures`` (distinct image files), those sharing a stem renamed by the folders
    that tell them apart (:func:`~segtune.data.names.distinct_names`); the others as
    they are."""
    by_stem: dict[str, list[Picture]] = {}
    for pic in pictures:
        by_stem.setdefault(pic.stem, []).append(pic)
    renamed: dict[Path, Picture] = {}
    for group in (g for g in by_stem.values() if len(g) > 1):
        names = distinct_names([p.image for p in group])
        renamed.update({p.image: replace(p, stem=names[p.image]) for p in group})
    return [renamed.get(p.image, p) for p in pictures]


def load_pictures(source: Path, missing_masks: MissingMasks = "refuse") -> list[Picture]:
    """Find pictures and raise on the first structural problem (missing partner files)."""
    pictures, problems = find_pairs(source, missing_masks)
    if problems:
        extra = f" (and {len(problems) - 1} more; run `segtune check-data {source}`)"
        raise DataError(problems[0] + (extra if len(problems) > 1 else ""))
    if not pictures:
        raise DataError(f"{source}: no pictures found")
    return pictures
