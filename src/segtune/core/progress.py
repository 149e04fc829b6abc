"""Progress reporting: a tqdm bar on a terminal, plain periodic lines otherwise; and the
``progress.json`` a running run keeps up to date for whoever watches its study."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

PROGRESS_FILE = "progress.json"
LINE_INTERVAL_S = float(os.environ.get("SEGTUNE_PROGRESS_S", "30"))


def duration(seconds: float) -> str:
    """``45 s``, ``3m05s``, ``2h10m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def rate_words(done: float, elapsed: float, unit: str) -> str:
    """``12.3 pages/s``, or ``41 s/run`` when fewer than one item a second."""
    if done <= 0 or elapsed <= 0:
        return f"– {unit}/s"
    rate = done / elapsed
    one = unit[:-1] if unit.endswith("s") else unit
    return f"{rate:.1f} {unit}/s" if rate >= 1 else f"{duration(elapsed / done)}/{one}"


class Progress:
    """A bar over ``total`` items. When stderr is not a terminal (logs, CI) it prints a
    plain line when a quarter is passed or ``LINE_INTERVAL_S`` seconds have gone by, and
    one at the end — never the same count twice — with the rate and an ETA."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "it",
        enabled: bool = True,
        leave: bool = False,
        interval_s: float | None = None,
        show_eta: bool = True,
    ) -> None:
        self.total = max(total, 0)
        self.desc = desc
        self.unit = unit
        self.enabled = enabled
        self.done = 0
        self.show_eta = show_eta  # off where a better estimate is printed beside it
        self.start = time.perf_counter()
        self.interval_s = LINE_INTERVAL_S if interval_s is None else interval_s
        self._counted_from = 0  # items done before this process started (a resume)
        self._printed = -1
        self._last_line = self.start
        self._postfix: dict[str, Any] = {}
        self._bar: tqdm[Any] | None = None
        if enabled and sys.stderr.isatty():
            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)

    def set_total(self, total: int) -> None:
        """Grow the total (a refined stage's size is known only once its source ends)."""
        if total > self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

    def skip(self, n: int) -> None:
        """Count ``n`` items done earlier (a resumed study): not in the rate."""
        self.done += n
        self._counted_from += n
        if self._bar is not None:
            self._bar.update(n)

    def eta_seconds(self) -> float | None:
        elapsed = time.perf_counter() - self.start
        done = self.done - self._counted_from
        if done <= 0 or not self.total:
            return None
        return elapsed / done * max(self.total - self.done, 0)

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.done += n
        self._postfix.update(postfix)
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            return
        if not self.enabled or not self.total:
            return
        now = time.perf_counter()
        quarter = self.done * 4 // self.total
        printed_quarter = max(self._printed, 0) * 4 // self.total
        if (
            quarter > printed_quarter
            or self.done >= self.total
            or (now - self._last_line >= self.interval_s)
        ):
            self._line(now)

    @property
    def on_terminal(self) -> bool:
        """Whether a live bar is drawn (else plain lines are printed)."""
        return self._bar is not None

    def note(self, text: str) -> None:
        """A status text after the bar's counts (the running points of a study)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def _line(self, now: float) -> None:
        if self.done == self._printed:
            return
        self._printed = self.done
        self._last_line = now
        rate = rate_words(self.done - self._counted_from, now - self.start, self.unit)
        eta = self.eta_seconds() if self.show_eta else None
        left = "" if eta is None or self.done >= self.total else f", ETA {duration(eta)}"
        extra = "".join(f", {k} {v}" for k, v in self._postfix.items())
        print(
            f"  {self.desc}: {self.done}/{self.total} {self.unit} ({rate}{left}){extra}",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class ProgressFile:
    """``<run>/progress.json``: epoch, step and ETA of a running run, rewritten at most
    every ``every_s`` seconds and at each epoch's end, removed when the run ends. A study's
    coordinator (and ``segtune status``) reads it to show each running point."""

    def __init__(
        self,
        run_dir: Path,
        epochs: int,
        steps: int,
        start_epoch: int,
        label: str | None = None,
        every_s: float = 2.0,
    ) -> None:
        self.path = run_dir / PROGRESS_FILE
        self.label = label
        self.epochs, self.steps = epochs, steps
        self.start_epoch = start_epoch
        self.every_s = every_s
        self.started = time.time()
        self._written = 0.0

    def step(self, epoch: int, step: int, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._written < self.every_s:
            return
        self._written = now
        done = (epoch - self.start_epoch) * self.steps + step  # steps of this attempt
        left = (self.epochs - epoch) * self.steps + (self.steps - step)
        eta = (now - self.started) / done * left if done > 0 else None
        from segtune.core.records import write_json

        with contextlib.suppress(OSError):  # best effort: the run's records are what count
            write_json(
                self.path,
                {
                    "label": self.label,
                    "epoch": epoch,
                    "epochs": self.epochs,
                    "step": step,
                    "steps": self.steps,
                    "eta_s": None if eta is None else round(eta, 1),
                    "elapsed_s": round(now - self.started, 1),
                    "updated": now,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                },
            )

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def read_progress(run_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((run_dir / PROGRESS_FILE).read_text()))
    except (OSError, ValueError):
        return None


HEARTBEAT_S = float(os.environ.get("SEGTUNE_HEARTBEAT_S", "5"))


class Heartbeat:
    """A line on stderr every ``every_s`` seconds while a step that shows no progress of
    its own runs (exporting, loading a model, probing a step's time), so no command is
    silent for long: ``with Heartbeat("exporting to ONNX"): ...`` prints ``exporting to
    ONNX… 5 s``, ``… 10 s``; nothing when disabled or when the step is quick."""

    def __init__(self, desc: str, enabled: bool = True, every_s: float | None = None) -> None:
        self.desc = desc
        self.enabled = enabled
        self.every_s = HEARTBEAT_S if every_s is None else every_s
        self._stop: Any = None
        self._thread: Any = None

    def __enter__(self) -> Heartbeat:
        import threading

        if not self.enabled:
            return self
        self._stop = threading.Event()
        start = time.perf_counter()

        def beat() -> None:
            while not self._stop.wait(self.every_s):
                elapsed = time.perf_counter() - start
                print(f"{self.desc}… {duration(elapsed)}", file=sys.stderr, flush=True)

        self._thread = threading.Thread(target=beat, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
