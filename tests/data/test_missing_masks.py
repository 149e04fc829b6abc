"""Images shipped without a mask because they hold no positives (MVTec AD's ``good/``,
inspection datasets' defect-free pictures): refused by default, read as empty with
``data.missing_masks: empty``, from check-data to evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segtune.cli.main import main
from segtune.core.config import build_run_config
from segtune.data.io import read_mask
from segtune.data.layout import find_pairs
from segtune.engine.train import train_run
from segtune.study.identity import run_identity
from tests.conftest import DEEPCRACK, tiny_tree


def _inspection_layout(out: Path) -> None:
    """MVTec AD's shape from DeepCrack crops (96 px): ``images/crack/00k.png`` with
    ``masks/crack/00k_mask.png``; ``images/good/00k.png`` crops without cracks, no mask."""
    sources = sorted((DEEPCRACK / "train" / "images").iterdir())[:9]
    for i, image in enumerate(sources):
        split = "train" if i < 6 else "val"
        mask = read_mask(DEEPCRACK / "train" / "masks" / f"{image.stem}.png")
        picture = Image.open(image).convert("RGB")
        crack = (200, 140, 296, 236)
        (out / split / "images" / "crack").mkdir(parents=True, exist_ok=True)
        (out / split / "images" / "good").mkdir(parents=True, exist_ok=True)
        (out / split / "masks" / "crack").mkdir(parents=True, exist_ok=True)
        picture.crop(crack).save(out / split / "images" / "crack" / f"{i:03d}.png")
        cut = Image.fromarray(mask.astype(np.uint8) * 255).crop(crack)
        cut.save(out / split / "masks" / "crack" / f"{i:03d}_mask.png")
        box = next(  # a 96 px square without crack pixels
            (
                (x, y, x + 96, y + 96)
                for y in range(0, mask.shape[0] - 96, 16)
                for x in range(0, mask.shape[1] - 96, 16)
                if not mask[y : y + 96, x : x + 96].any()
            ),
            (0, 0, 96, 96),
        )
        picture.crop(box).save(out / split / "images" / "good" / f"{i:03d}.png")


def test_images_without_masks_are_refused_or_read_as_empty(tmp_path: Path) -> None:
    _inspection_layout(tmp_path)
    _, problems = find_pairs(tmp_path / "train")
    assert len(problems) == 6 and problems[0] == (
        f"{tmp_path}/train/images/good/000.png: image without mask (no "
        f"{tmp_path}/train/masks/good/000.*; if it has no positives: data.missing_masks: empty)"
    )
    pictures, problems = find_pairs(tmp_path / "train", "empty")
    assert problems == [] and len(pictures) == 12
    assert [p.stem for p in pictures if p.mask is None] == [f"good/{k:03d}" for k in range(6)]
    # A manifest says the same with an empty mask field.
    (tmp_path / "list.csv").write_text(
        "image,mask\ntrain/images/crack/000.png,train/masks/crack/000_mask.png\n"
        "train/images/good/000.png,\n"
    )
    assert find_pairs(tmp_path / "list.csv")[1] == [
        f"{tmp_path / 'list.csv'}: line 3: missing image or mask field"
    ]
    pictures, problems = find_pairs(tmp_path / "list.csv", "empty")
    assert problems == [] and [(p.stem, p.mask is None) for p in pictures] == [
        ("crack/000", False),  # one stem in two folders: named by them
        ("good/000", True),
    ]


def test_a_run_counts_every_prediction_on_an_unlabelled_picture_as_false(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _inspection_layout(data)
    assert main(["check-data", str(data / "train")]) == 1
    assert main(["check-data", str(data / "train"), "--missing-masks", "empty"]) == 0
    out = capsys.readouterr().out
    assert "6 image(s) without a mask, read as having no positives" in out
    spec = tmp_path / "s.yaml"
    init = ["init", str(data / "train"), str(data / "val"), "--out", str(spec), "--no-probe"]
    assert main([*init, "--missing-masks", "empty"]) == 0
    assert "missing_masks: empty" in spec.read_text()

    tree = tiny_tree(data)
    tree["data"]["missing_masks"] = "empty"
    config = build_run_config(tree)
    record = train_run(config, tmp_path / "run", progress=False)
    assert record.status == "completed"
    good = [p for p in record.pictures if p.stem.startswith("good/")]
    assert len(good) == 3 and all(p.positives == p.tp == p.fn == 0 for p in good)
    crack = [p for p in record.pictures if p.stem.startswith("crack/")]
    assert len(crack) == 3 and sum(p.positives for p in crack) > 0
    # evaluate reads the scored pictures as the run read its own; refusing is a choice.
    argv = ["evaluate", str(tmp_path / "run"), str(data / "val"), "--split-name", "val"]
    out_json = tmp_path / "e.json"
    assert main([*argv, "--out", str(out_json), "-q"]) == 0
    assert json.loads(out_json.read_text())["metrics"]["val/tp"] == record.kept["val/tp"]
    assert main([*argv, "--missing-masks", "refuse", "-q"]) == 2
    assert "image without mask" in capsys.readouterr().err
    # Refusing (the default) leaves a run's identity as before the setting existed.
    assert "data.missing_masks" not in run_identity(build_run_config(tiny_tree(data)), "x")
    assert run_identity(config, "x")["data.missing_masks"] == "empty"
