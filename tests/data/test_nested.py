"""Nested datasets: pictures in subfolders of ``images/`` and ``masks/`` (MVTec AD's
``ground_truth/crack/000_mask.png``, per-city or per-scene folders), the same names
repeated across subfolders, through check-data, training, evaluate and predict."""

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
from tests.conftest import DEEPCRACK, tiny_tree


def _nested(out: Path) -> None:
    """DeepCrack crops (96 px) as ``<split>/images/<group>/00k.png`` with masks
    ``<split>/masks/<group>/00k_mask.png``: each name is in both groups."""
    sources = sorted((DEEPCRACK / "train" / "images").iterdir())[:12]
    for i, image in enumerate(sources):
        split = "train" if i < 8 else "val"
        group, name = ("scene_a", "scene_b")[i % 2], f"{i // 2 % 4:03d}"
        mask = read_mask(DEEPCRACK / "train" / "masks" / f"{image.stem}.png")
        box = (200, 140, 296, 236)
        for kind, picture, tag in (
            ("images", Image.open(image).convert("RGB"), ""),
            ("masks", Image.fromarray(mask.astype(np.uint8) * 255), "_mask"),
        ):
            folder = out / split / kind / group
            folder.mkdir(parents=True, exist_ok=True)
            picture.crop(box).save(folder / f"{name}{tag}.png")


def test_pictures_in_subfolders_pair_by_their_path(tmp_path: Path) -> None:
    _nested(tmp_path)
    pictures, problems = find_pairs(tmp_path / "train")
    assert problems == []
    assert [p.stem for p in pictures] == [
        *(f"scene_a/{k:03d}" for k in range(4)),
        *(f"scene_b/{k:03d}" for k in range(4)),
    ]
    assert pictures[0].mask == tmp_path / "train" / "masks" / "scene_a" / "000_mask.png"
    (tmp_path / "train" / "masks" / "scene_b" / "003_mask.png").unlink()
    _, problems = find_pairs(tmp_path / "train")
    assert problems == [
        f"{tmp_path}/train/images/scene_b/003.png: image without mask "
        f"(no {tmp_path}/train/masks/scene_b/003.*; if it has no positives: "
        "data.missing_masks: empty)"
    ]


def test_a_nested_dataset_trains_evaluates_and_predicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _nested(data)
    assert main(["check-data", str(data / "train"), str(data / "val")]) == 0
    run = tmp_path / "run"
    record = train_run(build_run_config(tiny_tree(data)), run, progress=False)
    assert record.status == "completed"
    assert sorted(p.stem for p in record.pictures) == [
        "scene_a/000",
        "scene_a/001",
        "scene_b/000",
        "scene_b/001",
    ]
    previews = json.loads((run / "previews" / "previews.json").read_text())["pictures"]
    for entry in previews:  # flattened names, files written
        assert (
            "/" not in entry["files"]["prob"]
            and (run / "previews" / entry["files"]["prob"]).is_file()
        )

    scores = tmp_path / "val.json"
    argv = ["evaluate", str(run / "model.pt"), str(data / "val"), "--split-name", "val"]
    assert main([*argv, "--threshold", "0.5", "--out", str(scores), "-q"]) == 0
    table = json.loads(scores.read_text())
    assert sorted(p["stem"] for p in table["pictures"]) == sorted(p.stem for p in record.pictures)

    out = tmp_path / "predicted"
    assert main(["predict", str(run / "model.pt"), str(data / "val"), "--out", str(out), "-q"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["scene_a/000.png", "scene_a/001.png", "scene_b/000.png", "scene_b/001.png"]
    capsys.readouterr()
