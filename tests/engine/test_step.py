"""Micro-batches with the exact whole-batch Dice gradient."""

from __future__ import annotations

import torch
from torch import nn

from segtune.core.config import LossConfig
from segtune.engine.loss import segmentation_loss
from segtune.engine.step import exact_batch_loss, micro_batch_loss

LOSS = LossConfig(bce_weight=0.3, dice_smooth=1e-4, pos_weight=4.0)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, 16, 16, generator=g)
    y = torch.rand(8, 16, 16, generator=g) < 0.05  # rare positives
    v = torch.ones(8, 16, 16, dtype=torch.bool)
    v[:, :, 12:] = False  # some padding
    return x, y, v


def _net(batch_norm: bool) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1)]
    return nn.Sequential(*layers)


def _grads(net: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in net.parameters() if p.grad is not None]


def _run(net: nn.Module, exact: bool, micro: int) -> tuple[float, list[torch.Tensor]]:
    x, y, v = _batch()
    net.zero_grad()
    slices = [slice(i, i + micro) for i in range(0, 8, micro)]
    counts = [int(v[sl].sum()) for sl in slices]

    def forward(sl: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return net(x[sl])[:, 0], y[sl], v[sl]

    def backward(term: torch.Tensor) -> None:
        term.backward()

    if exact:
        value = exact_batch_loss(net, forward, slices, counts, LOSS, backward)
    else:
        value = micro_batch_loss(forward, slices, counts, LOSS, backward)
    return value, _grads(net)


def _whole(net: nn.Module, micro: int) -> tuple[float, list[torch.Tensor]]:
    """The batch's loss over the concatenated outputs of the micro-batch forwards."""
    x, y, v = _batch()
    net.zero_grad()
    logits = torch.cat([net(x[i : i + micro])[:, 0] for i in range(0, 8, micro)])
    loss = segmentation_loss(logits, y, v, bce_weight=0.3, dice_smooth=1e-4, pos_weight=4.0)
    loss.backward()
    return float(loss.detach()), _grads(net)


def test_without_batch_norm_the_gradients_are_the_unsplit_batch_s() -> None:
    net = _net(batch_norm=False)
    whole_value, whole = _whole(net, 8)  # one forward of all 8
    for micro in (1, 2, 4):
        value, grads = _run(net, exact=True, micro=micro)
        assert abs(value - whole_value) < 1e-5
        for a, b in zip(grads, whole, strict=True):
            assert torch.allclose(a, b, atol=1e-5), micro
    _, per_micro = _run(net, exact=False, micro=1)  # the old objective differs
    assert not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(per_micro, whole, strict=True))


def test_with_batch_norm_gradients_and_running_statistics_match_the_micro_forwards() -> None:
    for micro in (2, 4):
        reference = _net(batch_norm=True)
        ref_value, ref_grads = _whole(reference, micro)
        net = _net(batch_norm=True)
        value, grads = _run(net, exact=True, micro=micro)
        assert abs(value - ref_value) < 1e-5
        for a, b in zip(grads, ref_grads, strict=True):
            assert torch.allclose(a, b, atol=1e-5), micro
        bn, ref_bn = net[1], reference[1]
        assert torch.allclose(bn.running_mean, ref_bn.running_mean, atol=1e-6)
        assert torch.allclose(bn.running_var, ref_bn.running_var, atol=1e-6)
        assert int(bn.num_batches_tracked) == int(ref_bn.num_batches_tracked) == 8 // micro
