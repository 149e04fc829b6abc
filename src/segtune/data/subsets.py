"""The pictures a run trains and evaluates on: its train and validation subsets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from segtune.core.config import DataConfig
from segtune.core.errors import ConfigError, SegtuneError
from segtune.data.layout import Picture, load_pictures
from segtune.data.pairs import check_sizes, sample_subset

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
    train = load_pictures(data.train, data.missing_masks)
    val = load_pictures(data.val, data.missing_masks)
    subsets = Subsets(
        sample_subset(train, data.train_subset, subset_seed(data.seed, "train")),
        sample_subset(val, data.val_subset, subset_seed(data.seed, "val")),
    )
    check_sizes([*subsets.train, *subsets.val], data.max_pixels)
    return subsets


@dataclass(frozen=True)
class PictureStat:
    """What identifies a picture file's content cheaply: its size and mtime."""

    stem: str
    image_bytes: int
    image_mtime: int
    mask_bytes: int
    mask_mtime: int
    roi_bytes: int | None = None
    roi_mtime: int | None = None

    @classmethod
    def of(cls, picture: Picture) -> PictureStat:
        image = picture.image.stat()
        mask = picture.mask.stat() if picture.mask is not None else None  # none: 0, 0
        roi = picture.roi.stat() if picture.roi is not None else None
        return cls(
            picture.stem,
            image.st_size,
            int(image.st_mtime),
            mask.st_size if mask else 0,
            int(mask.st_mtime) if mask else 0,
            roi.st_size if roi else None,
            int(roi.st_mtime) if roi else None,
        )

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stem": self.stem,
            "image_bytes": self.image_bytes,
            "image_mtime": self.image_mtime,
            "mask_bytes": self.mask_bytes,
            "mask_mtime": self.mask_mtime,
        }
        if self.roi_bytes is not None:  # absent without a ROI: fingerprints stay as they were
            out |= {"roi_bytes": self.roi_bytes, "roi_mtime": self.roi_mtime}
        return out


def picture_stats(subsets: Subsets) -> dict[str, list[dict[str, Any]]]:
    """Size and modification time of every image and mask of the subsets."""
    try:
        return {
            "train": [PictureStat.of(p).as_json() for p in subsets.train],
            "val": [PictureStat.of(p).as_json() for p in subsets.val],
        }
    except OSError as exc:
        raise SegtuneError(
            f"{exc.filename}: a picture of the study cannot be read ({exc.strerror})"
        ) from exc


def data_fingerprint(stats: dict[str, list[dict[str, Any]]]) -> str:
    """Fingerprint of the study's pictures (``{"train": [...], "val": [...]}`` of stats)."""
    text = json.dumps(stats, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]
