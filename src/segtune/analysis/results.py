"""The study's results for people who analyse them in pandas: ``runs.csv`` (one row per
run: stage, trial, its configuration, parameters, status, flag, whether its
configuration is tied with the best, every split-named final metric and, for validation
metrics, its bootstrap interval as ``<key>_low`` / ``<key>_high``) and ``results.json``
(the same, plus the setup, the objective, the configurations with their seed means and
the difference to the best, and the report's Answer under ``answer``)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from segtune.analysis.answer import Answer, answer
from segtune.analysis.ranking import Ranking, configuration_of
from segtune.analysis.summary import StudySummary
from segtune.core.intervals import LEVEL, RESAMPLES, SEED
from segtune.core.metrics import degenerate
from segtune.core.records import atomic_write_text


def run_rows(s: StudySummary, ranked: Ranking) -> list[dict[str, Any]]:
    """One flat row per run (parameters prefixed ``param:``)."""
    rows = []
    for r in s.runs:
        config = configuration_of(ranked.configs, r)
        row: dict[str, Any] = {
            "stage": r.stage,
            "trial": r.trial,
            "configuration": config.label if config else "",
            "also_in": ";".join(r.also_in),
            "status": r.status,
            "flag": degenerate(r.final) or "",
            "configuration_tied_with_best": ""
            if config is None or ranked.is_tied(config) is None
            else bool(ranked.is_tied(config)),
            "run_dir": str(r.run_dir.resolve()),
        }
        row.update({f"param:{k}": v for k, v in r.params.items()})
        for key in sorted(r.final):
            row[key] = r.final[key]
            if key in r.intervals:
                row[f"{key}_low"] = r.intervals[key].low
                row[f"{key}_high"] = r.intervals[key].high
        rows.append(row)
    return rows


def configuration_rows(s: StudySummary, ranked: Ranking) -> list[dict[str, Any]]:
    """One row per configuration, best first: seed means of every validation metric,
    sd, min and max of the objective, and the tie rule's verdict."""
    out = []
    for c in ranked.configs:
        k = ranked.comparison(c)
        values = c.values(s.objective)
        out.append(
            {
                "configuration": c.label,
                "runs": [r.label for r in c.runs],
                "params": c.params,
                "seeds": c.n,
                "mean": c.mean(s.objective),
                "sd": c.sd(s.objective),
                "min": min(values),
                "max": max(values),
                "flag": c.flag(),
                "difference_to_best": k.difference,
                "interval": None if k.interval is None else [k.interval.low, k.interval.high],
                "tied_with_best": k.tied,
                "means": {
                    key: c.mean(key)
                    for key in sorted({key for r in c.runs for key in r.final})
                    if key.startswith("val/") and len(c.values(key)) == c.n
                },
            }
        )
    return out


def write_results(s: StudySummary, out: Path, found: Answer | None = None) -> None:
    found = found or answer(s)
    ranked = found.objective
    rows = run_rows(s, ranked)
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
            "method": "bootstrap over validation pictures, paired between runs; the seed "
            "mean's interval widened by t·s_seed·√(1/n_c + 1/n_b) when seeds were repeated",
            "level": LEVEL,
            "resamples": RESAMPLES,
            "seed": SEED,
            "measures": ranked.noise_words(),
            "training_noise_measured": ranked.seeds_measured,
        },
        "answer": _json(found.to_json()),
        "best": ranked.best.label if ranked.best else None,
        "tied_with_best": [c.label for c in ranked.tied()],
        "races": [_json(race) for race in s.races],
        "configurations": [
            {k: _json(v) for k, v in row.items()} for row in configuration_rows(s, ranked)
        ],
        "runs": [{k: _json(v) for k, v in row.items()} for row in rows],
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=str) + "\n")


def _json(v: Any) -> Any:
    """NaN and infinities as null, in nested values too (JSON has neither)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json(x) for x in v]
    return v
