"""How picture files are found and named: a folder's files by stem (or by their path
under it, for a nested dataset), two sides paired by a tag every name on a side carries,
and names that tell apart files sharing a stem."""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from segtune.data.io import IMAGE_SUFFIXES


def pictures_by_stem(
    folder: Path, problems: list[str], suffixes: tuple[str, ...] = IMAGE_SUFFIXES
) -> dict[str, list[Path]]:
    """The picture files of ``folder`` (those with ``suffixes``: masks may also be shape
    files) by stem (a dangling link is a problem). Hidden files are left out: macOS
    writes ``._0001.png`` beside ``0001.png`` on volumes without its metadata (USB
    disks, network shares), and those are not pictures."""
    found: dict[str, list[Path]] = {}
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        if path.is_symlink() and not path.exists():
            problems.append(f"{path}: symbolic link loop or dangling link")
        elif path.suffix.lower() not in suffixes:
            continue
        elif path.is_file():
            found.setdefault(path.stem, []).append(path)
        elif not path.is_dir():
            problems.append(f"{path}: not a regular file ({_kind(path)})")
    return found


def _kind(path: Path) -> str:
    mode = path.stat().st_mode
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file"


def pictures_by_key(
    folder: Path, problems: list[str], suffixes: tuple[str, ...] = IMAGE_SUFFIXES
) -> dict[str, list[Path]]:
    """:func:`pictures_by_stem`; a folder holding no pictures but subfolders (a nested
    dataset: ``images/cityA/0001.jpg``, MVTec AD's ``ground_truth/crack/000_mask.png``)
    gives those of its subfolders, at any depth, keyed by their path under it without
    suffix (``cityA/0001``)."""
    found = pictures_by_stem(folder, problems, suffixes)
    if found:
        return found
    nested: dict[str, list[Path]] = {}
    subfolders = (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for sub in sorted(subfolders):
        for key, paths in pictures_by_key(sub, problems, suffixes).items():
            nested[f"{sub.name}/{key}"] = paths
    return nested


# Where a name's tag may start: "ISIC_0000000" + "_segmentation", "123" + "_sat".
_SEPARATORS = "_-. "


def _shared_suffixes(stems: Iterable[str]) -> list[str]:
    """ "" and the tags every stem ends with (each starting at a separator)."""
    names = sorted(stems)
    first = names[0]
    tags = [first[i:] for i in range(1, len(first)) if first[i] in _SEPARATORS]
    return [""] + [t for t in tags if all(n.endswith(t) and len(n) > len(t) for n in names)]


@dataclass(frozen=True)
class TagPairing:
    """How two sides' stems pair once a tag each side's names all carry is dropped."""

    pairs: dict[str, str]  # left stem → right stem
    left_tag: str
    right_tag: str

    def left_keys(self, rights: Iterable[str]) -> dict[str, str]:
        """``{right stem: the left stem it pairs with, or would}``: an unpaired right stem
        with its tag swapped (``003_mask`` → ``003``), so that it is reported as lacking
        the left file it names."""
        inverse = {r: left for left, r in self.pairs.items()}
        cut = len(self.right_tag)
        return {r: inverse.get(r, r[: len(r) - cut] + self.left_tag) for r in rights}


def tag_pairing(left: Iterable[str], right: Iterable[str]) -> TagPairing | None:
    """The pairing of ``left`` and ``right`` stems when none is on both sides but they
    pair once a tag shared by all of a side is dropped (ISIC's ``x.jpg`` /
    ``x_segmentation.png``, DeepGlobe's ``n_sat.jpg`` / ``n_mask.png``, DRIVE's
    ``21_training.tif`` / ``21_manual1.gif``); else None. The tags that pair the most
    stems win, so one missing file leaves the rest paired (and itself reported); tags
    that pair as many differently are ambiguous: None. They must pair at least half of
    the larger side, or every right name (masks for a few of many images, the others
    having none)."""
    lefts, rights = set(left), set(right)
    if not lefts or not rights or lefts & rights:
        return None
    best: dict[frozenset[tuple[str, str]], tuple[str, str]] = {}
    most = 0
    for a in _shared_suffixes(lefts):
        for b in _shared_suffixes(rights):
            keyed_l = {n[: len(n) - len(a)]: n for n in lefts}
            keyed_r = {n[: len(n) - len(b)]: n for n in rights}
            if len(keyed_l) != len(lefts) or len(keyed_r) != len(rights):
                continue
            pairs = frozenset((keyed_l[k], keyed_r[k]) for k in keyed_l.keys() & keyed_r.keys())
            if len(pairs) > most:
                best, most = {pairs: (a, b)}, len(pairs)
            elif pairs and len(pairs) == most:
                best.setdefault(pairs, (a, b))
    if len(best) != 1 or (2 * most < max(len(lefts), len(rights)) and most < len(rights)):
        return None
    ((pairs, (a, b)),) = best.items()
    return TagPairing(dict(pairs), a, b)


def rekeyed(pairing: TagPairing, files: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Right-side ``files`` keyed by the left stem each pairs with (or would)."""
    keys = pairing.left_keys(files)
    return {keys[stem]: paths for stem, paths in files.items()}


def distinct_names(paths: list[Path]) -> dict[Path, str]:
    """A name for each of ``paths`` (distinct files) that no other shares: its stem; for
    files sharing a stem (``cityA/0001.jpg``, ``cityB/0001.jpg``), the stem under as many
    of its folders as tell them apart (``cityA/0001``), and the full name where only the
    suffix differs (``scans/0001.jpg``, ``scans/0001.tif``)."""
    by_stem: dict[str, list[Path]] = {}
    for path in paths:
        by_stem.setdefault(path.stem, []).append(path)
    names: dict[Path, str] = {}
    for stem, group in by_stem.items():
        if len(group) == 1:
            names[group[0]] = stem
            continue
        folders = [p.resolve().parent.parts for p in group]
        for depth in range(1, max(map(len, folders)) + 1):
            tried = ["/".join((*f[-depth:], stem)) for f in folders]
            if len(set(tried)) == len(group):
                break
        else:
            tried = ["/".join((*f[-1:], p.name)) for f, p in zip(folders, group, strict=True)]
        names.update(zip(group, tried, strict=True))
    return names
