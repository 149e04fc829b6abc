"""The Python API: what the commands do, as typed functions.

    import segtune

    record = segtune.train_run(segtune.load_config("run.yaml"), Path("runs/a"))
    result = segtune.run_study(Path("spec.yaml"), "studies/s")  # result.model_path
    summary = segtune.load_study("studies/s")          # read-only
    answer = segtune.study_answer(summary)  # answer.sentences; answer.model.path
    result = segtune.evaluate_run("runs/a", ["data/test"], threshold="best")
    written = segtune.predict_masks("runs/a", ["new/"], "masks/")
    meta = segtune.export_run("runs/a", "onnx", "model.onnx")

(``segtune.inference.evaluate`` and ``segtune.inference.predict`` are the modules behind
the last three.)

Everything returned is typed: :class:`~segtune.core.records.RunRecord`,
:class:`~segtune.analysis.summary.StudySummary`,
:class:`~segtune.inference.evaluate.Evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segtune.analysis.answer import Answer
    from segtune.analysis.summary import StudySummary
    from segtune.core.config import RunConfig
    from segtune.core.records import RunRecord
    from segtune.inference.evaluate import Evaluation
    from segtune.study.spec import ParamValue


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """A run config from YAML with ``key=value`` overrides, validated (ConfigError)."""
    from segtune.core.config import load_run_config

    return load_run_config(Path(path), list(overrides))


def load_run(run_dir: str | Path) -> RunRecord:
    """The typed record (``summary.json``) of a run folder."""
    from segtune.core.records import RunFolder

    return RunFolder(Path(run_dir)).read_record()


@dataclass(frozen=True)
class StudyResult:
    """What :func:`run_study` ends with: how the sweep went and the study's answer."""

    folder: Path
    exit_code: int  # as ``segtune sweep``: 1 when no run completed or a worker failed
    completed: int  # runs completed in the study (all stages)
    failed: int
    objective: str  # the metric key ranked by, e.g. ``val/f1``
    best_params: dict[str, ParamValue]  # the best configuration's searched parameters
    model_path: Path | None  # the ``model.pt`` of its median seed (the report's answer)
    metrics: dict[str, float]  # that run's values at the kept epoch
    threshold: float | None = None  # that run's F1-best validation threshold


def run_study(
    spec: str | Path,
    study_dir: str | Path | None = None,
    *,
    storage: str | None = None,
    workers: int = 1,
    device: str | None = None,
    sets: Sequence[str] = (),
    quiet: bool = True,
    report: bool = True,
) -> StudyResult:
    """Run or resume a study (as ``segtune sweep``) and read its answer.

    ``sets`` are ``--set`` overrides of fixed run-config keys (``"optim.epochs=2"``);
    ``quiet`` silences progress and per-run lines; ``report`` writes the report."""
    from segtune.analysis.summary import load_study_summary
    from segtune.study.run import run_sweep

    folder = None if study_dir is None else str(study_dir)
    done = run_sweep(
        Path(spec),
        folder,
        storage,
        workers,
        device,
        quiet=quiet,
        show_plan=False,
        sets=list(sets) or None,
    )
    summary = load_study_summary(done.folder, storage)
    if report:
        from segtune.analysis.report import write_report

        write_report(done.folder, storage_url=storage, summary=summary)
    choice = study_answer(summary).model
    model = None if choice is None else choice.path
    return StudyResult(
        folder=done.folder,
        exit_code=done.exit_code,
        completed=done.completed,
        failed=done.failed,
        objective=summary.objective,
        best_params=dict(choice.config.params) if choice else {},
        model_path=model if model is not None and model.is_file() else None,
        metrics=dict(choice.run.final) if choice else {},
        threshold=choice.threshold if choice else None,
    )


def study_answer(summary: StudySummary, which: str = "median") -> Answer:
    """The study's answer (what the report opens with): the best configuration, the set
    tied with it, the threshold-free comparison and the model to use."""
    from segtune.analysis.answer import answer

    return answer(summary, "best" if which == "best" else "median")


def load_study(study_dir: str | Path, storage: str | None = None) -> StudySummary:
    """A study's typed summary from its records and storage; writes nothing."""
    from segtune.analysis.summary import load_study_summary

    return load_study_summary(Path(study_dir), storage)


def evaluate_run(
    checkpoint: str | Path,
    data: Sequence[str | Path],
    *,
    threshold: str | float = 0.5,
    split: str = "test",
    tta: str | None = None,
    tta_scales: Sequence[float] | None = None,
    device: str = "auto",
) -> Evaluation:
    """Score a checkpoint on labelled pictures (as ``segtune evaluate``)."""
    from segtune.inference.evaluate import evaluate_checkpoint, find_labelled
    from segtune.inference.predict import Predictor

    predictor = Predictor.load(Path(checkpoint), device)
    predictor.augment(tta, tta_scales)
    value = predictor.threshold(str(threshold))
    source = "selected on the validation split" if threshold == "best" else "given"
    pictures = find_labelled([Path(p) for p in data], predictor.config.data.missing_masks)
    return evaluate_checkpoint(
        predictor,
        pictures,
        split=split,
        threshold=value,
        threshold_source=source,
        progress=False,
    )


def predict_masks(
    checkpoint: str | Path,
    pictures: Sequence[str | Path],
    out: str | Path,
    *,
    threshold: str | float = 0.5,
    device: str = "auto",
) -> list[Path]:
    """Write ``<stem>.png`` masks for pictures (as ``segtune predict``); returns them."""
    from segtune.inference.predict import Predictor, collect_inputs, find_rois, predict_files

    predictor = Predictor.load(Path(checkpoint), device)
    items = [Path(p) for p in pictures]
    result = predict_files(
        predictor,
        collect_inputs(items),
        Path(out),
        threshold=predictor.threshold(str(threshold)),
        progress=False,
        rois=find_rois(items),
    )
    return result.written


def export_run(checkpoint: str | Path, fmt: str, out: str | Path) -> dict[str, object]:
    """Write a run's network as ``onnx`` or ``torchscript`` (as ``segtune export``);
    returns the settings stored in the file."""
    from segtune.inference.export import export_model
    from segtune.inference.predict import Predictor

    return export_model(Predictor.load(Path(checkpoint), "cpu"), fmt, Path(out))
