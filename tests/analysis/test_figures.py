from __future__ import annotations

import re
from pathlib import Path

import pytest

from segtune.analysis import figures as F
from segtune.core.metrics import METRIC_WORDS, SPLIT_WORDS, describe_metric
from tests.analysis.fakes import fake_run, fake_summary

ALL_KEYS = [f"{s}/{m}" for s in SPLIT_WORDS for m in METRIC_WORDS]


def _keys_named(caption: str) -> set[str]:
    return {k for k in ALL_KEYS if describe_metric(k, short=True) in caption}


def _figures(tmp_path: Path) -> list[F.Figure]:
    runs = [
        fake_run(
            tmp_path,
            0,
            0.3,
            [(1, 0, 4), (0, 2, 5), (3, 0, 2)],
            {"loss.bce_weight": 0.2, "loss.pos_weight": 1.0},
        ),
        fake_run(
            tmp_path,
            1,
            0.6,
            [(4, 0, 1), (2, 0, 3), (3, 1, 2)],
            {"loss.bce_weight": 0.8, "loss.pos_weight": 1.0},
        ),
        fake_run(
            tmp_path,
            2,
            0.7,
            [(4, 1, 1), (2, 0, 3), (3, 1, 2)],
            {"loss.bce_weight": 0.2, "loss.pos_weight": 10.0},
        ),
        fake_run(
            tmp_path,
            3,
            0.1,
            [(0, 0, 5), (0, 0, 5), (0, 0, 5)],
            {"loss.bce_weight": 0.8, "loss.pos_weight": 10.0},
        ),
    ]
    s = fake_summary(runs)
    figs = [
        F.topk_grid(s),
        F.pr_curves(s),
        *F.heatmaps(s),
        F.metric_curves(runs[0], "recall"),
    ]
    return [f for f in figs if f is not None]


def test_every_figure_draws_exactly_the_keys_its_caption_names(tmp_path: Path) -> None:
    figs = _figures(tmp_path)
    assert len(figs) == 4
    for fig in figs:
        assert fig.keys, fig.name
        assert set(fig.keys) == _keys_named(fig.caption), (fig.name, fig.keys, fig.caption)
        assert fig.png.startswith(b"\x89PNG")


def test_metric_curves_draw_train_and_validation_separately(tmp_path: Path) -> None:
    fig = next(f for f in _figures(tmp_path) if f.name.startswith("curves"))
    # the objective's two splits, and beside them what it cannot fake: precision (AP
    # when the history has it), the kept epoch dashed
    assert set(fig.keys) == {"train/recall", "val/recall", "val/precision", "train/loss"}
    assert "Training recall" in fig.caption and "Validation recall" in fig.caption
    assert "Dashed line: the kept epoch 2 (the last)" in fig.caption


def test_each_overlay_thumbnail_has_its_full_resolution_file(tmp_path: Path) -> None:
    from PIL import Image

    run = fake_run(tmp_path, 0, 0.3, [(1, 0, 4), (0, 2, 5), (3, 0, 2)])
    items = F.save_overlays(run, tmp_path / "figures")
    assert len(items) == 3
    for thumb, full, label in items:
        assert Image.open(tmp_path / "figures" / full).size == (16, 16)  # the preview's own
        assert Image.open(tmp_path / "figures" / thumb).size == (150, 150)
        assert label.startswith(("1: p-a", "2: p-b", "3: p-c"))
    caption = F.overlay_caption(run, fake_summary([run]))
    assert _keys_named(caption) == {"val/tp", "val/fp", "val/fn"}


def test_captions_always_name_a_split(tmp_path: Path) -> None:
    for fig in _figures(tmp_path):
        assert re.search(r"\b(Training|Validation)\b", fig.caption), fig.caption


@pytest.mark.parametrize("key", ALL_KEYS)
def test_words_for_every_key_include_the_split(key: str) -> None:
    split = key.split("/")[0]
    assert describe_metric(key).startswith(SPLIT_WORDS[split])


def test_curves_never_join_measurements_across_unmeasured_epochs() -> None:
    from segtune.analysis.figures import epoch_series

    history = [
        {"epoch": 1, "train/recall": 0.5, "val/recall": 0.4},
        {"epoch": 2, "train/recall": "", "val/recall": 0.6},
        {"epoch": 3, "val/recall": 0.7},
        {"epoch": 4, "train/recall": 0.9, "val/recall": 0.8},
    ]
    epochs, values = epoch_series(history, "train/recall")
    assert epochs == [1, 2, 3, 4]
    assert values[0] == 0.5 and values[3] == 0.9
    assert all(v != v for v in values[1:3])  # NaN: a gap in the line
    assert epoch_series(history, "val/recall")[1] == [0.4, 0.6, 0.7, 0.8]


def test_the_race_figure_names_what_it_draws(tmp_path: Path) -> None:
    run = fake_run(tmp_path, 0, 0.3, [(1, 0, 4), (0, 2, 5), (3, 0, 2)])
    race = {
        "stage": "race",
        "error_control": "Holm over every pair at each look",
        "configurations": [
            {
                "configuration": "a",
                "dropped": None,
                "rounds": [[1, 0.8, 0.7, 0.9], [2, 0.8, 0.75, 0.85]],
            },
            {
                "configuration": "b",
                "dropped": {"round": 2},
                "rounds": [[1, 0.5, 0.4, 0.6], [2, 0.5, 0.45, 0.55]],
            },
        ],
    }
    fig = F.race_figure(race, fake_summary([run]))
    assert fig is not None and set(fig.keys) == {"val/recall"}
    assert _keys_named(fig.caption) == {"val/recall"}
    assert "dropped configurations in grey" in fig.caption and "final epoch" in fig.caption
