"""Bootstrap intervals over validation pictures, paired differences, degenerate runs."""

from __future__ import annotations

import numpy as np
import pytest

from segtune.core.intervals import (
    count_samples,
    histogram_samples,
    interval,
    paired_difference,
    resample_weights,
)
from segtune.core.metrics import (
    PictureCounts,
    ProbabilityHistogram,
    degenerate,
    trivially_maximised,
)


def test_resamples_draw_as_many_pictures_as_the_split_and_are_seeded() -> None:
    w = resample_weights(7, resamples=50, seed=3)
    assert w.shape == (50, 7) and np.all(w.sum(axis=1) == 7)
    assert np.array_equal(w, resample_weights(7, resamples=50, seed=3))
    assert not np.array_equal(w, resample_weights(7, resamples=50, seed=4))


def test_count_intervals_hold_the_value_and_shrink_to_it_for_identical_pictures() -> None:
    rng = np.random.default_rng(0)
    tp, fp, fn = (rng.integers(10, 500, 40) for _ in range(3))
    samples = count_samples(tp, fp, fn, resample_weights(40))
    recall = tp.sum() / (tp.sum() + fn.sum())
    ci = interval(samples["recall"])
    assert ci.low < recall < ci.high and ci.high - ci.low < 0.2
    same = count_samples(np.full(5, 30), np.full(5, 10), np.full(5, 10), resample_weights(5))
    assert interval(same["precision"]).low == pytest.approx(0.75)
    assert interval(same["precision"]).high == pytest.approx(0.75)


def test_histogram_resamples_use_the_rule_of_the_split_histogram() -> None:
    rng = np.random.default_rng(1)
    hists = []
    for _ in range(6):
        h = ProbabilityHistogram(50)
        h.add(rng.random((20, 20)), rng.random((20, 20)) < 0.2)
        hists.append(h)
    total = ProbabilityHistogram(50)
    for h in hists:
        total.pos += h.pos
        total.neg += h.neg
    pos, neg = np.stack([h.pos for h in hists]), np.stack([h.neg for h in hists])
    identity = np.ones((1, 6))  # one "resample" that holds every picture once
    samples = histogram_samples(pos, neg, identity)
    assert samples["ap"][0] == pytest.approx(total.average_precision(), abs=1e-12)
    assert samples["best_f1"][0] == pytest.approx(total.best_f1()[1], abs=1e-12)


def test_paired_differences_tell_a_consistent_gain_from_picture_noise() -> None:
    rng = np.random.default_rng(2)
    positives = rng.integers(100, 1000, 30)
    tp_a = (positives * rng.uniform(0.3, 0.9, 30)).astype(int)  # pictures vary a lot
    w = resample_weights(30)
    a = count_samples(tp_a, np.full(30, 20), positives - tp_a, w)["recall"]
    tp_b = np.minimum(tp_a + 5, positives)  # B finds 5 more pixels on every picture
    b = count_samples(tp_b, np.full(30, 20), positives - tp_b, w)["recall"]
    unpaired = interval(b), interval(a)
    assert unpaired[0].low < unpaired[1].high  # the intervals alone overlap …
    assert interval(b - a).low > 0  # … the paired difference does not contain 0
    assert interval(a - a).contains(0.0)


def test_two_evaluations_of_the_same_pictures_are_compared_pairwise() -> None:
    # Two epochs of one run scored on the same 30 pictures: the later one finds 5 more
    # crack pixels on every picture; its histograms put them in a higher bin.
    rng = np.random.default_rng(3)
    positives = rng.integers(100, 1000, 30)
    found = (positives * rng.uniform(0.3, 0.9, 30)).astype(int)

    def epoch(extra: int) -> tuple[list[PictureCounts], list[ProbabilityHistogram]]:
        pictures, hists = [], []
        for i, (n, tp) in enumerate(zip(positives, found + extra, strict=True)):
            pictures.append(PictureCounts(i + 1, f"p{i}", int(tp), 20, int(n - tp), int(n)))
            h = ProbabilityHistogram(10)
            h.pos[9], h.pos[0], h.neg[9], h.neg[0] = tp, n - tp, 20, 5000  # missed: with bg
            hists.append(h)
        return pictures, hists

    worse, better = epoch(0), epoch(5)
    recall = paired_difference("recall", better, worse)
    assert recall is not None and recall.low > 0
    gain = paired_difference("best_f1", better, worse)
    assert gain is not None and gain.low > 0
    same = paired_difference("f1", worse, worse)
    assert same is not None and same.low == same.high == 0.0
    assert paired_difference("loss", better, worse) is None  # no per-picture form


def test_degenerate_runs_are_named() -> None:
    assert degenerate({"val/tp": 0, "val/fp": 0, "val/fn": 50}) == "all black"
    assert degenerate({"val/tp": 90, "val/fp": 900, "val/fn": 10}) == "over-predicts ×9.9"
    assert degenerate({"val/tp": 90, "val/fp": 30, "val/fn": 10}) is None
    assert degenerate({"val/recall": 0.5}) is None
    assert trivially_maximised("val/recall") is not None
    assert trivially_maximised("val/f1") is None and trivially_maximised("val/ap") is None
