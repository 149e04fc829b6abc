"""Decoded-picture cache: each picture is decoded once into a memory-mapped ``.npy``.

Entries are keyed by the file's absolute path, size, modification time and the resize
applied, so a changed file gets a new entry. Entries are written to a temporary file
and renamed into place, so concurrent workers never see a half-written entry.

The default place is host-local (``$SEGTUNE_CACHE`` or ``~/.cache/segtune``), not the
study folder that machines share. With a cap (``data.cache_max_gb``) the least recently
used entries are evicted when a new one would exceed it; a process holds a shared
``flock`` on every entry it has mapped, and an entry that any process holds is never
evicted, so several workers of one host can share a capped cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import weakref
from pathlib import Path
from typing import Literal, cast

import numpy as np
from numpy.typing import NDArray

from segtune.core.config import DataConfig
from segtune.core.records import FILE_MODE
from segtune.data.io import (
    DEFAULT_READING,
    PLAIN_MASKS,
    ImageReading,
    MaskReading,
    read_ignored,
    read_image,
    read_mask,
)
from segtune.data.layout import Picture

Kind = Literal["image", "mask", "roi", "ignore"]


def default_cache_dir() -> Path:
    """``$SEGTUNE_CACHE`` or ``~/.cache/segtune``."""
    env = os.environ.get("SEGTUNE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "segtune"


def open_cache(data: DataConfig, reading: ImageReading = DEFAULT_READING) -> PictureCache:
    """The cache a run uses: ``data.cache_dir`` (else host-local), ``data.cache_max_gb``;
    images read with ``reading`` (channels and intensity window), masks with
    ``data.ignore_value`` and ``data.mask_threshold``."""
    cap = None if data.cache_max_gb is None else int(data.cache_max_gb * 1e9)
    masks = MaskReading(data.ignore_value, data.mask_threshold, data.invert_masks)
    return PictureCache(data.cache_dir or default_cache_dir(), cap, reading, masks)


def save_npy(entry: Path, array: NDArray[np.generic]) -> None:
    """Write an ``.npy`` through a temporary file and a rename (concurrent readers never
    see half an entry), readable by whoever shares the cache."""
    fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".npy")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, entry)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_size(root: Path) -> tuple[int, int]:
    """``(entries, bytes)`` of a cache folder (0, 0 when it does not exist)."""
    if not root.is_dir():
        return 0, 0
    sizes = [p.stat().st_size for p in root.glob("*.npy")]
    return len(sizes), sum(sizes)


# Bumped when the same mask file decodes to other pixels than before, so that entries of
# the old decoding are not reused: "|alpha" since transparent mask pixels are background.
MASK_DECODING = "|alpha"


class PictureCache:
    """Decoded pictures on disk, shared by every run and worker that uses ``root``;
    at most ``max_bytes`` of them (least recently used evicted) when given."""

    def __init__(
        self,
        root: Path,
        max_bytes: int | None = None,
        reading: ImageReading = DEFAULT_READING,
        masks: MaskReading = PLAIN_MASKS,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.reading = reading
        self.masks = masks
        self.root.mkdir(parents=True, exist_ok=True)

    def with_reading(self, reading: ImageReading) -> PictureCache:
        """The same cache folder, images read with ``reading``."""
        return PictureCache(self.root, self.max_bytes, reading, self.masks)

    def valid(
        self, picture: Picture, scale: float | None = None, longest_side: int | None = None
    ) -> NDArray[np.bool_] | None:
        """The pixels that count (inside the region of interest, not marked ignore), or
        None when every pixel counts."""
        parts = []
        if picture.roi is not None:
            parts.append(np.asarray(self.get(picture.roi, "roi", scale, longest_side)))
        if self.masks.ignore_value is not None and picture.mask is not None:
            ignored = np.asarray(self.get(picture.mask, "ignore", scale, longest_side), bool)
            parts.append(~ignored)
        if not parts:
            return None
        return np.logical_and.reduce(parts) if len(parts) > 1 else parts[0]

    @property
    def stats_dir(self) -> Path:
        """Where per-picture intensity statistics are kept (:mod:`segtune.data.intensity`)."""
        return self.root / "stats"

    def key(
        self, path: Path, kind: Kind, scale: float | None = None, longest_side: int | None = None
    ) -> str:
        stat = path.stat()
        reading = {
            "image": self.reading.key(),
            "mask": self.masks.key(),
            "ignore": self.masks.key(),
            "roi": self.masks.for_roi().key(),
        }[kind]
        ident = (
            f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{kind}|{scale}|{longest_side}"
            f"{reading}{'' if kind == 'image' else MASK_DECODING}"
        )
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
                return self._map(entry, touch=self.max_bytes is not None)
            except FileNotFoundError:
                pass  # evicted meanwhile: decoded again below
            except (OSError, ValueError):
                entry.unlink(missing_ok=True)  # a damaged entry is rebuilt below
        save_npy(entry, self._decode(path, kind, scale, longest_side))
        mapped = self._map(entry, touch=False)
        if self.max_bytes is not None:
            self.evict(keep=entry)
        return mapped

    @staticmethod
    def _map(entry: Path, touch: bool) -> NDArray[np.generic]:
        """Memory-map an entry, holding a shared lock on it while the array lives."""
        fd = os.open(entry, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            array = np.load(entry, mmap_mode="r")
        except BaseException:
            os.close(fd)
            raise
        weakref.finalize(array, os.close, fd)
        if touch:
            os.utime(entry)  # last use, for least-recently-used eviction
        return cast("NDArray[np.generic]", array)

    def evict(self, keep: Path | None = None) -> int:
        """Delete least recently used entries until the cache fits ``max_bytes``; an
        entry that a process has mapped is skipped. Returns the bytes freed."""
        if self.max_bytes is None:
            return 0
        entries = []
        for p in self.root.glob("*.npy"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime_ns, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            if p == keep or not _try_delete_unused(p):
                continue
            total -= size
            freed += size
        return freed

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

    def mask_of(
        self, picture: Picture, scale: float | None = None, longest_side: int | None = None
    ) -> NDArray[np.bool_]:
        """A picture's mask; all background for a picture without a mask file
        (``data.missing_masks: empty``), the size of its image."""
        if picture.mask is not None:
            return self.mask(picture.mask, scale, longest_side)
        return np.zeros(self.image(picture.image, scale, longest_side).shape[:2], bool)

    def _decode(
        self, path: Path, kind: Kind, scale: float | None, longest_side: int | None
    ) -> NDArray[np.generic]:
        # Imported here: the read-only commands (status) use this module without torch.
        from segtune.data.tiles import resize_image, resize_mask, resized_shape

        if kind == "image":
            image = read_image(path, self.reading)
            shape = resized_shape(image.shape[0], image.shape[1], scale, longest_side)
            return resize_image(image, shape)
        if kind == "ignore":
            mask = read_ignored(path, self.masks)
        else:  # a mask (positives) or a region of interest (a binary picture)
            mask = read_mask(path, self.masks if kind == "mask" else self.masks.for_roi())
        shape = resized_shape(mask.shape[0], mask.shape[1], scale, longest_side)
        return resize_mask(mask, shape)


def _try_delete_unused(entry: Path) -> bool:
    """Delete ``entry`` unless some process holds a lock on it (has it mapped)."""
    try:
        fd = os.open(entry, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        entry.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)
