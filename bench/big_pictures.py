"""Big pictures in bounded memory: check-data, predict and evaluate on one large RGB
picture against a 2000 × 2000 one, each command in its own process.

    .venv/bin/python bench/big_pictures.py [--size 20000] [--small 2000] [--page 256]

Prints, per command and picture, the wall time, the time per megapixel (less the
command's start-up, timed on a 64 × 64 picture), and the peak resident memory of the
command's process; then the ratio of times per megapixel (goal:
large ÷ small ≤ 1.5) and the largest peak (goal: ≤ 3 GB at 20000 × 20000). The pictures
are uncompressed TIFF (a 20000 × 20000 one is 1.2 GB on disk), the network a tiny Unet
with random weights (what is measured is segtune's handling of the picture, not a
network's speed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import yaml

from _common import ROOT, machine, parse, parser  # isort: skip


def write_picture(folder: Path, side: int) -> None:
    """One picture of ``side`` × ``side`` with a thin diagonal-ish line as its positives."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(side)
    image = np.empty((side, side, 3), np.uint8)
    mask = np.zeros((side, side), np.uint8)
    for y in range(0, side, 1024):  # in blocks: the writer never holds a float copy
        rows = min(1024, side - y)
        image[y : y + rows] = rng.integers(80, 120, (rows, side, 3), dtype=np.uint8)
        cols = (np.arange(y, y + rows) * 7 // 5) % side
        mask[np.arange(rows), cols] = 255
        image[np.arange(rows), cols] = 20
    tifffile.imwrite(folder / "images" / "big.tif", image)
    tifffile.imwrite(folder / "masks" / "big.tif", mask)


def run(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak resident MB of ``segtune ARGS`` in a new process."""
    # VmHWM, not getrusage's maxrss: Linux keeps maxrss across exec, so a child would
    # report this process's own peak (the written pictures) as a floor.
    code = (
        "import sys, runpy; sys.argv = ['segtune', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('segtune', run_name='__main__')\n"
        "finally:\n"
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
        "    print('peak-kb', hwm[0].split()[1], file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SEGTUNE_CACHE": str(cwd / "cache")}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise SystemExit(f"segtune {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    peak = [line for line in done.stderr.splitlines() if line.startswith("peak-kb")]
    return wall, int(peak[-1].split()[1]) / 1024


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--size", type=int, default=20000, help="side of the large picture")
    p.add_argument("--small", type=int, default=2000, help="side of the reference picture")
    p.add_argument("--page", type=int, default=256)
    p.add_argument("--train", action="store_true", help="also time one epoch of training")
    p.add_argument("--only", help="these commands only, comma-separated (e.g. predict)")
    a = parse(p, size=1024, small=256, page=128)
    print(f"machine: {machine()}")
    tiny = {
        "pages": {"page_size": a.page, "patch_overlap": a.page // 8},
        "model": {"encoder": "mobilenet_v2", "encoder_depth": 3, "decoder_channels": [16, 8, 4]},
        "optim": {"epochs": 1},
        "eval": {"preview_pictures": 0},
        "runtime": {"device": a.device},
    }
    rows = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for side in (64, a.small, a.size):  # 64: the commands' start-up, subtracted
            data = tmp / f"p{side}"
            write_picture(data, side)
            tree = {**tiny, "data": {"train": str(data), "val": str(data)}}
            (tmp / f"run{side}.yaml").write_text(yaml.safe_dump(tree))
        # A model to predict and evaluate with: one short run on the small picture.
        small = tmp / f"p{a.small}"
        run(["train", str(tmp / f"run{a.small}.yaml"), "--out", str(tmp / "run"), "-q"], tmp)
        model = tmp / "run" / "model.pt"
        startup: dict[str, float] = {}
        for side in (64, a.small, a.size):
            data = tmp / f"p{side}"
            mp = side * side / 1e6
            commands = [
                ("check-data", ["check-data", str(small), str(data)]),
                ("predict", ["predict", str(model), str(data / "images"), "--out", str(tmp / "o")]),
                ("evaluate", ["evaluate", str(model), str(data), "-q"]),
            ]
            if a.train:  # one epoch on the picture, validated on it
                out = ["--out", str(tmp / f"t{side}"), "--force", "-q"]
                commands.append(("train", ["train", str(tmp / f"run{side}.yaml"), *out]))
            wanted = set(a.only.split(",")) if a.only else {w for w, _ in commands}
            for what, args in (c for c in commands if c[0] in wanted):
                wall, peak = run([*args], tmp)
                if side == 64:
                    startup[what] = wall
                    continue
                work = max(wall - startup[what], 1e-3)
                rows.append((what, side, wall, work / mp, peak))
                print(
                    f"{what:11s} {side:6d}² {wall:8.1f} s (start-up {startup[what]:.1f} s) "
                    f"{work / mp:8.3f} s/MP {peak:8.0f} MB"
                )
    print()
    for what in sorted({r[0] for r in rows}):
        small_s, large_s = (r[3] for r in rows if r[0] == what)
        print(
            f"{what:11s} time per MP, {a.size}² ÷ {a.small}²: {large_s / small_s:.2f} (goal ≤ 1.5)"
        )
    print(f"largest peak resident memory: {max(r[4] for r in rows):.0f} MB (goal ≤ 3072 MB)")


if __name__ == "__main__":
    main()
