"""What a study has done so far: per stage done / running / failed / pending, duplicates,
the best run by the objective and an ETA."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from segtune.core.metrics import better, describe_metric
from segtune.data.cache import cache_size, default_cache_dir
from segtune.study.attrs import TrialAttrs
from segtune.study.monitor import RunningPoint, remaining_s, running_points
from segtune.study.plan import stage_plans
from segtune.study.view import StudyView


@dataclass
class StageStatus:
    name: str
    total: int | None  # None while the points of a refine stage are not known yet
    done: int = 0
    pruned: int = 0
    running: int = 0
    failed: int = 0  # out of retries
    interrupted: int = 0  # a dead or stopped worker's point, to be resumed (pending)
    reused: int = 0  # done by an identical run of another stage (counted in done)
    duplicates: int = 0  # points with more than one finished trial (must stay 0)
    run_seconds: list[float] = field(default_factory=list)

    @property
    def pending(self) -> int | None:
        if self.total is None:
            return None
        return self.total - self.done - self.pruned - self.running - self.failed


@dataclass
class StudyStatus:
    stages: list[StageStatus]
    best: dict[str, Any] | None
    objective: str
    threshold: float
    cache: tuple[Path, int, int, float | None] | None = None  # folder, entries, bytes, cap GB
    running_points: list[RunningPoint] = field(default_factory=list)  # from progress.json
    # Runs the spec plans for stages whose points are not known yet (a refine or repeat
    # stage before its source finishes: the plan's upper bound): counted in the ETA.
    planned: dict[str, int] = field(default_factory=dict)

    @property
    def expected_total(self) -> int:
        """Runs of the whole study: known stages' points plus the later stages' plan."""
        return sum(s.total or 0 for s in self.stages) + sum(self.planned.values())

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.stages)

    def eta_seconds(self) -> float | None:
        """Remaining time by :func:`segtune.study.monitor.remaining_s`: the running
        points' own ETAs (from their ``progress.json``; a running point without one
        counts a mean run), then the pending points at the mean time of the finished
        runs, over as many workers as points are running."""
        times = [t for s in self.stages for t in s.run_seconds]
        running = sum(s.running for s in self.stages)
        pending = (
            sum(s.pending or 0 for s in self.stages)
            + sum(self.planned.values())
            + max(running - len(self.running_points), 0)
        )
        per_run = sum(times) / len(times) if times else None
        workers = max(running, len(self.running_points), 1)
        return remaining_s(self.running_points, pending, per_run, workers)

    def lines(self) -> list[str]:
        out = []
        for s in self.stages:
            total = str(s.total) if s.total is not None else f"≤{self.planned.get(s.name, '?')}"
            pending = "?" if s.pending is None else str(s.pending)
            out.append(
                f"stage {s.name}: {s.done + s.pruned}/{total} done ({s.pruned} pruned"
                + (f", {s.reused} reused" if s.reused else "")
                + f"), {s.running} running, {s.failed} failed, {pending} pending"
                + (f" ({s.interrupted} interrupted)" if s.interrupted else "")
                + f", {s.duplicates} duplicates"
            )
        out.append(f"duplicates: {self.duplicates}")
        if self.best:
            words = describe_metric(self.objective, self.threshold)
            params = ", ".join(f"{k}={v}" for k, v in self.best["params"].items())
            out.append(
                f"best run by {words}: {self.best['value']:.4f} — stage "
                f"{self.best['stage']}, {params} ({self.best['run_dir']})"
            )
        if self.cache is not None:
            folder, entries, size, cap = self.cache
            capped = f" of {cap:g} GB" if cap is not None else " (no cap: data.cache_max_gb)"
            out.append(f"cache: {entries} decoded pictures, {size / 1e9:.2f} GB{capped} ({folder})")
        eta = self.eta_seconds()
        later = f" (counting ≤{sum(self.planned.values())} planned runs of later stages)"
        out.append(
            "ETA: "
            + ("unknown" if eta is None else "done" if eta == 0 else f"{eta / 60:.1f} min")
            + (later if self.planned and eta else "")
        )
        out += [f"running {point.words(width=80)}" for point in self.running_points]
        return out


def study_status(runner: StudyView) -> StudyStatus:
    """Read the claims and the Optuna trials of every stage (writes nothing)."""
    spec = runner.spec
    stages = []
    best: dict[str, Any] | None = None
    now = time.time()
    for stage in spec.stages:
        points = runner.stage_points(stage).points
        states = runner.board.states(stage.name)
        st = StageStatus(stage.name, None if points is None else len(points))
        for row in states.values():
            if row.state == "complete":
                st.done += 1
                st.reused += bool(row.reason and row.reason.startswith("reused"))
            elif row.state == "pruned":
                st.pruned += 1
            elif row.state == "running" and not runner.board.is_stale(row, now):
                st.running += 1
            elif row.state == "failed" and row.attempts > spec.max_retries:
                st.failed += 1
            elif row.state == "running" or row.reason == "interrupted":
                st.interrupted += 1
        trials = runner.trials(stage.name)
        finished = Counter(
            TrialAttrs.of(t).point
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        )
        st.duplicates = sum(n - 1 for n in finished.values() if n > 1)
        for t in trials:
            if (
                t.state == TrialState.COMPLETE
                and t.datetime_start
                and t.datetime_complete
                and TrialAttrs.of(t).reused_from is None
            ):
                st.run_seconds.append((t.datetime_complete - t.datetime_start).total_seconds())
            if (
                t.state == TrialState.COMPLETE
                and t.value is not None
                and (best is None or better(t.value, best["value"], spec.objective.direction))
            ):
                best = {
                    "value": t.value,
                    "stage": stage.name,
                    "params": t.params,
                    "run_dir": runner.dir.resolve() / str(TrialAttrs.of(t).run_dir),
                }
        stages.append(st)
    base = spec.run_config({})
    root = base.data.cache_dir or default_cache_dir()
    entries, size = cache_size(root)
    cache = (root, entries, size, base.data.cache_max_gb)
    plans = {p.name: p.runs for p in stage_plans(spec)}
    planned = {s.name: plans[s.name] for s in stages if s.total is None and s.name in plans}
    return StudyStatus(
        stages,
        best,
        spec.objective.metric,
        base.eval.threshold,
        cache,
        running_points(runner.dir),
        planned,
    )
