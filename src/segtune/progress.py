"""Progress reporting: a tqdm bar on a terminal, a few plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm


class Progress:
    """A bar over ``total`` items; when stderr is not a terminal (logs, CI) it prints a
    plain line at every quarter and at the end instead of redrawing a bar."""

    def __init__(self, total: int, desc: str, unit: str = "it", enabled: bool = True) -> None:
        self.total = max(total, 0)
        self.desc = desc
        self.unit = unit
        self.enabled = enabled
        self.done = 0
        self.start = time.perf_counter()
        self._next_quarter = 1
        self._postfix: dict[str, Any] = {}
        self._bar: tqdm[Any] | None = None
        if enabled and sys.stderr.isatty():
            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def set_total(self, total: int) -> None:
        """Grow the total (a refined stage's size is known only once its source ends)."""
        if total > self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

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
        while self._next_quarter <= 4 and self.done * 4 >= self._next_quarter * self.total:
            self._next_quarter += 1
            elapsed = time.perf_counter() - self.start
            rate = self.done / elapsed if elapsed > 0 else 0.0
            extra = "".join(f", {k} {v}" for k, v in self._postfix.items())
            print(
                f"  {self.desc}: {self.done}/{self.total} {self.unit} "
                f"({rate:.1f} {self.unit}/s{extra})",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
