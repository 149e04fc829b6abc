"""Tiled inference: a whole picture's probability map from page predictions.

The one place where a model meets a picture larger than its pages (like MONAI's
inferers): evaluation, ``segtune predict`` and exports use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from segtune.core.config import PagesConfig
from segtune.core.runtime import autocast, memory_format
from segtune.data.tiles import (
    Band,
    BandStitcher,
    extract_page,
    gather,
    page_origins,
    resize_probabilities,
)
from segtune.engine.model import normalise


def predict_probabilities(
    model: nn.Module,
    image: NDArray[np.uint8],
    pages: PagesConfig,
    device: torch.device,
    **options: Any,
) -> NDArray[np.float32]:
    """Probability map (H, W) of one (already resized) picture: tile, predict, stitch
    (:func:`predict_bands`, gathered; ``options``: its amp_dtype, batch_pages, tta)."""
    return gather(predict_bands(model, image, pages, device, **options), image.shape[:2])


def predict_bands(
    model: nn.Module,
    image: NDArray[np.uint8],
    pages: PagesConfig,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    batch_pages: int = 8,
    tta: str = "none",
) -> Iterator[Band]:
    """The probability map of one (already resized) picture as row bands, top to bottom,
    each handed out once no later page touches it: memory bounded by the page size and
    the picture's width, whatever its height.

    Pages are predicted in batches of ``batch_pages`` and blended with ``pages.blend``.
    With ``tta="flips"`` each page's probability is the mean over the identity and the
    horizontal, vertical and both flips (each flipped back before averaging); with
    ``tta="dihedral"`` over those four and the same four of the transposed page.
    """
    model.eval()
    h, w = image.shape[:2]
    size = pages.page_size
    origins = page_origins(h, w, size, pages.patch_overlap)
    layout = memory_format(model)
    stitcher = BandStitcher((h, w), size, origins, pages.blend, pages.patch_overlap, device)
    for start in range(0, len(origins), batch_pages):
        chunk = origins[start : start + batch_pages]
        batch = np.stack([extract_page(image, o, size)[0] for o in chunk])
        with torch.inference_mode():
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device, non_blocking=True)
            x = x.contiguous(memory_format=layout)
            prob = _page_probabilities(model, normalise(x), device, amp_dtype, tta)
            bands = stitcher.add_batch(prob, chunk)
        yield from bands


def probability_bands(
    model: nn.Module,
    image_at: Callable[[float], NDArray[np.uint8]],
    shape: tuple[int, int],
    pages: PagesConfig,
    device: torch.device,
    *,
    scales: Sequence[float] = (1.0,),
    amp_dtype: torch.dtype | None = None,
    batch_pages: int = 8,
    tta: str = "none",
) -> Iterator[Band]:
    """The probability map at ``shape`` as row bands: the mean over ``scales`` of the map
    of ``image_at(scale)``, each resized back to ``shape``. Streamed with bounded memory
    when one scale predicts at the picture's own size; otherwise (several scales, or a
    resize) the whole map, as one band."""
    options: dict[str, Any] = {"amp_dtype": amp_dtype, "batch_pages": batch_pages, "tta": tta}
    if len(scales) == 1:
        image = image_at(scales[0])
        if image.shape[:2] == shape:
            yield from predict_bands(model, image, pages, device, **options)
        else:
            prob = predict_probabilities(model, image, pages, device, **options)
            yield 0, resize_probabilities(prob, shape)
        return
    total: NDArray[np.float32] | None = None
    for scale in scales:
        prob = predict_probabilities(model, image_at(scale), pages, device, **options)
        prob = resize_probabilities(prob, shape)
        total = prob if total is None else total + prob
    assert total is not None
    yield 0, (total / len(scales)).astype(np.float32)


def predict_at_scales(
    model: nn.Module,
    image_at: Callable[[float], NDArray[np.uint8]],
    shape: tuple[int, int],
    pages: PagesConfig,
    device: torch.device,
    **options: Any,
) -> NDArray[np.float32]:
    """Probability map at ``shape`` (the picture's own size): the mean over the test-time
    scales (eval.tta_scales) of the map of ``image_at(scale)`` (the picture resized by
    pages.resize times that factor), each resized back to ``shape``. ``options``: those
    of :func:`probability_bands` (scales, amp_dtype, batch_pages, tta)."""
    return gather(probability_bands(model, image_at, shape, pages, device, **options), shape)


FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))  # identity, h, v, both
VIEWS: dict[str, tuple[tuple[bool, tuple[int, ...]], ...]] = {  # (transposed, flips)
    "none": ((False, ()),),
    "flips": tuple((False, dims) for dims in FLIPS),
    "dihedral": tuple((t, dims) for t in (False, True) for dims in FLIPS),
}


def _page_probabilities(
    model: nn.Module, x: torch.Tensor, device: torch.device, amp_dtype: torch.dtype | None, tta: str
) -> torch.Tensor:
    """(N, H, W) probabilities of a normalised batch of square pages, averaged over the
    views of ``tta`` (each mapped back before averaging)."""
    views = VIEWS[tta]
    total: torch.Tensor | None = None
    for transposed, dims in views:
        xi = x.transpose(2, 3) if transposed else x
        xi = torch.flip(xi, dims) if dims else xi
        with autocast(device, amp_dtype):
            logits = model(xi)
        prob = torch.sigmoid(logits.float())
        prob = torch.flip(prob, dims) if dims else prob
        prob = prob.transpose(2, 3) if transposed else prob
        total = prob if total is None else total + prob
    assert total is not None
    return (total / len(views))[:, 0]
