"""Tiled inference: a whole picture's probability map from page predictions.

The one place where a model meets a picture larger than its pages (like MONAI's
inferers): evaluation, ``segtune predict`` and exports use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from segtune.core.config import PagesConfig
from segtune.core.runtime import autocast, memory_format
from segtune.data.tiles import Stitcher, extract_page, page_origins, resize_probabilities
from segtune.engine.model import normalise


@torch.inference_mode()
def predict_probabilities(
    model: nn.Module,
    image: NDArray[np.uint8],
    pages: PagesConfig,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    batch_pages: int = 8,
    tta: str = "none",
) -> NDArray[np.float32]:
    """Probability map (H, W) of one (already resized) picture: tile, predict, stitch.

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
    stitcher = Stitcher((h, w), size, pages.blend, pages.patch_overlap, device)
    for start in range(0, len(origins), batch_pages):
        chunk = origins[start : start + batch_pages]
        batch = np.stack([extract_page(image, o, size)[0] for o in chunk])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device, non_blocking=True)
        x = x.contiguous(memory_format=layout)
        stitcher.add_batch(_page_probabilities(model, normalise(x), device, amp_dtype, tta), chunk)
    return stitcher.finalize()


def predict_at_scales(
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
) -> NDArray[np.float32]:
    """Probability map at ``shape`` (the picture's own size): the mean over ``scales``
    (eval.tta_scales) of the map of ``image_at(scale)`` (the picture resized by
    pages.resize times that factor), each resized back to ``shape``."""
    total: NDArray[np.float32] | None = None
    for scale in scales:
        prob = predict_probabilities(
            model,
            image_at(scale),
            pages,
            device,
            amp_dtype=amp_dtype,
            batch_pages=batch_pages,
            tta=tta,
        )
        prob = resize_probabilities(prob, shape)
        total = prob if total is None else total + prob
    assert total is not None
    return total if len(scales) == 1 else (total / len(scales)).astype(np.float32)


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
