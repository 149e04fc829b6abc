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


def dice_sums(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Σ p·y, Σ p, Σ y)`` over valid pixels, in float32: the whole of what the Dice
    term depends on, so micro-batches can add theirs up to the batch's."""
    v = valid.float()
    p = torch.sigmoid(logits.float()) * v
    yv = target.float() * v
    return (p * yv).sum(), p.sum(), yv.sum()


def exact_dice_surrogate(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    batch_sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    dice_smooth: float,
) -> torch.Tensor:
    """A micro-batch's term whose gradient (w.r.t. its logits) is exactly that of the
    whole batch's Dice: Dice = 1 − (2A + s)/(P + Y + s) is linearised at the batch sums
    ``(A, P, Y)``, so the sum of the micro-batches' gradients is the batch's gradient."""
    a, p, y = batch_sums
    denominator = p + y + dice_smooth
    if float(denominator) <= 0.0:  # the Dice term is 0 here, and so is its gradient
        return logits.float().sum() * 0.0
    d_overlap = -2.0 / denominator  # ∂Dice/∂A
    d_predicted = (2.0 * a + dice_smooth) / denominator**2  # ∂Dice/∂P
    mb_a, mb_p, _ = dice_sums(logits, target, valid)
    return d_overlap.detach() * mb_a + d_predicted.detach() * mb_p


def dice_from_sums(
    sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor], dice_smooth: float
) -> float:
    a, p, y = (float(t) for t in sums)
    denominator = p + y + dice_smooth
    return 0.0 if denominator <= 0 else 1.0 - (2.0 * a + dice_smooth) / denominator


def bce_sum(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, pos_weight: float
) -> torch.Tensor:
    """Σ of the positive-weighted BCE over valid pixels (divide by the batch's valid
    pixel count for the batch mean)."""
    z = logits.float()
    pw = torch.tensor(pos_weight, dtype=torch.float32, device=z.device)
    bce_map = F.binary_cross_entropy_with_logits(z, target.float(), pos_weight=pw, reduction="none")
    return (bce_map * valid.float()).sum()


def inert_loss_settings(bce_weight: float) -> dict[str, str]:
    """The loss settings that cannot change training at this ``bce_weight``, each with
    why: at ``w = 0`` the BCE term (and so ``pos_weight``) is multiplied by 0, at
    ``w = 1`` the Dice term (and so ``dice_smooth``). Two configurations that differ only
    in these train identically."""
    if bce_weight == 0.0:
        return {"loss.pos_weight": "loss.bce_weight 0 makes loss.pos_weight irrelevant"}
    if bce_weight == 1.0:
        return {"loss.dice_smooth": "loss.bce_weight 1 makes loss.dice_smooth irrelevant"}
    return {}
