"""Throughput of the reference study's runs, and the estimated wall time of its
72-configuration first stage on one device.

    .venv/bin/python bench/reference_throughput.py --device cuda          # page 2048, batch 16, bf16
    .venv/bin/python bench/reference_throughput.py --page 256 --steps 3   # CPU smoke run

Measures segtune's training step (Unet/resnet34, the segtune loss, batch 16 as
micro-batches, bf16 autocast and channels_last on CUDA) and its tiled inference, on
random pages in device memory, then estimates one run as 5 epochs × (700 training
pictures + evaluation of 50 validation and 700 training pictures), one page per
picture, and the first stage as 72 such runs. Also prints peak GPU memory.
"""

from __future__ import annotations

import time

import torch

from _common import machine, parse, parser, peak_memory_mb  # isort: skip
from segtune.core.config import ModelConfig
from segtune.core.runtime import autocast, autocast_dtype
from segtune.engine.loss import segmentation_loss
from segtune.engine.model import build_model, normalise


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--page", type=int, default=2048)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--micro", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--encoder", default="resnet34")
    a = parse(p, page=64, batch=2, micro=1, steps=1, encoder="resnet18")
    dev = torch.device(a.device)
    amp = autocast_dtype("auto", dev)
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder=a.encoder)).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randint(0, 255, (a.batch, 3, a.page, a.page), dtype=torch.uint8, device=dev)
    y = torch.rand(a.batch, a.page, a.page, device=dev) < 0.03
    v = torch.ones_like(y)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        for s in range(0, a.batch, a.micro):
            xb = x[s : s + a.micro]
            if dev.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(dev, amp):
                logits = model(normalise(xb))[:, 0]
            loss = segmentation_loss(
                logits,
                y[s : s + a.micro],
                v[s : s + a.micro],
                bce_weight=0.5,
                dice_smooth=1e-5,
                pos_weight=10.0,
            )
            (loss * a.micro / a.batch).backward()
        opt.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    train_pps = a.steps * a.batch / (time.perf_counter() - t)
    model.eval()
    with torch.inference_mode():
        for _ in range(2):
            with autocast(dev, amp):
                model(normalise(x[: a.micro]))
        sync()
        t = time.perf_counter()
        for _ in range(a.steps):
            for s in range(0, a.batch, a.micro):
                with autocast(dev, amp):
                    torch.sigmoid(model(normalise(x[s : s + a.micro])).float())
        sync()
        eval_pps = a.steps * a.batch / (time.perf_counter() - t)
    run_s = 5 * (700 / train_pps + (50 + 700) / eval_pps)
    print(f"machine: {machine()}")
    print(
        f"Unet/{a.encoder}, page {a.page}, batch {a.batch} ({a.micro} per micro-batch), "
        f"precision {amp or 'fp32'}, device {a.device}"
    )
    print(
        f"training: {train_pps:.2f} pages/s; inference: {eval_pps:.2f} pages/s; "
        f"peak memory {peak_memory_mb(a.device):.0f} MB"
    )
    print(
        f"one reference run (5 epochs, 700 train + 750 evaluated pictures of one page): "
        f"{run_s / 60:.1f} min; first stage (72 runs) on one device: {72 * run_s / 3600:.2f} h "
        f"(goal <= 0.5 h)"
    )


if __name__ == "__main__":
    main()
