"""Ctrl-C and SIGTERM as a stop request that is never lost.

Python runs a signal's handler between two bytecodes of the main thread. When those
belong to a finalizer (``weakref.finalize``, a ``__del__``), the KeyboardInterrupt the
handler raises is printed as "Exception ignored" and dropped, and a run would train on
to its last epoch (a cluster's SIGTERM, ignored after the first, then ends in SIGKILL
with nothing recorded). The handler therefore also remembers the request, and the long
loops (training steps, evaluated pictures) call :func:`check`, which raises it again.

A SIGTERM (a scheduler's preemption) received after an epoch's training steps waits for
that epoch's validation and checkpoint (:func:`finishing`), so a resumed run never trains
a finished epoch again.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_received: int | None = None  # the signal that asked to stop, while stop_requests() holds
_finishing = 0  # inside finishing(): a SIGTERM waits for the block's end


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = signal.SIGTERM if signum == signal.SIGTERM else (_received or signum)
    if signum == signal.SIGTERM:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let the clean-up finish
        if _finishing:
            return  # raised by the next check() after the block
    raise KeyboardInterrupt


def check() -> None:
    """Raise a stop request again, should a finalizer have swallowed it (or a SIGTERM
    have waited for a :func:`finishing` block)."""
    if _received is not None and not _finishing:
        raise KeyboardInterrupt


@contextmanager
def finishing() -> Iterator[None]:
    """Work that is cheaper to finish than to redo (an epoch trained: its validation and
    checkpoint): a SIGTERM received inside waits for its end, and the next :func:`check`
    stops. Ctrl-C still stops at once."""
    global _finishing
    _finishing += 1
    try:
        yield
    finally:
        _finishing -= 1


def terminated() -> bool:
    """Whether the stop request was SIGTERM (exit status 143, not Ctrl-C's 130)."""
    return _received == signal.SIGTERM


@contextmanager
def stop_requests() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise KeyboardInterrupt and are remembered for
    :func:`check` (main thread only, as every signal handler)."""
    global _received
    _received = None
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received = None
