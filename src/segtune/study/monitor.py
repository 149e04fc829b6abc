"""Watching a running study: each running point's stage, epoch, step and ETA (from the
``progress.json`` its run keeps), and the study's ETA, on the study bar (terminal) or as
plain periodic lines (logs). Reads files only, so it works for workers on other
machines sharing the study folder, and never touches the study database."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from segtune.core.progress import PROGRESS_FILE, Progress, duration, read_progress

FRESH_S = 120.0  # a progress file older than this belongs to a dead or finished worker


@dataclass(frozen=True)
class RunningPoint:
    stage: str
    name: str
    epoch: int
    epochs: int
    step: int
    steps: int
    eta_s: float | None
    elapsed_s: float
    label: str | None = None  # "grid#3"

    def words(self, width: int = 40) -> str:
        name = self.name if len(self.name) <= width else self.name[: width - 1] + "…"
        eta = "?" if self.eta_s is None else duration(self.eta_s)
        who = f"{self.label} ({name})" if self.label else f"{self.stage}/{name}"
        return (
            f"{who}: epoch {self.epoch}/{self.epochs} step {self.step}/{self.steps}, run ETA {eta}"
        )


def running_points(study_dir: Path, now: float | None = None) -> list[RunningPoint]:
    """The points whose run wrote its progress in the last ``FRESH_S`` seconds."""
    now = time.time() if now is None else now
    found = []
    for path in sorted((study_dir / "runs").glob(f"*/*/{PROGRESS_FILE}")):
        p = read_progress(path.parent)
        if p is None or now - float(p.get("updated", 0)) > FRESH_S:
            continue
        try:
            found.append(
                RunningPoint(
                    path.parent.parent.name,
                    path.parent.name,
                    int(p["epoch"]),
                    int(p["epochs"]),
                    int(p["step"]),
                    int(p["steps"]),
                    None if p.get("eta_s") is None else float(p["eta_s"]),
                    float(p.get("elapsed_s", 0.0)),
                    None if p.get("label") is None else str(p["label"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return found


def remaining_s(
    running: Sequence[RunningPoint], pending: int, per_run_s: float | None, workers: int
) -> float | None:
    """A study's remaining time, the one estimate behind the live study line and
    ``segtune status``: each running point's own ETA (the mean run time ``per_run_s``
    while it has none), plus ``pending`` points at the mean run time, spread over the
    workers. None while a mean that is needed is unknown."""
    unknown = max(pending, 0) + sum(p.eta_s is None for p in running)
    if unknown and per_run_s is None:
        return None
    known = sum(p.eta_s for p in running if p.eta_s is not None)
    return (known + unknown * (per_run_s or 0.0)) / max(workers, 1)


def study_eta(
    running: list[RunningPoint], pending: int, finished_runs: int, elapsed_s: float, workers: int
) -> float | None:
    """:func:`remaining_s` with the mean run time of the runs finished since this command
    started (the workers' time minus what the running points have spent so far), else
    the running ones' elapsed + ETA."""
    per_run: float | None
    if finished_runs:
        spent = elapsed_s * workers - sum(p.elapsed_s for p in running)
        per_run = max(spent, 0.0) / finished_runs
    else:
        known = [p.elapsed_s + p.eta_s for p in running if p.eta_s is not None]
        per_run = sum(known) / len(known) if known else None
    return remaining_s(running, pending, per_run, workers)


class StudyMonitor:
    """A thread that refreshes the study bar's note every ``poll_s`` seconds; without a
    terminal it prints one line per running point and a study line every ``interval_s``
    seconds, only when something changed."""

    def __init__(
        self,
        study_dir: Path,
        bar: Progress,
        workers: int,
        poll_s: float = 2.0,
        interval_s: float | None = None,
    ) -> None:
        self.dir = study_dir
        self.bar = bar
        self.workers = workers
        self.poll_s = poll_s
        self.interval_s = bar.interval_s if interval_s is None else interval_s
        self.started = time.time()
        self.done_at_start = bar.done
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="study-monitor", daemon=True)
        self._last_print = 0.0
        self._last_text = ""

    def __enter__(self) -> StudyMonitor:
        if self.bar.enabled:
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # watching must never stop a study
                continue

    def lines(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        running = running_points(self.dir, now)
        pending = self.bar.total - self.bar.done - len(running)
        eta = study_eta(
            running,
            pending,
            self.bar.done - self.done_at_start,
            now - self.started,
            self.workers,
        )
        out = [p.words() for p in running]
        out.append(
            f"study: {self.bar.done}/{self.bar.total} runs done, {len(running)} running, "
            f"ETA {'?' if eta is None else duration(eta)}"
        )
        return out

    def refresh(self) -> None:
        lines = self.lines()
        if self.bar.on_terminal:  # one note on the study bar
            self.bar.note(" | ".join(lines))
            return
        text = "\n".join(lines)
        now = time.time()
        if text == self._last_text or now - self._last_print < self.interval_s:
            return
        self._last_text, self._last_print = text, now
        for line in lines:
            print(f"  {line}", file=sys.stderr, flush=True)
