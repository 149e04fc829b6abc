"""Generated demo data: textured pictures with rare, thin positive structures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter


def make_picture(
    rng: np.random.Generator, size: int, *, with_positives: bool = True, width: int | None = None
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """One picture: a blotchy textured background, clutter, and thin dark "cracks".

    The cracks (the positive class) are random-walk polylines 1–3 pixels wide, which
    cover roughly 0.5–3 % of the pixels. Clutter (light blobs and faint straight lines)
    is drawn in the background only and is never positive.
    """
    low = rng.normal(0.0, 1.0, (max(2, size // 16), max(2, size // 16)))
    texture = np.asarray(
        Image.fromarray(((low - low.min()) / (np.ptp(low) + 1e-9) * 255).astype(np.uint8)).resize(
            (size, size), Image.Resampling.BICUBIC
        ),
        dtype=np.float32,
    )
    base = 110 + 0.35 * texture + rng.normal(0, 10, (size, size))
    tint = rng.uniform(0.85, 1.15, 3)
    canvas = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 6)):  # clutter: light blobs
        cx, cy = rng.integers(0, size, 2).tolist()
        r = int(rng.integers(size // 20 + 1, size // 6 + 2))
        shade = int(rng.integers(150, 200))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(shade, shade, shade))
    for _ in range(rng.integers(0, 3)):  # clutter: faint straight lines
        p = rng.integers(0, size, 4).tolist()
        draw.line(p, fill=(95, 95, 95), width=1)
    canvas = canvas.filter(ImageFilter.GaussianBlur(0.6))
    mask_im = Image.new("L", (size, size), 0)
    if with_positives:
        mdraw = ImageDraw.Draw(mask_im)
        for _ in range(rng.integers(1, 3)):
            x, y = rng.uniform(0, size, 2)
            angle = rng.uniform(0, 2 * np.pi)
            points = [(x, y)]
            for _ in range(int(rng.integers(6, 14))):
                angle += rng.normal(0, 0.45)
                step = size / rng.uniform(10, 16)
                x, y = x + step * np.cos(angle), y + step * np.sin(angle)
                points.append((x, y))
            mdraw.line(points, fill=255, width=int(width or rng.integers(1, 4)), joint="curve")
    mask = np.asarray(mask_im) > 0
    pixels = np.asarray(canvas, dtype=np.float32) * tint
    darkness = rng.uniform(45, 70)
    pixels[mask] -= darkness
    pixels += rng.normal(0, 4, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8), mask


def write_demo_data(
    out: Path,
    *,
    pictures: int,
    size: int,
    seed: int,
    val_fraction: float = 0.25,
    empty_fraction: float = 0.1,
) -> dict[str, int]:
    """Write ``out/{train,val}/{images,masks}`` (PNG). Same seed → same bytes.

    Returns:
        Pictures written per split.
    """
    rng = np.random.default_rng(seed)
    n_val = max(1, round(pictures * val_fraction)) if pictures > 1 else 0
    counts = {"train": pictures - n_val, "val": n_val}
    index = 0
    for split, n in counts.items():
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "masks").mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            image, mask = make_picture(rng, size, with_positives=rng.random() >= empty_fraction)
            stem = f"demo-{index:04d}"
            Image.fromarray(image).save(out / split / "images" / f"{stem}.png", optimize=False)
            Image.fromarray(mask.astype(np.uint8) * 255).save(out / split / "masks" / f"{stem}.png")
            index += 1
    return counts
