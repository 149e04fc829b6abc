"""bf16 autocast against fp32 for one training step on this CPU.

    .venv/bin/python bench/cpu_precision.py [--encoder resnet18] [--page 128] [--batch 8]
        [--steps 5] [--repeats 2]

Unet with the given encoder (random weights, channels-last as segtune runs on a CPU),
one Adam step on a batch of random pages with a Dice + BCE loss, timed in fp32 and under
bf16 autocast, alternately (fp32, bf16, fp32, bf16, …), after one warm-up step each.
Prints the median seconds per step of each and their ratio, and whether oneDNN reports
bf16 kernels for this CPU (``segtune.core.runtime.cpu_computes_bf16``): where it does not,
bf16 is emulated and segtune train says so.
"""

from __future__ import annotations

import statistics
import time

from _common import machine, parse, parser  # isort: skip

import torch

from segtune.core.config import ModelConfig
from segtune.core.runtime import autocast, cpu_computes_bf16
from segtune.engine.loss import segmentation_loss
from segtune.engine.model import build_model


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--page", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    a = parse(p, encoder="mobilenet_v2", page=32, batch=2, steps=1, repeats=1)
    device = torch.device(a.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder=a.encoder)).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    pages = torch.randn(a.batch, 3, a.page, a.page, device=device)
    pages = pages.contiguous(memory_format=torch.channels_last)
    masks = (torch.rand(a.batch, 1, a.page, a.page, device=device) > 0.97).float()
    valid = torch.ones_like(masks, dtype=torch.bool)

    def step(dtype: torch.dtype | None) -> None:
        with autocast(device, dtype):
            logits = model(pages)
        loss = segmentation_loss(
            logits.float(), masks, valid, bce_weight=0.2, dice_smooth=1e-5, pos_weight=1.0
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def seconds_per_step(dtype: torch.dtype | None) -> float:
        step(dtype)  # warm-up: kernel selection, allocation
        start = time.perf_counter()
        for _ in range(a.steps):
            step(dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / a.steps

    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(a.repeats):
        times["fp32"].append(seconds_per_step(None))
        times["bf16"].append(seconds_per_step(torch.bfloat16))
    fp32, bf16 = (statistics.median(times[k]) for k in ("fp32", "bf16"))
    print(f"machine: {machine()}, {torch.get_num_threads()} torch threads")
    print(
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}; oneDNN bf16 kernels: "
        f"{'yes' if cpu_computes_bf16() else 'no (bf16 is emulated)'}"
    )
    print(
        f"Unet/{a.encoder}, batch {a.batch} x {a.page} px, {a.steps} steps x {a.repeats} "
        f"repeats: fp32 {fp32:.3f} s/step, bf16 autocast {bf16:.3f} s/step; "
        f"bf16 / fp32 = {bf16 / fp32:.2f}"
    )


if __name__ == "__main__":
    main()
