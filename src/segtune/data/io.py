"""Reading images and masks into the two in-memory forms segtune uses.

Images become ``uint8`` arrays of shape ``(H, W, 3)``:

* grayscale (L, 1-bit) is replicated into three channels;
* RGBA / LA drop the alpha channel (no compositing);
* palette (P) images are expanded through their palette;
* more than 4 channels (multispectral) need ``data.channels``: one or three channel
  indices, or ``mean``;
* with an intensity window ``(low, high)`` (``data.intensity``, resolved per run by
  :mod:`segtune.data.intensity`) raw values map linearly from it onto 0..255, clipped;
* without one, 16-bit integer images are scaled from 0..65535 to 0..255 (``v // 257``)
  and float images are assumed to lie in [0, 1], clipped and scaled by 255.

Masks become ``bool`` arrays of shape ``(H, W)``. A mask holds 0 plus at most one
positive value (1, 255 or any other single value); palette masks whose index 0 is black
are read by palette index (index 0 is background), others by colour. Multi-channel
masks are accepted when every channel is equal, or when they are black plus one colour
(positive where coloured). A mask with transparency (LA, RGBA, a palette's transparent
index) is its colour over black: transparent pixels are unpainted, so background (tools
that export a drawing layer paint one colour and mark positives by opacity alone). With
a threshold (``data.mask_threshold``, for masks whose edges are grey: saved as JPEG,
resized with interpolation, drawn anti-aliased) a pixel is positive when its value is at
least the threshold: the grey level, a colour mask's brightest channel, or the index of
a palette whose index 0 is black. Inverted (``data.invert_masks``, positives drawn black
on white) the unmarked pixels are the positive ones. A TIFF is one picture: a stack of
same-size pages is refused. A mask may also be a LabelMe shape file (``.json``), drawn
into 0/255 by :mod:`segtune.data.shapes`. Anything else is a
:class:`~segtune.core.errors.DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from segtune.core.errors import DataError
from segtune.data.shapes import SHAPE_SUFFIX, rasterise, shape_size

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


IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".gif",
    ".webp",
    ".ppm",  # Netpbm, as STARE ships its pictures and labels
    ".pgm",
    ".pbm",
    ".pnm",
    ".jp2",  # JPEG 2000, as satellite products (Sentinel-2) and digitised archives ship
    ".j2k",
)
_TIFF = (".tif", ".tiff")
# Masks may also be LabelMe's shape files (:mod:`segtune.data.shapes`).
MASK_SUFFIXES = (*IMAGE_SUFFIXES, SHAPE_SUFFIX)


def _read_raw(path: Path, *, keep_palette: bool) -> NDArray[np.generic]:
    """Decode a file fully into an array (palette indices kept when asked)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() == SHAPE_SUFFIX:
        return rasterise(path)
    try:
        if path.suffix.lower() in _TIFF:
            return _read_tiff(path)
        with Image.open(path) as opened:
            opened.load()
            im: Image.Image = opened
            if im.mode == "P" and not (keep_palette and _black_first(im)):
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode == "CMYK":  # scanned pages, print-ready JPEGs: inks → RGB light
                im = im.convert("RGB")
            elif im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im).astype(np.uint16)
            return np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from exc


def _black_first(im: Image.Image) -> bool:
    """Whether a palette's index 0 is black, so that indices can stand for classes (0:
    background, as VOC-style masks use them). Encoders such as GIF's order a palette as
    they please (a white picture gets white at index 0): those are read by colour."""
    palette = im.getpalette() or [0, 0, 0]
    return not any(palette[:3])


def _first_page(tif: tifffile.TiffFile, path: Path) -> tifffile.TiffPage | tifffile.TiffFrame:
    """A TIFF's picture: its first page, after reduced-resolution ones (overviews) or
    none. More pages of the first's size are a stack (a volume's slices, frames, channels
    stored as pages), refused rather than silently read as its first slice."""
    page = tif.pages[0]
    count = len(tif.pages)
    if count > 1:
        second = tif.pages[1]
        if second.shape == page.shape and not getattr(second, "is_reduced", False):
            raise DataError(
                f"{path}: a stack of {count} pages of the same size (slices, frames or "
                "channels as pages); segtune reads one picture per file: save each page "
                "as its own file"
            )
    return page


