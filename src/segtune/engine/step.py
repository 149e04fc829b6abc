"""One optimiser step's gradients over a batch, in micro-batches.

With ``optim.micro_batch_size`` a batch is split to fit in memory. The BCE term is a
mean over valid pixels, so each micro-batch's share adds up exactly. The Dice term is
not: a Dice per micro-batch is a different objective for rare positives. With
``optim.exact_batch_dice`` (default) a first pass without gradients adds up the batch's
Dice sums (Σ p·y, Σ p, Σ y), then each micro-batch back-propagates a surrogate whose
gradient is exactly the whole-batch Dice gradient
(:func:`segtune.engine.loss.exact_dice_surrogate`).
The first pass restores BatchNorm running statistics and replays each micro-batch's
random state, so the second pass sees the same forward and statistics are updated once
per micro-batch, as without it. Cost: one extra forward pass per micro-batched step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from segtune.core.config import LossConfig, RunConfig
from segtune.core.runtime import autocast, memory_format
from segtune.engine.loss import (
    bce_sum,
    dice_from_sums,
    dice_sums,
    exact_dice_surrogate,
    segmentation_loss,
)
from segtune.engine.model import normalise

Forward = Callable[[slice], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # logits, y, v
Backward = Callable[[torch.Tensor], None]


def batch_forward(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> Forward:
    """The forward pass of one micro-batch (a slice of the batch) in train mode."""
    layout = memory_format(model)

    def forward(sl: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = images[sl].to(device, non_blocking=True)
        x = x.contiguous(memory_format=layout)
        with autocast(device, amp_dtype):
            logits = model(normalise(x))[:, 0]
        y = targets[sl].to(device, non_blocking=True)
        return logits, y, valid[sl].to(device, non_blocking=True)

    return forward


def step_gradients(
    model: nn.Module,
    forward: Forward,
    batch_size: int,
    micro: int,
    valid: torch.Tensor,
    config: RunConfig,
    backward: Backward,
) -> float:
    """One batch's gradients in micro-batches of ``micro`` pages (the exact whole-batch
    Dice when ``optim.exact_batch_dice`` and the batch is split); returns its loss."""
    slices = [slice(i, i + micro) for i in range(0, batch_size, micro)]
    counts = [int(valid[sl].sum()) for sl in slices]  # on the CPU: no device sync
    if len(slices) > 1 and config.optim.exact_batch_dice:
        return exact_batch_loss(model, forward, slices, counts, config.loss, backward)
    return micro_batch_loss(forward, slices, counts, config.loss, backward)


def micro_batch_loss(
    forward: Forward,
    slices: list[slice],
    valid_counts: list[int],
    loss: LossConfig,
    backward: Backward,
) -> float:
    """Per-micro-batch losses weighted by their share of valid pixels (BCE exact, Dice
    per micro-batch); returns the batch loss value."""
    total = max(sum(valid_counts), 1)
    value = 0.0
    for sl, count in zip(slices, valid_counts, strict=True):
        logits, y, v = forward(sl)
        mb = segmentation_loss(
            logits,
            y,
            v,
            bce_weight=loss.bce_weight,
            dice_smooth=loss.dice_smooth,
            pos_weight=loss.pos_weight,
        )
        backward(mb * (count / total))
        value += float(mb.detach()) * count / total
    return value


def exact_batch_loss(
    model: nn.Module,
    forward: Forward,
    slices: list[slice],
    valid_counts: list[int],
    loss: LossConfig,
    backward: Backward,
) -> float:
    """The whole-batch loss's exact gradient from micro-batches; returns its value."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    states = []
    sums = [torch.zeros(()), torch.zeros(()), torch.zeros(())]
    with torch.no_grad():
        for sl in slices:
            states.append(_rng_state())
            logits, y, v = forward(sl)
            for i, t in enumerate(dice_sums(logits, y, v)):
                sums[i] = sums[i] + t.detach().cpu()
    for buffer, saved in buffers:  # BatchNorm statistics: updated by the second pass only
        buffer.copy_(saved)
    batch = (sums[0], sums[1], sums[2])
    total = max(sum(valid_counts), 1)
    w = loss.bce_weight
    bce_value = 0.0
    for sl, state in zip(slices, states, strict=True):
        _set_rng_state(state)
        logits, y, v = forward(sl)
        bce = bce_sum(logits, y, v, loss.pos_weight) / total
        device_sums = tuple(t.to(logits.device) for t in batch)
        surrogate = exact_dice_surrogate(logits, y, v, device_sums, loss.dice_smooth)  # type: ignore[arg-type]
        backward(w * bce + (1.0 - w) * surrogate)
        bce_value += float(bce.detach())
    return w * bce_value + (1.0 - w) * dice_from_sums(batch, loss.dice_smooth)


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor]]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
    torch.set_rng_state(state[0])
    if state[1]:
        torch.cuda.set_rng_state_all(state[1])
