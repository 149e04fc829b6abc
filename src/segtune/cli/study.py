"""Subcommands that work on studies: sweep, status (and report, predict, demo)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segtune.cli.options import add_mask_options, add_missing_masks_option, add_save_probabilities
from segtune.core.progress import Heartbeat
from segtune.study import STORAGE_ENV

if TYPE_CHECKING:
    from segtune.inference.predict import Predictor

TTA_CHOICES = ("none", "flips", "dihedral")  # eval.tta (segtune.engine.infer.VIEWS; tested equal)


def _configure_threads() -> None:
    threads = os.environ.get("SEGTUNE_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _storage(args: argparse.Namespace) -> str | None:
    """``--storage``, else ``$SEGTUNE_STORAGE``: a URL with a password travels to worker
    processes by environment, never on a command line."""
    return args.storage or os.environ.get(STORAGE_ENV) or None


def _cmd_sweep(args: argparse.Namespace) -> int:
    from segtune.cli.sweep import finish_sweep, say_note
    from segtune.core.config import apply_overrides
    from segtune.study.run import open_runner, run_sweep

    _configure_threads()
    overrides = {"fixed": apply_overrides({}, args.set)} if args.set else None
    if args.worker:
        runner = open_runner(
            Path(args.spec), args.dir, _storage(args), args.device, False, overrides
        )
        runner.say_points = not args.quiet
        runner.run()
        return 0
    result = run_sweep(
        Path(args.spec),
        args.dir,
        _storage(args),
        args.workers,
        args.device,
        retry_failed=args.retry_failed,
        quiet=args.quiet,
        show_plan=not args.quiet,
        sets=args.set,
        say=say_note,
    )
    return finish_sweep(result)


def _cmd_status(args: argparse.Namespace) -> int:
    from segtune.study.spec import build_spec
    from segtune.study.status import study_status
    from segtune.study.storage import read_study_info
    from segtune.study.view import StudyView

    folder = study_folder(args.study)
    info = read_study_info(folder)
    spec = build_spec(info["spec"], str(folder / "study.json"))
    view = StudyView(spec, folder, _storage(args) or info["storage"])
    for line in study_status(view).lines():
        print(line)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from segtune.analysis.report import write_report

    out = write_report(
        study_folder(args.study), Path(args.out) if args.out else None, _storage(args)
    )
    print(f"report: {(out / 'report.md').resolve()}")
    print(f"report: {(out / 'report.html').resolve()}")
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    """One scriptable line: the best configuration's model path, threshold and epoch."""
    from segtune.analysis.answer import choose_model
    from segtune.analysis.ranking import rank
    from segtune.analysis.summary import load_study_summary
    from segtune.core.errors import ConfigError
    from segtune.core.metrics import split_of

    summary = load_study_summary(study_folder(args.study), _storage(args))
    key = args.by or summary.objective
    recorded = sorted({k for r in summary.runs if r.status == "completed" for k in r.final})
    if args.by is not None:
        try:
            split_of(key)
        except ValueError as exc:
            raise ConfigError(f"--by: {exc}") from exc
        if key not in recorded:
            raise ConfigError(
                f"--by {key}: no completed run records it (recorded: "
                f"{', '.join(k for k in recorded if k.startswith('val/'))})"
            )
    ranked = rank(summary, key)
    if ranked.best is None:
        raise ConfigError(f"{args.study}: no completed run yet (segtune status shows progress)")
    choice = choose_model(ranked.best, key, args.seed)
    print(choice.line())
    if not args.quiet:
        tied = len(ranked.tied()) - 1
        print(
            f"{choice.config.label} by {key}: {choice.run.label} ({choice.seeds}); threshold "
            f"{choice.threshold_source}; epoch {choice.epoch_source}; {tied} other "
            "configuration(s) tied with it",
            file=sys.stderr,
        )
    return 0


