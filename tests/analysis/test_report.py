"""The report of a real (tiny) finished study, and a headless-browser check of its HTML."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from segtune.cli import main
from tests.conftest import in_ci


def test_report_md_has_setup_parameters_observations_and_top_k(finished_study: Path) -> None:
    md = (finished_study / "report" / "report.md").read_text()
    assert "## Setup" in md and "| Training subset | 6 pictures (seed 0) |" in md
    assert "## Searched parameters" in md and "| grid | loss.bce_weight | 0.2, 0.8 |" in md
    assert "| fine | loss.pos_weight | 10 |" in md
    obs = md.split("## Observations", 1)[1].split("## Top", 1)[0]
    assert "\n### " in obs  # at least one observation group
    assert "*Top 2 by Validation recall, pixel-level, threshold 0.5, final epoch (2)*" in md


def test_report_can_be_rebuilt_elsewhere_without_training(
    finished_study: Path, tmp_path: Path
) -> None:
    assert main(["report", str(finished_study), "--out", str(tmp_path / "again")]) == 0
    again = (tmp_path / "again" / "report.md").read_text()
    assert again == (finished_study / "report" / "report.md").read_text()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
def test_report_html_loads_in_headless_chromium(finished_study: Path, tmp_path: Path) -> None:
    browser_path = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_path = None
    if browser_path is None:
        if in_ci():
            pytest.fail("chromium or playwright missing in CI (.ci/run installs them)")
        pytest.skip("headless Chromium (Debian package chromium) or playwright not installed")
    html = finished_study / "report" / "report.html"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=browser_path,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            env={**os.environ},
        )
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        browser.close()
    assert len(widths) >= 4 and all(w > 0 for w in widths), widths
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
