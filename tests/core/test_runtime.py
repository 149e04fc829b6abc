"""Device choices of a run: memory format, precision."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segtune.core import runtime
from segtune.core.runtime import channels_last, memory_format, precision_note


def test_channels_last_is_the_default_on_cpu_and_cuda_and_can_be_turned_off() -> None:
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert channels_last(cpu) and channels_last(cuda) and not channels_last(mps)
    assert not channels_last(cpu, False) and channels_last(mps, True)


def test_inputs_take_the_memory_format_of_the_first_spatial_convolution() -> None:
    # A 1x1 convolution first: its weight is contiguous in both formats, so it is skipped.
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3))
    assert memory_format(model) == torch.contiguous_format
    model.to(memory_format=torch.channels_last)
    assert memory_format(model) == torch.channels_last
    assert memory_format(nn.Linear(3, 3)) == torch.contiguous_format


def test_a_precision_the_cpu_does_not_compute_as_named_is_noted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_computes_bf16", lambda: False)
    note = precision_note("bf16", cpu)
    assert note is not None and "without bf16 kernels" in note and "9x slower" in note
    assert precision_note("auto", cpu) is None and precision_note("fp32", cpu) is None
    assert precision_note("bf16", torch.device("cuda")) is None
    monkeypatch.setattr(runtime, "cpu_computes_bf16", lambda: True)
    assert precision_note("bf16", cpu) is None
    assert precision_note("fp16", cpu) == (
        "note: runtime.precision fp16 has no CPU autocast: this run computes in fp32"
    )
