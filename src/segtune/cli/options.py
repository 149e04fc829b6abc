"""Options shared by several commands: how masks are read, probabilities written."""

from __future__ import annotations

import argparse


def positive_number(text: str) -> float:
    """An argparse type: a number above 0 (a mask threshold in the masks' own units)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def add_mask_options(p: argparse.ArgumentParser, written: bool = False) -> None:
    """How masks are read, for a command that reads them (``written``: one that writes
    the settings into a spec): ignore value, threshold, inversion, images without one."""
    how = "written as" if written else "as"
    p.add_argument(
        "--ignore-value",
        type=int,
        help=f"mask value of don't-care pixels ({how} data.ignore_value): a third value allowed",
    )
    p.add_argument(
        "--mask-threshold",
        type=positive_number,
        help=f"masks with grey edges: values at least this are positive ({how} "
        "data.mask_threshold)",
    )
    p.add_argument(
        "--invert-masks",
        action="store_true",
        help=f"masks draw positives black on white: positive where 0 ({how} data.invert_masks)",
    )
    add_missing_masks_option(p, "refuse", f"{how} data.missing_masks")


def add_missing_masks_option(p: argparse.ArgumentParser, default: str | None, how: str) -> None:
    """``--missing-masks refuse|empty`` (``default`` None: the run's setting)."""
    said = "the run's" if default is None else default
    p.add_argument(
        "--missing-masks",
        choices=("refuse", "empty"),
        default=default,
        help=f"an image without a mask: refuse (a problem) or empty (no positives); default "
        f"{said} ({how})",
    )


def add_save_probabilities(p: argparse.ArgumentParser, what: str) -> None:
    """``--save-probabilities [8|16]``: probability maps as 8- or 16-bit PNGs."""
    p.add_argument(
        "--save-probabilities",
        type=int,
        choices=(8, 16),
        nargs="?",
        const=16,
        help=f"{what} (8- or 16-bit; default 16)",
    )
