"""``segtune split``: seeded train/val(/test) CSV manifests, stratified by positive share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from segtune.cli.options import add_mask_options
from segtune.core.errors import DataError, SegtuneError
from segtune.core.progress import Progress
from segtune.core.records import atomic_write_text, check_out_dir
from segtune.data.io import MaskReading
from segtune.data.layout import MissingMasks, Picture, load_pictures
from segtune.data.manifests import manifest_text
from segtune.data.splits import (
    Share,
    how_many,
    named,
    positive_shares,
    share_words,
    split_pictures,
)


def gather(sources: list[Path], missing_masks: MissingMasks) -> list[Picture]:
    """The pictures of every folder or manifest, refusing a stem found twice."""
    pictures: list[Picture] = []
    seen: dict[str, Path] = {}
    for source in sources:
        for pic in load_pictures(source, missing_masks):
            if pic.stem in seen:
                raise DataError(f"{pic.image}: picture {pic.stem!r} is also in {seen[pic.stem]}")
            seen[pic.stem] = source
            pictures.append(pic)
    return pictures


def make_split(
    pictures: list[Picture],
    val: float | None,
    test: float | None,
    val_from: list[str],
    test_from: list[str],
    seed: int,
    masks: MaskReading,
    quiet: bool = False,
) -> dict[str, list[Share]]:
    """Read every mask (a progress bar) and split: see :mod:`segtune.data.splits`."""
    fixed = {"val": named(pictures, val_from, "--val-from")} if val_from else {}
    if test_from:
        fixed["test"] = named(pictures, test_from, "--test-from")
    counts = {
        split: how_many(given, len(pictures), f"--{split}")
        for split, given in (("val", val), ("test", test))
        if given is not None
    }
    if not counts and not fixed.get("val"):
        raise SegtuneError("say how to split: --val FRACTION|N or --val-from FILE|GLOB")
    bar = Progress(len(pictures), "reading masks", "pictures", enabled=not quiet)
    try:
        shares = positive_shares(pictures, masks, on_each=bar.update)
    finally:
        bar.close()
    return split_pictures(shares, counts, fixed, seed)


def check_out(out: Path, names: list[str], force: bool) -> None:
    """Refuse, before any mask is read, a folder that cannot be written or manifests
    that would be overwritten without ``--force``."""
    check_out_dir(out, "--out")
    existing = [out / f"{n}.csv" for n in names if (out / f"{n}.csv").exists()]
    if existing and not force:
        raise SegtuneError(f"--out {existing[0]}: exists (use --force to overwrite)")


def write_split(out: Path, splits: dict[str, list[Share]], force: bool) -> list[Path]:
    """``train.csv``, ``val.csv`` (and ``test.csv``) in ``out``: all or none written."""
    files = {name: out / f"{name}.csv" for name, shares in splits.items() if shares}
    check_out(out, list(files), force)
    out.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        atomic_write_text(path, manifest_text([s.picture for s in splits[name]], path))
    return list(files.values())


def count_or_fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction (0.1) or a count (30), got {text!r}"
        ) from None


def _cmd_split(args: argparse.Namespace) -> int:
    names = ["train", "val"] + (["test"] if args.test or args.test_from else [])
    check_out(Path(args.out), names, args.force)
    masks = MaskReading(args.ignore_value, args.mask_threshold, args.invert_masks)
    pictures = gather([Path(s) for s in args.data], args.missing_masks)
    splits = make_split(
        pictures,
        args.val,
        args.test,
        args.val_from or [],
        args.test_from or [],
        args.seed,
        masks,
        quiet=args.quiet,
    )
    written = write_split(Path(args.out), splits, args.force)
    for path in written:
        name = path.stem
        print(f"{name}: {share_words(splits[name])} → {path}")
    print(
        f"split of {len(pictures)} pictures (seed {args.seed}; stratified by positive share; "
        "no picture copied); next: segtune init "
        f"{written[0]} {Path(args.out) / 'val.csv'} --out study.yaml"
    )
    return 0


def add_split(sub: Any) -> None:
    p = sub.add_parser(
        "split",
        help="seeded train/val(/test) CSV manifests from folders or manifests, stratified by "
        "each picture's positive share (pictures are never copied)",
    )
    p.add_argument("data", nargs="+", help="folders (images/ + masks/) or CSV manifests")
    p.add_argument("--val", type=count_or_fraction, help="validation share (0.1) or count (30)")
    p.add_argument("--test", type=count_or_fraction, help="test share or count (default none)")
    p.add_argument(
        "--val-from",
        action="append",
        metavar="FILE|GLOB",
        help="a published split: a file of names (one per line) or a glob on file names, "
        "e.g. '3[7-9]_*' (repeatable)",
    )
    p.add_argument("--test-from", action="append", metavar="FILE|GLOB", help="as --val-from")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--out", required=True, help="folder for train.csv, val.csv (, test.csv)")
    p.add_argument("--force", action="store_true", help="overwrite existing manifests")
    add_mask_options(p)
    p.set_defaults(func=_cmd_split)
