"""Masks drawn as shapes (LabelMe's JSON): rasterised as LabelMe draws them, paired beside
their images or in masks/, refused with one line when they mark no area or are not
LabelMe's."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segtune.cli.main import main
from segtune.core.config import build_run_config
from segtune.core.errors import DataError
from segtune.data.io import image_size, read_mask
from segtune.data.layout import find_pairs
from segtune.engine.train import train_run
from tests.conftest import DEEPCRACK, tiny_tree


def _labelme(path: Path, shapes: list[dict[str, Any]], size: tuple[int, int] = (20, 30)) -> Path:
    height, width = size
    path.write_text(
        json.dumps(
            {
                "version": "5.4.1",
                "shapes": shapes,
                "imagePath": f"{path.stem}.jpg",
                "imageData": None,
                "imageHeight": height,
                "imageWidth": width,
            }
        )
    )
    return path


def test_closed_shapes_are_rasterised_with_their_outline(tmp_path: Path) -> None:
    bits = np.zeros((3, 4), np.uint8)
    bits[1, 1:3] = 255
    png = io.BytesIO()
    Image.fromarray(bits).save(png, format="PNG")
    shapes = [
        {"label": "a", "points": [[2, 2], [5, 2], [5, 4], [2, 4]], "shape_type": "polygon"},
        {"label": "b", "points": [[10, 1], [8, 3]], "shape_type": "rectangle"},
        {"label": "c", "points": [[20, 10], [23, 10]], "shape_type": "circle"},
        {"label": "d", "points": [[0, 15], [3, 17]], "shape_type": "mask", "mask": ""},
    ]
    shapes[3]["mask"] = base64.b64encode(png.getvalue()).decode()
    path = _labelme(tmp_path / "x.json", shapes)
    mask = read_mask(path)
    assert image_size(path) == (20, 30) and mask.shape == (20, 30)
    expected = np.zeros((20, 30), bool)
    expected[2:5, 2:6] = True  # the polygon's rows 2–4, columns 2–5, outline included
    expected[1:4, 8:11] = True  # the rectangle, corners given in any order
    expected[16, 1:3] = True  # the bitmap's two pixels, its box at (0, 15)
    circle = mask[5:16, 16:25].copy()
    mask[5:16, 16:25] = False
    assert np.array_equal(mask, expected)
    assert abs(int(circle.sum()) - np.pi * 3**2) < 12 and circle[5, 4]  # r = 3 about (20, 10)


def test_open_shapes_and_other_json_are_refused_with_one_line(tmp_path: Path) -> None:
    line = {"label": "crack", "points": [[1, 1], [9, 9]], "shape_type": "linestrip"}
    with pytest.raises(DataError, match=r"x.json: shape 1 \(crack, linestrip\): an open shape"):
        read_mask(_labelme(tmp_path / "x.json", [line]))
    (tmp_path / "coco.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataError, match=r"coco.json: not a LabelMe file \(no 'shapes' list\)"):
        read_mask(tmp_path / "coco.json")
    (tmp_path / "odd.json").write_text('{"shapes": ["crack"], "imageHeight": 4, "imageWidth": 4}')
    with pytest.raises(DataError, match=r"odd.json: every entry of 'shapes' must be an object"):
        read_mask(tmp_path / "odd.json")
    (tmp_path / "cut.json").write_text('{"shapes": [')
    with pytest.raises(DataError, match=r"cut.json: unreadable JSON"):
        read_mask(tmp_path / "cut.json")
    square = {"label": "a", "points": [[1, 1], [4, 1], [4, 4]]}  # shape_type absent: polygon
    no_size = _labelme(tmp_path / "s.json", [square])
    no_size.write_text(no_size.read_text().replace('"imageHeight": 20', '"imageHeight": 0'))
    with pytest.raises(DataError, match="imageHeight missing or not a positive integer"):
        read_mask(no_size)


def _traced(out: Path, stems: list[str], beside: bool) -> dict[str, np.ndarray]:
    """DeepCrack pictures with their masks traced into LabelMe polygons (outer contours,
    as an annotator draws them: holes filled), beside the images or in masks/."""
    import cv2

    truths = {}
    for stem in stems:
        mask = read_mask(DEEPCRACK / "train" / "masks" / f"{stem}.png")
        contours, hierarchy = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE
        )
        shapes = [
            {"label": "crack", "points": c[:, 0, :].tolist(), "shape_type": "polygon"}
            for c, h in zip(contours, hierarchy[0], strict=True)
            if h[3] < 0 and len(c) >= 3
        ]
        images, masks = (out, out) if beside else (out / "images", out / "masks")
        images.mkdir(parents=True, exist_ok=True)
        masks.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEEPCRACK / "train" / "images" / f"{stem}.jpg", images / f"{stem}.jpg")
        _labelme(masks / f"{stem}.json", shapes, mask.shape)
        truths[stem] = mask
    return truths


def test_labelme_folders_pair_and_read_like_the_masks_they_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stems = sorted(p.stem for p in (DEEPCRACK / "train" / "images").iterdir())[:4]
    truths = _traced(tmp_path / "beside", stems, beside=True)
    _traced(tmp_path / "split", stems, beside=False)
    for layout in ("beside", "split"):
        pictures, problems = find_pairs(tmp_path / layout)
        assert problems == [] and [p.stem for p in pictures] == stems
        for pic in pictures:
            drawn, truth = read_mask(pic.mask), truths[pic.stem]
            assert drawn.shape == truth.shape
            assert (drawn & truth).sum() / (drawn | truth).sum() > 0.85  # holes filled
            assert (truth & ~drawn).sum() <= 0.01 * truth.sum()  # every crack pixel drawn
    assert main(["check-data", str(tmp_path / "beside")]) == 0
    out = capsys.readouterr().out
    assert "LabelMe shape files beside their images (4 paired)" in out
    assert "shapes (LabelMe): crack " in out and "every closed shape is positive" in out


def test_a_run_trains_on_shape_masks(tmp_path: Path) -> None:
    stems = sorted(p.stem for p in (DEEPCRACK / "train" / "images").iterdir())[:6]
    _traced(tmp_path / "train", stems[:4], beside=True)
    _traced(tmp_path / "val", stems[4:], beside=False)
    tree = tiny_tree(tmp_path)
    tree["pages"] = {"page_size": 64, "resize": {"scale": 0.25}}
    record = train_run(build_run_config(tree), tmp_path / "run", progress=False)
    assert record.status == "completed"
    for picture in record.pictures:
        assert picture.positives == int(
            read_mask(tmp_path / "val" / "masks" / f"{picture.stem}.json").sum()
        )
