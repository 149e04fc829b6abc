"""Learning-rate schedules, stepped once per optimiser step (resumable: the scheduler's
state goes into the checkpoint).

``constant`` keeps ``optim.learning_rate``; ``cosine`` decays it to 0 along half a
cosine; ``poly`` decays it as ``(1 − progress)^optim.poly_power`` (nnU-Net's 0.9). A
linear warm-up over ``optim.warmup_epochs`` precedes any of them.
"""

from __future__ import annotations

import math

import torch

from segtune.core.config import OptimConfig


def lr_factor(step: int, total: int, warmup: int, kind: str, power: float = 0.9) -> float:
    """The multiple of the base learning rate used at optimiser step ``step`` (0-based)
    of ``total``, after ``warmup`` warm-up steps."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return (1.0 - progress) ** power


def build_scheduler(
    optimizer: torch.optim.Optimizer, optim: OptimConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = optim.epochs * steps_per_epoch
    warmup = round(optim.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, total, warmup, optim.schedule, optim.poly_power),
    )
