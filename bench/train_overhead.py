"""Training throughput: segtune's training step vs a bare PyTorch loop, and the real
data path (decoded cache + augmentation + loader workers) vs pages in memory.

    .venv/bin/python bench/train_overhead.py [--device cpu|cuda] [--page 128] [--batch 8]

1. Same network, batch, loss and pages: the bare loop steps over ready tensors; segtune
   runs its epoch function (sampler plan, Dataset, DataLoader, micro-batch/accumulation
   logic, loss checks) over in-memory pictures without augmentation. Goal: ratio >= 0.97.
2. segtune with the real data path (cache memory maps, flips/rot90, loader workers) vs
   segtune on in-memory pages. Goal: ratio >= 0.95 (loading keeps up).
3. segtune's epoch with channels-last tensors (its default on CUDA and CPU) vs the same
   epoch with NCHW tensors: what the memory format is worth on this device.
Each variant runs in its own process (peak memory is its own), alternately, 3 times;
medians are printed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from _common import interleaved, isolated, machine, median, parse, parser  # isort: skip


@dataclass(frozen=True)
class Case:
    """One measured variant (picklable: it crosses into a fresh process)."""

    device: str
    page: int
    batch: int
    pictures: int
    tmp: str
    augment: bool = False
    cache: bool = False
    workers: int = 0
    nchw: bool = False  # segtune with NCHW tensors instead of channels-last


def _setup(c: Case) -> tuple[Any, ...]:
    import numpy as np
    import torch

    from segtune.core.config import build_run_config
    from segtune.data.cache import PictureCache
    from segtune.data.layout import load_pictures
    from segtune.data.pages import LoadedPicture, load_split
    from segtune.data.synthetic import write_demo_data
    from segtune.engine.model import build_model

    torch.manual_seed(0)
    data = Path(c.tmp) / "data"
    if not (data / "train").is_dir():
        write_demo_data(data, pictures=c.pictures, size=c.page * 2, seed=0, val_fraction=0.0)
    config = build_run_config(
        {
            "pages": {"page_size": c.page, "patch_overlap": 0},
            "model": {"encoder": "resnet18"},
            "optim": {"epochs": 1, "batch_size": c.batch, "learning_rate": 1e-4},
            "sampling": {"augment": ["hflip", "vflip", "rot90"] if c.augment else []},
            "runtime": {"device": c.device, "num_workers": c.workers, "precision": "auto"},
        }
    )
    pics = load_pictures(data / "train")
    loaded = load_split(pics, PictureCache(Path(c.tmp) / "cache"), config.pages)
    if not c.cache:
        loaded = [LoadedPicture(lp.picture, np.array(lp.image), np.array(lp.mask)) for lp in loaded]
    model = build_model(config.model).to(c.device)
    return config, loaded, model


def run_segtune(c: Case) -> dict[str, Any]:
    import torch
    from _common import Timer, peak_memory_mb

    from segtune.core.progress import ProgressFile
    from segtune.core.runtime import autocast_dtype, channels_last
    from segtune.data.pages import page_loader
    from segtune.engine.checkpoint import Learner
    from segtune.engine.train import train_one_epoch

    torch.set_num_threads(torch.get_num_threads())
    config, loaded, model = _setup(c)
    dev = torch.device(c.device)
    if not c.nchw and channels_last(dev):  # NCHW: the model's format is what steps use
        model = model.to(memory_format=torch.channels_last)
    amp = autocast_dtype(config.runtime.precision, dev)
    loader, sampler = page_loader(loaded, config, pin_memory=dev.type == "cuda")
    learner = Learner.build(config, model, len(loader), amp)
    watch = ProgressFile(Path(c.tmp) / f"run-{os.getpid()}", 2, len(loader), 1)

    def epoch(n: int) -> None:
        sampler.set_epoch(n)
        train_one_epoch(config, learner, loader, n, device=dev, amp_dtype=amp, watch=watch)

    epoch(1)  # warm-up (starts workers)
    with Timer() as t:
        epoch(2)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    return {"pages_per_s": len(sampler) / t.seconds, "peak_mb": peak_memory_mb(c.device)}


def run_bare(c: Case) -> dict[str, Any]:
    import numpy as np
    import torch
    from _common import Timer, peak_memory_mb

    from segtune.core.runtime import autocast, autocast_dtype, channels_last
    from segtune.data.tiles import page_origins
    from segtune.engine.loss import segmentation_loss
    from segtune.engine.model import normalise

    _config, loaded, model = _setup(c)
    dev = torch.device(c.device)
    page, batch = c.page, c.batch
    if channels_last(dev):
        model = model.to(memory_format=torch.channels_last)
    pages = [
        (lp.image[y : y + page, x : x + page], lp.mask[y : y + page, x : x + page])
        for lp in loaded
        for y, x in page_origins(lp.image.shape[0], lp.image.shape[1], page, 0)
    ]
    images = torch.from_numpy(np.stack([p[0] for p in pages])).permute(0, 3, 1, 2).contiguous()
    masks = torch.from_numpy(np.stack([p[1] for p in pages]))
    valid = torch.ones_like(masks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = autocast_dtype("auto", dev)
    scaler = torch.amp.GradScaler(enabled=amp == torch.float16)
    model.train()

    def epoch(limit: int | None = None) -> None:
        perm = torch.randperm(len(images))[:limit]
        for s in range(0, len(perm), batch):
            idx = perm[s : s + batch]
            x = images[idx].to(dev, non_blocking=True)
            if channels_last(dev):
                x = x.contiguous(memory_format=torch.channels_last)
            y, v = masks[idx].to(dev), valid[idx].to(dev)
            opt.zero_grad(set_to_none=True)
            with autocast(dev, amp):
                logits = model(normalise(x))[:, 0]
            loss = segmentation_loss(logits, y, v, bce_weight=0.5, dice_smooth=1e-5, pos_weight=1.0)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss.item()

    epoch(limit=2 * batch)  # warm-up
    with Timer() as t:
        epoch()
        if dev.type == "cuda":
            torch.cuda.synchronize()
    return {"pages_per_s": len(images) / t.seconds, "peak_mb": peak_memory_mb(c.device)}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--page", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--pictures", type=int, default=16, help="pictures of 2×2 pages each")
    p.add_argument("--workers", type=int, default=2, help="loader workers of the real data path")
    p.add_argument("--repeats", type=int, default=3)
    a = parse(p, page=32, batch=2, pictures=2, workers=0, repeats=1)
    print(f"machine: {machine()}")
    print(
        f"network Unet/resnet18, page {a.page}, batch {a.batch}, {a.pictures * 4} pages per epoch, "
        f"device {a.device}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Case(a.device, a.page, a.batch, a.pictures, tmp)
        real_path = replace(base, augment=True, cache=True, workers=a.workers)
        res = interleaved(
            {
                "bare": lambda: isolated(run_bare, base),
                "segtune": lambda: isolated(run_segtune, base),
                "real": lambda: isolated(run_segtune, real_path),
                "nchw": lambda: isolated(run_segtune, replace(base, nchw=True)),
            },
            a.repeats,
        )
    bare, seg, real = (median(res[k], "pages_per_s") for k in ("bare", "segtune", "real"))
    print(f"{'variant':48s} {'pages/s':>9s} {'peak MB':>9s}")
    for key, label in (
        ("bare", "bare PyTorch loop, in-memory pages"),
        ("segtune", "segtune epoch, in-memory pages, no augmentation"),
        ("real", f"segtune epoch, cache + flips/rot90 + {a.workers} workers"),
        ("nchw", "segtune epoch, in-memory pages, NCHW tensors"),
    ):
        print(
            f"{label:48s} {median(res[key], 'pages_per_s'):9.1f} {median(res[key], 'peak_mb'):9.0f}"
        )
    print(f"ratio segtune / bare loop: {seg / bare:.3f}  (goal >= 0.97)")
    print(f"ratio real data path / in-memory: {real / seg:.3f}  (goal >= 0.95)")
    nchw = median(res["nchw"], "pages_per_s")
    print(f"ratio channels-last / NCHW tensors: {seg / nchw:.3f}")


if __name__ == "__main__":
    main()
