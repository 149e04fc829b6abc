"""What the exact whole-batch Dice costs under micro-batches (``optim.exact_batch_dice``).

    .venv/bin/python bench/exact_dice.py [--device cpu|cuda] [--steps 6]

Times optimiser steps of a Unet/ResNet-18 (random weights) on a batch of 16 pages of
128 px in micro-batches of 4, with the exact Dice (two passes) and with a Dice per
micro-batch (one pass), alternating, in one run; prints seconds per step and the ratio
(expected ≤ 1.4: one extra forward pass without gradients).
"""

from __future__ import annotations

import statistics
import time

import torch

from _common import machine, parse, parser  # isort: skip
from segtune.core.config import LossConfig, ModelConfig
from segtune.engine.model import build_model, normalise
from segtune.engine.step import exact_batch_loss, micro_batch_loss


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=6)
    args = parse(p, steps=1)
    device = torch.device(args.device)
    print(f"machine: {machine()}")
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder="resnet18")).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randint(0, 255, (16, 3, 128, 128), dtype=torch.uint8, device=device)
    y = torch.rand(16, 128, 128, device=device) < 0.02
    v = torch.ones(16, 128, 128, dtype=torch.bool, device=device)
    loss = LossConfig(bce_weight=0.5, dice_smooth=1e-4, pos_weight=10.0)
    slices = [slice(i, i + 4) for i in range(0, 16, 4)]
    counts = [int(v[sl].sum()) for sl in slices]

    def forward(sl: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return model(normalise(x[sl]))[:, 0], y[sl], v[sl]

    def backward(term: torch.Tensor) -> None:
        term.backward()

    def step(exact: bool) -> float:
        optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        if exact:
            exact_batch_loss(model, forward, slices, counts, loss, backward)
        else:
            micro_batch_loss(forward, slices, counts, loss, backward)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    step(True), step(False)  # warm-up
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.steps):
        for exact in (False, True):
            times[exact].append(step(exact))
    per, ex = statistics.median(times[False]), statistics.median(times[True])
    print(f"Dice per micro-batch: {per:.3f} s/step; exact whole-batch Dice: {ex:.3f} s/step")
    print(f"exact ÷ per micro-batch: {ex / per:.2f} (expected ≤ 1.4)")


if __name__ == "__main__":
    main()
