"""The pictures a run trains and evaluates on: its train and validation subsets."""

from __future__ import annotations

from dataclasses import dataclass

from segtune.config import DataConfig
from segtune.data.pairs import Picture, load_pictures, sample_subset
from segtune.errors import ConfigError


@dataclass(frozen=True)
class Subsets:
    """The pictures one run trains and evaluates on (sorted by stem)."""

    train: list[Picture]
    val: list[Picture]


def resolve_subsets(data: DataConfig) -> Subsets:
    """Find the data folders/manifests and sample the subsets (val with ``seed + 1``)."""
    if data.train is None or data.val is None:
        raise ConfigError("data.train and data.val: both are required to train")
    return Subsets(
        sample_subset(load_pictures(data.train), data.train_subset, data.seed),
        sample_subset(load_pictures(data.val), data.val_subset, data.seed + 1),
    )
