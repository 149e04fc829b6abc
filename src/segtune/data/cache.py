"""Decoded-picture cache: each picture is decoded once into a memory-mapped ``.npy``.

Entries are keyed by the file's absolute path, size, modification time and the resize
applied, so a changed file gets a new entry. Entries are written to a temporary file
and renamed into place, so concurrent workers never see a half-written entry.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Literal, cast

import numpy as np
from numpy.typing import NDArray

from segtune.data.io import read_image, read_mask
from segtune.data.tiles import resize_image, resize_mask, resized_shape
from segtune.records import FILE_MODE

Kind = Literal["image", "mask"]


def default_cache_dir() -> Path:
    """``$SEGTUNE_CACHE`` or ``~/.cache/segtune``."""
    env = os.environ.get("SEGTUNE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "segtune"


class PictureCache:
    """Decoded pictures on disk, shared by every run and worker that uses ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def key(
        self, path: Path, kind: Kind, scale: float | None = None, longest_side: int | None = None
    ) -> str:
        stat = path.stat()
        ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{kind}|{scale}|{longest_side}"
        return hashlib.sha1(ident.encode()).hexdigest()

    def get(
        self, path: Path, kind: Kind, scale: float | None = None, longest_side: int | None = None
    ) -> NDArray[np.generic]:
        """Return the decoded array (read-only memory map), decoding it on first use.

        Images are ``uint8`` (H, W, 3); masks are ``bool`` (H, W). ``scale`` /
        ``longest_side`` resize before caching (bilinear for images, nearest for masks).
        """
        entry = self.root / f"{self.key(path, kind, scale, longest_side)}.npy"
        if entry.exists():
            try:
                return np.load(entry, mmap_mode="r")
            except (OSError, ValueError):
                entry.unlink(missing_ok=True)  # a damaged entry is rebuilt below
        array = self._decode(path, kind, scale, longest_side)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".npy")
        try:
            os.fchmod(fd, FILE_MODE)  # readable by whoever shares the cache, like any file
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, array)
            os.replace(tmp, entry)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return np.load(entry, mmap_mode="r")

    def image(
        self, path: Path, scale: float | None = None, longest_side: int | None = None
    ) -> NDArray[np.uint8]:
        """The decoded picture, RGB ``uint8`` (H, W, 3)."""
        return cast("NDArray[np.uint8]", self.get(path, "image", scale, longest_side))

    def mask(
        self, path: Path, scale: float | None = None, longest_side: int | None = None
    ) -> NDArray[np.bool_]:
        """The decoded mask, ``bool`` (H, W)."""
        return cast("NDArray[np.bool_]", self.get(path, "mask", scale, longest_side))

    @staticmethod
    def _decode(
        path: Path, kind: Kind, scale: float | None, longest_side: int | None
    ) -> NDArray[np.generic]:
        if kind == "image":
            image = read_image(path)
            shape = resized_shape(image.shape[0], image.shape[1], scale, longest_side)
            return resize_image(image, shape)
        mask = read_mask(path)
        shape = resized_shape(mask.shape[0], mask.shape[1], scale, longest_side)
        return resize_mask(mask, shape)
