"""``segtune evaluate``: a checkpoint scored on labelled pictures, split-named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segtune.cli.main import main
from segtune.core.records import RunFolder
from segtune.engine.train import train_run
from tests.conftest import learning_config, tiny_config


@pytest.fixture(scope="module")
def run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scored") / "run"
    train_run(learning_config(demo_data), out, progress=False)
    return out


def test_scoring_the_validation_pictures_gives_the_recorded_values(
    run: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "val.json"
    argv = ["evaluate", str(run), str(demo_data / "val"), "--split-name", "val", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    kept = RunFolder(run).read_record().kept
    for key in ("val/tp", "val/fp", "val/fn", "val/f1", "val/ap", "val/best_f1"):
        assert result["metrics"][key] == pytest.approx(kept[key], abs=1e-12), key
    shares = result["pixel_shares"]  # the same masks: no shift, and no note about one
    assert shares["positives"] == pytest.approx(shares["validation_positives"], rel=1e-12)
    assert 0 < shares["positives"] < 1 and 0 <= shares["marked"] < 1
    assert "note: these masks hold" not in capsys.readouterr().out
    low, high = result["intervals_95"]["val/recall"]
    assert low <= result["metrics"]["val/recall"] <= high or low == high
    assert [p["stem"] for p in result["pictures"]] == sorted(p["stem"] for p in result["pictures"])


def test_two_folders_sharing_names_are_scored_as_one_split(
    run: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Test pictures shipped in batches that reuse names (kos01/Part0.jpg, kos02/…).
    for batch in ("batch1", "batch2"):
        shutil.copytree(demo_data / "val", tmp_path / batch / "val")
    out = tmp_path / "two.json"
    folders = [str(tmp_path / b / "val") for b in ("batch1", "batch2")]
    assert main(["evaluate", str(run), *folders, "--out", str(out), "-q"]) == 0
    stems = [p["stem"] for p in json.loads(out.read_text())["pictures"]]
    names = sorted(p.stem for p in (demo_data / "val" / "images").iterdir())
    assert stems == [f"{b}/val/images/{n}" for b in ("batch1", "batch2") for n in names]
    assert main(["evaluate", str(run), folders[0], folders[0], "-q"]) == 2
    assert "given twice" in capsys.readouterr().err


def test_a_test_split_from_a_manifest_with_the_validation_threshold(
    run: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "test.csv"
    rows = [
        f"{p},{demo_data / 'val' / 'masks' / p.name}"
        for p in sorted((demo_data / "val" / "images").iterdir())
    ]
    manifest.write_text("image,mask\n" + "\n".join(rows) + "\n")
    out = tmp_path / "test.json"
    argv = ["evaluate", str(run), str(manifest), "--threshold", "best", "--tta", "flips"]
    curve = tmp_path / "pr.png"
    assert main([*argv, "--out", str(out), "--pr-curve", str(curve)]) == 0
    assert curve.read_bytes().startswith(b"\x89PNG")
    result = json.loads(out.read_text())
    record = RunFolder(run).read_record()
    assert result["threshold"] == pytest.approx(record.kept["val/best_threshold"])
    assert result["threshold_source"].startswith("selected on the validation split at epoch")
    assert result["tta"] == "flips" and "test/f1" in result["metrics"]
    captured = capsys.readouterr()
    printed = captured.out
    assert (
        "Test F1, pixel-level, threshold" in printed and "test-time augmentation: flips" in printed
    )
    # The curve's caption names the views and where its threshold comes from.
    caption = next(line for line in printed.splitlines() if line.startswith(f"wrote {curve}"))
    assert "(Test average precision " in caption and ", test-time flips)" in caption
    source = "(selected on the validation split at epoch"
    assert f"threshold {result['threshold']:g} {source}" in caption
    # The run chose its threshold without flips: using it with flips is said once.
    warning = "--threshold best was selected on validation with test-time augmentation 'none'"
    assert captured.err.count(warning) == 1 and "used here with 'flips'" in captured.err


def test_a_mask_of_another_size_is_refused_before_scoring(
    run: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import numpy as np
    from PIL import Image

    data = tmp_path / "test"
    shutil.copytree(demo_data / "val", data)
    mask = sorted((data / "masks").iterdir())[0]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask)
    assert main(["evaluate", str(run), str(data), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not match image" in err
    assert not (tmp_path / "r.json").exists()


def test_masks_with_wider_structures_than_validation_are_called_a_shift(
    run: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DeepCrack's test masks hold 1.5x the training masks' share of crack pixels, and
    every threshold selected on validation was too high there: evaluate says so."""
    import shutil

    import numpy as np
    from PIL import Image

    data = tmp_path / "wide"
    shutil.copytree(demo_data / "val", data)
    for path in (data / "masks").iterdir():
        mask = np.asarray(Image.open(path)) > 0
        wide = mask.copy()  # dilated by one pixel in each direction
        wide[1:] |= mask[:-1]
        wide[:-1] |= mask[1:]
        wide[:, 1:] |= mask[:, :-1]
        wide[:, :-1] |= mask[:, 1:]
        Image.fromarray(wide.astype(np.uint8) * 255).save(path)
    out = tmp_path / "wide.json"
    assert main(["evaluate", str(run), str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    shares = json.loads(out.read_text())["pixel_shares"]
    ratio = shares["positives"] / shares["validation_positives"]
    assert ratio > 1.25
    assert f"note: these masks hold x{ratio:.2f} the validation masks' share" in printed
    assert "this split's own F1-best threshold is" in printed
    assert f"(validation: {shares['validation_positives']:.2%}, x{ratio:.2f})" in printed


def test_evaluate_and_predict_say_when_the_runs_precision_is_not_computed_here(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "fp16"
    config = tiny_config(demo_data, runtime={"precision": "fp16"}, eval={"preview_pictures": 0})
    train_run(config, run, progress=False)
    note = "note: runtime.precision fp16 has no CPU autocast: this run computes in fp32"
    assert main(["evaluate", str(run), str(demo_data / "val"), "--device", "cpu"]) == 0
    assert note in capsys.readouterr().err
    out = tmp_path / "masks"
    images = str(demo_data / "val" / "images")
    assert main(["predict", str(run), images, "--out", str(out), "--device", "cpu"]) == 0
    assert note in capsys.readouterr().err
    assert main(["predict", str(run), images, "--out", str(out), "--quiet"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_evaluate_prints_a_summary_and_saves_what_predict_writes_in_the_same_pass(
    run: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    val = str(demo_data / "val")
    out, masks = tmp_path / "e.json", tmp_path / "masks"
    args = ["evaluate", str(run), val, "--threshold", "best", "-q", "--tolerance-px", "2"]
    assert main([*args, "--out", str(out), "--save-masks", str(masks), "--save-probabilities"]) == 0
    printed = capsys.readouterr().out
    assert "picture  positives" not in printed  # per-picture rows go to the file
    assert "Test F1, 2-px tolerance, pixel-level" in printed and "Test ROC AUC" in printed
    result = json.loads(out.read_text())
    pictures = result["pictures"]
    assert sum(p["near_correct"] for p in pictures) <= sum(p["near_marked"] for p in pictures)
    found = sum(p["near_found"] for p in pictures) / sum(p["positives"] for p in pictures)
    assert result["metrics"]["test/recall_2px"] == pytest.approx(found)
    assert result["metrics"]["test/recall_2px"] >= result["metrics"]["test/recall"]
    # The masks are byte for byte what `segtune predict` writes at the same threshold.
    predicted = tmp_path / "predicted"
    assert main(["predict", str(run), val, "--out", str(predicted), "--threshold", "best",
                 "--save-probabilities", "-q"]) == 0  # fmt: skip
    names = sorted(p.name for p in predicted.iterdir())
    assert names == sorted(p.name for p in masks.iterdir()) and len(names) == 2 * len(pictures)
    for name in names:
        assert (masks / name).read_bytes() == (predicted / name).read_bytes(), name
    assert main(["evaluate", str(run), val, "--per-picture", "-q"]) == 0
    assert "picture  positives  TP  FP  FN" in capsys.readouterr().out


def test_a_run_scores_f1_with_a_pixel_tolerance_when_asked(demo_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tolerant"
    train_run(tiny_config(demo_data, eval={"tolerance_px": 2}), out, progress=False)
    record = RunFolder(out).read_record()
    assert {"val/precision_2px", "val/recall_2px", "val/f1_2px"} <= set(record.kept)
    assert all(p.near_marked is not None for p in record.pictures)
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val/f1_2px" in header and "val/auc" in header
