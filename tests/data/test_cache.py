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
