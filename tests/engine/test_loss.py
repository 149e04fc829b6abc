from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segtune.engine.loss import segmentation_loss


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 8, 8, generator=g) * 3
    target = torch.rand(2, 8, 8, generator=g) < 0.2
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    return logits, target, valid


@pytest.mark.parametrize("pos_weight", [1.0, 5.0, 25.0])
def test_bce_weight_one_equals_torch_bce_with_pos_weight(pos_weight: float) -> None:
    logits, target, valid = _batch()
    ours = segmentation_loss(
        logits, target, valid, bce_weight=1.0, dice_smooth=1e-5, pos_weight=pos_weight
    )
    ref = F.binary_cross_entropy_with_logits(
        logits, target.float(), pos_weight=torch.tensor(pos_weight)
    )
    assert torch.allclose(ours, ref, atol=1e-6)


def test_bce_weight_zero_equals_dice_formula() -> None:
    logits, target, valid = _batch(1)
    s = 1e-4
    p = torch.sigmoid(logits)
    y = target.float()
    expected = 1 - (2 * (p * y).sum() + s) / (p.sum() + y.sum() + s)
    ours = segmentation_loss(logits, target, valid, bce_weight=0.0, dice_smooth=s, pos_weight=10.0)
    assert torch.allclose(ours, expected, atol=1e-6)


def test_hand_computed_mixture() -> None:
    # Two pixels: z = 0 (p = 0.5), y = 1 and y = 0; pw = 2, w = 0.5, s = 0.
    logits = torch.zeros(1, 1, 2)
    target = torch.tensor([[[1.0, 0.0]]])
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    bce = (2 * math.log(2) + math.log(2)) / 2
    dice = 1 - (2 * 0.5) / (1.0 + 1.0)
    ours = segmentation_loss(logits, target, valid, bce_weight=0.5, dice_smooth=0.0, pos_weight=2.0)
    assert ours.item() == pytest.approx(0.5 * bce + 0.5 * dice, abs=1e-6)


def test_padding_is_ignored() -> None:
    logits, target, valid = _batch(2)
    base = segmentation_loss(
        logits, target, valid, bce_weight=0.4, dice_smooth=1e-5, pos_weight=3.0
    )
    padded_logits = torch.cat([logits, torch.full((2, 8, 4), 50.0)], dim=2)
    padded_target = torch.cat([target, torch.ones(2, 8, 4, dtype=torch.bool)], dim=2)
    padded_valid = torch.cat([valid, torch.zeros(2, 8, 4, dtype=torch.bool)], dim=2)
    padded = segmentation_loss(
        padded_logits, padded_target, padded_valid, bce_weight=0.4, dice_smooth=1e-5, pos_weight=3.0
    )
    assert torch.allclose(base, padded, atol=1e-6)


def test_empty_target_with_zero_smooth_is_finite_and_has_gradients() -> None:
    logits = torch.full((1, 4, 4), -30.0, requires_grad=True)
    target = torch.zeros(1, 4, 4, dtype=torch.bool)
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    loss = segmentation_loss(logits, target, valid, bce_weight=0.0, dice_smooth=0.0, pos_weight=1.0)
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    # all sums and s zero (every pixel is padding) → Dice term is exactly 0
    none_valid = torch.zeros(1, 4, 4, dtype=torch.bool)
    zero = segmentation_loss(
        logits, target, none_valid, bce_weight=0.0, dice_smooth=0.0, pos_weight=1.0
    )
    assert zero.item() == 0.0


def test_half_precision_logits_give_float32_loss() -> None:
    logits, target, valid = _batch(3)
    loss = segmentation_loss(
        logits.to(torch.bfloat16), target, valid, bce_weight=0.5, dice_smooth=1e-5, pos_weight=1.0
    )
    assert loss.dtype == torch.float32


@pytest.mark.parametrize(
    ("bce_weight", "key", "values"),
    [(0.0, "pos_weight", (1.0, 10.0)), (1.0, "dice_smooth", (1e-5, 1.0))],
)
def test_the_settings_called_inert_change_neither_loss_nor_gradient(
    bce_weight: float, key: str, values: tuple[float, float]
) -> None:
    """What inert_loss_settings claims, bit for bit: the report names such
    configurations as identical."""
    from segtune.engine.loss import inert_loss_settings

    assert f"loss.{key}" in inert_loss_settings(bce_weight)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=g)
    target = torch.rand(2, 1, 8, 8, generator=g) > 0.8
    valid = torch.ones_like(target)
    results = []
    for v in values:
        z = logits.clone().requires_grad_(True)
        settings = {"bce_weight": bce_weight, "dice_smooth": 1e-5, "pos_weight": 1.0, key: v}
        loss = segmentation_loss(z, target, valid, **settings)
        loss.backward()
        assert z.grad is not None
        results.append((loss.detach(), z.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert inert_loss_settings(0.5) == {}
