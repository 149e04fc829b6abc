"""What the study machinery costs: a demo-scale grid through ``segtune sweep`` vs the
plain Optuna loop a user would write by hand (same pictures, pages, network, training
epochs and validation evaluation; no records, no claims, no report), in one run.

    .venv/bin/python bench/study_overhead.py [--points 4] [--epochs 2] [--device cpu]
        [--train-eval-pictures val|all|N] [--train-every N]

Prints points per hour of each and their ratio (goal: segtune ≥ 0.9 of the plain loop
with segtune's default settings; the sweep's runs, without the report it writes once per
study, which is timed apart), and the wall time of ``segtune status`` on the study.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml

from _common import Timer, machine, parse, parser  # isort: skip
from segtune.cli.main import main as segtune
from segtune.core.config import RunConfig, build_run_config
from segtune.core.runtime import resolve_device, seed_everything
from segtune.data.cache import PictureCache
from segtune.data.pages import load_split, page_loader
from segtune.data.subsets import resolve_subsets
from segtune.data.synthetic import write_demo_data
from segtune.engine.checkpoint import Learner
from segtune.engine.model import build_model
from segtune.engine.train import train_one_epoch
from segtune.engine.validate import evaluate_split
from segtune.study.run import run_sweep

EXTRA: dict[str, Any] = {}  # segtune settings beyond its defaults (--train-eval-pictures …)
GRID = {"loss.bce_weight": [0.2, 0.8], "loss.pos_weight": [1.0, 10.0], "loss.dice_smooth": [1e-4]}


def fixed(epochs: int, device: str) -> dict[str, Any]:
    return {
        "pages": {"page_size": 64, "patch_overlap": 16, "blend": "gaussian"},
        "model": {"encoder": "mobilenet_v2", "encoder_depth": 3, "decoder_channels": [32, 16, 8]},
        "optim": {"epochs": epochs, "batch_size": 8, "learning_rate": 0.003},
        "sampling": {"positive_fraction": 0.5},
        "runtime": {"device": device},
        **EXTRA,
    }


def points(n: int) -> list[dict[str, float]]:
    out = [
        {"loss.bce_weight": b, "loss.pos_weight": p, "loss.dice_smooth": d}
        for b in GRID["loss.bce_weight"]
        for p in GRID["loss.pos_weight"]
        for d in GRID["loss.dice_smooth"]
    ]
    return out[:n]


def plain_optuna(data: Path, tmp: Path, n: int, epochs: int, device: str) -> float:
    """The hand-written loop: Optuna asks, we train and validate, Optuna is told."""
    base = {"data": {"train": str(data / "train"), "val": str(data / "val")}} | fixed(
        epochs, device
    )
    todo = points(n)
    study = optuna.create_study(direction="maximize")
    cache = PictureCache(tmp / "plain-cache")
    with Timer() as t:
        for params in todo:
            trial = study.ask()
            tree = yaml.safe_load(yaml.safe_dump(base))
            for key, value in params.items():
                trial.set_user_attr(key, value)
                section, name = key.split(".")
                tree.setdefault(section, {})[name] = value
            config: RunConfig = build_run_config(tree)
            study.tell(trial, train_and_validate(config, cache))
    return t.seconds


def train_and_validate(config: RunConfig, cache: PictureCache) -> float:
    subsets = resolve_subsets(config.data)
    seed_everything(config.runtime.seed)
    device = resolve_device(config.runtime.device)
    model = build_model(config.model).to(device)
    pictures = load_split(subsets.train, cache, config.pages)
    loader, sampler = page_loader(pictures, config, pin_memory=device.type == "cuda")
    learner = Learner.build(config, model, len(loader))
    recall = 0.0
    for epoch in range(1, config.optim.epochs + 1):
        sampler.set_epoch(epoch)
        train_one_epoch(config, learner, loader, epoch, device=device)
        val = evaluate_split(
            model,
            "val",
            subsets.val,
            cache,
            config.pages,
            device,
            threshold=config.eval.threshold,
            bins=config.eval.histogram_bins,
        )
        recall = val.metrics["val/recall"]
    return recall


def with_segtune(
    data: Path, tmp: Path, n: int, epochs: int, device: str
) -> tuple[float, float, float]:
    todo = points(n)
    grid = {k: sorted({p[k] for p in todo}) for k in todo[0]}
    spec = {
        "name": "overhead",
        "data": {"train": str(data / "train"), "val": str(data / "val"), "seed": 0},
        "fixed": fixed(epochs, device),
        "stages": [{"name": "grid", "grid": grid}],
    }
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    study = tmp / "study"
    os.environ["SEGTUNE_CACHE"] = str(tmp / "segtune-cache")  # cold, like the plain loop's
    with Timer() as t:
        result = run_sweep(path, str(study), None, 1, None, quiet=True)
    assert result.exit_code == 0
    with Timer() as r:
        segtune(["report", str(study)])
    with Timer() as s:
        subprocess.run(
            [sys.executable, "-m", "segtune", "status", str(study)],
            check=True,
            capture_output=True,
        )
    return t.seconds, r.seconds, s.seconds


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--points", type=int, default=4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument(
        "--train-eval-pictures",
        help="segtune's eval.train_eval_pictures: val, all or N (default: its default, val)",
    )
    p.add_argument(
        "--train-every",
        type=int,
        help="segtune's eval.train_every (default: its default, 0 = the last epoch only)",
    )
    args = parse(p, points=2, epochs=1)
    if args.train_eval_pictures:
        n = args.train_eval_pictures
        EXTRA.setdefault("eval", {})["train_eval_pictures"] = int(n) if n.isdigit() else n
    if args.train_every is not None:
        EXTRA.setdefault("eval", {})["train_every"] = args.train_every
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        pictures, size = (8, 64) if args.smoke else (40, 128)
        write_demo_data(tmp / "data", pictures=pictures, size=size, seed=0)
        plain_s = plain_optuna(tmp / "data", tmp, args.points, args.epochs, args.device)
        ours_s, report_s, status_s = with_segtune(
            tmp / "data", tmp, args.points, args.epochs, args.device
        )
    per_hour = {name: args.points * 3600 / s for name, s in (("plain", plain_s), ("ours", ours_s))}
    print(
        f"{args.points} points × {args.epochs} epochs: plain Optuna loop {plain_s:.1f} s "
        f"({per_hour['plain']:.0f} points/h), segtune sweep {ours_s:.1f} s "
        f"({per_hour['ours']:.0f} points/h)"
    )
    print(
        f"segtune ÷ plain, points per hour: {per_hour['ours'] / per_hour['plain']:.2f} (goal ≥ 0.9)"
    )
    print(f"segtune status on the finished study: {status_s:.2f} s (goal ≤ 2 s)")
    print(f"segtune report (once per study, not in the ratio): {report_s:.1f} s")


if __name__ == "__main__":
    main()
