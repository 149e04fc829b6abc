"""What a run trains and keeps: the learner (network, optimiser, grad scaler, schedule,
weight average), its resume state (``checkpoint.pt``: with the RNG states, so a resumed
run ends with the values of an uninterrupted one) and the kept model (``model.pt``)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from segtune.core.config import RunConfig, config_to_dict
from segtune.core.errors import ConfigError
from segtune.core.records import RunFolder
from segtune.core.version import VERSION
from segtune.engine.average import WeightAverage
from segtune.engine.model import IMAGENET_MEAN, IMAGENET_STD
from segtune.engine.schedule import build_scheduler


@dataclass
class Learner:
    """The network and everything an optimiser step updates."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    scheduler: torch.optim.lr_scheduler.LRScheduler
    # With optim.ema_decay, the averaged weights are the ones evaluated, selected and kept.
    average: WeightAverage | None = None

    @classmethod
    def build(
        cls,
        config: RunConfig,
        model: nn.Module,
        steps_per_epoch: int,
        amp_dtype: torch.dtype | None = None,
    ) -> Learner:
        optimizer = build_optimizer(config, model)
        average = WeightAverage(model, config.optim.ema_decay) if config.optim.ema_decay else None
        return cls(
            model=model,
            optimizer=optimizer,
            scaler=torch.amp.GradScaler(enabled=amp_dtype == torch.float16),
            scheduler=build_scheduler(optimizer, config.optim, steps_per_epoch),
            average=average,
        )

    @property
    def kept_model(self) -> nn.Module:
        """The weights a run evaluates, selects and keeps."""
        return self.average.model if self.average else self.model

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **({"average": self.average.state_dict()} if self.average else {}),
        }


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = config.optim
    cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=o.learning_rate, weight_decay=o.weight_decay)


def checkpoint_state(
    learner: Learner,
    epoch: int,
    config: RunConfig,
    timings: dict[str, float],
    metrics: dict[str, float],
) -> dict[str, Any]:
    """``checkpoint.pt`` after ``epoch``: what resuming needs to go on exactly."""
    return {
        **learner.state(),
        "rng": rng_state(),
        "epoch": epoch,
        "config": config_to_dict(config),
        "timings": timings,
        "metrics": metrics,
    }


def restore(
    folder: RunFolder, learner: Learner, steps_per_epoch: int
) -> tuple[int, dict[str, Any]]:
    """Restore the last epoch checkpoint into ``learner`` and the RNGs; returns the
    epoch it holds and the checkpoint (its timings)."""
    state = folder.load_checkpoint()
    learner.model.load_state_dict(state["model"])
    learner.optimizer.load_state_dict(state["optimizer"])
    if "scaler" in state:
        learner.scaler.load_state_dict(state["scaler"])
    average = learner.average
    if (average is None) != ("average" not in state):
        what = (
            f"optim.ema_decay is {average.decay:g} but the checkpoint holds no weight average"
            if average
            else "the checkpoint holds a weight average but optim.ema_decay is not set"
        )
        raise ConfigError(
            f"{folder.checkpoint_path}: {what}; resume with the run's own optim.ema_decay"
        )
    if average is not None:
        average.load_state_dict(state["average"])
    done = int(state["epoch"])
    if "scheduler" in state:
        learner.scheduler.load_state_dict(state["scheduler"])
    else:  # a checkpoint from before schedules: put the schedule where it would be
        for _ in range(done * steps_per_epoch):
            learner.scheduler.step()
    set_rng_state(state.get("rng"))
    return done, state


def cpu_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def model_file(
    model: nn.Module,
    config: RunConfig,
    epoch: int,
    val: dict[str, float],
    window: tuple[float, float] | None,
) -> dict[str, Any]:
    """``model.pt``: the weights and what is needed to use them without segtune."""
    best = val.get("val/best_threshold")
    return {
        "model": cpu_weights(model),
        "config": config_to_dict(config),
        "epoch": epoch,
        "threshold": config.eval.threshold,
        "best_threshold": None if best is None else float(best),
        # The kept epoch's validation values: evaluate compares a scored split with them.
        "metrics": {k: float(v) for k, v in val.items()},
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 255},
        # Raw values low..high map onto 0..255 before that normalisation (None: 8-bit
        # pictures as they are, 16-bit ones divided by 257, floats in [0, 1] times 255).
        "intensity_window": None if window is None else list(window),
        "pages": config_to_dict(config.pages),
        "segtune": VERSION,
    }


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain values, so the checkpoint loads weights-only."""
    name, keys, pos, has_gauss, gauss = cast(
        "tuple[str, NDArray[np.uint32], int, int, float]", np.random.get_state(legacy=True)
    )
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any] | None) -> None:
    if not state:
        return
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