def study_folder(given: str) -> Path:
    """A study's folder, given as such or as its spec file (whose study ``sweep`` keeps
    in ``studies/<name>`` unless told ``--dir``)."""
    from segtune.core.errors import ConfigError
    from segtune.study.spec import load_spec

    path = Path(given)
    if not (path.is_file() and path.suffix.lower() in (".yaml", ".yml")):
        return path
    folder = Path("studies") / load_spec(path).name
    if not (folder / "study.json").is_file():
        raise ConfigError(
            f"{path}: a spec; its study folder {folder} has no study.json (not swept from "
            "here yet, or swept with --dir: give that folder)"
        )
    return folder


def _load(args: argparse.Namespace, device: str) -> Predictor:
    """The checkpoint's model, with a heartbeat while torch and the network load."""
    from segtune.inference.predict import Predictor

    with Heartbeat(f"loading {args.checkpoint}", not args.quiet):
        return Predictor.load(Path(args.checkpoint), device)


def _say_precision(predictor: Predictor, quiet: bool) -> None:
    """One line when the run's runtime.precision is not what this device computes."""
    from segtune.core.runtime import precision_note

    note = precision_note(predictor.config.runtime.precision, predictor.device)
    if note and not quiet:
        print(note, file=sys.stderr)


def _cmd_predict(args: argparse.Namespace) -> int:
    from segtune.core.config import check_device
    from segtune.core.records import check_out_dir
    from segtune.inference.predict import collect_inputs, find_rois, predict_files

    check_device(args.device)
    check_out_dir(Path(args.out))
    predictor = _load(args, args.device)
    _say_precision(predictor, args.quiet)
    predictor.augment(args.tta, args.tta_scales)
    threshold = predictor.threshold(args.threshold)
    items = [Path(p) for p in args.pictures]
    problems: list[str] = []
    inputs = collect_inputs(items, problems)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    result = predict_files(
        predictor,
        inputs,
        Path(args.out),
        threshold=threshold,
        save_probabilities=args.save_probabilities,
        overlays=args.overlays,
        rois=find_rois(items),
        progress=not args.quiet,
    )
    source = (
        f", the validation F1-best threshold of epoch {predictor.epoch}"
        if args.threshold == "best" and predictor.epoch is not None
        else ""
    )
    print(f"wrote {len(result.written)} mask(s) to {args.out} (threshold {threshold:g}{source})")
    nested = [str(t.relative_to(args.out)) for t in result.written if t.parent != Path(args.out)]
    if nested:
        shown = ", ".join(nested[:2]) + (", …" if len(nested) > 2 else "")
        print(
            f"note: {len(nested)} picture(s) share a stem with another, so their masks are "
            f"under their folders' names ({shown})"
        )
    if result.errors or problems:
        count = len(result.errors) + len(problems)
        print(f"error: {count} picture(s) could not be read", file=sys.stderr)
        return 1
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from segtune.core.config import check_device
    from segtune.core.records import atomic_write_text, check_out_dir, check_out_file
    from segtune.inference.evaluate import evaluate_checkpoint, find_labelled

    check_device(args.device)
    for option, value in (("--out", args.out), ("--pr-curve", args.pr_curve)):
        if value:
            check_out_file(Path(value), option)
    if args.save_masks:
        check_out_dir(Path(args.save_masks), "--save-masks")
    predictor = _load(args, args.device)
    _say_precision(predictor, args.quiet)
    predictor.augment(args.tta, args.tta_scales)
    threshold = predictor.threshold(args.threshold)
    source = (
        f"selected on the validation split at epoch {predictor.epoch}"
        if args.threshold == "best"
        else "given"
    )
    missing_masks = args.missing_masks or predictor.config.data.missing_masks
    pictures = find_labelled([Path(p) for p in args.data], missing_masks)
    result = evaluate_checkpoint(
        predictor,
        pictures,
        split=args.split_name,
        threshold=threshold,
        threshold_source=source,
        progress=not args.quiet,
        tolerance_px=args.tolerance_px,
        save_masks=Path(args.save_masks) if args.save_masks else None,
        save_probabilities=args.save_probabilities,
    )
    for line in result.lines(per_picture=args.per_picture):
        print(line)
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result.to_json(), indent=1) + "\n")
        print(f"wrote {args.out} (with the counts of each of the {len(pictures)} pictures)")
    elif not args.per_picture:
        print("  per-picture counts: --per-picture, or --out FILE.json")
    if args.save_masks:
        print(f"wrote {len(pictures)} masks to {args.save_masks} (as segtune predict writes them)")
    if args.pr_curve and result.histogram is not None:
        from segtune.analysis.figures import split_pr_curve
        from segtune.core.records import atomic_write_bytes, tta_words

        label = f"{Path(args.checkpoint)} on {', '.join(args.data)}"
        fig = split_pr_curve(
            result.histogram,
            args.split_name,
            threshold,
            label,
            views=tta_words(predictor.tta, predictor.tta_scales),
            threshold_source=source,
        )
        atomic_write_bytes(Path(args.pr_curve), fig.png)
        print(f"wrote {args.pr_curve}: {fig.caption}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from segtune.core.records import check_out_dir
    from segtune.inference.export import export_model

    check_out_dir(Path(args.out).parent, "--out")
    predictor = _load(args, "cpu")
    with Heartbeat(f"exporting to {args.format} (tracing the network)", not args.quiet):
        meta = export_model(predictor, args.format, Path(args.out))
    size = meta["pages"]["page_size"]
    where = "metadata property 'segtune'" if args.format == "onnx" else "extra file segtune.json"
    print(
        f"wrote {args.out} ({args.format}): pages float32 (N, 3, {size}, {size}) RGB 0..255 "
        f"-> probabilities (N, 1, {size}, {size}); settings in its {where}"
    )
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from segtune.core.config import check_device
    from segtune.study.plan import make_plan
    from segtune.study.spec import load_spec

    check_device(args.device)
    spec = load_spec(Path(args.spec), run_config=True)
    plan = make_plan(spec, measure=not args.no_probe, device=args.device, progress=not args.quiet)
    for line in plan.lines():
        print(line)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from segtune.core.errors import SegtuneError
    from segtune.core.records import atomic_write_text
    from segtune.data.io import MaskReading
    from segtune.study.starter import starting_spec

    out = Path(args.out)
    if out.exists() and not args.force:
        raise SegtuneError(f"--out {out}: exists (use --force to overwrite)")
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]", "-", out.stem) or "study"
    masks = MaskReading(args.ignore_value, args.mask_threshold, args.invert_masks)
    train, val = Path(args.train), Path(args.val) if args.val else None
    if val is None:  # one folder: make the validation split, and say so
        train, val = _split_for_init(train, out.parent / f"{name}-split", masks, args)
    text = starting_spec(train, val, name, masks, args.missing_masks, device=args.device)
    if not args.no_probe or args.budget:
        text = _budgeted(text, train, val, name, masks, args)
    atomic_write_text(out, text)
    print(f"wrote {out}; next: segtune plan {out}")
    return 0


