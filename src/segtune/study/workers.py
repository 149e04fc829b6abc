"""Local worker processes for ``segtune sweep --workers N``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from segtune.study import STORAGE_ENV


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set (``2,3`` means
    devices 2 and 3, not 0 and 1), else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    return [str(i) for i in range(gpu_count())]


def worker_env(index: int, gpus: list[str], device: str | None, storage: str) -> dict[str, str]:
    """The environment of worker ``index``: one GPU each when there are several, and the
    storage URL (which may hold a password) by environment, not on its command line."""
    env = dict(os.environ)
    env[STORAGE_ENV] = storage
    if len(gpus) > 1 and device in (None, "auto", "cuda"):
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    return env


def start_workers(
    n: int,
    spec_path: Path,
    study_dir: Path,
    storage: str,
    device: str | None,
    sets: list[str] | None = None,
    quiet: bool = False,
) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` worker processes. Each uses the spec's ``runtime.threads`` (or torch's
    default), never a count derived from ``n``: a point's result must not depend on how
    many workers shared the machine."""
    gpus = visible_gpus()
    procs = []
    for i in range(n):
        cmd = [sys.executable, "-m", "segtune", "sweep", str(spec_path), "--dir", str(study_dir)]
        cmd.append("--worker")
        if quiet:
            cmd.append("--quiet")
        if device:
            cmd += ["--device", device]
        for item in sets or []:
            cmd += ["--set", item]
        procs.append(subprocess.Popen(cmd, env=worker_env(i, gpus, device, storage)))
    return procs


def wait_workers(
    procs: list[subprocess.Popen[bytes]], tick: Callable[[], None], poll_s: float = 2.0
) -> list[int]:
    """Wait for every worker, calling ``tick`` between polls; returns exit codes. On
    Ctrl-C or SIGTERM the workers are stopped the same way and waited for."""
    try:
        while any(p.poll() is None for p in procs):
            tick()
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise
    tick()
    return [int(p.returncode) for p in procs]
