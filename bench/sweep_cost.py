"""What pruning saves on the reference grid's shape, and what it costs in ranking.

    .venv/bin/python bench/sweep_cost.py [--pruner successive_halving] [--objective val/f1]

The reference study's first stage (bce_weight 6 × dice_smooth 3 × pos_weight 4 = 72
points, 5 epochs) on a small generated dataset with a tiny network, run twice in one
go: the full grid, and the same grid with a pruner. Prints the epochs the pruned study
used (as a fraction of the full grid's) and how many of the full grid's top-5 runs the
pruned study also ranks in its top 5. Goal: >= 4 of 5 at <= 30 % of the epochs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Timer, machine, parser  # isort: skip
from segtune.analysis.summary import load_study_summary
from segtune.data.synthetic import write_demo_data
from segtune.study.spec import build_spec
from segtune.study.sweep import StudyRunner

GRID = {
    "loss.bce_weight": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
    "loss.dice_smooth": [1e-4, 1e-5, 1e-6],
    "loss.pos_weight": [1, 5, 10, 25],
}


def spec_tree(data: Path, name: str, pruner: str, objective: str, epochs: int) -> dict[str, Any]:
    return {
        "name": name,
        "data": {"train": str(data / "train"), "val": str(data / "val"), "seed": 0},
        "fixed": {
            "pages": {"page_size": 32, "patch_overlap": 0},
            "model": {
                "encoder": "mobilenet_v2",
                "encoder_depth": 3,
                "decoder_channels": [16, 8, 4],
            },
            "optim": {"epochs": epochs, "batch_size": 8, "learning_rate": 0.003},
            "sampling": {"positive_fraction": 0.5},
            "eval": {"preview_pictures": 0},
            "runtime": {"device": "cpu"},
        },
        "stages": [{"name": "grid", "grid": GRID}],
        "objective": {"metric": objective, "direction": "maximize"},
        "pruner": pruner,
        "max_retries": 0,
    }


def run(data: Path, folder: Path, pruner: str, objective: str, epochs: int) -> dict[str, Any]:
    spec = build_spec(spec_tree(data, f"cost-{pruner}", pruner, objective, epochs), "bench")
    runner = StudyRunner(spec, folder, progress=False)
    with Timer() as t:
        runner.run()
    summary = load_study_summary(folder)
    ranked = summary.ranked()
    return {
        "seconds": t.seconds,
        "epochs": sum(r.epochs_done for r in summary.runs),
        "top5": [tuple(sorted(r.params.items())) for r in ranked[:5]],
        "completed": sum(r.status == "completed" for r in summary.runs),
        "pruned": sum(r.status == "pruned" for r in summary.runs),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--pruner", default="successive_halving", choices=["median", "successive_halving"]
    )
    p.add_argument("--objective", default="val/f1")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--pictures", type=int, default=32)
    a = p.parse_args()
    print(f"machine: {machine()}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_demo_data(data, pictures=a.pictures, size=96, seed=1)
        full = run(data, Path(tmp) / "full", "none", a.objective, a.epochs)
        pruned = run(data, Path(tmp) / "pruned", a.pruner, a.objective, a.epochs)
    kept = len(set(full["top5"]) & set(pruned["top5"]))
    share = pruned["epochs"] / full["epochs"]
    print(f"grid 6 x 3 x 4 = 72 points, {a.epochs} epochs, objective {a.objective}")
    print(
        f"full grid:   {full['epochs']} epochs, {full['seconds']:.0f} s, {full['completed']} completed"
    )
    print(
        f"{a.pruner}: {pruned['epochs']} epochs, {pruned['seconds']:.0f} s, "
        f"{pruned['completed']} completed, {pruned['pruned']} pruned"
    )
    print(f"epochs used by the pruned study: {share:.1%} of the full grid's (goal <= 30 %)")
    print(f"full grid's top 5 also in the pruned study's top 5: {kept} of 5 (goal >= 4)")
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
