"""A newcomer's path, exactly as the README's walkthrough writes it: one folder of
pictures → check-data → split → init --budget → plan → sweep → best → evaluate
--save-masks → predict → export → the docs' onnxruntime script, on generated data (the
budget shrunk to a minute so the study is small, and init's encoder timings fixed so its
choices — and so what the study learns — do not depend on this machine's speed: the
budget's arithmetic is tested in tests/study/test_budget.py, its real timing on DeepCrack
in BENCHMARKS.md)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segtune.cli.main import main
from segtune.data.synthetic import write_demo_data

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- walkthrough"


def walkthrough() -> list[str]:
    """The commands of the README's walkthrough block, comments stripped."""
    text = (ROOT / "README.md").read_text()
    block = text.split(MARK, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_walkthrough_names_every_step() -> None:
    steps = [c.split()[1] if c.startswith("segtune ") else c.split()[0] for c in walkthrough()]
    for step in ("check-data", "split", "init", "plan", "sweep", "best", "evaluate"):
        assert step in steps
    assert {"predict", "export", "python"} <= set(steps)
    assert any("--budget" in c for c in walkthrough())
    assert any("--save-masks" in c for c in walkthrough())


@pytest.mark.slow
def test_the_readme_walkthrough_runs_on_generated_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import segtune.study.budget as budget

    fixed = {
        "resnet34": budget.EncoderCost(0.4, 2.0, 0.5),
        "resnet18": budget.EncoderCost(0.25, 1.5, 0.5),
        "mobilenet_v2": budget.EncoderCost(0.12, 1.0, 0.3),
    }

    def timed(config, train, val, encoders, *args, **kwargs):  # type: ignore[no-untyped-def]
        return {e: fixed[e] for e in encoders}

    monkeypatch.setattr(budget, "reference_costs", timed)
    write_demo_data(tmp_path / "gen", pictures=96, size=64, seed=3)
    (tmp_path / "data").mkdir()
    shutil.move(tmp_path / "gen" / "train", tmp_path / "data" / "train")
    shutil.move(tmp_path / "gen" / "val", tmp_path / "data" / "test")
    (tmp_path / "new-pictures").mkdir()
    first = sorted((tmp_path / "data" / "test" / "images").iterdir())[0]
    shutil.copy(first, tmp_path / "new-pictures" / "a.png")
    monkeypatch.chdir(tmp_path)
    model, printed = "", []
    for command in walkthrough():
        command = command.replace("--budget 2h", "--budget 1m").replace("$MODEL", model)
        if command.startswith("MODEL=$("):
            inner = command.removeprefix("MODEL=$(").split("|", 1)[0]
            printed.append(capsys.readouterr().out)
            assert main(shlex.split(inner)[1:]) == 0, inner
            model = capsys.readouterr().out.split("\t", 1)[0].strip()
            assert Path(model).is_absolute() and Path(model).is_file()
            continue
        words = shlex.split(command)
        if words[0] == "python":
            script = ROOT / words[1]
            done = subprocess.run(
                [sys.executable, str(script), *words[2:]],
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            continue
        assert words[0] == "segtune"
        assert main(words[1:]) == 0, command
        printed.append(capsys.readouterr().out)
    init = next(p for p in printed if "next: segtune plan crack.yaml" in p)
    assert "--budget 1m on cpu: " in init and "fits" in init  # what was cut, and the verdict
    report = tmp_path / "studies" / "crack" / "report" / "report.html"
    assert "Answer" in report.read_text()
    test = json.loads((tmp_path / "test.json").read_text())
    assert "test/f1_2px" in test["metrics"] and "test/auc" in test["metrics"]
    names = {p.name for p in (tmp_path / "test-masks").iterdir()}
    assert len(names) == len(test["pictures"])
    # The onnxruntime script's mask is the one `segtune predict` wrote, pixel for pixel
    # (the script uses the model's own validation threshold, as --threshold best does).
    ours = np.asarray(Image.open(tmp_path / "masks" / "a.png")) > 0
    theirs = np.asarray(Image.open(tmp_path / "a-mask.png")) > 0
    assert ours.shape == theirs.shape and (ours != theirs).mean() < 1e-3