def _budgeted(
    text: str, train: Path, val: Path, name: str, masks: Any, args: argparse.Namespace
) -> str:
    """The spec of a start that fits ``--budget`` (or, without one, the suggested start
    with its estimate, and what would cut it when it is large); progress on stderr."""
    import yaml

    from segtune.data.layout import load_pictures
    from segtune.data.subsets import resolve_subsets
    from segtune.study.budget import budgeted_start, parse_duration
    from segtune.study.spec import build_spec
    from segtune.study.starter import default_start, starting_spec

    budget = parse_duration(args.budget) if args.budget else None
    config = build_spec(yaml.safe_load(text), "init").run_config({})
    subsets = resolve_subsets(config.data)
    start, _ = default_start(load_pictures(train, args.missing_masks), masks)

    def say(what: str) -> None:
        if not args.quiet:
            print(f"init: {what}…", file=sys.stderr, flush=True)

    with Heartbeat("init: timing", not args.quiet):
        start, why, lines = budgeted_start(
            config, subsets.train, subsets.val, start, budget, say, args.budget
        )
    for line in lines:
        print(line)
    return starting_spec(
        train, val, name, masks, args.missing_masks, start=start, why=why, device=args.device
    )


def _split_for_init(
    data: Path, folder: Path, masks: Any, args: argparse.Namespace
) -> tuple[Path, Path]:
    """``segtune split DATA --val 0.1 --seed 0 --out FOLDER`` for an ``init`` given one
    folder: the manifests it writes, and a line saying what was done."""
    from segtune.cli.split import gather, make_split, write_split
    from segtune.data.splits import share_words

    pictures = gather([data], args.missing_masks)
    val = 0.1 if len(pictures) >= 20 else 2
    splits = make_split(pictures, val, None, [], [], 0, masks, quiet=args.quiet)
    train_csv, val_csv = write_split(folder, splits, args.force)
    print(
        f"no validation folder given: split {data} (seed 0, stratified by positive share; "
        f"`segtune split` for other choices):"
    )
    for name, path in (("train", train_csv), ("val", val_csv)):
        print(f"  {name}: {share_words(splits[name])} → {path}")
    return train_csv, val_csv


