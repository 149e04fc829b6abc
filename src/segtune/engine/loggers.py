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
        self.uri = (
            uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{(home / 'mlflow.db').resolve()}"
        )
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
        # A local store keeps its artifacts (the overlay strip) beside its database, not in
        # MLflow's default ./mlruns of whatever folder the command was started from.
        local = not self.uri.startswith(("http://", "https://", "databricks"))
        artifacts = (self.home / "mlflow-artifacts").resolve().as_uri() if local else None
        experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(self.experiment, artifact_location=artifacts)
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


class Loggers:
    """Every configured logger, called in turn; a logger that fails is reported once and
    dropped: tracking never fails a run."""

    def __init__(self, loggers: Sequence[RunLogger]) -> None:
        self.loggers = list(loggers)

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
                logging.getLogger("segtune").warning(
                    "logger %s failed and is switched off for this run: %s",
                    type(logger).__name__,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
                self.loggers.remove(logger)

    def start(self, params: Mapping[str, Any], first_epoch: int) -> None:
        self._each(lambda lg: lg.start(params, first_epoch))

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        self._each(lambda lg: lg.log_epoch(epoch, values))

    def log_image(self, tag: str, image: NDArray[np.uint8], epoch: int) -> None:
        self._each(lambda lg: lg.log_image(tag, image, epoch))

    def close(self, status: str) -> None:
        self._each(lambda lg: lg.close(status))
