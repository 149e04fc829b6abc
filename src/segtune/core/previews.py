"""Preview pictures of a run, written and drawn in one place.

A run keeps, for its first K validation pictures, the probability map (16-bit PNG), the
mask, a thumbnail, the pixels that count and the per-picture counts
(``previews/previews.json``). :func:`overlay` draws one of them as TP / FP / FN colours
over the picture; training's live loggers (:func:`overlay_row`) and the report's figures
use the same drawing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from segtune.core.metrics import PictureCounts
from segtune.core.records import atomic_write_bytes, write_json

PREVIEW_THUMB = 768  # longest side of the picture thumbnail kept for overlays
OVERLAY_SIZE = 256  # pixels per picture in overlay strips
# Okabe–Ito colour-blind-safe palette.
TP_COLOUR, FP_COLOUR, FN_COLOUR = "#0072B2", "#E69F00", "#CC79A7"
NEUTRAL = (200, 200, 200)  # pixels that do not count (outside the ROI, ignored)


def preview_base(index: int, stem: str) -> str:
    """The start of a preview picture's file names: its index and its stem, a nested
    picture's path (``cityA/0001``) flattened (``01-cityA-0001``)."""
    return f"{index:02d}-{stem.replace('/', '-')}"


def write_previews(
    folder: Path,
    results: Sequence[PictureCounts],
    probabilities: Sequence[NDArray[np.float32]],
    images: Sequence[NDArray[np.uint8]],
    masks: Sequence[NDArray[np.bool_]],
    threshold: float,
    valids: Sequence[NDArray[np.bool_] | None] | None = None,
) -> None:
    """Probability maps (16-bit PNG), masks, thumbnails, the pixels that count (when a
    region of interest or ignore value leaves some out) and per-picture counts, into
    ``folder`` (a run's ``previews/``)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    valids = valids or [None] * len(results)
    for res, prob, image, mask, valid in zip(
        results, probabilities, images, masks, valids, strict=True
    ):
        base = preview_base(res.index, res.stem)
        files: dict[str, str] = {}
        if valid is not None:
            _save_png(folder / f"{base}-valid.png", Image.fromarray(valid.astype(np.uint8) * 255))
            files["valid"] = f"{base}-valid.png"
            mask = mask & valid
        _save_png(
            folder / f"{base}-prob.png",
            Image.fromarray((np.clip(prob, 0, 1) * 65535 + 0.5).astype(np.uint16)),
        )
        _save_png(folder / f"{base}-mask.png", Image.fromarray(mask.astype(np.uint8) * 255))
        thumb = Image.fromarray(np.asarray(image))
        thumb.thumbnail((PREVIEW_THUMB, PREVIEW_THUMB))
        _save_png(folder / f"{base}-image.png", thumb)
        files = {
            "prob": f"{base}-prob.png",
            "mask": f"{base}-mask.png",
            "image": f"{base}-image.png",
            **files,
        }
        entries.append({**asdict(res), "files": files})
    write_json(folder / "previews.json", {"threshold": threshold, "pictures": entries})


def overlay(
    folder: Path, picture: PictureCounts, threshold: float, size: int | None = OVERLAY_SIZE
) -> NDArray[np.uint8]:
    """RGB overlay of one preview picture kept in ``folder``: the picture in grey, TP / FP
    / FN coloured at ``threshold``.

    Classes are computed at full resolution, then reduced with "any pixel in the box",
    so thin structures stay visible in a small overlay.
    """
    base = preview_base(picture.index, picture.stem)
    prob = np.asarray(Image.open(folder / f"{base}-prob.png"), dtype=np.float32) / 65535.0
    mask = np.asarray(Image.open(folder / f"{base}-mask.png")) > 0
    image = Image.open(folder / f"{base}-image.png").convert("L")
    h, w = mask.shape
    scale = 1.0 if size is None else size / max(h, w)  # None: full resolution
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = np.asarray(image.resize(shape, Image.Resampling.BILINEAR), dtype=np.float32) * 0.6
    out = np.repeat(grey[:, :, None], 3, axis=2)
    pred = prob >= threshold
    valid_file = folder / f"{base}-valid.png"
    if valid_file.exists():  # outside the region of interest / ignored: neutral, no class
        valid = np.asarray(Image.open(valid_file)) > 0
        pred, mask = pred & valid, mask & valid
        out[_shrunk(~valid, shape, threshold=127)] = NEUTRAL
    for cls, colour in (
        (pred & ~mask, FP_COLOUR),
        (~pred & mask, FN_COLOUR),
        (pred & mask, TP_COLOUR),
    ):
        out[_shrunk(cls, shape)] = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return out.astype(np.uint8)


def overlay_row(
    folder: Path, pictures: Sequence[PictureCounts], threshold: float, gap: int = 4
) -> NDArray[np.uint8]:
    """The preview pictures' overlays side by side in one RGB array (white gaps): the
    image a live logger shows for a run's kept epoch."""
    tiles = [overlay(folder, p, threshold) for p in pictures]
    height = max(t.shape[0] for t in tiles)
    row = []
    for tile in tiles:
        padded = np.full((height, tile.shape[1] + gap, 3), 255, np.uint8)
        padded[: tile.shape[0], : tile.shape[1]] = tile
        row.append(padded)
    return np.concatenate(row, axis=1)[:, :-gap]


def _shrunk(pixels: NDArray[np.bool_], shape: tuple[int, int], threshold: int = 0) -> NDArray:
    """``pixels`` box-reduced to ``shape`` (width, height): true where the box's share of
    true pixels is above ``threshold``/255."""
    small = Image.fromarray(pixels.astype(np.uint8) * 255).resize(shape, Image.Resampling.BOX)
    return np.asarray(small) > threshold


def _save_png(path: Path, image: Image.Image) -> None:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
