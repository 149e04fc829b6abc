"""Exponential moving average of a model's weights (``optim.ema_decay``).

The averaged copy follows the trained model after every optimiser step:
``averaged ← d · averaged + (1 − d) · current`` for parameters and floating-point
buffers (BatchNorm's running statistics), integer buffers copied. The decay ramps up as
``d = min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average does not
drag the random initialisation along for the first few hundred steps. With it, a run
evaluates, selects and keeps the averaged weights; the trained weights only train.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """An exponential moving average of ``model``'s state, kept on the model's device."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0
        # Which entries are averaged and which copied, found once (not every step).
        state = self.model.state_dict()
        self._floats = [k for k, v in state.items() if v.is_floating_point()]
        self._copied = [k for k, v in state.items() if not v.is_floating_point()]

    def current_decay(self) -> float:
        """The decay the next update uses (ramped up over the first updates)."""
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights and buffers."""
        weight = 1.0 - self.current_decay()
        averaged, trained = self.model.state_dict(), model.state_dict()
        torch._foreach_lerp_(
            [averaged[k] for k in self._floats], [trained[k] for k in self._floats], weight
        )
        for key in self._copied:
            averaged[key].copy_(trained[key])
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