def _cmyk_to_rgb(arr: NDArray[np.generic]) -> NDArray[np.generic]:
    """Ink (cyan, magenta, yellow, black; 0 = none) as light: each colour is what its ink
    and the black leave of the paper, R = (1 − C)(1 − K), as Pillow converts CMYK."""
    if arr.shape[2] < 4 or not np.issubdtype(arr.dtype, np.integer):
        return arr
    top = float(np.iinfo(arr.dtype.str).max)
    ink = arr[:, :, :4].astype(np.float64) / top
    rgb = (1.0 - ink[:, :, :3]) * (1.0 - ink[:, :, 3:4]) * top
    return np.rint(rgb).astype(arr.dtype)


def _read_tiff(path: Path) -> NDArray[np.generic]:
    """First page of a TIFF through tifffile (LZW, deflate, JPEG… with imagecodecs), else
    through Pillow; a compression neither can decode is named as such, not "truncated"."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = _first_page(tif, path)
            arr = np.asarray(page.asarray())
            # Planar multi-channel pages (axes "SYX") are read as (H, W, C) like the rest.
            arr = np.moveaxis(arr, 0, -1) if page.axes.startswith("S") else arr
            ink = getattr(page, "photometric", None) == tifffile.PHOTOMETRIC.SEPARATED
            if ink and arr.ndim == 3:
                return _cmyk_to_rgb(arr)
            return arr
    except ValueError as exc:
        if "imagecodecs" not in str(exc) and "compression" not in str(exc).lower():
            raise
        try:
            with Image.open(path) as opened:
                opened.load()
                return np.asarray(opened.convert("RGB") if opened.mode == "CMYK" else opened)
        except (OSError, UnidentifiedImageError) as pil_exc:
            raise DataError(
                f"{path}: readable TIFF with an unsupported compression ({exc})"
            ) from pil_exc


@dataclass(frozen=True)
class ImageReading:
    """How raw pixel values become the network's RGB ``uint8``: which channels
    (``data.channels``) and which intensity window (``data.intensity``, resolved)."""

    window: tuple[float, float] | None = None
    channels: tuple[int, ...] | Literal["mean"] | None = None

    @property
    def is_default(self) -> bool:
        return self.window is None and self.channels is None

    def key(self) -> str:
        """Part of a cache key ("" for the default reading, so old entries stay valid)."""
        return "" if self.is_default else f"|{self.window}|{self.channels}"


DEFAULT_READING = ImageReading()


def select_channels(
    arr: NDArray[np.generic], channels: tuple[int, ...] | Literal["mean"] | None, path: Path
) -> NDArray[np.generic]:
    """Apply ``data.channels`` to a raw (H, W[, C]) array; refuse > 4 channels without it."""
    count = 1 if arr.ndim == 2 else arr.shape[2]
    if channels is None:
        if count > 4:
            raise DataError(
                f"{path}: {count} channels; choose one or three with data.channels "
                "(e.g. [0, 1, 2]) or reduce them with data.channels: mean"
            )
        return arr
    if channels == "mean":
        if arr.ndim == 2:
            return arr
        mean = arr.astype(np.float64).mean(axis=2)
        return np.rint(mean).astype(arr.dtype) if arr.dtype.kind in "iub" else mean
    if max(channels) >= count:
        raise DataError(
            f"{path}: data.channels {list(channels)} asks for channel {max(channels)} "
            f"but the picture has {count} channel(s) (numbered from 0)"
        )
    if arr.ndim == 2:
        return arr
    picked = arr[:, :, list(channels)]
    return picked[:, :, 0] if len(channels) == 1 else picked


def apply_window(arr: NDArray[np.generic], window: tuple[float, float]) -> NDArray[np.uint8]:
    """Map raw values linearly from ``window`` onto 0..255 (clipped, rounded)."""
    low, high = window
    scaled = (arr.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return (np.clip(np.nan_to_num(scaled), 0.0, 255.0) + 0.5).astype(np.uint8)


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


def read_raw_image(
    path: Path, channels: tuple[int, ...] | Literal["mean"] | None = None
) -> NDArray[np.generic]:
    """The picture's raw values (alpha dropped, ``data.channels`` applied), any dtype."""
    arr = select_channels(_read_raw(path, keep_palette=False), channels, path)
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        arr = arr[:, :, : arr.shape[2] - 1]
    return arr


