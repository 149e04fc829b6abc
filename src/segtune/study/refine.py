"""Refined stages: a finer grid around the best runs of an earlier stage."""

from __future__ import annotations

import math
from collections.abc import Sequence

from segtune.study.spec import ParamValue, grid_points


def midpoint(a: float, b: float) -> float:
    """Arithmetic midpoint, or geometric when both are > 0 and a decade or more apart
    (so 1e-4 and 1e-6 give 1e-5, not 5.05e-5). Rounded to 6 significant digits."""
    lo, hi = min(a, b), max(a, b)
    value = math.sqrt(lo * hi) if lo > 0 and hi / lo >= 10 else (lo + hi) / 2
    return float(f"{value:.6g}")


def neighbourhood(value: ParamValue, values: Sequence[ParamValue]) -> list[ParamValue]:
    """``value`` plus the midpoints to its neighbours among the sorted ``values``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [value]
    numeric = sorted(
        float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)
    )
    i = numeric.index(float(value))
    out: list[ParamValue] = [value]
    if i > 0:
        out.append(midpoint(numeric[i - 1], numeric[i]))
    if i + 1 < len(numeric):
        out.append(midpoint(numeric[i], numeric[i + 1]))
    return sorted(out, key=float)


def refine_points(
    source_grid: dict[str, list[ParamValue]],
    best: Sequence[dict[str, ParamValue]],
    fixed: dict[str, ParamValue],
) -> list[dict[str, ParamValue]]:
    """Union of the local grids around each of the ``best`` configurations.

    Keys in ``fixed`` take that single value; the others take the value of the best run
    plus the midpoints to its neighbours in the source grid. Order is stable: by best
    run, then grid order; repeats are dropped.
    """
    points: list[dict[str, ParamValue]] = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for params in best:
        local = {
            key: [fixed[key]] if key in fixed else neighbourhood(params[key], values)
            for key, values in source_grid.items()
        }
        for point in grid_points(local):
            ident = tuple((k, repr(v)) for k, v in point.items())
            if ident not in seen:
                seen.add(ident)
                points.append(point)
    return points
