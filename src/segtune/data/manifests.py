"""CSV manifests as spreadsheets write them: reading rows (any of their dialects),
paths relative to the manifest (Windows ones too), and writing one."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath
from typing import Protocol

from segtune.core.errors import DataError


class Listed(Protocol):
    """What a manifest lists of a picture (:class:`segtune.data.layout.Picture`)."""

    @property
    def image(self) -> Path: ...
    @property
    def mask(self) -> Path | None: ...
    @property
    def roi(self) -> Path | None: ...


def manifest_rows(manifest: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV manifest that must have ``columns``; a non-UTF-8
    file or a missing column is a one-line DataError naming the CSV (and line).

    Spreadsheets write manifests in more than one dialect, all read: a byte-order mark,
    ``;`` (Excel where the decimal mark is a comma), tab or ``|`` between fields, column
    names in any case with spaces around them, spaces after a separator."""
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = manifest.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{manifest}: line {line}: not UTF-8 text ({exc.reason})") from exc
    lines = text.splitlines()
    header = next((line for line in lines if line.strip()), "")
    delimiter = _delimiter(header, columns)
    reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=True)
    names: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue
        if names is None:
            names = [f.strip().lower() for f in fields]
            continue
        rows.append((reader.line_num, {n: f.strip() for n, f in zip(names, fields, strict=False)}))
    if names is None or not set(columns) <= set(names):
        found = f"; found {', '.join(map(repr, names))}" if names else ""
        raise DataError(
            f"{manifest}: manifest needs {' and '.join(map(repr, columns))} columns{found}"
        )
    return rows


def _delimiter(header: str, columns: tuple[str, ...]) -> str:
    """The separator that splits ``header`` into fields naming ``columns`` (``,`` when
    none does)."""
    for candidate in (",", ";", "\t", "|"):
        names = {f.strip().lower() for f in next(csv.reader([header], delimiter=candidate))}
        if set(columns) <= names:
            return candidate
    return ","


def manifest_path(manifest: Path, value: str) -> Path:
    """A path listed in a manifest, relative to the manifest's folder; one written on
    Windows (``images\\0001.jpg``) is read with its backslashes as separators."""
    path = manifest.parent / value
    if "\\" in value and not path.exists():
        path = manifest.parent / PureWindowsPath(value).as_posix()
    try:
        return path.resolve()
    except RuntimeError as exc:  # Python 3.11 on a symbolic link loop
        raise DataError(f"{manifest}: {value}: symbolic link loop") from exc


def manifest_text(pictures: Sequence[Listed], manifest: Path) -> str:
    """A CSV manifest listing ``pictures`` with paths relative to ``manifest``'s folder
    (an empty mask field for a picture without one), as :func:`find_pairs` reads it."""
    base = manifest.resolve().parent

    def rel(path: Path | None) -> str:
        return "" if path is None else os.path.relpath(path.resolve(), base)

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    with_roi = any(p.roi is not None for p in pictures)
    writer.writerow(["image", "mask", "roi"] if with_roi else ["image", "mask"])
    for p in pictures:
        row = [rel(p.image), rel(p.mask)]
        writer.writerow([*row, rel(p.roi)] if with_roi else row)
    return out.getvalue()
