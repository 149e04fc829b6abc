"""``segtune sweep`` as a function: run or resume a study, then print its status and
write its report. Used by the CLI and by ``segtune demo``."""

from __future__ import annotations

import shutil
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
    overrides: dict[str, Any] | None = None,
) -> Any:
    from segtune.core.config import check_device
    from segtune.study.sweep import StudyRunner

    check_device(device)
    spec: StudySpec = load_spec(spec_path, overrides)
    folder = Path(study_dir) if study_dir else Path("studies") / spec.name
    return StudyRunner(spec, folder, storage, device=device, progress=progress, overrides=overrides)


def preflight(
    spec_path: Path,
    study_dir: str | None,
    storage: str | None,
    workers: int,
    device: str | None,
    overrides: dict[str, Any] | None = None,
) -> StudySpec:
    """Everything that can be refused before a study folder or database exists: the
    spec, ``--workers``, ``--device`` and ``--storage`` syntax, every distinct model of the
    grid stages (built once without weights), the loggers' packages, and, for a new study,
    the data (folders, manifests, subset sizes, header sizes of every picture)."""
    from segtune.core.config import check_device
    from segtune.core.errors import ConfigError
    from segtune.study.storage import check_storage_url

    if workers < 1:
        raise ConfigError(f"--workers: must be at least 1 (got {workers})")
    check_device(device)
    spec = load_spec(spec_path, overrides)
    if storage is not None:
        check_storage_url(storage)
    _check_models(spec)
    from segtune.engine.loggers import check_loggers

    check_loggers(spec.run_config({}).runtime.loggers)
    folder = Path(study_dir) if study_dir else Path("studies") / spec.name
    if not (folder / "subsets.json").exists():
        from segtune.data.subsets import resolve_subsets

        resolve_subsets(spec.run_config({}).data)
    return spec


def _check_models(spec: StudySpec) -> None:
    """Build each distinct model config of the study once (no weights, no data)."""
    from segtune.core.config import ModelConfig
    from segtune.engine.model import build_model, is_weights_file
    from segtune.study.spec import grid_points

    seen: set[ModelConfig] = set()
    for stage in spec.stages:
        points = grid_points(stage.grid) if stage.grid else [{}]
        for point in points:
            model = spec.run_config(point).model
            if model not in seen:
                seen.add(model)
                # Local weight files are loaded too (a bad one is refused now); hub
                # weights are not fetched here.
                weights = model.encoder_weights
                local = weights if weights is not None and is_weights_file(weights) else None
                build_model(model.model_copy(update={"encoder_weights": local}))


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
    show_plan: bool = True,
    sets: list[str] | None = None,
) -> int:
    """Run or resume a study; returns the exit status (1 when no run succeeded or a
    worker stopped with an error)."""
    from segtune.core.config import apply_overrides
    from segtune.core.progress import Progress
    from segtune.study.monitor import StudyMonitor
    from segtune.study.status import study_status
    from segtune.study.workers import start_workers, wait_workers

    overrides = {"fixed": apply_overrides({}, sets)} if sets else None
    spec = preflight(spec_path, study_dir, storage, workers, device, overrides)
    folder = Path(study_dir) if study_dir else Path("studies") / spec.name
    fresh = not folder.exists()
    if fresh and show_plan and not quiet:  # once, when a study starts: counts and warnings
        from segtune.study.plan import make_plan

        for line in make_plan(spec, measure=False).lines():
            print(line)
    try:
        runner = open_runner(spec_path, study_dir, storage, device, False, overrides)
        runner.subsets()  # sample and record the subsets once, before any worker starts
        runner.check_unchanged()  # a spec change that alters recorded runs stops here
        runner.record_spec()
    except BaseException:
        if fresh:  # a study that could not start leaves nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
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
        bar = Progress(
            total,
            f"study {runner.spec.name}",
            "runs",
            enabled=not quiet,
            leave=True,
            show_eta=False,  # the monitor's study ETA counts the running points' progress
        )
        bar.skip(settled)

        def tick() -> None:
            st = study_status(runner)
            bar.set_total(sum(s.total or 0 for s in st.stages))
            now = sum(s.done + s.pruned + s.failed for s in st.stages)
            if now > bar.done:
                bar.update(now - bar.done)

        with StudyMonitor(runner.dir, bar, workers):
            if workers <= 1:
                runner.run(on_run_done=tick)
            else:
                procs = start_workers(workers, spec_path, runner.dir, runner.url, device, sets)
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
