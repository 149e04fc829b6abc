"""Device, precision and seeding."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from segtune.core.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda, then mps, then cpu; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"runtime.device: unknown device {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"runtime.device: {name!r} requested but CUDA is not available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"runtime.device: {name!r} requested but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def channels_last(device: torch.device, setting: bool | None = None) -> bool:
    """Whether the model (and so its inputs) takes channels-last tensors: ``setting``
    (``runtime.channels_last``), else on CUDA and on CPUs, where oneDNN's kernels ran a
    training step 1.19x faster than with NCHW tensors (BENCHMARKS.md, training step
    overhead)."""
    return device.type in ("cuda", "cpu") if setting is None else setting


def place_model(model: nn.Module, device: torch.device, setting: bool | None) -> nn.Module:
    """``model`` on ``device``, channels-last where :func:`channels_last` says so."""
    model = model.to(device)
    if channels_last(device, setting):
        model = model.to(memory_format=torch.channels_last)
    return model


def memory_format(model: nn.Module) -> torch.memory_format:
    """The memory format of ``model``'s first spatial convolution: its inputs are given
    the same one."""
    for p in model.parameters():
        if p.dim() == 4 and p.shape[2] * p.shape[3] > 1:
            if not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last):
                return torch.channels_last
            break
    return torch.contiguous_format


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype: ``auto`` is bf16 on CUDA (fp16 where bf16 is missing), else None."""
    if precision == "fp32" or device.type != "cuda":
        if precision in ("bf16", "fp16") and device.type == "cpu":
            return torch.bfloat16 if precision == "bf16" else None
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def cpu_computes_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 or AMX). Without them a bf16
    autocast training step is emulated: 9x slower than fp32 on an AVX2-only AMD EPYC
    (BENCHMARKS.md, bf16 on a CPU). Unknown (no oneDNN query) counts as yes."""
    query = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return True if query is None else bool(query())
    except RuntimeError:
        return True


def precision_note(precision: str, device: torch.device) -> str | None:
    """A line for a run whose ``runtime.precision`` does not compute as named on
    ``device`` (a CPU), else None."""
    if device.type != "cpu":
        return None
    if precision == "bf16" and not cpu_computes_bf16():
        capability = torch.backends.cpu.get_cpu_capability()
        return (
            f"note: runtime.precision bf16 on a CPU without bf16 kernels ({capability}): "
            "emulated, about 9x slower per step than fp32 on such a CPU; precision auto "
            "or fp32 computes in fp32"
        )
    if precision not in ("auto", "fp32") and autocast_dtype(precision, device) is None:
        return f"note: runtime.precision {precision} has no CPU autocast: this run computes in fp32"
    return None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
