"""Fault injection for the exactly-once tests: ``SEGTUNE_FAULT=<boundary>[:<n>[:term]]``
makes the process SIGKILL itself (``term``: send itself SIGTERM, as a scheduler's
preemption does) the n-th time (default 1st) it passes ``boundary``.

Boundaries, in a point's life: ``claimed``, ``asked`` (trial created), ``params_set``,
``mid_epoch`` (after the first step of epoch 2 or later), ``validating`` (an epoch's
training steps done, its validation about to start), ``checkpoint_write`` (the
temporary file written, not yet renamed), ``summary_written`` (the run finished, the
study not yet told), ``told`` (the study told, the claim not yet completed); and
``report`` (half-way through writing the final report). Unset, this costs one lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_PASSED: Counter[str] = Counter()


def fault_point(boundary: str) -> None:
    wanted = os.environ.get("SEGTUNE_FAULT")
    if not wanted:
        return
    name, _, rest = wanted.partition(":")
    if name != boundary:
        return
    nth, _, how = rest.partition(":")
    _PASSED[boundary] += 1
    if _PASSED[boundary] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGTERM if how == "term" else signal.SIGKILL)
