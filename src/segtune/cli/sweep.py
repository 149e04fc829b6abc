"""What ``segtune sweep`` (and ``segtune demo``) print of a finished sweep, and the report
they write."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segtune.analysis.summary import StudySummary
    from segtune.study.run import SweepResult


def say_note(line: str) -> None:
    """A sweep's note (its plan, retried points): on stderr, beside the progress."""
    print(line, file=sys.stderr if line.startswith("--retry-failed") else sys.stdout)


def finish_sweep(result: SweepResult, report: bool = True) -> int:
    """Print what a sweep did, write the study's report; the exit status."""
    if result.already_finished:
        print(f"study {result.name} is finished; nothing to run ({result.folder})")
    if result.workers_failed:
        print(f"error: worker exit codes {list(result.worker_codes)}", file=sys.stderr)
    for line in result.status.lines():
        print(line)
    from segtune.analysis.summary import load_study_summary

    summary = load_study_summary(result.folder)  # read once: the report and the warning
    if report:
        from segtune.analysis.report import write_report

        print(f"report: {write_report(result.folder, summary=summary) / 'report.html'}")
    lost = _tracking_lost(summary)
    if lost:
        print(f"warning: {lost}", file=sys.stderr)
    if result.completed == 0:
        print(
            f"error: study {result.name}: no run completed ({result.failed} failed); see the "
            f"summary.json of each run under {result.folder / 'runs'}",
            file=sys.stderr,
        )
    return result.exit_code


def _tracking_lost(summary: StudySummary) -> str | None:
    """Which runs lost their live tracking (a logger switched off), in one line."""
    lost = [
        (r.label, r.record.tracking_lost)
        for r in summary.runs
        if r.record and r.record.tracking_lost
    ]
    if not lost:
        return None
    labels = ", ".join(label for label, _ in lost[:5]) + (", …" if len(lost) > 5 else "")
    return f"tracking lost for {len(lost)} run(s) ({labels}): {lost[0][1][0]}"
