"""The pictures a run trains and evaluates on: its train and validation subsets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from segtune.config import DataConfig
from segtune.data.pairs import Picture, check_sizes, load_pictures, sample_subset
from segtune.errors import ConfigError

SubsetName = Literal["train", "val", "train_eval"]
_SEED_OFFSETS: dict[str, int] = {"train": 0, "val": 1, "train_eval": 2}


def subset_seed(seed: int, subset: SubsetName) -> int:
    """The sampling seed of a subset: ``data.seed`` for training pictures, ``+ 1`` for
    validation pictures, ``+ 2`` for the training pictures evaluated each epoch."""
    return seed + _SEED_OFFSETS[subset]


@dataclass(frozen=True)
class Subsets:
    """The pictures one run trains and evaluates on (sorted by stem)."""

    train: list[Picture]
    val: list[Picture]


def resolve_subsets(data: DataConfig) -> Subsets:
    """Find the data folders/manifests and sample the subsets (seeds: :func:`subset_seed`)."""
    if data.train is None or data.val is None:
        raise ConfigError("data.train and data.val: both are required to train")
    subsets = Subsets(
        sample_subset(
            load_pictures(data.train), data.train_subset, subset_seed(data.seed, "train")
        ),
        sample_subset(load_pictures(data.val), data.val_subset, subset_seed(data.seed, "val")),
    )
    check_sizes([*subsets.train, *subsets.val], data.max_pixels)
    return subsets
