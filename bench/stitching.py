"""Tiled, blended inference: segtune vs MONAI's sliding_window_inference.

    .venv/bin/pip install -e '.[bench]'     # MONAI, only for this benchmark
    .venv/bin/python bench/stitching.py [--device cpu|cuda] [--page 512] [--overlap 128]

Same network (Unet/resnet18, random weights, eval mode, fp32), same page size, overlap,
pages per batch and blending (constant = segtune "mean"; gaussian: segtune's window is
handed to MONAI as roi_weight_map so both blend identically), on a 2048×2048 and a
4096×3072 picture. Prints the time ratio (MONAI time / segtune time; goal >= 1.2) and
the maximum absolute difference of the probability maps (goal <= 1e-5).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from _common import machine, parse, parser  # isort: skip
from segtune.core.config import ModelConfig, PagesConfig
from segtune.data.tiles import blend_window
from segtune.engine.infer import predict_probabilities
from segtune.engine.model import build_model, normalise


def _time(fn, device: torch.device, repeats: int) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    assert out is not None
    return best, out


def main() -> None:
    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        raise SystemExit(
            "bench/stitching.py needs MONAI: .venv/bin/pip install -e '.[bench]'"
        ) from None

    p = parser(__doc__)
    p.add_argument("--page", type=int, default=512)
    p.add_argument("--overlap", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--sizes", default="2048x2048,4096x3072", help="pictures, HEIGHTxWIDTH, comma-separated"
    )
    a = parse(p, page=64, overlap=16, batch=2, repeats=1, sizes="128x96")
    device = torch.device(a.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder="resnet18")).to(device).eval()
    print(f"machine: {machine()}")
    print(f"page {a.page}, overlap {a.overlap}, {a.batch} pages per batch, device {a.device}, fp32")
    print(
        f"{'picture':11s} {'blend':9s} {'segtune s':>10s} {'MONAI s':>9s} {'MONAI÷segtune':>14s} "
        f"{'max |diff|':>11s}"
    )
    rng = np.random.default_rng(0)
    for h, w in (tuple(map(int, s.split("x"))) for s in a.sizes.split(",")):
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        for blend in ("mean", "gaussian"):
            pages = PagesConfig(page_size=a.page, patch_overlap=a.overlap, blend=blend)

            def ours_fn(image: np.ndarray = image, pages: PagesConfig = pages) -> np.ndarray:
                return predict_probabilities(model, image, pages, device, batch_pages=a.batch)

            ours_s, ours = _time(ours_fn, device, a.repeats)
            weight = torch.from_numpy(blend_window(a.page, blend, a.overlap)).to(device)

            def monai(
                image: np.ndarray = image, blend: str = blend, weight: torch.Tensor = weight
            ) -> np.ndarray:
                with torch.inference_mode():
                    x = normalise(torch.from_numpy(image).permute(2, 0, 1)[None].to(device))
                    out = sliding_window_inference(
                        x,
                        (a.page, a.page),
                        a.batch,
                        lambda t: torch.sigmoid(model(t)),
                        overlap=a.overlap / a.page,
                        mode="constant",
                        roi_weight_map=None if blend == "mean" else weight,
                    )
                assert isinstance(out, torch.Tensor)
                return out[0, 0].float().cpu().numpy()

            theirs_s, theirs = _time(monai, device, a.repeats)
            diff = float(np.abs(ours - theirs).max())
            print(
                f"{h}x{w:<6d} {blend:9s} {ours_s:10.2f} {theirs_s:9.2f} {theirs_s / ours_s:14.2f} "
                f"{diff:11.2e}"
            )


if __name__ == "__main__":
    main()
