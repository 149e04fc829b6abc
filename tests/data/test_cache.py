from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from segtune.data.cache import PictureCache


def _write(path: Path, value: int) -> None:
    Image.fromarray(np.full((20, 30, 3), value, np.uint8)).save(path)


def test_decoded_once_and_memory_mapped(tmp_path: Path) -> None:
    _write(tmp_path / "a.png", 10)
    cache = PictureCache(tmp_path / "cache")
    first = cache.get(tmp_path / "a.png", "image")
    assert isinstance(first, np.memmap) and first.shape == (20, 30, 3) and int(first[0, 0, 0]) == 10
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    cache.get(tmp_path / "a.png", "image")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1


def test_rebuilt_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    _write(path, 10)
    cache = PictureCache(tmp_path / "cache")
    assert int(cache.get(path, "image")[0, 0, 0]) == 10
    _write(path, 99)
    later = time.time() + 5
    os.utime(path, (later, later))
    assert int(cache.get(path, "image")[0, 0, 0]) == 99


def test_resize_is_part_of_the_key(tmp_path: Path) -> None:
    _write(tmp_path / "a.png", 10)
    cache = PictureCache(tmp_path / "cache")
    assert cache.get(tmp_path / "a.png", "image", scale=0.5).shape == (10, 15, 3)
    assert cache.get(tmp_path / "a.png", "image").shape == (20, 30, 3)


def test_concurrent_writers_never_corrupt_an_entry(tmp_path: Path) -> None:
    _write(tmp_path / "a.png", 42)
    root = tmp_path / "cache"

    def load(_: int) -> int:
        return int(np.asarray(PictureCache(root).get(tmp_path / "a.png", "image")).sum())

    with ThreadPoolExecutor(8) as pool:
        sums = list(pool.map(load, range(32)))
    assert set(sums) == {42 * 20 * 30 * 3}
    assert not list(root.glob(".tmp-*"))


def test_damaged_entry_is_rebuilt(tmp_path: Path) -> None:
    _write(tmp_path / "a.png", 5)
    cache = PictureCache(tmp_path / "cache")
    cache.get(tmp_path / "a.png", "image")
    entry = next((tmp_path / "cache").glob("*.npy"))
    entry.write_bytes(b"garbage")
    assert int(cache.get(tmp_path / "a.png", "image")[0, 0, 0]) == 5


ENTRY_BYTES = 20 * 30 * 3 + 128  # one decoded 20×30 RGB picture in .npy


def _entries(root: Path) -> int:
    return len(list(root.glob("*.npy")))


def test_cap_evicts_the_least_recently_used_entry(tmp_path: Path) -> None:
    for name, value in (("a", 1), ("b", 2), ("c", 3)):
        _write(tmp_path / f"{name}.png", value)
    cache = PictureCache(tmp_path / "cache", max_bytes=2 * ENTRY_BYTES)
    int(cache.get(tmp_path / "a.png", "image")[0, 0, 0])  # mapped, then released
    time.sleep(0.02)
    int(cache.get(tmp_path / "b.png", "image")[0, 0, 0])
    time.sleep(0.02)
    int(cache.get(tmp_path / "a.png", "image")[0, 0, 0])  # a used again: b is now oldest
    time.sleep(0.02)
    assert int(cache.get(tmp_path / "c.png", "image")[0, 0, 0]) == 3
    assert _entries(tmp_path / "cache") == 2
    keys = {p.stem for p in (tmp_path / "cache").glob("*.npy")}
    assert cache.key(tmp_path / "b.png", "image") not in keys
    assert cache.key(tmp_path / "a.png", "image") in keys
    assert int(cache.get(tmp_path / "b.png", "image")[0, 0, 0]) == 2  # decoded again


def test_a_mapped_entry_is_never_evicted(tmp_path: Path) -> None:
    for name, value in (("a", 1), ("b", 2), ("c", 3)):
        _write(tmp_path / f"{name}.png", value)
    cache = PictureCache(tmp_path / "cache", max_bytes=ENTRY_BYTES)
    held = cache.get(tmp_path / "a.png", "image")  # e.g. another worker trains on it
    view = np.asarray(held)[:, :10]
    del held
    time.sleep(0.02)
    cache.get(tmp_path / "b.png", "image")
    cache.get(tmp_path / "c.png", "image")
    keys = {p.stem for p in (tmp_path / "cache").glob("*.npy")}
    assert cache.key(tmp_path / "a.png", "image") in keys  # the view keeps it mapped
    assert int(view[0, 0, 0]) == 1
    del view
    time.sleep(0.02)
    cache.get(tmp_path / "a.png", "image")  # the others are now unmapped: evicted to fit
    assert _entries(tmp_path / "cache") <= 2


def test_each_mask_reading_is_its_own_entry(tmp_path: Path) -> None:
    from segtune.data.io import MaskReading

    mask = np.zeros((20, 30), np.uint8)
    mask[5:10] = 200
    mask[12] = 90  # a grey band
    Image.fromarray(mask).save(tmp_path / "m.png")
    root = tmp_path / "cache"
    readings = {
        MaskReading(threshold=100): mask >= 100,
        MaskReading(threshold=50): mask >= 50,
        MaskReading(threshold=100, invert=True): mask < 100,
    }
    for reading, expected in readings.items():
        assert np.array_equal(PictureCache(root, masks=reading).mask(tmp_path / "m.png"), expected)
    assert len(list(root.glob("*.npy"))) == 3
    # The plain reading's key is what it was before these settings existed.
    assert MaskReading().key() == "" and MaskReading(ignore_value=255).key() == "|ignore=255"
