"""Resolving ``data.intensity`` into the window a run reads its pictures with.

A window ``(low, high)`` maps raw values linearly onto the network's 0..255. ``auto``
needs none for 8-bit pictures (read as they are, as always) and float pictures (taken as
[0, 1]); for integer pictures of more bits it is the training pictures' observed range,
so that 12-bit data stored in 16-bit files keep their dynamic range instead of being
divided by 257 into 0..15. ``percentile`` takes the training pictures' percentiles and
``fixed`` the configured values. The window is computed from the training subset only
(validation and new pictures are read with the same window) and recorded in the run's
``summary.json`` and ``model.pt``.

Per-picture statistics (exact min and max, and up to ``SAMPLE`` evenly spaced values
for percentiles) are kept beside the decoded-picture cache, so the runs of a study
decode each training picture once for them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from segtune.core.config import DataConfig
from segtune.data.cache import save_npy
from segtune.data.io import ImageReading, is_eight_bit, read_raw_image
from segtune.data.layout import Picture

SAMPLE = 1 << 18  # values kept per picture for percentiles


def resolve_reading(data: DataConfig, train: Sequence[Picture], stats_dir: Path) -> ImageReading:
    """The reading (channels and intensity window) of a run whose training subset is
    ``train``."""
    mode = data.intensity
    if mode.mode == "fixed":
        assert mode.low is not None and mode.high is not None  # checked by the config
        return ImageReading((mode.low, mode.high), data.channels)
    if mode.mode == "auto" and all(is_eight_bit(p.image) for p in train):
        return ImageReading(None, data.channels)
    stats = [_picture_stats(p.image, data, stats_dir) for p in train]
    if mode.mode == "auto":
        if any(np.issubdtype(s.dtype, np.floating) for s in stats):
            return ImageReading(None, data.channels)  # floats: [0, 1] as always
        low = float(min(s[0] for s in stats))
        high = float(max(s[1] for s in stats))
    else:
        values = np.concatenate([s[2:] for s in stats])
        low, high = (float(v) for v in np.percentile(values, mode.percentiles))
    return ImageReading((low, high if high > low else low + 1.0), data.channels)


def _picture_stats(path: Path, data: DataConfig, stats_dir: Path) -> NDArray[np.generic]:
    """``[min, max, sample…]`` of one picture's raw values (cached by file identity)."""
    stat = path.stat()
    ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{data.channels}"
    entry = stats_dir / f"{hashlib.sha1(ident.encode()).hexdigest()}.npy"
    if entry.exists():
        try:
            return np.load(entry)
        except (OSError, ValueError):
            entry.unlink(missing_ok=True)
    raw = read_raw_image(path, data.channels).reshape(-1)
    step = max(1, raw.size // SAMPLE)
    out = np.concatenate([[raw.min(), raw.max()], raw[::step]]).astype(raw.dtype)
    stats_dir.mkdir(parents=True, exist_ok=True)
    save_npy(entry, out)
    return out
