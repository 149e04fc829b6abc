"""Reading images and masks into the two in-memory forms segtune uses.

Images become ``uint8`` arrays of shape ``(H, W, 3)``:

* grayscale (L, 1-bit) is replicated into three channels;
* RGBA / LA drop the alpha channel (no compositing);
* palette (P) images are expanded through their palette;
* 16-bit integer images are scaled linearly from 0..65535 to 0..255 (``v // 257``);
* float images are assumed to lie in [0, 1] and are clipped and scaled by 255.

Masks become ``bool`` arrays of shape ``(H, W)``. A mask holds 0 plus at most one
positive value (1, 255 or any other single value); palette masks are read by palette
index (index 0 is background). Multi-channel masks are accepted when every channel
is equal. Anything else is a :class:`~segtune.errors.DataError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from segtune.errors import DataError

# Large pictures are this tool's purpose: Pillow's decompression-bomb guard (about 179
# million pixels) is replaced by segtune's own documented cap, ``data.max_pixels``.
Image.MAX_IMAGE_PIXELS = None
DEFAULT_MAX_PIXELS = 2**31


def pixel_cap_problem(path: Path, hw: tuple[int, int], max_pixels: int) -> str | None:
    """One line when a picture of ``hw`` pixels exceeds the cap, else None."""
    if hw[0] * hw[1] <= max_pixels:
        return None
    return (
        f"{path}: {hw[1]}x{hw[0]} = {hw[0] * hw[1]} pixels exceeds data.max_pixels "
        f"({max_pixels}); raise it if this machine has the memory"
    )


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
_TIFF = (".tif", ".tiff")


def _read_raw(path: Path, *, keep_palette: bool) -> NDArray[np.generic]:
    """Decode a file fully into an array (palette indices kept when asked)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix.lower() in _TIFF:
            return _read_tiff(path)
        with Image.open(path) as opened:
            opened.load()
            im: Image.Image = opened
            if im.mode == "P" and not keep_palette:
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im).astype(np.uint16)
            return np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from exc


def _read_tiff(path: Path) -> NDArray[np.generic]:
    """First page of a TIFF through tifffile (LZW, deflate, JPEG… with imagecodecs), else
    through Pillow; a compression neither can decode is named as such, not "truncated"."""
    try:
        return np.asarray(tifffile.imread(path, key=0))
    except ValueError as exc:
        if "imagecodecs" not in str(exc) and "compression" not in str(exc).lower():
            raise
        try:
            with Image.open(path) as opened:
                opened.load()
                return np.asarray(opened)
        except (OSError, UnidentifiedImageError) as pil_exc:
            raise DataError(
                f"{path}: readable TIFF with an unsupported compression ({exc})"
            ) from pil_exc


def _to_uint8(arr: NDArray[np.generic], path: Path) -> NDArray[np.uint8]:
    if arr.dtype == np.uint8:
        return arr.astype(np.uint8, copy=False)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        if arr.max(initial=0) <= 255 and arr.min(initial=0) >= 0 and arr.dtype != np.uint16:
            return arr.astype(np.uint8)
        return (np.clip(arr, 0, 65535).astype(np.uint32) // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise DataError(f"{path}: unsupported pixel type {arr.dtype}")


def read_image(path: Path) -> NDArray[np.uint8]:
    """Read a picture as RGB ``uint8`` of shape ``(H, W, 3)`` (see module docs)."""
    arr = _to_uint8(_read_raw(path, keep_palette=False), path)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (1, 2):
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] >= 3:
        arr = arr[:, :, :3]
    else:
        raise DataError(f"{path}: unsupported image shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_mask(path: Path) -> NDArray[np.bool_]:
    """Read a binary mask as ``bool`` of shape ``(H, W)`` (see module docs)."""
    arr = _read_raw(path, keep_palette=True)
    if arr.ndim == 3:
        first = arr[:, :, 0]
        channels = arr.shape[2]
        if channels in (2, 4):  # LA / RGBA: ignore alpha
            channels -= 1
        if any(not np.array_equal(first, arr[:, :, c]) for c in range(1, channels)):
            raise DataError(f"{path}: mask has differing colour channels; expected one channel")
        arr = first
    elif arr.ndim != 2:
        raise DataError(f"{path}: unsupported mask shape {arr.shape}")
    values = np.unique(arr)
    positive = values[values != 0]
    if len(positive) > 1:
        shown = ", ".join(str(v) for v in values[:5].tolist())
        more = " …" if len(values) > 5 else ""
        raise DataError(
            f"{path}: mask has {len(values)} distinct values ({shown}{more}); "
            "expected 0 plus one positive value"
        )
    return np.asarray(arr != 0)


def image_size(path: Path) -> tuple[int, int]:
    """Return ``(height, width)`` from the file header, without decoding pixels."""
    try:
        if path.suffix.lower() in _TIFF:
            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
            return int(shape[0]), int(shape[1])
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, UnidentifiedImageError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: unreadable image header ({exc})") from exc
