"""The ``segtune`` command: demo, check-data, manifest, make-demo-data, train, init, plan, sweep,
status, report, evaluate, predict, export. User errors print as one line and exit with
status 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from segtune.core.errors import SegtuneError
from segtune.core.interrupt import stop_requests, terminated

if TYPE_CHECKING:
    from segtune.core.config import RunConfig


def _cmd_check_data(args: argparse.Namespace) -> int:
    from segtune.core.errors import DataError
    from segtune.data.io import MaskReading
    from segtune.data.pairs import DataReport, check_pictures, compare_reports

    masks = MaskReading(args.ignore_value, args.mask_threshold, args.invert_masks)
    status = 0
    checked: list[tuple[str, DataReport]] = []
    for folder in args.folders:
        try:
            report = check_pictures(Path(folder), masks, args.missing_masks)
        except DataError as exc:  # the folder or manifest itself: reported, next one checked
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        for problem in report.problems:
            print(f"error: {problem}", file=sys.stderr)
        if not report.pictures and not report.problems:
            print(f"error: {folder}: no pictures found", file=sys.stderr)
        if report.problems or not report.pictures:
            print(
                f"{folder}: {len(report.problems)} problem(s), "
                f"{len(report.pictures)} usable pictures",
                file=sys.stderr,
            )
            status = 1
            continue
        print(f"{folder}: OK")
        for line in report.summary_lines():
            print(f"  {line}")
        checked.append((folder, report))
    for other in checked[1:]:  # each folder against the first (the training folder, say)
        for line in compare_reports(checked[0], other):
            print(line)
    return status


def _cmd_make_demo_data(args: argparse.Namespace) -> int:
    from segtune.data.synthetic import write_demo_data

    counts = write_demo_data(Path(args.out), pictures=args.pictures, size=args.size, seed=args.seed)
    print(
        f"wrote {counts['train']} train and {counts['val']} val pictures "
        f"({args.size}x{args.size}) to {args.out}"
    )
    return 0


def _cmd_manifest(args: argparse.Namespace) -> int:
    from segtune.core.records import atomic_write_text
    from segtune.data.layout import pairs_in_folders
    from segtune.data.manifests import manifest_text

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise SegtuneError(f"--out {out}: a manifest is a .csv file")
    if out.exists() and not args.force:
        raise SegtuneError(f"--out {out}: exists (use --force to overwrite)")
    for option, folder in (("IMAGES", args.images), ("MASKS", args.masks), ("--roi", args.roi)):
        if folder is not None and not Path(folder).is_dir():
            raise SegtuneError(f"{option} {folder}: no such folder")
    roi = Path(args.roi) if args.roi else None
    pictures, problems, notes = pairs_in_folders(
        Path(args.images), Path(args.masks), roi, args.missing_masks
    )
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems or not pictures:
        print(f"error: {len(problems)} problem(s): nothing written to {out}", file=sys.stderr)
        return 1
    atomic_write_text(out, manifest_text(pictures, out))
    for note in notes:
        print(f"  {note}")
    print(f"wrote {len(pictures)} picture(s) to {out}; next: segtune check-data {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from segtune.core.records import RunFolder, check_out_dir
    from segtune.engine.train import train_run

    if args.resume:
        run_dir = Path(args.resume)
        records = RunFolder(run_dir)
        if not records.config_path.exists():
            raise SegtuneError(f"{run_dir}: not a run folder (no config.yaml)")
        config = records.read_config()
        if not records.checkpoint_path.exists():
            raise SegtuneError(
                f"{run_dir}: no resume state (checkpoint.pt) to continue from; a completed "
                "run keeps it only with records.keep_resume_state: true"
            )
        resume = True
    else:
        config = _config_to_train(args)
        run_dir = Path(args.out)
        check_out_dir(run_dir)
        if (run_dir / "summary.json").exists() and not args.force:
            raise SegtuneError(f"{run_dir}: already holds a run; use --resume {run_dir} or --force")
        resume = False
    from segtune.engine.loggers import check_tracking

    check_tracking(config.runtime.loggers, config.runtime.mlflow_uri, run_dir)
    try:
        summary = train_run(config, run_dir, resume=resume, progress=not args.quiet)
    except KeyboardInterrupt:
        print(
            f"interrupted: recorded in {run_dir}/summary.json; continue with "
            f"`segtune train --resume {run_dir}`",
            file=sys.stderr,
        )
        return 143 if terminated() else 130
    status = summary.status
    if status == "failed":
        reason = summary.failure.reason if summary.failure else "unknown"
        print(f"run failed: {reason} (records in {run_dir})", file=sys.stderr)
        return 1
    from segtune.core.metrics import describe_metric
    from segtune.core.records import kept_epoch_words

    print(f"run {status}: {run_dir}")
    print(f"  {kept_epoch_words(summary)}")
    for key in ("val/recall", "val/precision", "val/f1", "val/ap", "train/recall", "train/f1"):
        if key in summary.kept:
            print(f"  {describe_metric(key, config.eval.threshold)}: {summary.kept[key]:.4f}")
    for lost in summary.tracking_lost:
        print(f"warning: tracking lost for this run: {lost}", file=sys.stderr)
    return 0


def _config_to_train(args: argparse.Namespace) -> RunConfig:
    """The run config ``train`` was given, or one point of a study spec: its fixed
    settings, a grid point (``--point grid:3``), then ``--set``."""
    from segtune.core.config import (
        apply_overrides,
        build_run_config,
        config_to_dict,
        load_run_config,
        load_yaml,
    )
    from segtune.study.spec import is_study_tree, load_spec, point_of

    path = Path(args.config) if args.config else None
    if path is None or not is_study_tree(load_yaml(path)):
        if args.point:
            raise SegtuneError(f"--point {args.point}: needs a study spec (with stages)")
        return load_run_config(path, args.set)
    spec = load_spec(path)
    params = point_of(spec, args.point) if args.point else {}
    if not args.quiet:
        chosen = ", ".join(f"{k}={v}" for k, v in params.items()) or "its fixed settings"
        print(f"training one point of study {spec.name}: {chosen}")
    tree = apply_overrides(config_to_dict(spec.run_config(params)), args.set)
    return build_run_config(tree, f"{path} (--set)" if args.set else str(path))


def _add_common_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set loss.bce_weight=0.4 (repeatable)",
    )


def add_verbosity(p: argparse.ArgumentParser) -> None:
    """``-q`` (results and errors only: no progress, no plan) and ``-v`` (also the
    events of the study machinery) on a subcommand."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "-q", "--quiet", action="store_true", help="results and errors only (no progress)"
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", help="also log what the machinery does"
    )