def check_decodes(path: Path) -> None:
    """Decode the picture fully (a truncated or corrupt file is a DataError) and keep
    nothing: no copy in another type (a float copy of a 20000 × 20000 picture is 9.6 GB)."""
    _read_raw(path, keep_palette=False)


def read_image(path: Path, reading: ImageReading = DEFAULT_READING) -> NDArray[np.uint8]:
    """Read a picture as RGB ``uint8`` of shape ``(H, W, 3)`` (see module docs)."""
    raw = select_channels(_read_raw(path, keep_palette=False), reading.channels, path)
    window = reading.window
    arr = _to_uint8(raw, path) if window is None else apply_window(raw, window)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (1, 2):
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] >= 3:
        arr = arr[:, :, :3]
    else:
        raise DataError(f"{path}: unsupported image shape {arr.shape}")
    return np.ascontiguousarray(arr)


@dataclass(frozen=True)
class MaskReading:
    """How a mask file's values become positives, "don't care" pixels and background:
    ``data.ignore_value`` (that value never counts), ``data.mask_threshold`` (values at
    least it are positive; None: 0 plus one positive value, anything else refused) and
    ``data.invert_masks``."""

    ignore_value: int | None = None
    threshold: float | None = None
    # Positives drawn black on white (document ground truth, as DIBCO's): positive where
    # the mask is 0 (below the threshold, with one); ignored pixels stay ignored.
    invert: bool = False

    def words(self) -> str:
        """How masks are read, for a report: "binary (0 and one positive value)", "positive where
        the value is at least 128 (data.mask_threshold)", …"""
        if self.threshold is None:
            how = (
                "positive where 0 (data.invert_masks)"
                if self.invert
                else "binary (0 and one positive value)"
            )
        else:
            side = "below" if self.invert else "at least"
            how = f"positive where the value is {side} {self.threshold:g} (data.mask_threshold"
            how += ", data.invert_masks)" if self.invert else ")"
        if self.ignore_value is not None:
            how += f"; value {self.ignore_value} never counts (data.ignore_value)"
        return how

    def for_roi(self) -> MaskReading:
        """A region of interest's reading: the threshold, no ignore value, not inverted
        (a region of interest is white where pixels count)."""
        return MaskReading(threshold=self.threshold)

    def key(self) -> str:
        """What the reading adds to a cache key ("" for the plain reading, so entries
        written before these settings existed stay valid)."""
        ignore = "" if self.ignore_value is None else f"|ignore={self.ignore_value}"
        threshold = "" if self.threshold is None else f"|threshold={self.threshold!r}"
        return ignore + threshold + ("|invert" if self.invert else "")


PLAIN_MASKS = MaskReading()


def _over_black(arr: NDArray[np.generic]) -> NDArray[np.generic]:
    """A mask's values with its alpha channel (LA, RGBA) applied: its colour composited
    over black, so transparent pixels (unpainted) are 0 whatever colour they store and
    half-transparent edges are half the colour; a layer drawn in black on transparency
    is its opacity. Opaque masks, and masks transparent everywhere (an alpha channel
    nobody set), are their colour channels as stored."""
    if arr.ndim != 3 or arr.shape[2] not in (2, 4):
        return arr
    colour, alpha = arr[:, :, :-1], arr[:, :, -1:]
    top = np.iinfo(arr.dtype.str).max if np.issubdtype(arr.dtype, np.integer) else 1.0
    if alpha.min() == top or alpha.max() == 0:
        return colour[:, :, 0] if colour.shape[2] == 1 else colour
    painted = np.asarray(alpha[:, :, 0], np.float64) > 0
    if not colour[painted].any():  # drawn in black: its opacity is the drawing
        return alpha[:, :, 0]
    scaled = colour.astype(np.float64) * (alpha.astype(np.float64) / float(top))
    out = np.rint(scaled) if np.issubdtype(arr.dtype, np.integer) else scaled
    out = out.astype(arr.dtype)
    return out[:, :, 0] if out.shape[2] == 1 else out


