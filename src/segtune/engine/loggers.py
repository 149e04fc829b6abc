"""Live experiment tracking: ``runtime.loggers: [tensorboard, mlflow]``.

A logger receives a run's values as training goes: once at the start (the resolved
config, flat), after every epoch (every split-named metric and ``train/lr``), and once at
the end (the kept epoch's overlay strip of the validation preview pictures). The run's
own records (``metrics.csv``, ``summary.json``) stay the source of truth; a logger only
mirrors them into the tool people watch. Adding one (W&B, …) is a class with the four
methods of :class:`RunLogger` and a line in :data:`LOGGERS`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from segtune.core.errors import ConfigError

MLFLOW_RUN_ID_FILE = "mlflow-run-id.txt"


class RunLogger(Protocol):
    def start(self, params: Mapping[str, Any], first_epoch: int) -> None: ...

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None: ...

    def log_image(self, tag: str, image: NDArray[np.uint8], epoch: int) -> None: ...

    def close(self, status: str) -> None: ...


class TensorBoardLogger:
    """Event files in ``<run>/tensorboard``: ``tensorboard --logdir <run or study folder>``.
    A resumed run purges the events of the epochs it trains again."""

    def __init__(self, run_dir: Path, uri: str | None, experiment: str, home: Path) -> None:
        self.dir = run_dir / "tensorboard"
        self.writer: Any = None

    def start(self, params: Mapping[str, Any], first_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.dir), purge_step=first_epoch, flush_secs=10)
        if first_epoch == 1:
            rows = "\n".join(f"| {k} | {v} |" for k, v in params.items())
            self.writer.add_text("config", f"| key | value |\n| --- | --- |\n{rows}", 0)

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()  # live: visible while the next epoch trains

    def log_image(self, tag: str, image: NDArray[np.uint8], epoch: int) -> None:
        self.writer.add_image(tag, image, epoch, dataformats="HWC")
        self.writer.flush()

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.add_text("status", status, 0)
            self.writer.close()


class MlflowLogger:
    """One MLflow run per segtune run, in ``runtime.mlflow_uri``, else
    ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<home>/mlflow.db`` (home: the run folder,
    or the study folder for a study's runs, whose experiment is the study's name). Metric
    names keep their split (``val/f1``); params are the flat config; a resumed run
    continues its MLflow run (its id is kept in ``mlflow-run-id.txt``)."""

    def __init__(self, run_dir: Path, uri: str | None, experiment: str, home: Path) -> None:
        self.run_dir = run_dir
        self.home = home
        self.experiment = experiment
        self.uri = mlflow_uri(uri, home)
        self.client: Any = None
        self.run_id = ""

    def start(self, params: Mapping[str, Any], first_epoch: int) -> None:
        import logging

        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no table-creation lines
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.client = MlflowClient(self.uri)
        id_file = self.run_dir / MLFLOW_RUN_ID_FILE
        if first_epoch > 1 and id_file.exists():
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
            return
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(
                self.experiment, artifact_location=artifact_root(self.uri)
            )
        )
        run = self.client.create_run(experiment_id, run_name=self.run_dir.name)
        self.run_id = run.info.run_id
        from segtune.core.records import atomic_write_text

        atomic_write_text(id_file, self.run_id + "\n")
        for key, value in params.items():
            self.client.log_param(self.run_id, key, str(value)[:6000])

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, epoch) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_image(self, tag: str, image: NDArray[np.uint8], epoch: int) -> None:
        self.client.log_image(self.run_id, image, key=tag.replace("/", "-"), step=epoch)

    def close(self, status: str) -> None:
        if self.client is not None and self.run_id:
            state = {"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
            self.client.set_terminated(self.run_id, status=state)


def mlflow_uri(uri: str | None, home: Path) -> str:
    """The tracking store: ``runtime.mlflow_uri``, else ``$MLFLOW_TRACKING_URI``, else a
    SQLite database in ``home`` (the run folder, or the study folder)."""
    return (
        uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{(home / 'mlflow.db').resolve()}"
    )


def artifact_root(uri: str) -> str | None:
    """Where an experiment created in a local store keeps its runs' artifacts (each run
    under its own id): beside a SQLite database, never in MLflow's default ``./mlruns`` of
    whatever folder the command was started from nor in one run's folder; a file store
    and a server keep their own (None)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.parent / "mlflow-artifacts").resolve().as_uri()


