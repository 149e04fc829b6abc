"""``segtune sweep`` as a function: run or resume a study, then print its status and
write its report. Used by the CLI and by ``segtune demo``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from segtune.study.spec import StudySpec, load_spec


def open_runner(
    spec_path: Path,
    study_dir: str | None,
    storage: str | None,
    device: str | None = None,
    progress: bool = True,
) -> Any:
    from segtune.config import check_device
    from segtune.study.sweep import StudyRunner

    check_device(device)
    spec: StudySpec = load_spec(spec_path)
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
    retry_failed: bool = False,
) -> int:
    """Run or resume a study; returns the exit status (1 when no run succeeded or a
    worker stopped with an error)."""
    from segtune.progress import Progress
    from segtune.study.status import study_status
    from segtune.study.workers import start_workers, wait_workers

    runner = open_runner(spec_path, study_dir, storage, device, progress=False)
    runner.subsets()  # sample and record the subsets once, before any worker starts
    runner.check_unchanged()  # a spec change that alters recorded runs stops here
    runner.record_spec()
    if retry_failed:
        count = runner.board.retry_failed()
        print(f"--retry-failed: {count} failed point(s) get their attempts back", file=sys.stderr)
    status = study_status(runner)
    total = sum(s.total or 0 for s in status.stages)
    settled = sum(s.done + s.pruned + s.failed for s in status.stages)
    code = 0
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
            procs = start_workers(workers, spec_path, runner.dir, runner.url, device)
            codes = wait_workers(procs, tick)
            if any(codes):
                print(f"error: worker exit codes {codes}", file=sys.stderr)
                code = 1
        bar.close()
        for stage in runner.spec.stages:
            if runner.stage_points(stage).points is not None:
                runner.fail_orphan_trials(stage)
        status = study_status(runner)
    for line in status.lines():
        print(line)
    if write_report:
        _write_report(runner.dir)
    if not any(s.done for s in status.stages):
        print(
            f"error: study {runner.spec.name}: no run completed "
            f"({sum(s.failed for s in status.stages)} failed); see the summary.json of each run "
            f"under {runner.dir / 'runs'}",
            file=sys.stderr,
        )
        return 1
    return code


def _write_report(study_dir: Path) -> None:
    try:
        from segtune.analysis.report import write_report
    except ImportError:
        return
    out = write_report(study_dir)
    print(f"report: {out / 'report.html'}")