def _cmd_demo(args: argparse.Namespace) -> int:
    from segtune.cli.demo import run_demo

    return run_demo(Path(args.out), workers=args.workers)


def add_commands(sub: Any) -> None:
    """Register the study subcommands on the ``segtune`` parser."""
    _add_sweep(sub)
    _add_status(sub)
    _add_report(sub)
    _add_best(sub)
    _add_predict(sub)
    _add_init(sub)
    _add_plan(sub)
    _add_evaluate(sub)
    _add_export(sub)
    _add_demo(sub)


def add_tta_options(p: argparse.ArgumentParser) -> None:
    """``--tta`` and ``--tta-scales``: test-time views of a command that predicts."""
    p.add_argument("--tta", choices=TTA_CHOICES, help="default: the run's eval.tta")
    p.add_argument(
        "--tta-scales",
        metavar="0.75,1,1.25",
        help="test-time scales, factors on the run's resize (default: its eval.tta_scales)",
    )


def _add_sweep(sub: Any) -> None:
    p = sub.add_parser("sweep", help="run or resume a study (staged grids on Optuna)")
    p.add_argument("spec", help="study spec YAML")
    p.add_argument("--dir", help="study folder (default studies/<name>)")
    p.add_argument(
        "--storage",
        help="Optuna storage URL (default sqlite:///<dir>/study.db); "
        "postgresql+psycopg2://user@host/db lets machines share a study (give the "
        f"password by PGPASSWORD or ~/.pgpass, or the whole URL by ${STORAGE_ENV})",
    )
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a fixed run-config key for every run, e.g. --set optim.epochs=2 "
        "(recorded in study.json; a different value on resume is a spec change)",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the spec's, else auto)")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="run the points that used up their retries again (earlier attempts are kept)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_sweep)


def _add_status(sub: Any) -> None:
    p = sub.add_parser("status", help="progress of a study: done / running / failed / pending")
    p.add_argument("study", help="study folder, or its spec file (studies/<name>)")
    p.add_argument("--storage", help="storage URL if not the one recorded in study.json")
    p.set_defaults(func=_cmd_status)


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="write report.md / report.html of a study from its records")
    p.add_argument("study", help="study folder, or its spec file (studies/<name>)")
    p.add_argument("--out", help="report folder (default <study>/report)")
    p.add_argument("--storage", help="storage URL if not the one recorded in study.json")
    p.set_defaults(func=_cmd_report)