LOGGERS: dict[str, tuple[Callable[[Path, str | None, str, Path], RunLogger], str, str]] = {
    # name: (class, module that must import, pip extra)
    "tensorboard": (TensorBoardLogger, "tensorboard", "tensorboard"),
    "mlflow": (MlflowLogger, "mlflow", "mlflow"),
}


def check_loggers(names: Sequence[str]) -> None:
    """Refuse, before anything is written, a logger whose package is missing."""
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(
                f"runtime.loggers: unknown logger {name!r} (one of: {', '.join(LOGGERS)})"
            )
        module, extra = LOGGERS[name][1:]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"runtime.loggers: {name} needs the {module} package, which is not installed "
                f"(pip install 'segtune[{extra}]')"
            ) from exc


def check_tracking(names: Sequence[str], uri: str | None, home: Path) -> None:
    """Refuse, before the first run, a tracking store that would refuse the runs: an MLflow
    file store that MLflow 3 refuses, an unknown scheme, a server that does not answer.
    The default store (a SQLite file segtune makes) needs no check."""
    if "mlflow" not in names:
        return
    if uri is None and "MLFLOW_TRACKING_URI" not in os.environ:
        return  # the default SQLite file, made by segtune
    resolved = mlflow_uri(uri, home)
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {k: os.environ.get(k) for k in quick}
    os.environ.update(quick)
    try:
        MlflowClient(resolved).search_experiments(max_results=1)
    except Exception as exc:
        text = str(exc)
        setting = "runtime.mlflow_uri" if uri else "$MLFLOW_TRACKING_URI"
        if "MLFLOW_ALLOW_FILE_STORE" in text:
            raise ConfigError(
                f"{setting} {resolved}: MLflow refuses a file store unless "
                "MLFLOW_ALLOW_FILE_STORE=true; use a database (sqlite:///PATH/mlflow.db) or "
                "set that variable"
            ) from exc
        first = (text.strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"{setting} {resolved}: the tracking store refused: {first}") from exc
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Loggers:
    """Every configured logger, called in turn; a logger that fails is reported once,
    dropped and remembered in :attr:`lost` (the run's record says so): tracking never
    fails a run."""

    def __init__(self, loggers: Sequence[RunLogger]) -> None:
        self.loggers = list(loggers)
        self.lost: list[str] = []  # "mlflow: <reason>", one per logger switched off

    @classmethod
    def open(
        cls,
        names: Sequence[str],
        run_dir: Path,
        uri: str | None = None,
        experiment: str = "segtune",
        home: Path | None = None,
    ) -> Loggers:
        """The loggers ``names`` for the run in ``run_dir``; ``experiment`` and ``home``
        (where a default MLflow database lives) are the study's for a study's runs."""
        check_loggers(names)
        return cls([LOGGERS[n][0](run_dir, uri, experiment, home or run_dir) for n in names])

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def _each(self, call: Callable[[RunLogger], None]) -> None:
        import logging

        for logger in list(self.loggers):
            try:
                call(logger)
            except Exception as exc:  # a tracking server down must not lose the run
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                named = (n for n, (make, *_) in LOGGERS.items() if make is type(logger))
                name = next(named, type(logger).__name__)
                logging.getLogger("segtune").warning(
                    "logger %s failed and is switched off for this run: %s", name, reason
                )
                self.lost.append(f"{name}: {reason}")
                self.loggers.remove(logger)

    def start(self, params: Mapping[str, Any], first_epoch: int) -> None:
        self._each(lambda lg: lg.start(params, first_epoch))

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        self._each(lambda lg: lg.log_epoch(epoch, values))

    def log_image(self, tag: str, image: NDArray[np.uint8], epoch: int) -> None:
        self._each(lambda lg: lg.log_image(tag, image, epoch))

    def close(self, status: str) -> None:
        self._each(lambda lg: lg.close(status))
