"""Helpers shared by the benchmarks: arguments, isolated measurements, printing."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEEPCRACK = ROOT.parent / "shared" / "data" / "deepcrack"
sys.path.insert(0, str(ROOT / "src"))


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, seconds: checks that the script runs (the test suite runs every "
        "benchmark so); its figures mean nothing",
    )
    return p


def parse(p: argparse.ArgumentParser, **smoke: Any) -> argparse.Namespace:
    """The arguments; with ``--smoke``, ``smoke``'s values replace theirs."""
    args = p.parse_args()
    if args.smoke:
        for key, value in smoke.items():
            setattr(args, key, value)
    return args


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_name()} ({platform.machine()}, {torch.backends.cpu.get_cpu_capability()}), "
        f"{mp.cpu_count()} CPU threads, {gpu}, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated (CUDA) or peak resident memory of this process (CPU)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...], queue: Any) -> None:
    queue.put(fn(*args))


def isolated(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh process (so peak memory is its own) and return its dict."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return dict(result)


def interleaved(
    variants: dict[str, Callable[[], dict[str, Any]]], repeats: int
) -> dict[str, list[dict[str, Any]]]:
    """Measure variants alternately (A B A B …) so drift on a shared machine hits both."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            out[name].append(run())
    return out


def median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
