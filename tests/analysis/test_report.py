"""The report of a real (tiny) finished study, and a headless-browser check of its HTML."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from segtune.cli.main import main
from tests.conftest import in_ci


def test_report_md_has_setup_parameters_observations_and_top_k(finished_study: Path) -> None:
    md = (finished_study / "report" / "report.md").read_text()
    assert "## Setup" in md and "| Training subset | 6 pictures (seed 0) |" in md
    assert "| Masks | binary (0 and one positive value) |" in md
    assert "## Searched parameters" in md and "| grid | loss.bce_weight | 0.2, 0.8 |" in md
    assert "| fine | loss.pos_weight | 10 |" in md
    obs = md.split("## Observations", 1)[1].split("## Figures", 1)[0]
    assert "\n### " in obs  # at least one observation group
    assert "*Top 2 by Validation recall, pixel-level, threshold 0.5, selected epoch (best by " in md
    assert re.search(r"val/best_f1\) \(epochs? \d+(, \d+)*\)\*", md)  # which epochs


def test_report_can_be_rebuilt_elsewhere_without_training(
    finished_study: Path, tmp_path: Path
) -> None:
    assert main(["report", str(finished_study), "--out", str(tmp_path / "again")]) == 0
    again = (tmp_path / "again" / "report.md").read_text()
    assert again == (finished_study / "report" / "report.md").read_text()


def test_status_and_report_take_the_spec_file_as_sweep_does(
    finished_study: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = finished_study.parent / "s.yaml"  # name: rep, swept into studies/rep by default
    monkeypatch.chdir(tmp_path)
    assert main(["status", str(spec)]) == 2
    assert (
        f"error: {spec}: a spec; its study folder studies/rep has no study.json (not swept "
        "from here yet, or swept with --dir: give that folder)"
    ) in capsys.readouterr().err
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "rep").symlink_to(finished_study)
    assert main(["status", str(spec)]) == 0
    assert "stage grid: 4/4 done" in capsys.readouterr().out
    assert main(["report", str(spec), "--out", str(tmp_path / "again")]) == 0
    again = (tmp_path / "again" / "report.md").read_text()
    # every path it prints works from the shell: absolute
    assert again.startswith(
        "# Study rep"
    ) and f"Folder: `{finished_study.resolve()}/runs/grid/" in (again)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing_browser() -> str | None:
    """What of the browser test's tools is not installed (None: both are)."""
    missing = []
    if _chromium() is None:
        missing.append("chromium is not on PATH (Debian package chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        missing.append(f"playwright does not import ({exc})")
    return "; ".join(missing) or None


LAUNCH_TIMEOUT_MS = 120_000  # a loaded 2-core machine starts Chromium slowly
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _launch(p: Any) -> Any:
    """Chromium started headless; two tries, each with a generous timeout. Failing both
    is a test failure that says the browser is installed but did not start."""
    error: Exception | None = None
    for _ in range(2):
        try:
            return p.chromium.launch(
                executable_path=_chromium(),
                headless=True,
                args=CHROMIUM_ARGS,
                env={**os.environ},
                timeout=LAUNCH_TIMEOUT_MS,
            )
        except Exception as exc:  # playwright's TimeoutError or Error
            error = exc
    pytest.fail(
        f"chromium ({_chromium()}) and playwright are installed but Chromium failed to "
        f"start twice within {LAUNCH_TIMEOUT_MS / 1000:g} s: {str(error).splitlines()[0]}"
    )


def test_missing_browser_tools_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "chromium is not on PATH" in (_missing_browser() or "")


@pytest.mark.browser
def test_report_html_loads_in_headless_chromium(finished_study: Path, tmp_path: Path) -> None:
    missing = _missing_browser()
    if missing is not None:
        if in_ci():
            pytest.fail(f"{missing}: in CI (.ci/run installs them)")
        pytest.skip(f"not installed: {missing}")
    from playwright.sync_api import sync_playwright

    html = finished_study / "report" / "report.html"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 700, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        # A table of contents whose every link has a target.
        toc = page.eval_on_selector_all(
            "nav.toc a",
            "as => as.map(a => [a.textContent, !!document.getElementById("
            "a.getAttribute('href').slice(1))])",
        )
        # Every run label in a table links to that run's appendix section.
        run_links = page.eval_on_selector_all(
            "td a[href^='#run-']",
            "as => as.map(a => !!document.getElementById(a.getAttribute('href').slice(1)))",
        )
        link = page.locator("td a[href^='#run-']").last  # in the table of every configuration
        href = link.get_attribute("href")
        link.click()
        page.wait_for_function("h => location.hash === h", arg=href)
        top = page.eval_on_selector(href or "", "h => h.getBoundingClientRect().top")
        # Wide tables scroll inside their box; the page itself never scrolls sideways.
        page_overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        boxes = page.eval_on_selector_all(
            "div.scroll",
            "ds => ds.map(d => [getComputedStyle(d).overflowX, d.scrollWidth > d.clientWidth])",
        )
        # A figure opens full size on click (its own PNG, in a new tab).
        figure = page.locator("figure a").first
        src = figure.locator("img").get_attribute("src")
        with page.context.expect_page() as opened:
            figure.click()
        full = opened.value
        full.wait_for_load_state("load")
        full_url = full.url
        natural = full.evaluate("document.images.length ? document.images[0].naturalWidth : 0")
        # At 1400 px the configuration tables fit: no sideways scrolling.
        wide = browser.new_page(viewport={"width": 1400, "height": 900})
        wide.goto(html.as_uri())
        wide.wait_for_load_state("load")
        scrolled = wide.evaluate(
            "[...document.querySelectorAll('h2')].filter(h => /^(Top|All configurations)/"
            ".test(h.textContent)).map(h => { let d = h.nextElementSibling; while (d && "
            "!d.matches('div.scroll')) d = d.nextElementSibling; "
            "return [h.textContent, d.scrollWidth - d.clientWidth]; })"
        )
        answer_top = wide.eval_on_selector("#answer", "h => h.getBoundingClientRect().top")
        browser.close()
    assert len(widths) >= 4 and all(w > 0 for w in widths), widths
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert [t for t, _ in toc][:2] == ["Answer", "Top 2 configurations"]
    assert len(scrolled) == 2 and all(extra <= 1 for _, extra in scrolled), scrolled
    assert answer_top < 200  # the answer is on the first screen
    assert "Appendix: every run" in [t for t, _ in toc] and all(ok for _, ok in toc), toc
    assert run_links and all(run_links)
    assert -1 < top < 100  # the run's section is at the top of the window (sub-pixel)
    assert page_overflow <= 1
    assert boxes and all(o == "auto" for o, _ in boxes)
    assert any(wide for _, wide in boxes)  # at 700 px the all-runs table is wider
    assert src and full_url.endswith(src) and natural > 0


def test_top_k_shows_intervals_ties_and_names_a_trivial_objective(finished_study: Path) -> None:
    md = (finished_study / "report" / "report.md").read_text()
    top = md.split("## Top", 1)[1].split("## Does a parameter", 1)[0]
    assert (
        "| Validation recall (mean ± sd, seeds) | Flag | Difference to #1 [95 %] | Tied | "
        "Validation precision | Validation F1 | Validation average precision | "
        "Validation best F1 over thresholds |"
    ) in top
    assert "paired bootstrap over the validation pictures; training noise unmeasured" in top
    assert "predicting every pixel positive gives recall 1" in top
    first = next(line for line in top.splitlines() if line.startswith("| 1 |"))
    assert "| — | best |" in first and "(one seed)" in first
    for line in top.splitlines():  # a tie flag never contradicts its interval
        if line.startswith(("| 2 |", "| 3 |")):
            cells = [c.strip() for c in line.split("|")]
            low, high = (float(x) for x in cells[-7].strip("[]").split(","))
            assert cells[-6] == ("yes" if low <= 0 <= high else "no")


def test_runs_csv_and_results_json_match_the_run_records(finished_study: Path) -> None:
    import csv
    import json

    from segtune.analysis.summary import load_study_summary

    summary = load_study_summary(finished_study)
    rows = list(csv.DictReader((finished_study / "report" / "runs.csv").open()))
    assert len(rows) == len(summary.runs)
    for row, run in zip(rows, summary.runs, strict=True):
        assert (row["stage"], int(row["trial"])) == (run.stage, run.trial)
        assert float(row["val/recall"]) == run.final["val/recall"]
        low, high = float(row["val/recall_low"]), float(row["val/recall_high"])
        assert low <= run.final["val/recall"] <= high or low == high
        assert "val/ap_low" in row and "param:loss.bce_weight" in row
    results = json.loads((finished_study / "report" / "results.json").read_text())
    assert results["objective"] == {"metric": "val/recall", "direction": "maximize"}
    assert results["intervals"]["resamples"] == 1000
    best = summary.ranked()[0]  # one seed per configuration: the best run's is the best
    assert results["best"] == best.label and best.label in results["tied_with_best"]
    assert results["answer"]["model"]["path"] == str((best.run_dir / "model.pt").resolve())
    assert results["intervals"]["training_noise_measured"] is False
    assert results["configurations"][0]["configuration"] == best.label


def test_every_run_records_per_picture_histograms_that_sum_to_its_values(
    finished_study: Path,
) -> None:
    from segtune.core.metrics import ProbabilityHistogram
    from segtune.core.records import RunFolder

    for run_dir in sorted(finished_study.glob("runs/grid/*")):
        folder = RunFolder(run_dir)
        record = folder.read_record()
        stems, pos, neg = folder.read_picture_histograms() or ([], None, None)
        assert stems == record.val_pictures == [p.stem for p in record.pictures]
        total = ProbabilityHistogram(pos.shape[1])
        total.pos, total.neg = pos.sum(axis=0), neg.sum(axis=0)
        assert total.average_precision() == record.kept["val/ap"]
        assert [int(p) for p in pos.sum(axis=1)] == [p.positives for p in record.pictures]


def test_optuna_trials_carry_the_named_metrics(finished_study: Path) -> None:
    import optuna

    from tests.study.helpers import sqlite_url

    study = optuna.load_study(study_name="rep:grid", storage=sqlite_url(finished_study))
    assert study.metric_names == ["val/recall"]
    for trial in study.get_trials(states=[optuna.trial.TrialState.COMPLETE]):
        assert {"val/precision", "val/f1", "val/ap", "val/best_f1"} <= set(trial.user_attrs)
        low, high = trial.user_attrs["val/recall 95% interval"]
        assert low <= trial.value <= high or low == high


def test_top_runs_whose_kept_epoch_leads_within_noise_are_named(tmp_path: Path) -> None:
    from segtune.analysis.report import _selection_words
    from segtune.analysis.summary import RunSummary
    from segtune.core.records import RunRecord, SelectionMargin
    from tests.analysis.fakes import fake_run

    def run(trial: int, low: float) -> RunSummary:
        r = fake_run(tmp_path, trial, 0.5, [(5, 1, 1)] * 3)
        r.kept_epoch, r.epochs_done, r.selected_by = 1, 2, "val/best_f1"
        margin = SelectionMargin(last_epoch=2, kept_value=0.8, last_value=0.79, low=low, high=0.03)
        r.record = RunRecord(
            status="completed", epochs=2, epochs_done=2, threshold=0.5, selection_margin=margin
        )
        return r

    within, beyond = run(1, -0.01), run(2, 0.002)
    words = _selection_words([beyond, within])
    assert len(words) == 1 and "#2 (grid#1: epoch 1 of 2, +0.01 [-0.01, 0.03])" in words[0]
    assert "grid#2" not in words[0] and "by val/best_f1 whose paired 95 % interval" in words[0]
    assert _selection_words([beyond]) == []  # a lead beyond noise needs no words
