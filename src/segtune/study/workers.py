"""Local worker processes for ``segtune sweep --workers N``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def start_workers(
    n: int, spec_path: Path, study_dir: Path, storage: str, device: str | None
) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` worker processes: one GPU each when there are several, CPU threads
    divided between them otherwise."""
    gpus = gpu_count()
    threads = max(1, (os.cpu_count() or 1) // n)
    procs = []
    for i in range(n):
        env = dict(os.environ)
        env["SEGTUNE_THREADS"] = str(threads)
        env["OMP_NUM_THREADS"] = str(threads)
        if gpus > 1 and (device in (None, "auto", "cuda")):
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        cmd = [
            sys.executable,
            "-m",
            "segtune",
            "sweep",
            str(spec_path),
            "--dir",
            str(study_dir),
            "--storage",
            storage,
            "--worker",
        ]
        if device:
            cmd += ["--device", device]
        procs.append(subprocess.Popen(cmd, env=env))
    return procs


def wait_workers(
    procs: list[subprocess.Popen[bytes]], tick: Callable[[], None], poll_s: float = 2.0
) -> list[int]:
    """Wait for every worker, calling ``tick`` between polls; returns exit codes."""
    try:
        while any(p.poll() is None for p in procs):
            tick()
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for p in procs:
            p.wait()
        raise
    tick()
    return [int(p.returncode) for p in procs]