def _mask_values(path: Path) -> NDArray[np.generic]:
    """A mask file as one channel of raw values (transparency applied, equal colour
    channels merged; a colour mask's one colour as 1)."""
    arr = _over_black(_read_raw(path, keep_palette=True))
    if arr.ndim == 3:
        first = arr[:, :, 0]
        if any(not np.array_equal(first, arr[:, :, c]) for c in range(1, arr.shape[2])):
            return _colour_mask_values(path, arr)
        arr = first
    elif arr.ndim != 2:
        raise DataError(f"{path}: unsupported mask shape {arr.shape}")
    return arr


def _colour_mask_values(path: Path, arr: NDArray[np.generic]) -> NDArray[np.generic]:
    """A colour mask (e.g. red on black) as 0 where black and 1 where its one colour is;
    any other colour is an error."""
    if arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise DataError(f"{path}: mask has differing colour channels; expected one channel")
    rgb = arr[:, :, :3].astype(np.uint32)
    packed = (rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2]
    colours = [int(c) for c in np.unique(packed) if c != 0]
    if len(colours) > 1:
        shown = ", ".join(f"#{c:06x}" for c in colours[:4]) + (" …" if len(colours) > 4 else "")
        raise DataError(
            f"{path}: colour mask with {len(colours)} colours besides black ({shown}); "
            f"expected black plus one colour{_lossy_hint(path) or _BLENDED_HINT}"
        )
    return (packed != 0).astype(np.uint8)


def _lossy_hint(path: Path) -> str:
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return (
            " (JPEG's lossy compression blurs a mask's edges: save masks as PNG, or "
            "binarise them at a value with data.mask_threshold or --mask-threshold, e.g. 128)"
        )
    return ""


_BLENDED_HINT = (
    " (blended edges, as resizing with interpolation or anti-aliased drawing leave, or one "
    "value per object: data.mask_threshold, or --mask-threshold, marks values at least it "
    "positive, e.g. 128 for edges, 1 for object labels)"
)


def _grey_levels(path: Path) -> NDArray[np.generic]:
    """The values a threshold compares: one channel as stored, a colour mask's brightest
    channel (over black where transparent), a black-first palette's indices."""
    arr = _over_black(_read_raw(path, keep_palette=True))
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    elif arr.ndim != 2:
        raise DataError(f"{path}: unsupported mask shape {arr.shape}")
    return arr


def _refuse_a_binary_mask_below(
    path: Path, levels: NDArray[np.generic], reading: MaskReading
) -> None:
    """A clean two-value mask whose positive value is under the threshold (0/1 masks
    read at 128) would be all background (all positive, inverted): refused rather than
    trained on so."""
    values = np.unique(levels)
    if len(values) == 2 and values[0] == 0 and values[1] != reading.ignore_value:
        every = "positive" if reading.invert else "background"
        raise DataError(
            f"{path}: mask holds 0 and {values[1]} only, below data.mask_threshold "
            f"{reading.threshold:g}: every pixel would be {every}; lower the threshold "
            f"(to {values[1]} or less) or leave it unset for binary masks"
        )


