"""Seeded train/val(/test) splits stratified by each picture's positive share.

Pictures are ordered by their share of positive pixels (ties in a seeded order) and cut
into as many contiguous strata as the split needs pictures; one seeded pick per stratum
goes to the split. A validation set of 30 from 300 pictures thus holds one picture from
each tenth of the positive-share distribution, not a lucky draw of mostly empty ones.
Pictures named by ``--val-from`` (a published split) are assigned first and never drawn.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from segtune.core.errors import DataError
from segtune.data.io import PLAIN_MASKS, MaskReading
from segtune.data.layout import Picture
from segtune.data.pairs import counted_mask

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Share:
    """A picture and its positive share (positive / counted pixels)."""

    picture: Picture
    positives: int
    counted: int

    @property
    def share(self) -> float:
        return self.positives / self.counted if self.counted else 0.0


def positive_shares(
    pictures: Sequence[Picture],
    masks: MaskReading = PLAIN_MASKS,
    on_each: Callable[[], None] | None = None,
) -> list[Share]:
    """Every picture's positive share, as the loss counts pixels (ignored pixels and
    pixels outside the region of interest do not count)."""
    out = []
    for pic in pictures:
        mask, counted = counted_mask(pic, masks)
        out.append(Share(pic, int(mask.sum()), counted))
        if on_each is not None:
            on_each()
    return out


def how_many(given: float, total: int, option: str) -> int:
    """``--val 0.1`` (a fraction of ``total``) or ``--val 30`` (a count) as a count."""
    if given <= 0:
        raise DataError(f"{option} {given:g}: must be a fraction in (0, 1) or a count ≥ 1")
    if given < 1:
        return max(1, round(given * total))
    if given != int(given):
        raise DataError(f"{option} {given:g}: a count must be a whole number")
    return int(given)


def named(pictures: Sequence[Picture], patterns: Sequence[str], option: str) -> set[str]:
    """The stems of the pictures a published split names: each pattern is a file listing
    names (one per line: a stem or an image file name; ``#`` starts a comment) or a glob
    matched against the image's file name and its stem (``3[7-9]_*``)."""
    by_name = {p.image.name: p.stem for p in pictures} | {p.stem: p.stem for p in pictures}
    chosen: set[str] = set()
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            names = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
            names = [Path(n).name for n in names if n]
            unknown = [n for n in names if n not in by_name and Path(n).stem not in by_name]
            if unknown:
                raise DataError(
                    f"{option} {path}: {len(unknown)} name(s) match no picture, e.g. {unknown[0]!r}"
                )
            chosen |= {by_name.get(n) or by_name[Path(n).stem] for n in names}
            continue
        matched = {
            p.stem
            for p in pictures
            if fnmatch.fnmatch(p.image.name, pattern) or fnmatch.fnmatch(p.stem, pattern)
        }
        if not matched:
            raise DataError(f"{option} {pattern!r}: no such file, and no picture matches it")
        chosen |= matched
    return chosen


def stratified_pick(shares: Sequence[Share], n: int, rng: random.Random) -> list[Share]:
    """``n`` of ``shares``, one from each of ``n`` contiguous strata of the shares
    ordered by positive share."""
    if n > len(shares):
        raise DataError(f"{n} pictures asked for, only {len(shares)} left to draw from")
    keyed = [(s.share, rng.random(), s) for s in shares]
    ordered = [s for _, _, s in sorted(keyed, key=lambda t: (t[0], t[1]))]
    picks = []
    for i in range(n):
        lo, hi = (i * len(ordered)) // n, ((i + 1) * len(ordered)) // n
        picks.append(ordered[rng.randrange(lo, hi)])
    return picks


def split_pictures(
    shares: Sequence[Share],
    counts: dict[str, int],
    fixed: dict[str, set[str]],
    seed: int,
) -> dict[str, list[Share]]:
    """Assign every picture to ``train``, ``val`` or ``test``: first the ones ``fixed``
    names per split, then ``counts`` more per split drawn stratified (val first), the
    rest to train. Deterministic in ``seed`` whatever the order of ``shares``."""
    rng = random.Random(seed)
    by_stem = {s.picture.stem: s for s in sorted(shares, key=lambda s: s.picture.stem)}
    out: dict[str, list[Share]] = {name: [] for name in SPLITS}
    taken: set[str] = set()
    for split, stems in fixed.items():
        twice = stems & taken
        if twice:
            raise DataError(f"{sorted(twice)[0]}: named for two splits")
        out[split] += [by_stem[s] for s in sorted(stems)]
        taken |= stems
    for split in ("val", "test"):
        n = counts.get(split, 0)
        if n:
            left = [s for stem, s in by_stem.items() if stem not in taken]
            picked = stratified_pick(left, n, rng)
            out[split] += picked
            taken |= {s.picture.stem for s in picked}
    out["train"] += [s for stem, s in by_stem.items() if stem not in taken]
    if not out["train"]:
        raise DataError("no picture left for training: ask for a smaller --val/--test")
    for split in out:
        out[split].sort(key=lambda s: s.picture.stem)
    return out


def share_words(shares: Sequence[Share]) -> str:
    """``30 pictures, positives 2.41 % of pixels (per picture: median 2.2 %, 0.1–7.9 %)``."""
    if not shares:
        return "0 pictures"
    per = sorted(s.share for s in shares)
    pixels = sum(s.positives for s in shares) / max(sum(s.counted for s in shares), 1)
    median = per[len(per) // 2]
    return (
        f"{len(shares)} picture{'s' if len(shares) != 1 else ''}, positives "
        f"{pixels:.2%} of pixels (per picture: median {median:.2%}, "
        f"{per[0]:.2%}–{per[-1]:.2%})"
    )
