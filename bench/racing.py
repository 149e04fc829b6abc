"""What a race saves on the reference grid's shape, and what it costs in answers.

    .venv/bin/python bench/racing.py [--keep DIR] [--records DIR] [--workers 4]

1. Train every configuration of the reference grid's shape (bce_weight 6 × dice_smooth 3
   × pos_weight 4 = 72) with 5 seeds, once (360 runs; ``--keep DIR`` keeps the study,
   ``--records DIR`` reuses a kept one instead of training).
2. Replay the race (``race: {from: grid, max_seeds: 5, confidence: 0.95}``) on those
   records in 20 finish orders: ``--workers`` simulated workers take the next
   (configuration, seed) with the fewest seeds among the survivors, runs take random
   times, and after every finished run the race is recomputed from the finished runs
   exactly as a study does (segtune.core.racing.run_race); a run whose configuration is
   dropped while it trains stops at its next epoch boundary (counted as one epoch).
3. Against the full 5-seed data (the report's tie rule at 95 %): how many configurations
   tie with the best 5-seed mean, whether that best is among the survivors, seeds spent
   on configurations the full data shows worse, and false drops (tied by the full data,
   dropped by the race).

Goals (issue "Racing"): the 5-seed best among the survivors in >= 19 of 20 replays; false
drops <= 1 per replay on average; <= 2 seeds on average on clearly worse configurations;
run share <= 35 % (or, where the full data ties more than 13 with the best, within 10
points of an oracle that knew the full data: 1 seed per worse configuration, 5 per tied).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from _common import machine, parse, parser  # isort: skip
import sweep_cost  # isort: skip
from segtune.analysis.ranking import configurations, rank
from segtune.analysis.summary import StudySummary, load_study_summary
from segtune.core import racing
from segtune.core.racing import Contender, RaceState, run_race
from segtune.data.synthetic import write_demo_data
from segtune.study.spec import SEED_KEY, build_spec
from segtune.study.sweep import StudyRunner

GRID = {
    "loss.bce_weight": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
    "loss.dice_smooth": [1e-4, 1e-5, 1e-6],
    "loss.pos_weight": [1, 5, 10, 25],
}
SMOKE_GRID = {"loss.bce_weight": [0.0, 1.0], "loss.pos_weight": [1, 25]}


def spec_tree(data: Path, epochs: int, seeds: int, grid: dict[str, Any]) -> dict[str, Any]:
    """sweep_cost's study (no pruner) with every configuration trained ``seeds`` times
    and 16 validation pictures."""
    tree = sweep_cost.spec_tree(data, "racing", "none", "val/f1", epochs, grid)
    tree["data"].update(train_subset=24, val_subset=16)
    tree["repeats"] = seeds
    return tree


def contenders(s: StudySummary, key: str) -> list[Contender]:
    """Every configuration with all its seeds, in seed order, with bootstrap samples."""
    out = []
    for c in configurations(s.runs):
        runs = sorted(c.runs, key=lambda r: int(r.params.get(SEED_KEY, 0)))
        samples = np.stack([r.samples[key] for r in runs])
        out.append(Contender(c.label, tuple(r.final[key] for r in runs), samples))
    return out


def truncated(c: Contender, seeds: int) -> Contender:
    assert c.samples is not None
    return Contender(c.name, c.values[:seeds], c.samples[:seeds])


def memoise_looks() -> None:
    """A look depends only on its round and the configurations still racing (their
    first r seeds are fixed records here): decide each once across all replays."""
    real = racing.race_look
    looks: dict[tuple[int, tuple[str, ...]], list[racing.Drop]] = {}

    def look(contenders: Any, rounds: int, alpha: float, direction: Any) -> list[racing.Drop]:
        key = (rounds, tuple(c.name for c in contenders))
        if key not in looks:
            looks[key] = real(contenders, rounds, alpha, direction)
        return looks[key]

    racing.race_look = look


def replay(
    full: list[Contender], max_seeds: int, confidence: float, workers: int, seed: int
) -> dict[str, Any]:
    """One asynchronous race over the recorded runs (module docstring)."""
    rng = random.Random(seed)
    done: dict[str, int] = {c.name: 0 for c in full}  # finished seeds, contiguous
    finished: dict[str, set[int]] = {c.name: set() for c in full}
    running: list[tuple[float, str, int]] = []  # (finish time, config, seed index)
    now, stopped, state = 0.0, 0, RaceState(survivors=[c.name for c in full])
    by_name = {c.name: c for c in full}
    for c in full:  # round 1: the source stage, every configuration once
        done[c.name] = 1
        finished[c.name].add(0)

    def recompute() -> RaceState:
        racers = [truncated(by_name[n], done[n]) for n in by_name]
        return run_race(racers, max_seeds, confidence, "maximize")

    state = recompute()
    started = {(n, 0) for n in by_name}

    def next_point() -> tuple[str, int] | None:
        if state.ended:
            return None
        options = [
            (len([s for s in range(max_seeds) if (n, s) in started]), rng.random(), n)
            for n in state.survivors
        ]
        for count, _, name in sorted(options):
            if count < max_seeds:
                return name, count
        return None

    while True:
        while len(running) < workers and (point := next_point()) is not None:
            started.add(point)
            running.append((now + rng.uniform(0.5, 1.5), *point))
        if not running:
            break
        running.sort()
        now, name, index = running.pop(0)
        finished[name].add(index)
        while done[name] in finished[name]:
            done[name] += 1
        state = recompute()
        for item in list(running):  # dropped while training: stopped at an epoch boundary
            if state.dropped(item[1]) is not None:
                running.remove(item)
                stopped += 1
    spent = {n: done[n] for n in by_name}
    return {"state": state, "spent": spent, "stopped": stopped}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--pictures", type=int, default=64)
    p.add_argument("--replays", type=int, default=20)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--keep", help="copy the trained study here")
    p.add_argument("--records", help="a kept study folder: replay it, train nothing")
    a = parse(p, epochs=1, seeds=3, pictures=64, replays=2, grid=SMOKE_GRID)
    grid = getattr(a, "grid", GRID)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(f"machine: {machine()}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if a.records:
            study = Path(a.records)
        else:
            data = Path(tmp) / "data"
            write_demo_data(data, pictures=a.pictures, size=96, seed=1)
            study = Path(tmp) / "study"
            spec = build_spec(spec_tree(data, a.epochs, a.seeds, grid), "bench")
            StudyRunner(spec, study, progress=False).run()
            if a.keep:
                shutil.copytree(study, a.keep, dirs_exist_ok=True)
        trained = time.perf_counter() - start
        summary = load_study_summary(study)
    key = summary.objective
    full = contenders(summary, key)
    configs = len(full)
    total = configs * a.seeds
    ranked = rank(summary)
    best = ranked.best
    assert best is not None
    tied = {c.label for c in ranked.tied()}
    worse = {c.name for c in full} - tied
    print(
        f"{configs} configurations × {a.seeds} seeds = {total} runs of {a.epochs} epochs "
        f"({trained:.0f} s); objective {key}; {summary.val_pictures} validation pictures"
    )
    print(
        f"full data: best 5-seed mean {best.label} {best.mean(key):.4f}; {len(tied)} "
        f"configurations tied with it ({ranked.noise_words()}), {len(worse)} worse"
    )
    oracle = len(worse) * 1 + len(tied) * a.seeds
    print(f"oracle (1 seed per worse configuration, {a.seeds} per tied): {oracle / total:.1%}")
    rows = []
    t0 = time.perf_counter()
    memoise_looks()
    for r in range(a.replays):
        out = replay(full, a.seeds, 0.95, a.workers, seed=r)
        state, spent = out["state"], out["spent"]
        runs = sum(spent.values())
        rows.append(
            {
                "share": (runs + out["stopped"] / a.epochs) / total,
                "best_in": best.label in state.survivors,
                "false_drops": sum(1 for d in state.drops if d.name in tied),
                "worse_seeds": float(np.mean([spent[n] for n in worse])) if worse else 0.0,
                "survivors": len(state.survivors),
                "stopped": out["stopped"],
            }
        )
        row = rows[-1]
        print(
            f"replay {r + 1:2d}: runs {row['share']:.1%}, survivors {row['survivors']}, "
            f"best among them {'yes' if row['best_in'] else 'NO'}, false drops "
            f"{row['false_drops']}, seeds on worse configurations {row['worse_seeds']:.2f}, "
            f"stopped mid-run {row['stopped']}"
        )
    print(
        f"\nall {a.replays} replays ({time.perf_counter() - t0:.0f} s): run share "
        f"{np.mean([r['share'] for r in rows]):.1%}; best among survivors in "
        f"{sum(r['best_in'] for r in rows)} of {a.replays}; false drops per replay "
        f"{np.mean([r['false_drops'] for r in rows]):.2f}; seeds on worse configurations "
        f"{np.mean([r['worse_seeds'] for r in rows]):.2f}"
    )
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
