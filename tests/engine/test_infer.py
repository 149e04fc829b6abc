from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch

from segtune.cli.main import main
from segtune.cli.study import TTA_CHOICES
from segtune.core.config import EvalConfig, PagesConfig, build_run_config
from segtune.core.errors import ConfigError
from segtune.core.records import RunFolder, kept_epoch_words, tta_words
from segtune.data.tiles import resize_image, resize_probabilities
from segtune.engine.infer import VIEWS, predict_at_scales, predict_probabilities
from segtune.engine.model import build_model
from segtune.engine.train import train_run
from segtune.inference.predict import Predictor
from tests.conftest import learning_config, tiny_config

DEVICE = torch.device("cpu")


def _model(demo_data: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(tiny_config(demo_data).model)


def test_dihedral_averages_the_eight_symmetries_of_the_page(demo_data: Path) -> None:
    model = _model(demo_data)
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    pages = PagesConfig(page_size=32)

    def p(img: np.ndarray) -> np.ndarray:
        return predict_probabilities(model, np.ascontiguousarray(img), pages, DEVICE)

    views = []
    for t in (image, image.transpose(1, 0, 2)):
        for flipped, back in (
            (t, lambda q: q),
            (t[:, ::-1], lambda q: q[:, ::-1]),
            (t[::-1], lambda q: q[::-1]),
            (t[::-1, ::-1], lambda q: q[::-1, ::-1]),
        ):
            views.append(back(p(flipped)))
    views[4:] = [v.T for v in views[4:]]  # the transposed page's maps, transposed back
    manual = np.mean(views, axis=0)
    dihedral = predict_probabilities(model, image, pages, DEVICE, tta="dihedral")
    flips = predict_probabilities(model, image, pages, DEVICE, tta="flips")
    assert np.allclose(dihedral, manual, atol=1e-6)
    assert np.allclose(flips, np.mean(views[:4], axis=0), atol=1e-6)
    assert not np.allclose(dihedral, flips, atol=1e-4)


def test_scales_average_the_maps_resized_back(demo_data: Path) -> None:
    model = _model(demo_data)
    image = np.random.default_rng(1).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    pages = PagesConfig(page_size=32, patch_overlap=8)

    def at(factor: float) -> np.ndarray:
        shape = (round(48 * factor), round(40 * factor))
        return resize_image(image, shape)

    both = predict_at_scales(model, at, (48, 40), pages, DEVICE, scales=(1.0, 0.5), tta="flips")
    one = predict_probabilities(model, at(1.0), pages, DEVICE, tta="flips")
    half = resize_probabilities(
        predict_probabilities(model, at(0.5), pages, DEVICE, tta="flips"), (48, 40)
    )
    assert both.shape == (48, 40) and both.dtype == np.float32
    assert np.allclose(both, (one + half) / 2, atol=1e-6)
    alone = predict_at_scales(model, at, (48, 40), pages, DEVICE, tta="flips")
    assert np.array_equal(alone, one)  # one scale: exactly the plain map


def test_the_resize_times_a_test_time_scale() -> None:
    assert PagesConfig().resize_at(1.0) == (None, None)
    assert PagesConfig().resize_at(0.75) == (0.75, None)
    assert PagesConfig(resize={"scale": 0.5}).resize_at(1.25) == (0.625, None)
    assert PagesConfig(resize={"longest_side": 512}).resize_at(0.75) == (None, 384)


def test_tta_names_agree_everywhere() -> None:
    literal = get_args(EvalConfig.model_fields["tta"].annotation)
    assert tuple(VIEWS) == TTA_CHOICES == literal


@pytest.mark.parametrize(
    ("scales", "why"),
    [([1.0, 1.0], "each scale once"), ([0.1], "greater than or equal to 0.25"), ([], "at least")],
)
def test_bad_test_time_scales_are_refused(scales: list[float], why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        build_run_config({"eval": {"tta_scales": scales}}, "spec.yaml")
    assert "eval.tta_scales" in str(info.value) and "\n" not in str(info.value)


def test_tta_in_words() -> None:
    assert tta_words("none", [1.0]) == "none"
    assert tta_words("flips", [1.0]) == "flips"
    assert tta_words("dihedral", [0.75, 1.0, 1.25]) == (
        "flips and transposes at scales ×0.75, ×1, ×1.25"
    )
    assert tta_words("none", [0.5, 1.0]) == "scales ×0.5, ×1"


def test_validation_and_evaluate_agree_with_scales_and_transposes(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a run records on validation is what ``segtune evaluate`` measures on the same
    pictures with the same test-time views and scales, and the threshold matches."""
    config = learning_config(
        demo_data,
        pages={"page_size": 32, "patch_overlap": 8, "resize": {"scale": 0.75}},
        eval={"preview_pictures": 0, "tta": "dihedral", "tta_scales": [1.0, 1.25]},
    )
    record = train_run(config, tmp_path / "run", progress=False)
    assert (record.tta, record.tta_scales) == ("dihedral", [1.0, 1.25])
    assert kept_epoch_words(record).endswith(
        "; validated with test-time flips and transposes at scales ×1, ×1.25"
    )
    out = tmp_path / "val.json"
    argv = ["evaluate", str(tmp_path / "run"), str(demo_data / "val"), "--split-name", "val"]
    assert main([*argv, "--out", str(out)]) == 0  # threshold 0.5, as validation
    result = json.loads(out.read_text())
    kept = RunFolder(tmp_path / "run").read_record().kept
    for key in ("val/best_f1", "val/ap", "val/tp", "val/fp"):
        assert result["metrics"][key] == pytest.approx(kept[key], abs=1e-12), key
    assert result["tta_scales"] == [1.0, 1.25]
    assert "flips and transposes at scales ×1, ×1.25" in capsys.readouterr().out
    assert main([*argv, "--threshold", "best", "--out", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err  # matched: no warning
    # Other scales give other values, and --threshold best then says it is not matched.
    assert main([*argv, "--threshold", "best", "--tta-scales", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["val/ap"] != kept["val/ap"]
    assert "not matched" in capsys.readouterr().err


def test_bad_tta_scales_on_the_command_line_are_one_line(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_run(
        tiny_config(demo_data, eval={"preview_pictures": 0}), tmp_path / "run", progress=False
    )
    for bad in ("0.5,x", "1,1", "9"):
        code = main(
            ["evaluate", str(tmp_path / "run"), str(demo_data / "val"), "--tta-scales", bad]
        )
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: --tta-scales:") and "\n" not in err, err
    predictor = Predictor.load(tmp_path / "run", "cpu")
    predictor.augment("dihedral", [0.5, 1.0])
    assert (predictor.tta, predictor.tta_scales) == ("dihedral", [0.5, 1.0])
    assert predictor.augmentation_changed
