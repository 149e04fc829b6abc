from __future__ import annotations

from pathlib import Path

import numpy as np

from segtune.core.config import build_run_config
from segtune.data.layout import Picture
from segtune.data.pages import EpochSampler, LoadedPicture, PageDataset, page_loader


def _pictures(n: int = 4, size: int = 64) -> list[LoadedPicture]:
    out = []
    for i in range(n):
        image = np.full((size, size, 3), 200, np.uint8)
        mask = np.zeros((size, size), bool)
        if i % 2 == 0:  # pictures 0, 2 have a positive square, drawn dark in the image
            mask[10:14, 40:44] = True
            image[mask] = 10
        out.append(LoadedPicture(Picture(f"p{i}", Path("i"), Path("m")), image, mask))
    return out


def test_sampler_is_seeded_per_epoch_and_covers_every_page() -> None:
    pics = _pictures()
    sampler = EpochSampler(
        pics, page_size=32, overlap=0, positive_fraction=0.0, batch_size=4, seed=1
    )
    assert len(sampler) == 16
    sampler.set_epoch(1)
    first = list(sampler)
    assert list(sampler) == first
    assert sorted((i, y, x) for i, y, x, _ in first) == sorted(
        (i, y, x) for i in range(4) for y in (0, 32) for x in (0, 32)
    )
    sampler.set_epoch(2)
    assert [k[:3] for k in sampler] != [k[:3] for k in first]


def test_positive_fraction_puts_positive_pages_in_every_batch() -> None:
    pics = _pictures()
    sampler = EpochSampler(
        pics, page_size=32, overlap=0, positive_fraction=0.5, batch_size=4, seed=0
    )
    keys = list(sampler)
    for start in range(0, len(keys), 4):
        batch = keys[start : start + 4]
        with_pos = [k for k in batch if pics[k[0]].mask[k[1] : k[1] + 32, k[2] : k[2] + 32].any()]
        assert len(with_pos) >= 2


def test_augmentation_keeps_image_and_mask_aligned() -> None:
    pics = _pictures()
    dataset = PageDataset(pics, 32, ["hflip", "vflip", "rot90"])
    for seed in range(12):
        image, mask, valid = dataset[(0, 0, 32, seed)]
        assert image.shape == (3, 32, 32) and mask.shape == valid.shape == (32, 32)
        dark = image[0].numpy() < 50
        assert np.array_equal(dark, mask.numpy()) and int(mask.sum()) == 16


def test_zoom_widens_and_thins_structures_and_excludes_pixels_from_outside() -> None:
    pics = _pictures()
    dataset = PageDataset(pics, 32, ["zoom"])
    areas, excluded = set(), 0
    for seed in range(40):
        image, mask, valid = dataset[(0, 0, 32, seed)]
        touched = image[0].numpy() < 195  # the dark square, blended linearly at its edge
        assert not (mask.numpy() & ~touched).any()  # the nearest-neighbour mask follows it
        areas.add(int(mask.sum()))
        brought_in = ~valid.numpy()
        excluded += int(brought_in.sum())
        assert not mask.numpy()[brought_in].any()  # background there, and never counted
        assert (image[:, brought_in] < 200).all()  # filled with black (blended at the edge)
    assert 16 in areas and min(areas) < 16 < max(areas)  # unchanged, thinner, wider
    assert excluded > 0  # zooming out brings in pixels from outside the page


def test_one_loader_serves_every_epoch() -> None:
    config = build_run_config(
        {"pages": {"page_size": 32}, "optim": {"batch_size": 4}, "sampling": {"augment": []}}
    )
    loader, sampler = page_loader(_pictures(), config, pin_memory=False)
    sizes = []
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        sizes.append(sum(batch[0].shape[0] for batch in loader))
    assert sizes == [16, 16]


def test_pages_per_epoch_takes_a_different_seeded_share_every_epoch() -> None:
    sampler = EpochSampler(
        _pictures(), page_size=32, overlap=0, positive_fraction=0.0, batch_size=4, seed=1, limit=6
    )
    assert len(sampler) == 6
    sampler.set_epoch(1)
    first = [k[:3] for k in sampler]
    assert len(first) == len(set(first)) == 6 and first == [k[:3] for k in sampler]
    sampler.set_epoch(2)
    second = [k[:3] for k in sampler]
    assert len(second) == 6 and set(second) != set(first)
    config = build_run_config(
        {
            "data": {"train": "t", "val": "v"},
            "pages": {"page_size": 32, "patch_overlap": 0},
            "optim": {"pages_per_epoch": 8, "batch_size": 4},
        }
    )
    loader, _ = page_loader(_pictures(), config, pin_memory=False)
    assert len(loader) == 2  # 8 pages of 16, in batches of 4
