"""How close ``segtune plan``'s time estimate is to the study it plans.

    .venv/bin/python bench/plan_accuracy.py [--device cpu] [--deepcrack]

For the demo study (generated data, its grid raced) and, with ``--deepcrack``, a
DeepCrack study (2 grid points of at least 5 minutes each: 8 epochs of all 300 training
pictures at half their size, 30 validation pictures), in one run: the plan's printed
range and centre (its timed probe, on this machine) and the measured wall time of
``segtune sweep`` (one worker, report included). Goal: the measured time inside the
range, the centre within ±25 %.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from _common import DEEPCRACK, machine, parse, parser  # isort: skip
from segtune.cli.demo import DEMO_PICTURES, DEMO_SEED, DEMO_SIZE, demo_spec_text
from segtune.data.synthetic import write_demo_data
from segtune.study.plan import make_plan
from segtune.study.run import run_sweep
from segtune.study.spec import load_spec


def measure(name: str, spec_path: Path, study: Path, device: str) -> tuple[float, float]:
    plan = make_plan(load_spec(spec_path), device=device)
    for line in plan.lines():
        print(f"  {line}")
    est = plan.estimate()
    assert est is not None
    t0 = time.perf_counter()
    result = run_sweep(spec_path, str(study), None, 1, device, quiet=True)
    wall = time.perf_counter() - t0
    assert result.exit_code == 0
    runs = len(list(study.glob("runs/*/*/summary.json")))
    inside = est.low <= wall <= est.high
    print(
        f"{name}: {runs} of {plan.runs} planned runs; plan range {est.low:.0f}–{est.high:.0f} s, "
        f"centre {est.centre:.0f} s; measured {wall:.0f} s: "
        f"{'inside' if inside else 'OUTSIDE'} the range, centre ÷ measured "
        f"{est.centre / wall:.2f} (goal 0.75 – 1.25)"
    )
    return est.centre, wall


def deepcrack_spec(tmp: Path, device: str) -> Path:
    spec: dict[str, Any] = {
        "name": "deepcrack-plan",
        "data": {
            "train": str(DEEPCRACK / "train"),
            "val": str(DEEPCRACK / "test"),
            "train_subset": 300,
            "val_subset": 30,
        },
        "fixed": {
            "pages": {"page_size": 128, "patch_overlap": 16, "resize": {"scale": 0.5}},
            "model": {"encoder": "mobilenet_v2"},
            "optim": {"epochs": 8, "batch_size": 8, "learning_rate": 1e-3},
            "eval": {"preview_pictures": 0},
            "runtime": {"device": device},
        },
        "stages": [{"name": "grid", "grid": {"loss.pos_weight": [1, 10]}}],
        "objective": {"metric": "val/f1"},
    }
    path = tmp / "deepcrack.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# --smoke: the demo's shape, two one-epoch runs of a tiny network.
SMOKE_SPEC = """name: demo
data: {train: data/train, val: data/val, seed: 0}
fixed:
  pages: {page_size: 32}
  model: {encoder: mobilenet_v2, encoder_depth: 3, decoder_channels: [16, 8, 4]}
  optim: {epochs: 1, batch_size: 8}
  eval: {preview_pictures: 0}
  runtime: {device: cpu}
stages: [{name: grid, grid: {loss.pos_weight: [1, 10]}}]
objective: {metric: val/f1}
"""


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--deepcrack", action="store_true")
    args = parse(p)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        os.environ["SEGTUNE_CACHE"] = str(tmp / "cache")
        pictures, size = (8, 64) if args.smoke else (DEMO_PICTURES, DEMO_SIZE)
        write_demo_data(tmp / "demo" / "data", pictures=pictures, size=size, seed=DEMO_SEED)
        spec = tmp / "demo" / "demo-study.yaml"
        spec.write_text(SMOKE_SPEC if args.smoke else demo_spec_text())
        measure("demo study", spec, tmp / "demo" / "study", args.device)
        if args.deepcrack:
            measure("DeepCrack study", deepcrack_spec(tmp, args.device), tmp / "dc", args.device)


if __name__ == "__main__":
    main()