def _add_best(sub: Any) -> None:
    p = sub.add_parser(
        "best",
        help="print the model to use: path, threshold, epoch (tab-separated, one line)",
        description=(
            "Print the best configuration's model path, its F1-best validation threshold "
            "('none' when it collapsed) and its kept epoch, tab-separated on one line; a "
            "note of where each was chosen goes to stderr (-q: none). Of a configuration's "
            "seeds, the one whose value is the median of its seeds (not the luckiest)."
        ),
    )
    p.add_argument("study", help="study folder, or its spec file (studies/<name>)")
    p.add_argument("--by", help="metric key to rank by (default: the objective), e.g. val/ap")
    p.add_argument(
        "--seed",
        choices=("median", "best"),
        default="median",
        help="which of the configuration's seeds: median (default) or best",
    )
    p.add_argument("--storage", help="storage URL if not the one recorded in study.json")
    p.set_defaults(func=_cmd_best)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="predict masks for new pictures with a checkpoint")
    p.add_argument("checkpoint", help="model.pt of a run (or its folder, or a checkpoint.pt)")
    p.add_argument("pictures", nargs="+", help="picture files or folders")
    p.add_argument("--out", required=True, help="output folder for <stem>.png masks")
    p.add_argument(
        "--threshold",
        default="0.5",
        help="a number in (0, 1), or 'best' (the run's validation F1-best threshold)",
    )
    add_save_probabilities(p, "also write <stem>-prob.png")
    p.add_argument("--overlays", action="store_true", help="also write <stem>-overlay.png")
    add_tta_options(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    p.set_defaults(func=_cmd_predict)


def _add_init(sub: Any) -> None:
    p = sub.add_parser("init", help="write a commented starting spec from the data's statistics")
    p.add_argument("train", help="training folder (images/ + masks/) or CSV manifest")
    p.add_argument(
        "val",
        nargs="?",
        help="validation folder or CSV manifest (omitted: 10 %% of TRAIN, stratified by "
        "positive share, as `segtune split` makes it)",
    )
    p.add_argument("--out", required=True, help="spec file to write (its stem names the study)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument(
        "--budget",
        metavar="DURATION",
        help="fit the study into this time on one worker (2h, 30m, 1h30m): init chooses "
        "encoder, resize, epochs, pages per epoch, grid and race seeds, one line each",
    )
    p.add_argument(
        "--device", help="cpu, cuda, cuda:1: time and write runtime.device (default: auto)"
    )
    p.add_argument(
        "--no-probe", action="store_true", help="no timing (no estimate; not with --budget)"
    )
    add_mask_options(p, written=True)
    p.set_defaults(func=_cmd_init)


def _add_plan(sub: Any) -> None:
    p = sub.add_parser("plan", help="what a study will cost and what in its spec cannot work")
    p.add_argument("spec", help="study spec YAML, or a run config (planned as one run)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: the spec's)")
    p.add_argument("--no-probe", action="store_true", help="counts and warnings only, no timing")
    p.set_defaults(func=_cmd_plan)


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate", help="score a checkpoint on labelled pictures (a test split), split-named"
    )
    p.add_argument("checkpoint", help="model.pt of a run (or its folder)")
    p.add_argument("data", nargs="+", help="folders with images/ and masks/, or CSV manifests")
    p.add_argument(
        "--threshold",
        default="0.5",
        help="a number in (0, 1), or 'best': the threshold selected on the validation split",
    )
    add_tta_options(p)
    p.add_argument(
        "--split-name", default="test", choices=("test", "val", "train"), help="key prefix"
    )
    add_missing_masks_option(p, None, "data.missing_masks")
    p.add_argument("--out", help="also write the metrics, intervals and per-picture counts (JSON)")
    p.add_argument("--per-picture", action="store_true", help="also print one line per picture")
    p.add_argument(
        "--tolerance-px",
        type=int,
        choices=range(1, 51),
        metavar="K",
        help="also F1 with a K-px tolerance (default: the run's eval.tolerance_px)",
    )
    p.add_argument(
        "--save-masks",
        metavar="DIR",
        help="also write <name>.png masks as segtune predict would, from the same pass",
    )
    add_save_probabilities(p, "with --save-masks: also <name>-prob.png")
    p.add_argument("--pr-curve", metavar="PNG", help="also draw the split's precision-recall curve")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    p.set_defaults(func=_cmd_evaluate)


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="write a run's network as ONNX or TorchScript (settings in metadata)"
    )
    p.add_argument("checkpoint", help="model.pt of a run (or its folder)")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"), help="file format")
    p.add_argument("--out", required=True, help="file to write (e.g. model.onnx, model.ts)")
    p.set_defaults(func=_cmd_export)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="generate demo data, run a small study, write its report")
    p.add_argument("--out", default="segtune-demo", help="demo folder (default ./segtune-demo)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.set_defaults(func=_cmd_demo)
