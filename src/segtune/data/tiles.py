"""Pages: tile origins, page extraction with padding, and blended stitching.

Everything here is a pure function of arrays so it can be tested without a network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from segtune.core.errors import ConfigError

Blend = Literal["mean", "gaussian", "linear"]


def axis_origins(length: int, page_size: int, overlap: int) -> list[int]:
    """Start offsets of pages along one axis.

    Pages step by ``page_size - overlap``; the last page sits flush with the border so
    every pixel is covered. A length smaller than a page gives the single origin 0 (the
    page is then padded).
    """
    validate_page_geometry(page_size, overlap)
    if length <= 0:
        raise ConfigError(f"picture side must be positive (got {length})")
    if length <= page_size:
        return [0]
    stride = page_size - overlap
    origins = list(range(0, length - page_size, stride))
    origins.append(length - page_size)
    return origins


def page_origins(height: int, width: int, page_size: int, overlap: int) -> list[tuple[int, int]]:
    """All ``(y, x)`` page origins for a picture, row by row."""
    return [
        (y, x)
        for y in axis_origins(height, page_size, overlap)
        for x in axis_origins(width, page_size, overlap)
    ]


def validate_page_geometry(page_size: int, overlap: int) -> None:
    if page_size <= 0:
        raise ConfigError(f"pages.page_size must be positive (got {page_size})")
    if overlap < 0:
        raise ConfigError(f"pages.patch_overlap must be >= 0 (got {overlap})")
    if overlap >= page_size:
        raise ConfigError(
            f"pages.patch_overlap ({overlap}) must be smaller than pages.page_size ({page_size})"
        )


def extract_page(
    array: NDArray[np.generic], origin: tuple[int, int], page_size: int
) -> tuple[NDArray[np.generic], NDArray[np.bool_]]:
    """Cut one page out of ``array`` (H, W[, C]), zero-padding past the border.

    Returns:
        The page (``page_size`` square, same dtype and channels) and its validity mask
        (``False`` on padding, which never counts in loss or metrics).
    """
    y, x = origin
    crop = array[y : y + page_size, x : x + page_size]
    h, w = crop.shape[:2]
    valid = np.zeros((page_size, page_size), dtype=bool)
    valid[:h, :w] = True
    if h == page_size and w == page_size:
        return np.array(crop), valid
    page = np.zeros((page_size, page_size, *array.shape[2:]), dtype=array.dtype)
    page[:h, :w] = crop
    return page, valid


GAUSSIAN_FLOOR = 1e-3  # no pixel of a page weighs less: its border still counts a little

BLEND_FORMULAS = {
    "mean": "profile_i = 1",
    "gaussian": "profile_i = exp(-(i - (P - 1)/2)^2 / (2 sigma^2)), sigma = P/8, i = 0..P-1, "
    "divided by its maximum",
    "linear": "profile_i = clip(min(i + 1, P - i) / max(overlap, 1), 0, 1), i = 0..P-1",
}


def blend_profile(
    page_size: int, blend: Blend, overlap: int = 0
) -> tuple[NDArray[np.float64], float]:
    """The window's 1-D profile and floor: the window is ``max(outer(profile, profile),
    floor)`` (:func:`blend_window`; ``BLEND_FORMULAS`` in words, as exports record it)."""
    idx = np.arange(page_size, dtype=np.float64)
    if blend == "mean":
        return np.ones(page_size), 0.0
    if blend == "gaussian":
        sigma = page_size / 8.0
        g = np.exp(-((idx - (page_size - 1) / 2.0) ** 2) / (2 * sigma * sigma))
        return g / g.max(), GAUSSIAN_FLOOR
    if blend == "linear":
        edge = np.minimum(idx + 1, page_size - idx)
        return np.clip(edge / max(overlap, 1), 0.0, 1.0), 0.0
    raise ConfigError(f"pages.blend must be one of mean, gaussian, linear (got {blend!r})")


def blend_window(page_size: int, blend: Blend, overlap: int = 0) -> NDArray[np.float32]:
    """Per-pixel weight of a page's prediction when pages overlap (all weights > 0).

    ``mean`` weighs every pixel 1; ``gaussian`` uses sigma = page/8 around the centre
    (as MONAI's default), never below ``GAUSSIAN_FLOOR``; ``linear`` ramps from the
    border up to 1 over ``overlap`` pixels.
    """
    profile, floor = blend_profile(page_size, blend, overlap)
    return np.maximum(np.outer(profile, profile), floor).astype(np.float32)


class _Blender:
    """The blend window and the weighted sums (``rows`` × width) a stitcher adds to."""

    def __init__(
        self,
        rows: int,
        width: int,
        page_size: int,
        blend: Blend,
        overlap: int,
        device: torch.device | str,
    ) -> None:
        self.page_size = page_size
        self.window = torch.from_numpy(blend_window(page_size, blend, overlap)).to(device)
        self._sum = torch.zeros((rows, width), dtype=torch.float32, device=device)
        self._weight = torch.zeros((rows, width), dtype=torch.float32, device=device)


class Stitcher(_Blender):
    """Accumulates page predictions into a weighted average over the whole picture.

    Sums are float32 tensors on ``device``, so on a GPU predictions never leave it until
    the picture is finished. Example::

        s = Stitcher((h, w), page_size=256, blend="gaussian", overlap=32)
        for origin in page_origins(h, w, 256, 32):
            s.add(predict(page_at(origin)), origin)
        probabilities = s.finalize()
    """

    def __init__(
        self,
        shape: tuple[int, int],
        page_size: int,
        blend: Blend = "mean",
        overlap: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(shape[0], shape[1], page_size, blend, overlap, device)
        self.shape = shape

    def add(self, prediction: NDArray[np.floating] | torch.Tensor, origin: tuple[int, int]) -> None:
        """Add one page's prediction (``page_size`` square) at ``origin``; padding is cut."""
        (y, x), (h, w), weighted, win = _weighted(prediction, origin, self.window, self.shape)
        self._sum[y : y + h, x : x + w] += weighted
        self._weight[y : y + h, x : x + w] += win

    def add_batch(self, predictions: torch.Tensor, origins: Sequence[tuple[int, int]]) -> None:
        """Add pages ``(N, page, page)`` at their origins."""
        for prediction, origin in zip(predictions, origins, strict=True):
            self.add(prediction, origin)

    def finalize(self) -> NDArray[np.float32]:
        """The weighted average; raises if some pixel was never covered."""
        if not bool((self._weight > 0).all()):
            raise ValueError("stitcher: some pixels were not covered by any page")
        return (self._sum / self._weight).cpu().numpy().astype(np.float32)


def _weighted(
    prediction: NDArray[np.floating] | torch.Tensor,
    origin: tuple[int, int],
    window: torch.Tensor,
    shape: tuple[int, int],
) -> tuple[tuple[int, int], tuple[int, int], torch.Tensor, torch.Tensor]:
    """A page's origin, its size inside the picture (padding cut), its prediction times
    the blend window, and the window: what a stitcher adds."""
    y, x = origin
    h, w = min(window.shape[0], shape[0] - y), min(window.shape[1], shape[1] - x)
    win = window[:h, :w]
    page = torch.as_tensor(prediction, device=window.device)
    return origin, (h, w), page[:h, :w] * win, win


Band = tuple[int, NDArray[np.float32]]  # (first row, probabilities of rows from it)


def gather(bands: Iterable[Band], shape: tuple[int, int]) -> NDArray[np.float32]:
    """Row bands put together into the whole map of ``shape``."""
    out = np.empty(shape, np.float32)
    for y, band in bands:
        out[y : y + band.shape[0]] = band
    return out


class BandStitcher(_Blender):
    """:class:`Stitcher` for pages added in :func:`page_origins` order, keeping only one
    page's height of rows: each row band is handed out as soon as no later page can touch
    it. Memory is ``2 × page_size × width`` floats whatever the picture's height (a
    20000 × 20000 picture: 80 MB at 512 px pages instead of 3.2 GB), and the values are
    those :class:`Stitcher` gives (the same sums, in the same order)."""

    def __init__(
        self,
        shape: tuple[int, int],
        page_size: int,
        origins: Sequence[tuple[int, int]],
        blend: Blend = "mean",
        overlap: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        rows = min(page_size, shape[0])
        super().__init__(rows, shape[1], page_size, blend, overlap, device)
        self.shape = shape
        self.origins = list(origins)
        self.top = 0  # the first row not handed out yet: row 0 of the buffers
        self.added = 0

    def add_batch(
        self, predictions: torch.Tensor, origins: Sequence[tuple[int, int]]
    ) -> list[Band]:
        """Add pages ``(N, page, page)`` at their origins (the next ones in order); the
        row bands they finished."""
        bands = []
        for prediction, origin in zip(predictions, origins, strict=True):
            if origin != self.origins[self.added]:
                raise ValueError(f"band stitcher: page {origin} out of order")
            (y, x), (h, w), weighted, win = _weighted(prediction, origin, self.window, self.shape)
            top = y - self.top
            self._sum[top : top + h, x : x + w] += weighted
            self._weight[top : top + h, x : x + w] += win
            self.added += 1
            more = self.added < len(self.origins)
            end = self.origins[self.added][0] if more else self.shape[0]
            if end > self.top:
                bands.append(self._hand_out(end))
        return bands

    def _hand_out(self, end: int) -> Band:
        """Rows ``top .. end`` (final: no page left starts above ``end``)."""
        n = end - self.top
        weight = self._weight[:n]
        if not bool((weight > 0).all()):
            raise ValueError("stitcher: some pixels were not covered by any page")
        band = (self._sum[:n] / weight).cpu().numpy().astype(np.float32)
        rest = self._sum.shape[0] - n
        self._sum[:rest] = self._sum[n:].clone()
        self._weight[:rest] = self._weight[n:].clone()
        self._sum[rest:] = 0
        self._weight[rest:] = 0
        start, self.top = self.top, end
        return start, band


def resized_shape(
    height: int, width: int, scale: float | None, longest_side: int | None
) -> tuple[int, int]:
    """Shape after the optional ``resize`` (a scale factor or a longest side)."""
    if scale is not None:
        factor = scale
    elif longest_side is not None:
        factor = longest_side / max(height, width)
    else:
        return height, width
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_image(image: NDArray[np.uint8], shape: tuple[int, int]) -> NDArray[np.uint8]:
    """Bilinear resize of an RGB ``uint8`` picture to ``shape`` (H, W)."""
    if image.shape[:2] == shape:
        return image
    return np.asarray(
        Image.fromarray(image).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    )


def resize_mask(mask: NDArray[np.bool_], shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Nearest-neighbour resize of a boolean mask to ``shape`` (H, W)."""
    if mask.shape == shape:
        return mask
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(im.resize((shape[1], shape[0]), Image.Resampling.NEAREST)) > 127


def resize_probabilities(prob: NDArray[np.float32], shape: tuple[int, int]) -> NDArray[np.float32]:
    """Bilinear resize of a probability map back to the original picture size."""
    if prob.shape == shape:
        return prob
    im = Image.fromarray(prob.astype(np.float32), mode="F")
    return np.asarray(im.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)
