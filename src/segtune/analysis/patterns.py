"""Observation groups: configurations whose predictions on the preview pictures look
alike, each titled by what sets it apart from the others.

A configuration's *profile* is, per preview picture, the share of the picture's
positive pixels it finds (TP / positives) and its false positives as a share of them
(FP / positives; on a picture without positives, of the preview pictures' median
positives), each averaged over its seeds. Configurations that predict nothing ("all
black") or find almost nothing (recall below ``ALMOST_NOTHING``) are groups of their
own; the others are clustered (average linkage; the distance of two profiles is their
largest difference on one picture, false-positive shares capped at 2) until at most
``MAX_GROUPS`` groups remain and no two are closer than ``MERGE``.

A group's title names its largest difference to the other configurations ("misses most
of picture 3: finds 12 % of its positives, the others 61 %"; "false positives on picture
2, ×3.1 the others"); the per-picture shares of each configuration are in its table.
Nothing is claimed on a picture where a group finds under 5 % of the positives but that
it misses them.

:func:`tp_word` and :func:`fp_word` put one picture's counts in words for a run's
appendix table: true positives "few" below 10 % of the picture's positives, "some" below
50 %, "most" from 50 %; false positives "few" below 10 %, "some" below 100 %, "many" from
100 % (on a picture without positives any false positive is "many").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from segtune.analysis.ranking import Configuration
from segtune.core.metrics import ALMOST_NOTHING, PictureCounts

FEW, SOME_TP, SOME_FP = 0.10, 0.50, 1.00
MAX_GROUPS = 6
MERGE = 0.20  # profiles closer than this (largest difference, on average) merge
FP_CAP = 2.0
NOTHING = 0.05  # a group "finds" a picture's positives from this share on


@dataclass(frozen=True)
class Profile:
    """Per preview picture: found share, false-positive share (seed means)."""

    found: NDArray[np.float64]
    false: NDArray[np.float64]

    def vector(self) -> NDArray[np.float64]:
        return np.concatenate([self.found, np.minimum(self.false, FP_CAP) / FP_CAP])


def profile(c: Configuration) -> Profile | None:
    """The configuration's profile, or None when its runs record no preview counts (or
    not the same pictures)."""
    stems = [p.stem for p in c.runs[0].pictures]
    if not stems or any([p.stem for p in r.pictures] != stems for r in c.runs):
        return None
    positives = np.array([[p.positives for p in r.pictures] for r in c.runs], np.float64)
    scale = float(np.median(positives[positives > 0])) if (positives > 0).any() else 1.0
    tp = np.array([[p.tp for p in r.pictures] for r in c.runs], np.float64)
    fp = np.array([[p.fp for p in r.pictures] for r in c.runs], np.float64)
    found = np.divide(tp, positives, out=np.zeros_like(tp), where=positives > 0)
    false = fp / np.where(positives > 0, positives, scale)
    return Profile(found.mean(axis=0), false.mean(axis=0))


@dataclass
class Group:
    configs: list[Configuration]
    profiles: list[Profile]
    kind: str  # "found", "all black", "almost nothing"
    title: str = ""

    def mean(self) -> Profile:
        return Profile(
            np.mean([p.found for p in self.profiles], axis=0),
            np.mean([p.false for p in self.profiles], axis=0),
        )


def _distance(a: Group, b: Group) -> float:
    return float(
        np.mean([np.max(np.abs(p.vector() - q.vector())) for p in a.profiles for q in b.profiles])
    )


def _cluster(groups: list[Group], room: int) -> list[Group]:
    """Average-linkage merging until at most ``room`` groups remain and none are closer
    than ``MERGE``."""
    groups = list(groups)
    while len(groups) > 1:
        pairs = [
            (_distance(a, b), i, j)
            for i, a in enumerate(groups)
            for j, b in enumerate(groups)
            if i < j
        ]
        d, i, j = min(pairs)
        if d >= MERGE and len(groups) <= room:
            break
        a, b = groups[i], groups.pop(j)
        a.configs += b.configs
        a.profiles += b.profiles
    return groups


def group_configurations(configs: Sequence[Configuration]) -> list[Group]:
    """The observation groups (module docstring), configurations in their given order
    inside a group; groups with the most found first, degenerate ones last."""
    found: list[Group] = []
    special: dict[str, Group] = {}
    for c in configs:
        prof = profile(c)
        if prof is None:
            continue
        kind = _kind(c)
        if kind == "found":
            found.append(Group([c], [prof], kind))
        else:
            special.setdefault(kind, Group([], [], kind))
            special[kind].configs.append(c)
            special[kind].profiles.append(prof)
    found = _cluster(found, max(1, MAX_GROUPS - len(special)))
    order = {c.label: i for i, c in enumerate(configs)}
    for g in found:
        g.configs, g.profiles = _sorted(g, order)
    found.sort(key=lambda g: (-float(g.mean().found.mean()), float(g.mean().false.mean())))
    specials = [special[k] for k in ("almost nothing", "all black") if k in special]
    while True:  # two groups set apart by the same thing are one group
        groups = [*found, *specials]
        everyone = [p for g in groups for p in g.profiles]
        signs = {}
        for g in groups:
            others = [p for p in everyone if not any(p is q for q in g.profiles)]
            g.title, signs[id(g)] = _title(g, others)
        same = [
            (a, b)
            for i, a in enumerate(found)
            for b in found[i + 1 :]
            if signs[id(a)] is not None and signs[id(a)] == signs[id(b)]
        ]
        if not same:
            return groups
        a, b = same[0]
        a.configs, a.profiles = _sorted(
            Group(a.configs + b.configs, a.profiles + b.profiles, a.kind), order
        )
        found.remove(b)


def _sorted(g: Group, order: dict[str, int]) -> tuple[list[Configuration], list[Profile]]:
    pairs = sorted(zip(g.configs, g.profiles, strict=True), key=lambda x: order[x[0].label])
    return [c for c, _ in pairs], [p for _, p in pairs]


def _kind(c: Configuration) -> str:
    tp, fp, fn = (c.mean(f"val/{k}") for k in ("tp", "fp", "fn"))
    if not np.isfinite([tp, fp, fn]).all():
        return "found"
    if tp + fp == 0:
        return "all black"
    if tp + fn > 0 and tp / (tp + fn) < ALMOST_NOTHING:
        return "almost nothing"
    return "found"


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


Sign = tuple[str, int] | None  # what sets a group apart: (measure and direction, picture)


def _title(g: Group, others: list[Profile]) -> tuple[str, Sign]:
    n = len(g.configs)
    count = f"{n} configuration{'s' if n > 1 else ''}"
    if g.kind == "all black":
        return f"All black: no positive pixel predicted ({count})", None
    if g.kind == "almost nothing":
        return f"Finds almost nothing: recall below {_pct(ALMOST_NOTHING)} ({count})", None
    mine = g.mean()
    if not others:
        return (
            f"Every configuration alike: finds {_pct(float(mine.found.min()))}–"
            f"{_pct(float(mine.found.max()))} of each preview picture's positives, false "
            f"positives {_pct(float(mine.false.min()))}–{_pct(float(mine.false.max()))} "
            f"of them ({count})"
        ), None
    rest = Profile(
        np.mean([p.found for p in others], axis=0), np.mean([p.false for p in others], axis=0)
    )
    words, sign = _difference(mine, rest)
    return f"{words} ({count})", sign


def _difference(mine: Profile, rest: Profile) -> tuple[str, Sign]:
    """The largest difference of ``mine`` to ``rest`` in a short phrase, and what it
    is (measure and direction, picture)."""
    found = mine.found - rest.found
    capped = (np.minimum(mine.false, FP_CAP) - np.minimum(rest.false, FP_CAP)) / FP_CAP
    i, j = int(np.argmax(np.abs(found))), int(np.argmax(np.abs(capped)))
    if max(abs(found[i]), abs(capped[j])) < NOTHING:
        return "Like the others on every preview picture", ("alike", 0)
    if abs(found[i]) >= abs(capped[j]):
        pic, share, other = i + 1, _pct(mine.found[i]), _pct(rest.found[i])
        if found[i] > 0:
            words = f"Finds more on picture {pic}: {share} of its positives, the others {other}"
            return words, ("found+", pic)
        if mine.found[i] < NOTHING:
            words = f"Misses picture {pic}: finds {share} of its positives, the others {other}"
            return words, ("found-", pic)
        verb = "Misses most of" if mine.found[i] < 0.5 else "Finds less on"
        return f"{verb} picture {pic}: {share} of its positives, the others {other}", (
            "found-",
            pic,
        )
    pic = j + 1
    ratio = mine.false[j] / rest.false[j] if rest.false[j] > 0 else float("inf")
    times = "" if not np.isfinite(ratio) else f", ×{ratio:.1f} the others"
    shares = f"({_pct(mine.false[j])} of its positives, the others {_pct(rest.false[j])})"
    if capped[j] > 0:
        return f"False positives on picture {pic}{times} {shares}", ("fp+", pic)
    return f"Fewer false positives on picture {pic}{times} {shares}", ("fp-", pic)


def share_words(p: Profile, picture: int) -> str:
    """One table cell: ``found 78 %, FP 12 %``."""
    return f"found {_pct(p.found[picture])}, FP {_pct(p.false[picture])}"


def tp_word(c: PictureCounts) -> str:
    if c.tp == 0:
        return "none"
    share = c.tp / c.positives if c.positives else 0.0
    return "few" if share < FEW else "some" if share < SOME_TP else "most"


def fp_word(c: PictureCounts) -> str:
    if c.fp == 0:
        return "none"
    if c.positives == 0:
        return "many"
    share = c.fp / c.positives
    return "few" if share < FEW else "some" if share < SOME_FP else "many"
