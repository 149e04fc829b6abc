"""Training pages: a seeded per-epoch plan of page origins and the Dataset that cuts them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset, Sampler

from segtune.core.config import PagesConfig, RunConfig
from segtune.data.cache import PictureCache
from segtune.data.layout import Picture
from segtune.data.tiles import extract_page, page_origins


@dataclass
class LoadedPicture:
    """A picture decoded through the cache (memory-mapped arrays, resized if asked)."""

    picture: Picture
    image: NDArray[np.uint8]  # (H, W, 3), after resize
    mask: NDArray[np.bool_]  # (H, W), after resize; positives inside ``valid`` only
    valid: NDArray[np.bool_] | None = None  # pixels that count (ROI, not ignored); None: all


def load_split(
    pictures: Sequence[Picture], cache: PictureCache, pages: PagesConfig
) -> list[LoadedPicture]:
    """Decode (once, through the cache) every picture of a split."""
    scale = pages.resize.scale if pages.resize else None
    longest = pages.resize.longest_side if pages.resize else None
    loaded = []
    for p in pictures:
        mask = cache.mask_of(p, scale, longest)
        valid = cache.valid(p, scale, longest)
        if valid is not None:
            mask = mask & valid
        loaded.append(LoadedPicture(p, cache.image(p.image, scale, longest), mask, valid))
    return loaded


def epoch_plan(
    pictures: Sequence[LoadedPicture],
    page_size: int,
    overlap: int,
    positive_fraction: float,
    batch_size: int,
    rng: np.random.Generator,
) -> list[tuple[int, int, int]]:
    """The ``(picture, y, x)`` origins of one epoch, in batch order.

    Every tiled page of the training pictures appears once, shuffled. With
    ``positive_fraction`` > 0, that share of each batch is replaced by pages that contain
    a positive pixel at a random position inside the page (so positives are not
    always centred).
    """
    grid = [
        (i, y, x)
        for i, lp in enumerate(pictures)
        for y, x in page_origins(lp.image.shape[0], lp.image.shape[1], page_size, overlap)
    ]
    order = [grid[j] for j in rng.permutation(len(grid))]
    n_pos = round(positive_fraction * batch_size)
    with_pos = [i for i, lp in enumerate(pictures) if lp.mask.any()]
    if n_pos == 0 or not with_pos:
        return order
    plan: list[tuple[int, int, int]] = []
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        keep = max(0, len(batch) - n_pos)
        plan.extend(batch[:keep])
        plan.extend(
            _positive_page(pictures[i], i, page_size, rng)
            for i in rng.choice(with_pos, len(batch) - keep)
        )
    return plan


def _positive_page(
    lp: LoadedPicture, index: int, page_size: int, rng: np.random.Generator
) -> tuple[int, int, int]:
    ys, xs = np.nonzero(lp.mask)
    k = int(rng.integers(len(ys)))
    h, w = lp.mask.shape
    # Put the chosen positive pixel at a random place in the page, then keep the page
    # inside the picture where the picture is large enough.
    y = int(ys[k]) - int(rng.integers(page_size))
    x = int(xs[k]) - int(rng.integers(page_size))
    y = min(max(y, 0), max(h - page_size, 0))
    x = min(max(x, 0), max(w - page_size, 0))
    return index, y, x


def build_augment(names: Sequence[str]) -> A.Compose:
    """albumentations pipeline from names (hflip, vflip, rot90, brightness_contrast, zoom).

    ``zoom`` scales half the pages by a factor drawn from ×0.75–1 or ×1–1.5 (equally
    likely), so the network sees structures thinner and wider than the data's; pixels
    brought in from outside the page are background and outside the region that counts
    (the validity mask is filled with 0), and masks are resampled nearest-neighbour.
    """
    table = {
        "hflip": lambda: A.HorizontalFlip(p=0.5),
        "vflip": lambda: A.VerticalFlip(p=0.5),
        "rot90": lambda: A.RandomRotate90(p=0.5),
        "brightness_contrast": lambda: A.RandomBrightnessContrast(p=0.5),
        "zoom": lambda: A.Affine(
            scale=(0.75, 1.5), balanced_scale=True, fill=0, fill_mask=0, p=0.5
        ),
    }
    return A.Compose([table[n]() for n in names])


PageKey = tuple[int, int, int, int]  # (picture, y, x, augmentation seed)


class EpochSampler(Sampler[PageKey]):
    """Yields the page keys of one epoch (see :func:`epoch_plan`); ``set_epoch`` moves on.

    It runs in the main process, so one DataLoader (with persistent workers) serves every
    epoch of a run: workers start once, and each epoch still gets its own seeded plan.
    """

    def __init__(
        self,
        pictures: Sequence[LoadedPicture],
        page_size: int,
        overlap: int,
        positive_fraction: float,
        batch_size: int,
        seed: int,
        limit: int | None = None,
    ) -> None:
        self.pictures = pictures
        self.limit = limit  # optim.pages_per_epoch: the first pages of each epoch's plan
        self.page_size, self.overlap = page_size, overlap
        self.positive_fraction, self.batch_size = positive_fraction, batch_size
        self.seed = seed
        self.epoch = 1
        self._length = sum(
            len(page_origins(lp.image.shape[0], lp.image.shape[1], page_size, overlap))
            for lp in pictures
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._length if self.limit is None else min(self.limit, self._length)

    def __iter__(self) -> Iterator[PageKey]:
        rng = np.random.default_rng([self.seed, self.epoch])
        plan = epoch_plan(
            self.pictures,
            self.page_size,
            self.overlap,
            self.positive_fraction,
            self.batch_size,
            rng,
        )[: len(self)]  # with a limit: a different seeded share of the pages every epoch
        aug_seed = (self.seed * 1_000 + self.epoch) * 1_000_003
        return iter([(i, y, x, aug_seed + n) for n, (i, y, x) in enumerate(plan)])


class PageDataset(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Cuts a page by its key, augments it (seeded by the key) and returns tensors.

    Items are ``(image uint8 (3, P, P), target bool (P, P), valid bool (P, P))``.
    """

    def __init__(
        self, pictures: Sequence[LoadedPicture], page_size: int, augment: Sequence[str]
    ) -> None:
        self.pictures = pictures
        self.page_size = page_size
        self.augment = build_augment(augment) if augment else None

    def __getitem__(self, key: PageKey) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index, y, x, seed = key
        lp = self.pictures[index]
        image, valid = extract_page(lp.image, (y, x), self.page_size)
        mask, _ = extract_page(lp.mask, (y, x), self.page_size)
        if lp.valid is not None:  # outside the region of interest, or marked ignore
            valid = valid & extract_page(lp.valid, (y, x), self.page_size)[0].astype(bool)
        if self.augment is not None:
            self.augment.set_random_seed(seed)
            out = self.augment(image=image, masks=[mask.astype(np.uint8), valid.astype(np.uint8)])
            image = out["image"]
            mask, valid = (np.asarray(m) > 0 for m in out["masks"])
        return (
            torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            torch.from_numpy(np.ascontiguousarray(mask)),
            torch.from_numpy(np.ascontiguousarray(valid)),
        )


def page_loader(
    pictures: Sequence[LoadedPicture], config: RunConfig, pin_memory: bool
) -> tuple[DataLoader[Any], EpochSampler]:
    """The run's one DataLoader over training pages, and the sampler that plans epochs."""
    sampler = EpochSampler(
        pictures,
        config.pages.page_size,
        config.pages.patch_overlap,
        config.sampling.positive_fraction,
        config.optim.batch_size,
        config.runtime.seed,
        config.optim.pages_per_epoch,
    )
    workers = config.runtime.num_workers
    loader: DataLoader[Any] = DataLoader(
        PageDataset(pictures, config.pages.page_size, config.sampling.augment),
        batch_size=config.optim.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    )
    return loader, sampler
