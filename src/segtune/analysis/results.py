"""The study's results for people who analyse them in pandas: ``runs.csv`` (one row per
run: stage, trial, parameters, status, flag, tied-with-best, every split-named final
metric and, for validation metrics, its bootstrap interval as ``<key>_low`` /
``<key>_high``) and ``results.json`` (the same, plus the setup and the objective)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from segtune.analysis.summary import RunSummary, StudySummary
from segtune.core.intervals import LEVEL, RESAMPLES, SEED
from segtune.core.metrics import degenerate
from segtune.core.records import atomic_write_text


def run_rows(s: StudySummary) -> list[dict[str, Any]]:
    """One flat row per run (parameters prefixed ``param:``)."""
    tied = {r.label for r in s.tied_with_best()}
    diffs = s.differences_to_best()
    rows = []
    for r in s.runs:
        row: dict[str, Any] = {
            "stage": r.stage,
            "trial": r.trial,
            "also_in": ";".join(r.also_in),
            "status": r.status,
            "flag": degenerate(r.final) or "",
            "tied_with_best": r.label in tied if diffs else "",
            "run_dir": str(r.run_dir),
        }
        row.update({f"param:{k}": v for k, v in r.params.items()})
        for key in sorted(r.final):
            row[key] = r.final[key]
            if key in r.intervals:
                row[f"{key}_low"] = r.intervals[key].low
                row[f"{key}_high"] = r.intervals[key].high
        if r.label in diffs:
            row[f"{s.objective}_minus_best_low"] = diffs[r.label].low
            row[f"{s.objective}_minus_best_high"] = diffs[r.label].high
        rows.append(row)
    return rows


def write_results(s: StudySummary, out: Path) -> None:
    rows = run_rows(s)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "runs.csv", buf.getvalue())
    results = {
        "study": s.name,
        "objective": {"metric": s.objective, "direction": s.direction},
        "threshold": s.threshold,
        "validation_pictures": s.val_pictures,
        "intervals": {
            "method": "bootstrap over validation pictures, paired between runs",
            "level": LEVEL,
            "resamples": RESAMPLES,
            "seed": SEED,
            "measures": "picture-sample noise only; training noise is unmeasured",
        },
        "best": _label(s.ranked()[0]) if s.ranked() else None,
        "tied_with_best": [_label(r) for r in s.tied_with_best()],
        "runs": [{k: _json(v) for k, v in row.items()} for row in rows],
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")


def _label(r: RunSummary) -> dict[str, Any]:
    return {"stage": r.stage, "trial": r.trial}


def _json(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v
