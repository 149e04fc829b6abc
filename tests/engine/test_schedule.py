"""Learning-rate schedules: per optimiser step, with warm-up, resumable."""

from __future__ import annotations

import math

import pytest

from segtune.engine.schedule import lr_factor


def test_constant_cosine_and_poly_factors() -> None:
    assert [lr_factor(s, 100, 0, "constant") for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert lr_factor(0, 100, 0, "cosine") == 1.0
    assert lr_factor(50, 100, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 0, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(50, 100, 0, "poly", 0.9) == pytest.approx(0.5**0.9)
    assert lr_factor(100, 100, 0, "poly", 0.9) == 0.0


def test_warm_up_rises_linearly_then_the_schedule_starts_from_one() -> None:
    assert [lr_factor(s, 100, 4, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 100, 4, "cosine") == 1.0
    assert lr_factor(52, 100, 4, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
