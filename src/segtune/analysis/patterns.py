"""Picture patterns: which preview pictures get true and false positives, per run.

Runs with the same pattern (set of pictures with TP > 0, set with FP > 0) form one
observation. Degenerate groups get their own names: "All black" (no positive pixel
predicted on any preview picture) and "False positives only" (no TP anywhere). On real
data every run often has TP and FP on every picture; when presence puts all runs in one
group, runs are grouped by the quantity words below per picture instead.

Runs that predict nothing or over-predict are named by :func:`segtune.core.metrics.degenerate`.

Quantity words compare counts with the picture's positive pixels:

* true positives: "few" below 10 % of the picture's positives, "some" below 50 %,
  "most" from 50 %;
* false positives: "few" below 10 % of the picture's positives, "some" below 100 %,
  "many" from 100 % (more false than true pixels); on a picture without positives any
  false positive is "many".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from segtune.analysis.summary import RunSummary
from segtune.core.metrics import PictureCounts

FEW, SOME_TP, SOME_FP = 0.10, 0.50, 1.00
_RANK = {"none": 0, "few": 1, "some": 2, "most": 3, "many": 3}


@dataclass(frozen=True, order=True)
class Pattern:
    tp_pictures: tuple[int, ...]
    fp_pictures: tuple[int, ...]
    # (tp word, fp word) per preview picture; only when presence does not separate runs
    levels: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        if not self.tp_pictures and not self.fp_pictures:
            return "all_black"
        if not self.tp_pictures:
            return "fp_only"
        return "found"


@dataclass
class PatternGroup:
    pattern: Pattern
    runs: list[RunSummary] = field(default_factory=list)

    @property
    def title(self) -> str:
        return describe_pattern(self.pattern)


def pattern_of(run: RunSummary) -> Pattern:
    return Pattern(
        tuple(p.index for p in run.pictures if p.tp > 0),
        tuple(p.index for p in run.pictures if p.fp > 0),
    )


def _pictures(indices: Sequence[int]) -> str:
    if len(indices) == 1:
        return f"picture {indices[0]}"
    return "pictures " + ", ".join(str(i) for i in indices)


def describe_pattern(p: Pattern) -> str:
    """One sentence per pattern, e.g. "True positives on pictures 2, 3; false positives on
    picture 4."."""
    if p.kind == "all_black":
        return "All black — no positive pixel predicted on any preview picture"
    fp = f"false positives on {_pictures(p.fp_pictures)}" if p.fp_pictures else "no false positives"
    if p.kind == "fp_only":
        return f"False positives only — no true positive on any preview picture; {fp}"
    if p.levels:
        tp_levels = ", ".join(f"{i} {tp}" for i, (tp, _) in enumerate(p.levels, start=1))
        fp_levels = ", ".join(f"{i} {fp}" for i, (_, fp) in enumerate(p.levels, start=1))
        return f"True positives per picture: {tp_levels}; false positives: {fp_levels}"
    return f"True positives on {_pictures(p.tp_pictures)}; {fp}"


def group_runs(runs: Sequence[RunSummary]) -> list[PatternGroup]:
    """Group runs with preview counts by identical pattern.

    Order: most pictures with TP first; among equals, fewest pictures with FP first,
    except that "All black" always comes last (after "False positives only"); grouped by
    levels, more true positives then fewer false positives first; then by the pictures'
    numbers. Inside a group, runs keep their given order.
    """
    kept = [r for r in runs if r.pictures and r.status in ("completed", "pruned")]
    by_presence = len({pattern_of(r) for r in kept}) == 1 and len(kept) > 1
    groups: dict[Pattern, PatternGroup] = {}
    for run in kept:
        pat = pattern_of(run)
        if by_presence and pat.kind == "found":  # presence says nothing: levels do
            levels = tuple((tp_word(p), fp_word(p)) for p in run.pictures)
            pat = Pattern(pat.tp_pictures, pat.fp_pictures, levels)
        groups.setdefault(pat, PatternGroup(pat)).runs.append(run)
    return sorted(
        groups.values(),
        key=lambda g: (
            -len(g.pattern.tp_pictures),
            g.pattern.kind == "all_black",
            len(g.pattern.fp_pictures),
            -sum(_RANK[tp] for tp, _ in g.pattern.levels),  # more found first
            sum(_RANK[fp] for _, fp in g.pattern.levels),  # then fewer false positives
            g.pattern,
        ),
    )


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
