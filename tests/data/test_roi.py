"""Regions of interest and ignore values: pixels that do not count never count."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segtune.core.errors import DataError
from segtune.core.metrics import ProbabilityHistogram, confusion_counts
from segtune.data.io import MaskReading, read_ignored, read_mask
from segtune.data.layout import find_pairs
from segtune.data.pairs import check_pictures
from segtune.engine.loss import segmentation_loss


def test_a_roi_gives_the_loss_counts_and_histograms_of_the_pixels_removed() -> None:
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 2, (2, 16, 16)).astype(np.float32))
    target = torch.from_numpy(rng.random((2, 16, 16)) < 0.2)
    roi = torch.zeros((2, 16, 16), dtype=torch.bool)
    roi[:, :, :8] = True  # the left half counts
    kw = {"bce_weight": 0.4, "dice_smooth": 1e-4, "pos_weight": 5.0}
    with_roi = segmentation_loss(logits, target, roi, **kw)
    removed = segmentation_loss(
        logits[:, :, :8], target[:, :, :8], torch.ones((2, 16, 8), dtype=torch.bool), **kw
    )
    assert torch.allclose(with_roi, removed, atol=1e-7)
    prob = torch.sigmoid(logits).numpy()
    t, v = target.numpy(), roi.numpy()
    assert confusion_counts(prob, t, 0.5, v) == confusion_counts(prob[:, :, :8], t[:, :, :8], 0.5)
    a, b = ProbabilityHistogram(100), ProbabilityHistogram(100)
    a.add(prob, t, v)
    b.add(prob[:, :, :8], t[:, :, :8])
    assert np.array_equal(a.pos, b.pos) and np.array_equal(a.neg, b.neg)


def _save(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr.astype(np.uint8)).save(path)


def test_an_ignore_value_is_neither_positive_nor_counted(tmp_path: Path) -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[:2], mask[2:4] = 1, 255
    _save(tmp_path / "m.png", mask)
    assert read_mask(tmp_path / "m.png", MaskReading(255)).sum() == 16
    assert read_ignored(tmp_path / "m.png", MaskReading(255)).sum() == 16
    with pytest.raises(DataError, match="expected 0 plus one positive value"):
        read_mask(tmp_path / "m.png")
    mask[4:6] = 7
    _save(tmp_path / "m.png", mask)
    with pytest.raises(DataError, match="one positive value and the ignore value 255"):
        read_mask(tmp_path / "m.png", MaskReading(255))


def test_check_data_gives_positive_shares_of_the_pixels_that_count(tmp_path: Path) -> None:
    # As the metrics see them: 8 positives among the 24 scored pixels (the left half's 32,
    # less its 8 ignored ones), not among the picture's 64.
    for folder in ("images", "masks", "roi"):
        (tmp_path / folder).mkdir()
    _save(tmp_path / "images" / "a.png", np.full((8, 8, 3), 90))
    mask = np.zeros((8, 8), np.uint8)
    mask[:2], mask[2:4] = 1, 255
    _save(tmp_path / "masks" / "a.png", mask)
    roi = np.zeros((8, 8), np.uint8)
    roi[:, :4] = 255
    _save(tmp_path / "roi" / "a.png", roi)
    report = check_pictures(tmp_path, MaskReading(255))
    assert report.problems == [] and report.positive_fractions == {"a": 8 / 24}
    assert "positive pixels (of the pixels that count: in the region of interest, not " in (
        "\n".join(report.summary_lines())
    )
    shutil.rmtree(tmp_path / "roi")
    assert check_pictures(tmp_path, MaskReading(255)).positive_fractions == {"a": 16 / 48}
    mask[2:4] = 0
    _save(tmp_path / "masks" / "a.png", mask)
    whole = check_pictures(tmp_path)
    assert whole.positive_fractions == {"a": 16 / 64}
    assert "positive pixels: mean 25.000%" in whole.summary_lines()[2]


def test_roi_folder_and_column_are_found_and_checked(demo_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "val"
    shutil.copytree(demo_data / "val", data)
    (data / "roi").mkdir()
    stems = sorted(p.stem for p in (data / "images").iterdir())
    half = np.zeros((64, 64), np.uint8)
    half[:, :32] = 255
    for stem in stems[:-1]:
        _save(data / "roi" / f"{stem}.png", half)
    pictures, problems = find_pairs(data)
    assert [p.roi is not None for p in pictures] == [True] * (len(stems) - 1) + [False]
    assert problems == [
        f"{data / 'images' / stems[-1]}.png: image without region of interest "
        f"(no {data / 'roi'}/{stems[-1]}.*)"
    ]
    _save(data / "roi" / f"{stems[-1]}.png", np.zeros((10, 10)))  # the wrong size
    report = check_pictures(data)
    assert len(report.problems) == 1 and "does not match image" in report.problems[0]
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "image,mask,roi\n"
        f"{data}/images/{stems[0]}.png,{data}/masks/{stems[0]}.png,{data}/roi/{stems[0]}.png\n"
    )
    (pic,) = find_pairs(manifest)[0]
    assert pic.roi == (data / "roi" / f"{stems[0]}.png").resolve()


def test_training_and_evaluate_count_only_the_region_of_interest(
    demo_data: Path, tmp_path: Path
) -> None:
    import json

    from segtune.cli.main import main
    from segtune.engine.train import train_run
    from tests.conftest import tiny_config

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    half = np.zeros((64, 64), np.uint8)
    half[:, :32] = 255
    for split in ("train", "val"):
        (data / split / "roi").mkdir()
        for image in (data / split / "images").iterdir():
            _save(data / split / "roi" / f"{image.stem}.png", half)
    record = train_run(tiny_config(data, optim={"epochs": 1}), tmp_path / "run", progress=False)
    for p in record.pictures:
        mask = read_mask(data / "val" / "masks" / f"{p.stem}.png")
        assert p.positives == int(mask[:, :32].sum())
    counted = record.kept["val/tp"] + record.kept["val/fp"] + record.kept["val/fn"]
    assert counted + record.kept["val/tn"] == 4 * 64 * 32  # half of each picture counts
    out = tmp_path / "e.json"
    argv = ["evaluate", str(tmp_path / "run"), str(data / "val"), "--split-name", "val"]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["val/tp"] == record.kept["val/tp"]
    masks = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "run"), str(data / "val"), "--out", str(masks)]) == 0
    for png in masks.glob("*.png"):
        assert not np.asarray(Image.open(png))[:, 32:].any()  # nothing outside the ROI
