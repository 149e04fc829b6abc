"""Tiled inference: a whole picture's probability map from page predictions.

The one place where a model meets a picture larger than its pages (like MONAI's
inferers): evaluation, ``segtune predict`` and exports use it.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from segtune.config import PagesConfig
from segtune.data.tiles import Stitcher, extract_page, page_origins
from segtune.model import normalise
from segtune.runtime import autocast, memory_format


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
    horizontal, vertical and both flips (each flipped back before averaging).
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


FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))  # identity, h, v, both


def _page_probabilities(
    model: nn.Module, x: torch.Tensor, device: torch.device, amp_dtype: torch.dtype | None, tta: str
) -> torch.Tensor:
    """(N, H, W) probabilities of a normalised batch, averaged over flips when asked."""
    flips = FLIPS if tta == "flips" else FLIPS[:1]
    total: torch.Tensor | None = None
    for dims in flips:
        xi = torch.flip(x, dims) if dims else x
        with autocast(device, amp_dtype):
            logits = model(xi)
        prob = torch.sigmoid(logits.float())
        prob = torch.flip(prob, dims) if dims else prob
        total = prob if total is None else total + prob
    assert total is not None
    return (total / len(flips))[:, 0]
