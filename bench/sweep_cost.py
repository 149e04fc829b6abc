"""What pruning saves on the reference grid's shape, and what it costs in ranking.

    .venv/bin/python bench/sweep_cost.py [--objective val/f1] [--keep DIR]

The reference study's first stage (bce_weight 6 × dice_smooth 3 × pos_weight 4 = 72
points, 5 epochs) on a small generated dataset with a tiny network, in one go:

1. the full grid (no pruner);
2. the same grid with segtune's default pruner (``pruner: successive_halving``);
3. a table of other pruner settings, replayed on the full grid's learning curves.
   Training is deterministic per configuration, so a pruned run's first k epochs are
   exactly the full run's first k epochs: replaying the recorded curves through an
   Optuna pruner, in the study's claim order, gives what that study would have done
   (row 2 is measured for real and must equal its replay).

Prints the epochs used (as a fraction of the full grid's) and how many of the pruned
study's top 5 are among the full grid's top 5 (runs tied with the 5th count as top 5:
bce_weight 0 makes pos_weight irrelevant, so such runs tie exactly).
Goal: >= 4 of 5 at <= 30 % of the epochs.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.trial import TrialState

from _common import Timer, machine, parse, parser  # isort: skip
from segtune.analysis.summary import load_study_summary
from segtune.data.synthetic import write_demo_data
from segtune.study.spec import build_spec
from segtune.study.sweep import StudyRunner
from segtune.study.view import make_pruner, point_key

GRID = {
    "loss.bce_weight": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
    "loss.dice_smooth": [1e-4, 1e-5, 1e-6],
    "loss.pos_weight": [1, 5, 10, 25],
}
SMOKE_GRID = {"loss.bce_weight": [0.2, 0.8], "loss.pos_weight": [1, 10]}  # --smoke
SETTINGS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "SH min 1, factor 2": lambda: optuna.pruners.SuccessiveHalvingPruner(1, 2),
    "SH min 1, factor 3": lambda: optuna.pruners.SuccessiveHalvingPruner(1, 3),
    "SH min 1, factor 4": lambda: optuna.pruners.SuccessiveHalvingPruner(1, 4),
    "SH min 2, factor 2": lambda: optuna.pruners.SuccessiveHalvingPruner(2, 2),
    "SH min 2, factor 3": lambda: optuna.pruners.SuccessiveHalvingPruner(2, 3),
    "median, 4 startup, warm-up 1": lambda: optuna.pruners.MedianPruner(4, 1),
    "median, 8 startup, warm-up 2": lambda: optuna.pruners.MedianPruner(8, 2),
    "percentile 25, 8 startup, warm-up 1": lambda: optuna.pruners.PercentilePruner(25.0, 8, 1),
    "Hyperband min 1": lambda: optuna.pruners.HyperbandPruner(1, 5, 3),
}


def spec_tree(
    data: Path, name: str, pruner: str, objective: str, epochs: int, grid: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "data": {"train": str(data / "train"), "val": str(data / "val"), "seed": 0},
        "fixed": {
            "pages": {"page_size": 48, "patch_overlap": 0},
            "model": {
                "encoder": "mobilenet_v2",
                "encoder_depth": 3,
                "decoder_channels": [32, 16, 8],
            },
            "optim": {"epochs": epochs, "batch_size": 8, "learning_rate": 0.003},
            "sampling": {"positive_fraction": 0.5},
            "eval": {"preview_pictures": 0},
            "runtime": {"device": "cpu"},
        },
        "stages": [{"name": "grid", "grid": grid}],
        "objective": {"metric": objective, "direction": "maximize"},
        "pruner": pruner,
        "max_retries": 0,
    }


def run_study(
    data: Path, folder: Path, pruner: str, objective: str, epochs: int, grid: dict[str, Any]
) -> dict[str, Any]:
    # Both studies share a name, so they claim points in the same (seeded) order.
    spec = build_spec(spec_tree(data, "cost", pruner, objective, epochs, grid), "bench")
    runner = StudyRunner(spec, folder, progress=False)
    with Timer() as t:
        runner.run()
    summary = load_study_summary(folder)
    curves = {
        _key(r.params): [float(row[objective]) for row in r.history if objective in row]
        for r in summary.runs
    }
    keys = {point_key(p): _key(p) for p in _points(grid)}
    order = [
        keys[k] for k in runner.run_order(spec.stages[0], {point_key(p): p for p in _points(grid)})
    ]
    return {
        "seconds": t.seconds,
        "epochs": sum(r.epochs_done for r in summary.runs),
        "ranked": [(_key(r.params), r.final[objective]) for r in summary.ranked()],
        "pruned": sum(r.status == "pruned" for r in summary.runs),
        "curves": curves,
        "order": order,
    }


def _key(params: dict[str, Any]) -> str:
    """A point's key with whole numbers as floats: the grid lists pos_weight 1, a run's
    record holds 1.0."""
    return point_key({k: float(v) if type(v) is int else v for k, v in params.items()})


def _points(grid: dict[str, Any]) -> list[dict[str, Any]]:
    from segtune.study.spec import ParamValue, grid_points

    return grid_points(cast("dict[str, list[ParamValue]]", grid))


def replay(
    curves: dict[str, list[float]], order: list[str], pruner: optuna.pruners.BasePruner
) -> dict[str, Any]:
    """What a study with ``pruner`` does on these curves, claiming points in ``order``."""
    study = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    epochs, ranked = 0, []
    for number, key in enumerate(order):
        trial = study.ask()
        curve = curves[key]
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
            if epoch < len(curve) and trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                epochs += epoch
                break
        else:
            study.tell(trial, curve[-1])
            epochs += len(curve)
            ranked.append((key, curve[-1], number))
    ranked.sort(key=lambda r: (-r[1], r[2]))
    return {
        "epochs": epochs,
        "ranked": [(k, v) for k, v, _ in ranked],
        "pruned": len(order) - len(ranked),
    }


def kept_in_top5(full_ranked: list[tuple[str, float]], ranked: list[tuple[str, float]]) -> int:
    fifth = full_ranked[min(4, len(full_ranked) - 1)][1]
    top = {k for k, v in full_ranked if v >= fifth}
    return sum(k in top for k, _ in ranked[:5])


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--objective", default="val/f1")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--pictures", type=int, default=32)
    p.add_argument("--keep", help="copy both study folders here")
    a = parse(p, epochs=2, pictures=8, grid=SMOKE_GRID)
    grid = getattr(a, "grid", GRID)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(f"machine: {machine()}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_demo_data(data, pictures=a.pictures, size=96, seed=1)
        full = run_study(data, Path(tmp) / "full", "none", a.objective, a.epochs, grid)
        real = run_study(
            data, Path(tmp) / "pruned", "successive_halving", a.objective, a.epochs, grid
        )
        if a.keep:
            shutil.copytree(tmp, a.keep, dirs_exist_ok=True)
    total = full["epochs"]
    print(
        f"grid 6 x 3 x 4 = 72 points, {a.epochs} epochs, objective {a.objective}, "
        f"{a.pictures} generated pictures of 96 px"
    )
    print(f"full grid: {total} epochs in {full['seconds']:.0f} s")
    print(
        f"segtune default (successive_halving, measured): {real['epochs']} epochs "
        f"({real['epochs'] / total:.1%}) in {real['seconds']:.0f} s, {real['pruned']} pruned, "
        f"top 5 kept {kept_in_top5(full['ranked'], real['ranked'])} of 5"
    )
    check = replay(full["curves"], real["order"], make_pruner("successive_halving"))
    print(
        f"replay of the default on the full grid's curves: {check['epochs']} epochs, top 5 kept "
        f"{kept_in_top5(full['ranked'], check['ranked'])} of 5 "
        f"({'matches' if check['epochs'] == real['epochs'] else 'DIFFERS FROM'} the measured study)"
    )
    best = full["ranked"][0][1]
    top5 = ", ".join(f"{v:.3f}" for _, v in full["ranked"][:5])
    print(f"full grid's top 5 by {a.objective}: {top5}")
    print(
        f"\n{'pruner (replayed)':38s} {'epochs':>7s} {'share':>7s} {'pruned':>7s} "
        f"{'top-5 kept':>11s} {'best found':>18s}"
    )
    for name, make in SETTINGS.items():
        r = replay(full["curves"], full["order"], make())
        found = r["ranked"][0][1]
        print(
            f"{name:38s} {r['epochs']:7d} {r['epochs'] / total:7.1%} {r['pruned']:7d} "
            f"{kept_in_top5(full['ranked'], r['ranked']):6d} / 5 {found:10.3f} ({found - best:+.3f})"
        )
    print(
        f"\ngoal: <= 30 % of the epochs with >= 4 of 5; total wall time {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