def read_mask(path: Path, reading: MaskReading = PLAIN_MASKS) -> NDArray[np.bool_]:
    """Read a binary mask as ``bool`` of shape ``(H, W)`` (see module docs). With an
    ignore value pixels of that value are not positive and the mask may hold three
    values: 0, one positive value and the ignore value; with a threshold, pixels whose
    value is at least it are positive, whatever other values the mask holds; inverted,
    the others are (the ignore value never is)."""
    arr = _values(path, reading)
    marked = _marked(path, arr, reading)
    if not reading.invert:
        return marked
    out = ~marked
    if reading.ignore_value is not None:
        out &= arr != reading.ignore_value
    return np.asarray(out)


def _values(path: Path, reading: MaskReading) -> NDArray[np.generic]:
    """The values a reading compares: grey levels with a threshold, else mask values."""
    return _grey_levels(path) if reading.threshold is not None else _mask_values(path)


def _marked(path: Path, arr: NDArray[np.generic], reading: MaskReading) -> NDArray[np.bool_]:
    """The pixels of ``arr`` (``path``'s values) a mask marks (non-zero, or at least the
    threshold; not the ignore value), refusing values a binary mask cannot hold."""
    ignore_value = reading.ignore_value
    if reading.threshold is not None:
        out = np.asarray(arr, dtype=np.float64) >= reading.threshold
        if ignore_value is not None:
            out &= arr != ignore_value
        if not out.any():
            _refuse_a_binary_mask_below(path, arr, reading)
        return np.asarray(out)
    values = np.unique(arr)
    positive = values[(values != 0) & (values != (ignore_value if ignore_value is not None else 0))]
    if len(positive) > 1:
        shown = ", ".join(str(v) for v in values[:5].tolist())
        more = " …" if len(values) > 5 else ""
        allowed = (
            f"0, one positive value and the ignore value {ignore_value}"
            if ignore_value is not None
            else "0 plus one positive value"
        )
        hint = _lossy_hint(path)
        if not hint and ignore_value is None and len(values) == 3:
            hint = " (if one marks don't-care pixels: data.ignore_value, or --ignore-value)"
        elif not hint:
            hint = _BLENDED_HINT
        raise DataError(
            f"{path}: mask has {len(values)} distinct values ({shown}{more}); expected "
            f"{allowed}{hint}"
        )
    out = arr != 0
    if ignore_value is not None:
        out &= arr != ignore_value
    return np.asarray(out)


def read_ignored(path: Path, reading: MaskReading) -> NDArray[np.bool_]:
    """The "don't care" pixels of a mask: those holding the reading's ignore value."""
    assert reading.ignore_value is not None
    return np.asarray(_values(path, reading) == reading.ignore_value)


_EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}


def is_eight_bit(path: Path) -> bool:
    """Whether a picture stores 8-bit (or 1-bit) samples, from its header."""
    try:
        if path.suffix.lower() in _TIFF:
            with tifffile.TiffFile(path) as tif:
                return np.dtype(tif.pages[0].dtype) in (np.dtype(np.uint8), np.dtype(np.bool_))
        with Image.open(path) as im:
            return im.mode in _EIGHT_BIT_MODES
    except (OSError, UnidentifiedImageError, ValueError, IndexError, TypeError) as exc:
        raise DataError(f"{path}: unreadable image header ({exc})") from exc


def exif_orientation(path: Path) -> int | None:
    """The EXIF orientation tag (2–8: viewers show the picture mirrored or turned) from
    the header, or None (none, 1, or unreadable). segtune reads pixels as stored."""
    try:
        with Image.open(path) as im:
            value = im.getexif().get(0x0112)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    return int(value) if isinstance(value, int) and 2 <= value <= 8 else None


def image_size(path: Path) -> tuple[int, int]:
    """Return ``(height, width)`` from the file header, without decoding pixels."""
    if path.suffix.lower() == SHAPE_SUFFIX:
        return shape_size(path)
    try:
        if path.suffix.lower() in _TIFF:
            with tifffile.TiffFile(path) as tif:
                page = _first_page(tif, path)
                shape = page.shape[1:] if page.axes.startswith("S") else page.shape
            return int(shape[0]), int(shape[1])
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, UnidentifiedImageError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: unreadable image header ({exc})") from exc
