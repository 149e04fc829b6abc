"""The Python API, through the example script the README points to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_segtune_stays_light() -> None:
    code = "import sys, segtune; print('torch' in sys.modules, callable(segtune.load_study))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


@pytest.mark.slow
def test_the_api_example_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "api_example.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("run completed: validation F1 ")
    assert any(line.startswith("Best configuration by Validation F1") for line in lines)
    assert any(line.startswith("configurations tied with the best: ['grid#") for line in lines)
    assert any(line.startswith("model to use: ") and "model.pt" in line for line in lines)
    assert "[grid]" not in out.stderr  # run_study(quiet=True): no per-point lines
    records = [json.loads(p.read_text()) for p in (tmp_path / "study").rglob("summary.json")]
    assert len(records) == 2 and {r["epochs"] for r in records} == {1}  # sets= applied
    assert any(line.startswith("test F1 ") for line in lines)
    assert lines[-2] == "wrote 4 masks"
    assert lines[-1].startswith("exported pages of ")
    assert (tmp_path / "model.ts").stat().st_size > 0
    assert len(list((tmp_path / "masks").glob("*.png"))) == 4
