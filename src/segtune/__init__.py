"""segtune: train, tune and inspect binary segmentation models for rare positives.

The Python API (:mod:`segtune.api`) is importable from here; its functions load torch
only when called, so ``import segtune`` stays light.
"""

from __future__ import annotations

from typing import Any

from segtune.core.version import VERSION as __version__

_API = (
    "load_config",
    "load_run",
    "run_study",
    "load_study",
    "study_answer",
    "evaluate_run",
    "predict_masks",
    "export_run",
)
__all__ = [*_API, "train_run", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        from segtune import api

        return getattr(api, name)
    if name == "train_run":
        from segtune.engine.train import train_run

        return train_run
    raise AttributeError(f"module 'segtune' has no attribute {name!r}")
