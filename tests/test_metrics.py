from __future__ import annotations

import numpy as np
import pytest

from segtune.metrics import (
    Counts,
    ProbabilityHistogram,
    confusion_counts,
    derived_metrics,
    describe_metric,
    split_metrics,
)


def test_counts_on_hand_made_arrays() -> None:
    prob = np.array([[0.9, 0.6, 0.2], [0.5, 0.1, 0.7]])
    target = np.array([[True, False, True], [True, False, False]])
    c = confusion_counts(prob, target, 0.5)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 1, 1)  # 0.5 counts as positive
    m = derived_metrics(c)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert m["iou"] == pytest.approx(2 / 5) and m["no_positive_prediction"] == 0.0


def test_zero_prediction_is_flagged_and_precision_zero() -> None:
    m = derived_metrics(Counts(tp=0, fp=0, fn=5, tn=95))
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["no_positive_prediction"] == 1.0


def test_ap_and_best_threshold_known_answer() -> None:
    # Positives at 0.9 and 0.4, negatives at 0.7 and 0.1.
    prob = np.array([0.9, 0.7, 0.4, 0.1])
    target = np.array([True, False, True, False])
    h = ProbabilityHistogram(bins=100)
    h.add(prob, target)
    # Ranking 0.9(+) 0.7(-) 0.4(+) 0.1(-): AP = 0.5·1 + 0.5·(2/3)
    assert h.average_precision() == pytest.approx(0.5 + 0.5 * 2 / 3)
    threshold, f1 = h.best_f1()
    # threshold ≤ 0.4 (recall 1, precision 2/3 → F1 0.8) beats 0.9 alone (F1 2/3)
    assert f1 == pytest.approx(0.8) and threshold == pytest.approx(0.11)


def test_perfect_separation_gives_ap_one() -> None:
    rng = np.random.default_rng(0)
    prob = np.concatenate([rng.uniform(0.6, 1, 50), rng.uniform(0, 0.4, 500)])
    target = np.arange(550) < 50
    h = ProbabilityHistogram(1000)
    h.add(prob, target)
    assert h.average_precision() == pytest.approx(1.0)
    assert h.best_f1()[1] == pytest.approx(1.0)


def test_split_metrics_keys_carry_the_split() -> None:
    h = ProbabilityHistogram(10)
    h.add(np.array([0.8]), np.array([True]))
    values = split_metrics("val", Counts(1, 0, 0, 0), h)
    assert values and all(k.startswith("val/") for k in values)
    assert values["val/recall"] == 1.0


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("val/recall", "Validation recall, pixel-level, threshold 0.5"),
        ("train/f1", "Training F1, pixel-level, threshold 0.5"),
        ("val/ap", "Validation average precision, pixel-level, threshold-free"),
        ("train/loss", "Training loss (running mean over augmented batches)"),
    ],
)
def test_describe_metric_always_names_the_split(key: str, words: str) -> None:
    assert describe_metric(key, 0.5) == words


def test_describe_metric_rejects_keys_without_split() -> None:
    with pytest.raises(ValueError, match="must be '<split>/<name>'"):
        describe_metric("recall")


def test_a_collapsed_model_has_no_best_threshold_and_is_flagged() -> None:
    import numpy as np

    from segtune.metrics import Counts, ProbabilityHistogram, split_metrics

    hist = ProbabilityHistogram(100)
    prob = np.full((8, 8), 0.004)  # below the first edge, 1/100
    target = np.zeros((8, 8), bool)
    target[:2] = True
    hist.add(prob, target)
    assert hist.collapsed and hist.best_f1() == (None, 0.0)
    values = split_metrics("val", Counts(0, 0, 16, 48), hist)
    assert "val/best_threshold" not in values and values["val/collapsed"] == 1.0
    hist.add(np.full((8, 8), 0.9), target)  # a model that finds something
    threshold, f1 = hist.best_f1()
    assert not hist.collapsed and threshold is not None and threshold > 0 and f1 > 0
