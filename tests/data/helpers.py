"""Writing small pictures for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_pair(
    root: Path,
    stem: str,
    size: tuple[int, int] = (8, 8),
    mask_size: tuple[int, int] | None = None,
    mask_values: tuple[int, ...] = (0, 255),
) -> None:
    """A grey image (8×8 unless ``size`` says otherwise) and its mask (``mask_values``
    in its first pixels) under ``root/images`` and ``root/masks``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 100, np.uint8)).save(root / "images" / f"{stem}.png")
    m = np.zeros(mask_size or size, np.uint8)
    for i, v in enumerate(mask_values):
        m.flat[i] = v
    Image.fromarray(m).save(root / "masks" / f"{stem}.png")
