"""The segtune loss: a weighted sum of positive-weighted BCE and smoothed Dice.

    L = w · BCE_pw + (1 − w) · Dice_s
    BCE_pw = mean over valid pixels of −[pw · y · log σ(z) + (1 − y) · log(1 − σ(z))]
    Dice_s = 1 − (2 Σ p·y + s) / (Σ p + Σ y + s),  p = σ(z), sums over valid pixels of the batch

When ``Σ p + Σ y + s`` is 0 the Dice term is 0. Always computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    *,
    bce_weight: float,
    dice_smooth: float,
    pos_weight: float,
) -> torch.Tensor:
    """Compute the loss over the valid pixels of a batch.

    Args:
        logits: ``(N, 1, H, W)`` or ``(N, H, W)`` raw network outputs (any float dtype).
        target: same shape, 0/1 (bool or float) ground truth.
        valid: same shape, bool; ``False`` marks padding, which never counts.
        bce_weight: ``w`` in [0, 1].
        dice_smooth: ``s`` >= 0.
        pos_weight: ``pw`` > 0, weight of positive pixels in the BCE term.

    Returns:
        A float32 scalar tensor.
    """
    z = logits.float()
    y = target.float()
    v = valid.float()
    n_valid = v.sum().clamp_min(1.0)
    pw = torch.tensor(pos_weight, dtype=torch.float32, device=z.device)
    bce_map = F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction="none")
    bce = (bce_map * v).sum() / n_valid
    p = torch.sigmoid(z) * v
    yv = y * v
    numerator = 2.0 * (p * yv).sum() + dice_smooth
    denominator = p.sum() + yv.sum() + dice_smooth
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    dice = torch.where(denominator > 0, 1.0 - numerator / safe, torch.zeros_like(denominator))
    return bce_weight * bce + (1.0 - bce_weight) * dice
