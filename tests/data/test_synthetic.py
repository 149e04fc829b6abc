from __future__ import annotations

from pathlib import Path

import numpy as np

from segtune.data.io import read_mask
from segtune.data.synthetic import make_picture, write_demo_data


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    write_demo_data(tmp_path / "a", pictures=6, size=48, seed=5)
    write_demo_data(tmp_path / "b", pictures=6, size=48, seed=5)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 12
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_positives_are_rare_and_some_pictures_have_none(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    fractions = [make_picture(rng, 128)[1].mean() for _ in range(30)]
    assert 0.003 < float(np.mean(fractions)) < 0.03
    assert max(fractions) < 0.06
    write_demo_data(tmp_path, pictures=40, size=64, seed=0, empty_fraction=0.2)
    masks = [read_mask(p) for p in (tmp_path / "train" / "masks").glob("*.png")]
    assert any(not m.any() for m in masks) and any(m.any() for m in masks)
