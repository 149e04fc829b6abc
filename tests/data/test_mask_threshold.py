"""Masks with grey edges (``data.mask_threshold``): a layout as Kvasir-SEG ships it,
JPEG pictures and JPEG masks under the same names, from check-data to evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segtune.cli.main import main
from segtune.core.config import RunConfig, build_run_config
from segtune.data.io import MaskReading, read_mask
from segtune.engine.train import train_run
from segtune.study.identity import run_identity
from tests.conftest import tiny_tree


def _jpeg_layout(demo_data: Path, out: Path) -> dict[str, np.ndarray]:
    """demo_data rewritten as JPEG images and JPEG masks; the true masks by stem."""
    truth = {}
    for split in ("train", "val"):
        for kind in ("images", "masks"):
            (out / split / kind).mkdir(parents=True)
        for image in (demo_data / split / "images").iterdir():
            Image.open(image).convert("RGB").save(out / split / "images" / f"{image.stem}.jpg")
            mask = read_mask(demo_data / split / "masks" / f"{image.stem}.png")
            truth[image.stem] = mask
            white = np.repeat(mask[:, :, None], 3, axis=2).astype(np.uint8) * 255
            Image.fromarray(white).save(out / split / "masks" / f"{image.stem}.jpg", quality=75)
    return truth


def test_jpeg_masks_are_refused_then_read_with_a_threshold(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "kvasir-like"
    truth = _jpeg_layout(demo_data, data)
    assert main(["check-data", str(data / "train")]) == 1
    err = capsys.readouterr().err
    assert "masks/" in err and ".jpg: mask has" in err and "data.mask_threshold" in err
    assert main(["check-data", str(data / "train"), "--mask-threshold", "128"]) == 0
    out = capsys.readouterr().out
    stems = [p.stem for p in (data / "train" / "images").iterdir()]
    share = np.mean([truth[s].mean() for s in stems])
    assert "positive pixels (mask value at least 128): mean " in out
    assert f"mean {100 * share:.1f}" in out or f"mean {100 * share:.2f}" in out, out
    # Binarised at 128 the JPEG masks are the masks they were made from, within an edge.
    for stem in stems:
        read = read_mask(data / "train" / "masks" / f"{stem}.jpg", MaskReading(threshold=128))
        assert int((read != truth[stem]).sum()) <= 0.02 * truth[stem].size

    with pytest.raises(SystemExit, match="2"):
        main(["check-data", str(data / "train"), "--mask-threshold", "0"])
    assert "expected a number above 0" in capsys.readouterr().err

    spec = tmp_path / "s.yaml"
    argv = ["init", str(data / "train"), str(data / "val"), "--out", str(spec), "--no-probe"]
    assert main(argv) == 2 and not spec.exists()
    assert main([*argv, "--mask-threshold", "128"]) == 0
    assert "mask_threshold: 128" in spec.read_text()
    assert main(["plan", str(spec), "--no-probe"]) == 0


def _config(data: Path, threshold: float | None) -> RunConfig:
    tree = tiny_tree(data)
    tree["data"]["mask_threshold"] = threshold
    return build_run_config(tree)


def test_a_run_reads_its_masks_with_the_threshold(demo_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "kvasir-like"
    _jpeg_layout(demo_data, data)
    config = _config(data, 128)
    record = train_run(config, tmp_path / "run", progress=False)
    for p in record.pictures:
        path = data / "val" / "masks" / f"{p.stem}.jpg"
        assert p.positives == int(read_mask(path, MaskReading(threshold=128)).sum())
    # Another threshold is another reading of the same files (not a stale cache entry).
    high = train_run(_config(data, 250), tmp_path / "run-high", progress=False)
    assert sum(p.positives for p in high.pictures) < sum(p.positives for p in record.pictures)
    # evaluate reads the scored masks as the run read its own.
    out = tmp_path / "e.json"
    argv = ["evaluate", str(tmp_path / "run"), str(data / "val"), "--split-name", "val"]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["val/tp"] == record.kept["val/tp"]
    # Off, the setting leaves a run's identity as before it existed; on, it is part of it.
    assert "data.mask_threshold" not in run_identity(_config(data, None), "x")
    assert run_identity(config, "x")["data.mask_threshold"] == 128