def _configure_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(  # as before unless -v: warnings and errors, message only
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s" if verbose else "%(message)s",
    )
    logging.getLogger("segtune").setLevel(logging.INFO if verbose else logging.WARNING)


def _unknown_command(parser: argparse.ArgumentParser, words: list[str]) -> str | None:
    """One line for a mistyped subcommand, with the nearest one."""
    import difflib

    if not words or words[0].startswith("-"):
        return None
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(sub.choices)
    if words[0] in commands:
        return None
    near = difflib.get_close_matches(words[0], commands, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]}? " if near else ""
    return f"unknown command {words[0]!r} ({hint}commands: {', '.join(commands)})"


def build_parser() -> argparse.ArgumentParser:
    from segtune.cli import study as cli_study
    from segtune.cli.options import add_mask_options, add_missing_masks_option
    from segtune.cli.split import add_split
    from segtune.core.version import VERSION as __version__

    parser = argparse.ArgumentParser(
        prog="segtune",
        description="Train, tune and inspect binary segmentation models for large pictures "
        "whose positive class is rare. `segtune COMMAND -h` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"segtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-data", help="find and validate pictures (images/ + masks/ or CSV)")
    p.add_argument("folders", nargs="+", help="folder with images/ and masks/, or a CSV manifest")
    add_mask_options(p)
    p.set_defaults(func=_cmd_check_data)

    p = sub.add_parser(
        "manifest", help="pair a folder of images with a folder of masks into a CSV manifest"
    )
    p.add_argument("images", help="folder of images (subfolders read when it holds only them)")
    p.add_argument("masks", help="folder of masks, named as the images or by a shared tag")
    p.add_argument("--roi", help="folder of regions of interest (e.g. DRIVE's mask/)")
    p.add_argument("--out", required=True, help="CSV file to write (paths relative to it)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    add_missing_masks_option(p, "refuse", "empty: listed with an empty mask field")
    p.set_defaults(func=_cmd_manifest)

    add_split(sub)

    p = sub.add_parser("make-demo-data", help="generate the demo dataset")
    p.add_argument("out", help="folder to write train/ and val/ into")
    p.add_argument("--pictures", type=int, default=40, help="pictures in all (default 40)")
    p.add_argument("--size", type=int, default=128, help="side of each picture in px (default 128)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.set_defaults(func=_cmd_make_demo_data)

    p = sub.add_parser("train", help="train one configuration and write its run records")
    p.add_argument(
        "config",
        nargs="?",
        help="run config YAML (defaults if omitted), or a study spec: its fixed settings",
    )
    p.add_argument(
        "--point",
        metavar="STAGE:N",
        help="with a study spec: the N-th point (from 1) of its grid stage STAGE",
    )
    p.add_argument("--out", default="runs/run", help="run folder (default runs/run)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    _add_common_run_args(p)
    p.set_defaults(func=_cmd_train)

    cli_study.add_commands(sub)
    for command in sub.choices.values():
        add_verbosity(command)
    return parser


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, outermost first."""
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in chain:
        chain.append(node)
        node = node.__cause__ or node.__context__
    return chain


def _storage_problem(exc: BaseException) -> str | None:
    """One line for a study database that refuses a write (a read-only study folder, a
    full disk, a lost server), instead of a traceback ending in an Optuna message. The
    database driver's own words are preferred to Optuna's wrapper ("exceeding max
    length" for any failed commit)."""
    from segtune.study.storage import redact

    chain = _chain(exc)
    for prefixes in (("sqlite3", "psycopg2"), ("sqlalchemy",), ("optuna.exceptions",)):
        for err in chain:
            if not type(err).__module__.startswith(prefixes):
                continue
            text = redact(str(getattr(err, "orig", None) or err)).strip().splitlines()
            what = text[0] if text else type(err).__name__
            server = "psycopg2" in type(getattr(err, "orig", None) or err).__module__
            hint = (
                "check that the PostgreSQL server is up and that the URL, user and password "
                "are right"
                if server
                else "check that the study folder and database are writable"
            )
            return f"study database: {what} ({hint})"
    return None


def _environment_problem(exc: BaseException) -> str | None:
    """One line for a file the machine refused (read-only file system, permissions, a
    folder where a file was meant, a full disk): the path and the system's words."""
    for err in _chain(exc):
        if isinstance(err, OSError) and err.filename is not None and err.strerror:
            return f"{err.filename}: {err.strerror}"
    return None


def _stdout_closed() -> bool:
    """Whether standard output's reader went away (``segtune … | head``); if so, output
    is sent to /dev/null from here on, so that the exit does not fail flushing it."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # replaced by an object without a descriptor
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not any(event & select.POLLERR for _, event in poller.poll(0)):
        return False
    os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if not words:  # bare `segtune`: the help, not an error
        parser.print_help()
        return 0
    unknown = _unknown_command(parser, words)
    if unknown is not None:
        print(f"error: {unknown}", file=sys.stderr)
        return 2
    args = parser.parse_args(words)
    _configure_logging(getattr(args, "verbose", False))
    with stop_requests():  # Ctrl-C and SIGTERM: KeyboardInterrupt, never lost
        try:
            code = int(args.func(args))
        except SegtuneError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
        except BrokenPipeError:
            if not _stdout_closed():
                raise
            code = 141  # as a shell reports a pipe's writer stopped by SIGPIPE
        except Exception as exc:
            line = _storage_problem(exc) or _environment_problem(exc)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            code = 2
        except KeyboardInterrupt:
            how = "terminated (SIGTERM)" if terminated() else "interrupted"
            print(
                f"{how}: finished runs are kept; run the same command again to resume",
                file=sys.stderr,
            )
            code = 143 if terminated() else 130
    return code
