"""Subcommands that work on studies: sweep, status (and report, predict, demo)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def _configure_threads() -> None:
    threads = os.environ.get("SEGTUNE_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _open_runner(
    spec_path: Path,
    study_dir: str | None,
    storage: str | None,
    device: str | None = None,
    progress: bool = True,
) -> Any:
    from segtune.study.spec import load_spec
    from segtune.study.sweep import StudyRunner

    spec = load_spec(spec_path)
    folder = Path(study_dir) if study_dir else Path("studies") / spec.name
    return StudyRunner(spec, folder, storage, device=device, progress=progress)


def run_sweep(
    spec_path: Path,
    study_dir: str | None,
    storage: str | None,
    workers: int,
    device: str | None,
    *,
    quiet: bool = False,
    write_report: bool = True,
) -> int:
    """Run or resume a study; returns the exit status (1 when no run succeeded)."""
    from segtune.progress import Progress
    from segtune.study.status import study_status
    from segtune.study.workers import start_workers, wait_workers

    runner = _open_runner(spec_path, study_dir, storage, device, progress=False)
    runner.subsets()  # sample and record the subsets once, before any worker starts
    status = study_status(runner)
    total = sum(s.total or 0 for s in status.stages)
    settled = sum(s.done + s.pruned + s.failed for s in status.stages)
    if total and settled == total and all(s.total is not None for s in status.stages):
        print(f"study {runner.spec.name} is finished; nothing to run ({runner.dir})")
    else:
        bar = Progress(total, f"study {runner.spec.name}", "runs", enabled=not quiet)
        bar.update(settled)

        def tick() -> None:
            st = study_status(runner)
            bar.set_total(sum(s.total or 0 for s in st.stages))
            now = sum(s.done + s.pruned + s.failed for s in st.stages)
            if now > bar.done:
                bar.update(now - bar.done)

        if workers <= 1:
            runner.run(on_run_done=tick)
        else:
            from segtune.study.storage import default_storage

            url = storage or default_storage(runner.dir)
            procs = start_workers(workers, spec_path, runner.dir, url, device)
            codes = wait_workers(procs, tick)
            if any(codes):
                print(f"warning: worker exit codes {codes}", file=sys.stderr)
        bar.close()
        status = study_status(runner)
    for line in status.lines():
        print(line)
    if write_report:
        _write_report(runner)
    if not any(s.done for s in status.stages):
        print(
            f"error: study {runner.spec.name}: no run completed "
            f"({sum(s.failed for s in status.stages)} failed); see the summary.json of each run "
            f"under {runner.dir / 'runs'}",
            file=sys.stderr,
        )
        return 1
    return 0


def _write_report(runner: Any) -> None:
    try:
        from segtune.analysis.report import write_report
    except ImportError:
        return
    out = write_report(runner.dir)
    print(f"report: {out / 'report.html'}")


def _cmd_sweep(args: argparse.Namespace) -> int:
    _configure_threads()
    if args.worker:
        runner = _open_runner(Path(args.spec), args.dir, args.storage, args.device, progress=False)
        runner.run()
        return 0
    return run_sweep(Path(args.spec), args.dir, args.storage, args.workers, args.device)


def _cmd_status(args: argparse.Namespace) -> int:
    from segtune.study.spec import build_spec
    from segtune.study.status import study_status
    from segtune.study.storage import read_study_info
    from segtune.study.sweep import StudyRunner

    folder = Path(args.study)
    info = read_study_info(folder)
    spec = build_spec(info["spec"], str(folder / "study.json"))
    runner = StudyRunner(spec, folder, args.storage or info["storage"], progress=False)
    for line in study_status(runner).lines():
        print(line)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from segtune.analysis.report import write_report

    out = write_report(Path(args.study), Path(args.out) if args.out else None, args.storage)
    print(f"report: {out / 'report.md'}")
    print(f"report: {out / 'report.html'}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from segtune.predict import Predictor, collect_inputs, predict_files

    predictor = Predictor.load(Path(args.checkpoint), args.device)
    threshold = predictor.threshold(args.threshold)
    inputs = collect_inputs([Path(p) for p in args.pictures])
    result = predict_files(
        predictor,
        inputs,
        Path(args.out),
        threshold=threshold,
        save_probabilities=args.save_probabilities,
        overlays=args.overlays,
    )
    print(f"wrote {len(result.written)} mask(s) to {args.out} (threshold {threshold:g})")
    if result.errors:
        print(f"error: {len(result.errors)} picture(s) could not be read", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from segtune.demo import run_demo

    return run_demo(Path(args.out), workers=args.workers)


def add_commands(sub: Any) -> None:
    """Register the study subcommands on the ``segtune`` parser."""
    p = sub.add_parser("sweep", help="run or resume a study (staged grids on Optuna)")
    p.add_argument("spec", help="study spec YAML")
    p.add_argument("--dir", help="study folder (default studies/<name>)")
    p.add_argument(
        "--storage",
        help="Optuna storage URL (default sqlite:///<dir>/study.db); "
        "postgresql+psycopg2://user:pass@host/db lets machines share a study",
    )
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the spec's, else auto)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("status", help="progress of a study: done / running / failed / pending")
    p.add_argument("study", help="study folder")
    p.add_argument("--storage", help="storage URL if not the one recorded in study.json")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("report", help="write report.md / report.html of a study from its records")
    p.add_argument("study", help="study folder")
    p.add_argument("--out", help="report folder (default <study>/report)")
    p.add_argument("--storage", help="storage URL if not the one recorded in study.json")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("predict", help="predict masks for new pictures with a checkpoint")
    p.add_argument("checkpoint", help="checkpoint.pt of a run")
    p.add_argument("pictures", nargs="+", help="picture files or folders")
    p.add_argument("--out", required=True, help="output folder for <stem>.png masks")
    p.add_argument(
        "--threshold",
        default="0.5",
        help="a number in (0, 1), or 'best' (the run's validation F1-best threshold)",
    )
    p.add_argument(
        "--save-probabilities",
        type=int,
        choices=(8, 16),
        nargs="?",
        const=16,
        help="also write <stem>-prob.png (8- or 16-bit; default 16)",
    )
    p.add_argument("--overlays", action="store_true", help="also write <stem>-overlay.png")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("demo", help="generate demo data, run a small study, write its report")
    p.add_argument("--out", default="segtune-demo", help="demo folder (default ./segtune-demo)")
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=_cmd_demo)
