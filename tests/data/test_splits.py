"""Seeded splits stratified by positive share; published splits by name or glob."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segtune.core.errors import DataError
from segtune.data.layout import load_pictures
from segtune.data.splits import how_many, named, positive_shares, split_pictures


def write_dataset(root: Path, n: int = 40, suffix: str = "_training") -> Path:
    """``n`` 10×10 pictures; picture i has i positive pixels (share i %)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        stem = f"{i + 1:02d}{suffix}"
        Image.fromarray(np.full((10, 10), 90, np.uint8)).save(root / "images" / f"{stem}.tif")
        mask = np.zeros(100, np.uint8)
        mask[:i] = 255
        Image.fromarray(mask.reshape(10, 10)).save(root / "masks" / f"{stem}.png")
    return root


def test_a_validation_split_holds_one_picture_from_each_stratum(tmp_path: Path) -> None:
    shares = positive_shares(load_pictures(write_dataset(tmp_path / "d")))
    assert sorted(round(s.share * 100) for s in shares) == list(range(40))
    out = split_pictures(shares, {"val": 10}, {}, seed=3)
    val = sorted(round(s.share * 100) for s in out["val"])
    assert len(val) == 10 and len(out["train"]) == 30
    assert [v // 4 for v in val] == list(range(10))  # one per tenth of the distribution
    # The same seed gives the same split whatever the order pictures were found in.
    shuffled = list(shares)
    random.Random(0).shuffle(shuffled)
    again = split_pictures(shuffled, {"val": 10}, {}, seed=3)
    assert [s.picture.stem for s in again["val"]] == [s.picture.stem for s in out["val"]]
    other = split_pictures(shares, {"val": 10}, {}, seed=4)
    assert {s.picture.stem for s in other["val"]} != {s.picture.stem for s in out["val"]}


def test_val_and_test_are_disjoint_and_cover_every_picture(tmp_path: Path) -> None:
    shares = positive_shares(load_pictures(write_dataset(tmp_path / "d")))
    out = split_pictures(shares, {"val": 8, "test": 8}, {}, seed=0)
    stems = [s.picture.stem for split in out.values() for s in split]
    assert len(stems) == len(set(stems)) == 40
    assert [len(out[k]) for k in ("train", "val", "test")] == [24, 8, 8]
    test = sorted(round(s.share * 100) for s in out["test"])
    assert test[0] < 8 and test[-1] > 31  # spread over the range too


def test_a_published_split_by_glob_or_by_list(tmp_path: Path) -> None:
    """DRIVE's validation pictures are 37–40 of its training set."""
    pictures = load_pictures(write_dataset(tmp_path / "d"))
    wanted = {"37_training", "38_training", "39_training", "40_training"}
    assert named(pictures, ["3[7-9]_*", "40_*"], "--val-from") == wanted
    listing = tmp_path / "val.txt"
    listing.write_text(
        "# DRIVE validation\n37_training.tif\n38_training\n39_training\n40_training\n"
    )
    assert named(pictures, [str(listing)], "--val-from") == wanted
    out = split_pictures(positive_shares(pictures), {}, {"val": wanted}, seed=0)
    assert {s.picture.stem for s in out["val"]} == wanted and len(out["train"]) == 36
    listing.write_text("41_training\n")
    with pytest.raises(
        DataError, match=r"val.txt: 1 name\(s\) match no picture, e.g. '41_training'"
    ):
        named(pictures, [str(listing)], "--val-from")
    with pytest.raises(DataError, match="no such file, and no picture matches it"):
        named(pictures, ["9*"], "--val-from")


def test_counts_and_fractions(tmp_path: Path) -> None:
    assert how_many(0.1, 300, "--val") == 30 and how_many(30, 300, "--val") == 30
    assert how_many(0.01, 20, "--val") == 1  # never an empty split
    with pytest.raises(DataError, match=r"--val 2\.5: a count must be a whole number"):
        how_many(2.5, 300, "--val")
    with pytest.raises(DataError, match="--val 0"):
        how_many(0, 300, "--val")
    shares = positive_shares(load_pictures(write_dataset(tmp_path / "d", n=4)))
    with pytest.raises(DataError, match="no picture left for training"):
        split_pictures(shares, {"val": 4}, {}, seed=0)
