"""``segtune sweep`` as a function: run or resume a study and return what it did (a
typed :class:`SweepResult`). The CLI, ``segtune demo`` and the API print it and write
the report."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segtune.study.spec import StudySpec, load_spec

if TYPE_CHECKING:
    from segtune.study.status import StudyStatus
    from segtune.study.sweep import StudyRunner


def open_runner(
    spec_path: Path,
    study_dir: str | None,
    storage: str | None,
    device: str | None = None,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> StudyRunner:
    from segtune.core.config import check_device
    from segtune.study.sweep import StudyRunner

    check_device(device)
    spec: StudySpec = load_spec(spec_path, overrides)
    folder = Path(study_dir) if study_dir else Path("studies") / spec.name
    check_owner(folder, spec, spec_path)
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
    from segtune.engine.loggers import check_loggers, check_tracking

    runtime = spec.run_config({}).runtime
    check_loggers(runtime.loggers)
    folder = Path(study_dir) if study_dir else Path("studies") / spec.name
    check_tracking(runtime.loggers, runtime.mlflow_uri, folder)
    check_owner(folder, spec, spec_path)
    if not (folder / "subsets.json").exists():
        from segtune.data.subsets import resolve_subsets

        resolve_subsets(spec.run_config({}).data)
    return spec


def check_owner(folder: Path, spec: StudySpec, spec_path: Path) -> None:
    """Refuse a study folder that holds another study, before anything in it changes."""
    from segtune.core.errors import ConfigError
    from segtune.study.storage import read_study_info

    if not (folder / "study.json").is_file():
        return
    name = read_study_info(folder).get("name")
    if name is not None and name != spec.name:
        raise ConfigError(
            f"{folder}: holds study {name!r}, and {spec_path} is study {spec.name!r}; a study "
            "folder belongs to one study: give another --dir"
        )


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


Say = Callable[[str], None]  # where a sweep's notes go (the CLI prints them)


@dataclass(frozen=True)
class SweepResult:
    """What ``segtune sweep`` did: the study's status after it and how its workers ended.

    The caller prints, writes the report and maps :attr:`exit_code` (1 when no run of the
    study completed or a worker stopped with an error)."""

    name: str
    folder: Path
    status: StudyStatus
    worker_codes: tuple[int, ...] = ()
    already_finished: bool = False  # nothing was left to run when it started

    @property
    def completed(self) -> int:
        return sum(s.done for s in self.status.stages)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.status.stages)

    @property
    def workers_failed(self) -> bool:
        return any(self.worker_codes)

    @property
    def exit_code(self) -> int:
        return 1 if self.completed == 0 or self.workers_failed else 0


def run_sweep(
    spec_path: Path,
    study_dir: str | None,
    storage: str | None,
    workers: int,
    device: str | None,
    *,
    quiet: bool = False,
    retry_failed: bool = False,
    show_plan: bool = True,
    sets: list[str] | None = None,
    say: Say | None = None,
) -> SweepResult:
    """Run or resume a study until every point of every stage is settled.

    Notes (the plan of a new study, retried points) go to ``say``; progress bars, unless
    ``quiet``, to the terminal."""
    from segtune.core.config import apply_overrides

    note: Say = say or (lambda line: None)
    overrides = {"fixed": apply_overrides({}, sets)} if sets else None
    spec = preflight(spec_path, study_dir, storage, workers, device, overrides)
    folder = Path(study_dir) if study_dir else Path("studies") / spec.name
    fresh = not folder.exists()
    if fresh and show_plan:  # once, when a study starts: counts and warnings
        from segtune.study.plan import make_plan

        for line in make_plan(spec, measure=False).lines():
            note(line)
    try:
        runner = open_runner(spec_path, study_dir, storage, device, False, overrides)
        runner.subsets()  # sample and record the subsets once, before any worker starts
        # A spec change that alters recorded runs stops here (--retry-failed: pictures
        # fixed since failed points named them are accepted).
        runner.check_unchanged(retry_failed)
        runner.record_spec()
    except BaseException:
        if fresh:  # a study that could not start leaves nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if retry_failed:
        count = runner.board.retry_failed()
        note(f"--retry-failed: {count} failed point(s) get their attempts back")
    return _run_points(runner, spec_path, workers, device, sets, quiet)


def _run_points(
    runner: StudyRunner,
    spec_path: Path,
    workers: int,
    device: str | None,
    sets: list[str] | None,
    quiet: bool,
) -> SweepResult:
    """Train every unsettled point, in this process or in ``workers`` processes, with a
    study progress bar; the study's status after it."""
    from segtune.core.progress import Progress
    from segtune.study.monitor import StudyMonitor
    from segtune.study.status import study_status
    from segtune.study.workers import start_workers, wait_workers

    status = study_status(runner)
    total = status.expected_total  # later stages' planned runs too: one ETA with status
    settled = sum(s.done + s.pruned + s.failed for s in status.stages)
    name, folder = runner.spec.name, runner.dir
    if total and settled == total and all(s.total is not None for s in status.stages):
        return SweepResult(name, folder, status, already_finished=True)
    # The monitor's study ETA counts the running points' progress: no bar ETA.
    bar = Progress(total, f"study {name}", "runs", enabled=not quiet, leave=True, show_eta=False)
    bar.skip(settled)

    def tick() -> None:
        st = study_status(runner)
        bar.set_total(st.expected_total)
        now = sum(s.done + s.pruned + s.failed for s in st.stages)
        if now > bar.done:
            bar.update(now - bar.done)

    codes: list[int] = []
    runner.say_points = not quiet
    with StudyMonitor(folder, bar, workers):
        if workers <= 1:
            runner.run(on_run_done=tick)
        else:
            procs = start_workers(workers, spec_path, folder, runner.url, device, sets, quiet)
            codes = wait_workers(procs, tick)
    bar.close()
    for stage in runner.spec.stages:
        if runner.stage_points(stage).points is not None:
            runner.fail_orphan_trials(stage)
    return SweepResult(name, folder, study_status(runner), tuple(codes))
