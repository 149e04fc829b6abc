"""Nothing in bench/ rots: every benchmark runs in its ``--smoke`` setting (tiny sizes,
seconds) and prints its machine line; mypy checks the scripts (pyproject's files)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEEPCRACK, ROOT, in_ci

SCRIPTS = sorted(p for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
NEEDS_MONAI = {"stitching.py"}


def test_every_benchmark_is_listed() -> None:
    assert len(SCRIPTS) >= 10 and (ROOT / "bench" / "_common.py").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_runs_in_its_smoke_setting(script: Path, tmp_path: Path) -> None:
    if script.name in NEEDS_MONAI:
        pytest.importorskip("monai", reason="bench extra (MONAI) not installed")
    if script.name == "deepcrack.py" and not DEEPCRACK.is_dir():
        if in_ci():
            pytest.fail(f"{DEEPCRACK} missing")
        pytest.skip(f"{DEEPCRACK} missing")
    done = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "SEGTUNE_CACHE": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("machine: "), done.stdout[:500]
