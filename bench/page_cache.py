"""Random page reads per second: segtune's decoded-picture cache vs decoding the file
each time, for DeepCrack train JPEGs and for generated 2048×2048 PNG pictures; and the
cache capped at a tenth of the decoded data (``data.cache_max_gb``, LRU eviction).

    .venv/bin/python bench/page_cache.py [--reads 300] [--page 256]

Both sides cut the same random pages; the cache side opens each picture's memory map
once (as training does) and also, separately, on every read.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from _common import DEEPCRACK, Timer, machine, parse, parser  # isort: skip
from segtune.data.cache import PictureCache, cache_size
from segtune.data.io import read_image
from segtune.data.layout import load_pictures
from segtune.data.synthetic import make_picture
from segtune.data.tiles import extract_page


def measure(paths: list[Path], reads: int, page: int, cache_dir: Path) -> dict[str, float]:
    rng = np.random.default_rng(0)
    cache = PictureCache(cache_dir)
    for p in paths:  # fill the cache first: steady state of a study
        cache.get(p, "image")
    shapes = [np.asarray(cache.get(p, "image")).shape for p in paths]
    plan = []
    for _ in range(reads):
        i = int(rng.integers(len(paths)))
        h, w = shapes[i][:2]
        plan.append(
            (i, int(rng.integers(max(1, h - page + 1))), int(rng.integers(max(1, w - page + 1))))
        )
    opened = [cache.get(p, "image") for p in paths]
    checksum = 0
    with Timer() as t_mapped:
        for i, y, x in plan:
            checksum += int(extract_page(opened[i], (y, x), page)[0][0, 0, 0])
    with Timer() as t_cache:
        for i, y, x in plan:
            checksum += int(extract_page(cache.get(paths[i], "image"), (y, x), page)[0][0, 0, 0])
    with Timer() as t_decode:
        for i, y, x in plan:
            checksum += int(extract_page(read_image(paths[i]), (y, x), page)[0][0, 0, 0])
    capped_dir = cache_dir.with_name(cache_dir.name + "-capped")
    total = sum(np.asarray(cache.get(p, "image")).nbytes + 128 for p in paths)
    capped = PictureCache(capped_dir, max_bytes=max(1, total // 10))
    with Timer() as t_capped:
        for i, y, x in plan:
            checksum += int(extract_page(capped.get(paths[i], "image"), (y, x), page)[0][0, 0, 0])
    assert checksum >= 0
    _, size = cache_size(capped_dir)
    return {
        "mapped": reads / t_mapped.seconds,
        "cache": reads / t_cache.seconds,
        "decode": reads / t_decode.seconds,
        "capped": reads / t_capped.seconds,
        "capped_fill": size / total,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--reads", type=int, default=300)
    p.add_argument("--page", type=int, default=256)
    p.add_argument("--big-pictures", type=int, default=4)
    p.add_argument("--big-size", type=int, default=2048, help="side of the generated pictures")
    args = parse(p, reads=5, page=32, big_pictures=1, big_size=128)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        sets: dict[str, list[Path]] = {}
        if DEEPCRACK.is_dir() and not args.smoke:
            sets["DeepCrack train JPEG 544x384"] = [
                pic.image for pic in load_pictures(DEEPCRACK / "train")
            ]
        big = []
        rng = np.random.default_rng(1)
        from PIL import Image

        for i in range(args.big_pictures):
            image, _ = make_picture(rng, args.big_size)
            path = tmpdir / f"big-{i}.png"
            Image.fromarray(image).save(path)
            big.append(path)
        sets[f"generated PNG {args.big_size}x{args.big_size}"] = big
        print(
            f"{'pictures':32s} {'decode/s':>10s} {'cache/s':>10s} {'mapped/s':>10s} "
            f"{'cache÷decode':>13s} {'mapped÷decode':>14s} {'capped/s':>10s} "
            f"{'capped÷decode':>14s} {'capped fill':>12s}"
        )
        for name, paths in sets.items():
            r = measure(paths, args.reads, args.page, tmpdir / f"cache-{len(name)}")
            print(
                f"{name:32s} {r['decode']:10.1f} {r['cache']:10.1f} {r['mapped']:10.1f} "
                f"{r['cache'] / r['decode']:13.1f} {r['mapped'] / r['decode']:14.1f} "
                f"{r['capped']:10.1f} {r['capped'] / r['decode']:14.2f} {r['capped_fill']:12.2f}"
            )
    print(
        f"page {args.page}px, {args.reads} random reads per column; 'cache' opens the memory map "
        "on every read, 'mapped' keeps it open (as a training run does); 'capped' goes "
        "through a cache capped at a tenth of the decoded data ('capped fill': its final "
        "size ÷ the data's)"
    )


if __name__ == "__main__":
    main()
