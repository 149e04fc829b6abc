from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segtune.cli.main import main
from segtune.core.config import build_run_config
from segtune.core.records import RunFolder, RunRecord
from segtune.data.synthetic import make_picture
from segtune.engine.train import train_run
from tests.conftest import (
    DEEPCRACK,
    ROOT,
    TINY_MODEL,
    in_ci,
    learning_config,
    tiny_config,
    tiny_tree,
)

RECORD_FILES = (
    "config.yaml",
    "metrics.csv",
    "summary.json",
    "model.pt",
    "pr_curve.json",
    "previews/previews.json",
)


def _one_picture_dataset(root: Path) -> Path:
    """One generated 64×64 picture (demo generator, 3-px cracks), used for both splits."""
    image, mask = make_picture(np.random.default_rng(0), 64, width=3)
    assert mask.any()
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        Image.fromarray(image).save(root / split / "images" / "one.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / split / "masks" / "one.png")
    return root


@pytest.mark.slow
def test_tiny_network_overfits_one_picture(tmp_path: Path) -> None:
    data = _one_picture_dataset(tmp_path / "data")
    config = tiny_config(
        data,
        pages={"page_size": 64, "patch_overlap": 0},
        optim={"epochs": 80, "batch_size": 4, "learning_rate": 0.01},
        sampling={"augment": []},
        loss={"bce_weight": 0.5, "pos_weight": 2.0},
    )
    summary = train_run(config, tmp_path / "run", progress=False)
    assert summary.status == "completed"
    assert summary.final["val/f1"] > 0.9, summary.final


def test_same_seed_gives_identical_metrics(demo_data: Path, tmp_path: Path) -> None:
    config = tiny_config(demo_data, optim={"epochs": 2}, sampling={"positive_fraction": 0.5})
    train_run(config, tmp_path / "a", progress=False)
    train_run(config, tmp_path / "b", progress=False)
    a = (tmp_path / "a" / "metrics.csv").read_text()
    assert a == (tmp_path / "b" / "metrics.csv").read_text()
    rows = RunFolder(tmp_path / "a").read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    header = a.splitlines()[0].split(",")
    assert header[:2] == ["epoch", "train/loss"] and "val/recall" in header
    assert all(c == "epoch" or c.split("/")[0] in ("train", "val") for c in header)


def test_huge_learning_rate_fails_with_a_reason(demo_data: Path, tmp_path: Path) -> None:
    config = tiny_config(demo_data, optim={"epochs": 3, "learning_rate": 1e6})
    summary = train_run(config, tmp_path / "run", progress=False)
    assert summary.status == "failed"
    failure = summary.failure
    assert failure is not None and failure.epoch == 1 and (failure.step or 0) >= 1
    assert "non-finite" in failure.reason or "diverged" in failure.reason
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def test_resume_continues_from_the_checkpoint(demo_data: Path, tmp_path: Path) -> None:
    one = tiny_config(demo_data, optim={"epochs": 1}, records={"keep_resume_state": True})
    train_run(one, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # kept on request
    two = build_run_config(
        tiny_tree(demo_data, optim={"epochs": 2}, records={"keep_resume_state": True})
    )
    RunFolder(tmp_path / "run").write_config(two)
    summary = train_run(two, tmp_path / "run", resume=True, progress=False)
    assert summary.status == "completed" and summary.epochs_done == 2
    epochs = [r["epoch"] for r in RunFolder(tmp_path / "run").read_metrics()]
    assert epochs == [1, 2]


def test_micro_batches_and_positive_sampling_run(demo_data: Path, tmp_path: Path) -> None:
    config = tiny_config(
        demo_data,
        optim={"batch_size": 8, "micro_batch_size": 3},
        sampling={"positive_fraction": 0.5, "augment": ["hflip", "rot90", "brightness_contrast"]},
        pages={"resize": {"scale": 0.75}, "blend": "gaussian"},
    )
    summary = train_run(config, tmp_path / "run", progress=False)
    assert summary.status == "completed"
    assert 0.0 <= summary.final["val/recall"] <= 1.0


@pytest.mark.slow
@pytest.mark.skipif(not DEEPCRACK.is_dir(), reason="../shared/data/deepcrack not present")
def test_train_cli_on_deepcrack_writes_every_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "train",
        "--out",
        str(tmp_path / "run"),
        "--set",
        f"data.train={DEEPCRACK / 'train'}",
        "--set",
        f"data.val={DEEPCRACK / 'test'}",
        "--set",
        "data.train_subset=4",
        "--set",
        "data.val_subset=3",
        "--set",
        "pages.resize.scale=0.25",
        "--set",
        "pages.page_size=64",
        "--set",
        "pages.patch_overlap=8",
        "--set",
        "optim.epochs=1",
        "--set",
        "optim.batch_size=8",
        "--set",
        "eval.preview_pictures=2",
        "--set",
        "runtime.device=cpu",
    ]
    for key, value in TINY_MODEL.items():
        args += ["--set", f"model.{key}={value}"]
    assert main(args) == 0
    for name in RECORD_FILES:
        assert (tmp_path / "run" / name).is_file(), name
    rows = RunFolder(tmp_path / "run").read_metrics()
    assert {k.split("/")[0] for row in rows for k in row if k != "epoch"} == {"train", "val"}
    previews = json.loads((tmp_path / "run" / "previews" / "previews.json").read_text())
    assert len(previews["pictures"]) == 2 and {"tp", "fp", "fn"} <= set(previews["pictures"][0])
    assert "Validation recall, pixel-level, threshold 0.5" in capsys.readouterr().out


def test_train_cli_bad_value_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "loss.bce_weight=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "loss.bce_weight" in err


def test_a_run_says_when_its_precision_is_not_what_the_cpu_computes(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_config(demo_data, runtime={"precision": "fp16"}, eval={"preview_pictures": 0})
    train_run(config, tmp_path / "run", progress=True)
    assert "runtime.precision fp16 has no CPU autocast" in capsys.readouterr().err
    train_run(tiny_config(demo_data, eval={"preview_pictures": 0}), tmp_path / "auto")
    assert "note: runtime.precision" not in capsys.readouterr().err


def test_pruned_run_is_recorded_as_pruned(demo_data: Path, tmp_path: Path) -> None:
    from segtune.engine.train import RunPruned

    def prune(epoch: int, values: dict[str, float]) -> None:
        assert "val/recall" in values and "train/loss" in values
        raise RunPruned(f"pruned at epoch {epoch}")

    config = tiny_config(demo_data, optim={"epochs": 3})
    summary = train_run(config, tmp_path / "run", reporter=prune, progress=False)
    assert summary.status == "pruned" and summary.epochs_done == 1


@pytest.mark.slow
def test_ctrl_c_records_interrupted_and_resume_finishes(demo_data: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    import yaml

    tree = tiny_tree(demo_data, optim={"epochs": 40})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tree))
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "segtune", "train", str(tmp_path / "c.yaml"), "--out", str(run)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoint.pt").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = RunRecord.load(run / "summary.json")
    assert summary.status == "interrupted" and summary.epochs_done >= 1
    assert "--resume" in err
    records = RunFolder(run)
    records.write_config(
        build_run_config(tiny_tree(demo_data, optim={"epochs": summary.epochs_done + 1}))
    )
    assert main(["train", "--resume", str(run)]) == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_a_ctrl_c_a_finalizer_swallowed_still_stops_the_run(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python runs a signal's handler between bytecodes; inside a finalizer its
    # KeyboardInterrupt is dropped as "Exception ignored" (CI saw a Ctrl-C'd run train on
    # to its 40th epoch). The request is remembered and raised again at the next step.
    import signal

    from segtune.core.interrupt import stop_requests

    swallowed: list[type[BaseException] | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: swallowed.append(u.exc_type))

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # the handler runs here, its exception is dropped
                pass

    def ctrl_c_in_a_finalizer(epoch: int, values: dict[str, float]) -> None:
        Finalized()

    config = tiny_config(demo_data, optim={"epochs": 3}, eval={"preview_pictures": 0})
    with stop_requests(), pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "run", progress=False, reporter=ctrl_c_in_a_finalizer)
    assert swallowed == [KeyboardInterrupt]
    record = RunRecord.load(tmp_path / "run" / "summary.json")
    assert record.status == "interrupted" and record.epochs_done == 1


@pytest.mark.slow
def test_resumed_run_ends_with_the_values_of_an_uninterrupted_one(
    demo_data: Path, tmp_path: Path
) -> None:
    config = tiny_config(
        demo_data,
        optim={"epochs": 3},
        runtime={"threads": 1},
        sampling={"positive_fraction": 0.5},
    )
    whole = train_run(config, tmp_path / "whole", progress=False)

    def stop_after_first(epoch: int, values: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "cut", reporter=stop_after_first, progress=False)
    cut = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert cut["status"] == "interrupted" and cut["epochs_done"] == 1
    (tmp_path / "cut" / ".checkpoint.pt.left-by-a-kill").write_bytes(b"partial")
    resumed = train_run(config, tmp_path / "cut", resume=True, progress=False)
    assert resumed.final == whole.final
    assert not list((tmp_path / "cut").glob(".checkpoint.pt.*"))
    assert resumed.provenance.threads == 1
    assert resumed.provenance.device == "cpu"
    assert resumed.provenance.channels_last is True  # the CPU default
    assert resumed.provenance.data is not None and len(resumed.provenance.data) == 20
    assert {"torch", "smp", "segtune", "device_name"} <= set(resumed.provenance.model_dump())


@pytest.mark.parametrize("stop", [None, 1], ids=["all epochs", "early stop"])
def test_a_run_stopped_after_its_last_epoch_resumes_to_its_results(
    demo_data: Path, tmp_path: Path, stop: int | None
) -> None:
    """Killed after its last epoch's checkpoint, before model.pt and the kept epoch's
    records: the resumed run writes them from the checkpoint (it wrote no model.pt, and
    an early-stopped run trained on past its stop)."""
    optim: dict[str, Any] = {"epochs": 4 if stop else 2, "early_stop_patience": stop}
    # With val/collapsed (0 every epoch) as the select key, epoch 1 is kept and the
    # early-stopped run ends after epoch 2.
    config = learning_config(
        demo_data,
        optim=optim,
        eval={"preview_pictures": 1, "select_key": "val/collapsed"},
        runtime={"threads": 1},
    )
    whole = train_run(config, tmp_path / "whole", progress=False)
    assert whole.epochs_done == 2 and whole.kept_epoch == 1

    def stop_after_second(epoch: int, values: dict[str, float]) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "cut", reporter=stop_after_second, progress=False)
    assert not (tmp_path / "cut" / "model.pt").exists()
    resumed = train_run(config, tmp_path / "cut", resume=True, progress=False)
    assert resumed.status == "completed" and resumed.epochs_done == 2
    assert resumed.stopped_early == whole.stopped_early == (stop is not None)
    assert resumed.kept == whole.kept and resumed.pictures == whole.pictures
    for name in ("model.pt", "pr_curve.json", "pictures.npz"):
        assert (tmp_path / "cut" / name).exists(), name
    assert any((tmp_path / "cut" / "previews").iterdir())


def test_run_record_round_trips_and_old_summaries_still_load(tmp_path: Path) -> None:
    old = {  # summary.json of segtune 0.1: no version, untyped
        "status": "completed",
        "epochs_done": 2,
        "epochs": 2,
        "threshold": 0.5,
        "final": {"val/recall": 0.75},
        "best": {"val/recall": {"value": 0.8, "epoch": 1}},
        "timings": {"train_s": 1.0, "eval_s": 0.5},
        "failure": None,
        "train_pictures": ["a"],
        "val_pictures": ["b"],
        "metric_words": {},
    }
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(old))
    record = RunRecord.load(path)
    assert record.version == 1 and record.final["val/recall"] == 0.75
    assert record.best["val/recall"].epoch == 1 and record.timings.total_s == 1.5
    assert record.provenance is None and record.finished
    record.save(tmp_path / "again.json")
    again = RunRecord.load(tmp_path / "again.json")
    assert again == record


def test_old_metrics_csv_reads_split_named(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(
        "epoch,split,loss,recall\n1,train,0.5,0.1\n1,val,,0.2\n2,train,0.4,0.3\n2,val,,0.4\n"
    )
    rows = RunFolder(tmp_path).read_metrics()
    assert rows == [
        {"epoch": 1, "train/loss": 0.5, "train/recall": 0.1, "val/recall": 0.2},
        {"epoch": 2, "train/loss": 0.4, "train/recall": 0.3, "val/recall": 0.4},
    ]


# segtune 0.1, whose training values today's runs must reproduce: refactors of the run
# and its records must not change them. Its values are computed on the machine running the
# tests, from 0.1's source in this repository's history, because a few steps of this tiny
# network already differ between CPUs (and between kernel choices on one CPU) by more than
# any useful tolerance: measured on an AMD EPYC against the values once recorded on an
# Intel Xeon, val/fp 165 against 251 after 3 epochs.
SEGTUNE_0_1 = "a4de81e"
COMPARED_WITH_0_1 = ("train/loss", "val/recall", "val/precision", "val/f1", "val/tp", "val/fp")
# (val/ap is left out: its estimator changed on purpose, to a histogram binned in logit space.)

_RUN_0_1 = """
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from segtune.config import build_run_config  # 0.1's modules, before the regrouping
from segtune.train import train_run
tree = json.loads(sys.argv[1])
print(json.dumps(train_run(build_run_config(tree), Path(sys.argv[2]), progress=False)["final"]))
"""


def _final_values_of_segtune_0_1(tree: dict[str, Any], tmp_path: Path) -> dict[str, float]:
    """Train ``tree`` with segtune 0.1's source (``git archive`` of SEGTUNE_0_1) in a
    subprocess at one thread; its final values."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", SEGTUNE_0_1, "src"],
        capture_output=True,
    )
    if listed.returncode != 0:
        message = f"segtune 0.1 ({SEGTUNE_0_1}) not in this checkout's history"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    source = tmp_path / "segtune-0.1"
    with tarfile.open(fileobj=io.BytesIO(listed.stdout)) as archive:
        archive.extractall(source, filter="data")
    done = subprocess.run(
        [sys.executable, "-c", _RUN_0_1, json.dumps(tree), str(tmp_path / "run-0.1")],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": str(source / "src"),
            "SEGTUNE_CACHE": str(tmp_path / "cache"),
        },
    )
    if done.returncode != 0:
        pytest.fail(f"segtune 0.1 could not train here: {done.stderr.strip()[-2000:]}")
    values: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return values


def test_same_values_as_segtune_0_1(demo_data: Path, tmp_path: Path) -> None:
    old_tree = tiny_tree(
        demo_data,
        optim={"epochs": 3, "batch_size": 4, "learning_rate": 0.01},
        sampling={"positive_fraction": 0.5},
        loss={"bce_weight": 0.8, "pos_weight": 10.0},
        eval={"preview_pictures": 0},
    )
    old = _final_values_of_segtune_0_1(old_tree, tmp_path)
    # Today's settings that reproduce 0.1's behaviour (0.1 ran NCHW on the CPU).
    today_tree = tiny_tree(
        demo_data,
        optim={"epochs": 3, "batch_size": 4, "learning_rate": 0.01, "schedule": "constant"},
        sampling={"positive_fraction": 0.5},
        loss={"bce_weight": 0.8, "pos_weight": 10.0},
        eval={"preview_pictures": 0, "select": "last"},
        runtime={"threads": 1, "channels_last": False},
    )
    record = train_run(build_run_config(today_tree), tmp_path / "run", progress=False)
    assert record.provenance is not None and record.provenance.channels_last is False
    assert old["val/tp"] > 0  # the comparison is of a run that found positives
    for key in COMPARED_WITH_0_1:
        assert record.final[key] == pytest.approx(old[key], abs=1e-9), key


def test_a_mask_of_another_size_is_refused_before_training(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import yaml

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    mask = sorted((data / "val" / "masks").iterdir())[0]
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(mask)  # 64×48 instead of 64×64
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_tree(data)))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{mask}: size 64x48 does not match image" in err and "64x64" in err
    assert not run.exists()
    spec = tmp_path / "s.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "misaligned",
                "data": {"train": str(data / "train"), "val": str(data / "val")},
                "fixed": {k: v for k, v in tiny_tree(data).items() if k != "data"},
                "stages": [{"name": "g", "grid": {"loss.bce_weight": [0.5]}}],
            }
        )
    )
    assert main(["sweep", str(spec), "--dir", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not match image" in err
    assert not list((tmp_path / "study").glob("runs/*/*"))


@pytest.mark.parametrize(
    ("train_eval", "expected_epochs"),
    [({}, [3]), ({"train_every": 2}, [2, 3]), ({"train_every": 1}, [1, 2, 3])],
)
def test_training_split_pass_runs_at_the_last_epoch_and_every_n(
    demo_data: Path, tmp_path: Path, train_eval: dict[str, int], expected_epochs: list[int]
) -> None:
    config = tiny_config(demo_data, optim={"epochs": 3}, eval={"preview_pictures": 0, **train_eval})
    record = train_run(config, tmp_path / "run", progress=False)
    rows = RunFolder(tmp_path / "run").read_metrics()
    assert [r["epoch"] for r in rows if "train/recall" in r] == expected_epochs
    assert all("train/loss" in r and "val/recall" in r for r in rows)
    assert "train/recall" in record.final  # the last epoch always has the pass
    # As many training pictures as validation pictures: 4 of the 12 (64×64 each).
    assert (
        record.final["train/tp"]
        + record.final["train/fp"]
        + record.final["train/fn"]
        + (record.final["train/tn"])
        == 4 * 64 * 64
    )


def test_training_split_pass_sizes() -> None:
    from segtune.core.config import EvalConfig

    assert EvalConfig().train_eval_count(train=30, val=10) == 10
    assert EvalConfig().train_eval_count(train=5, val=10) == 5
    assert EvalConfig(train_eval_pictures="all").train_eval_count(train=30, val=10) == 30
    assert EvalConfig(train_eval_pictures=None).train_eval_count(train=30, val=10) == 30  # 0.1
    assert EvalConfig(train_eval_pictures=7).train_eval_count(train=30, val=10) == 7
    assert EvalConfig(train_eval_pictures=40).train_eval_count(train=30, val=10) == 30
    with pytest.raises(ValueError):
        EvalConfig(train_eval_pictures=0)


def test_twelve_bit_pictures_keep_their_range_in_training_and_predict(
    demo_data: Path, tmp_path: Path
) -> None:
    """12-bit values in 16-bit TIFFs: the run stretches the training range onto 0..255,
    records the window, and predict reads new pictures with the same window."""
    import shutil

    import tifffile

    from segtune.inference.predict import Predictor

    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / split / "images").mkdir(parents=True)
        shutil.copytree(demo_data / split / "masks", data / split / "masks")
        for png in sorted((demo_data / split / "images").iterdir()):
            grey = np.asarray(Image.open(png).convert("L")).astype(np.uint16) * 16
            tifffile.imwrite(data / split / "images" / f"{png.stem}.tif", grey)
    config = tiny_config(data, eval={"preview_pictures": 0})
    record = train_run(config, tmp_path / "run", progress=False)
    assert record.status == "completed"
    train = [tifffile.imread(p) for p in sorted((data / "train" / "images").iterdir())]
    low, high = min(int(a.min()) for a in train), max(int(a.max()) for a in train)
    assert record.intensity_window == (low, high) and high > 255  # observed training range
    predictor = Predictor.load(tmp_path / "run")
    assert predictor.reading.window == (low, high)
    out = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "run"), str(data / "val"), "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 4


def test_the_selected_epoch_is_kept_with_its_weights_threshold_and_counts(
    demo_data: Path, tmp_path: Path
) -> None:
    import torch

    config = tiny_config(demo_data, optim={"epochs": 3}, eval={"preview_pictures": 2})
    record = train_run(config, tmp_path / "run", progress=False)
    rows = RunFolder(tmp_path / "run").read_metrics()
    best = max(rows, key=lambda r: (r["val/best_f1"], -r["epoch"]))  # earliest on ties
    assert record.selected_epoch == best["epoch"] and record.selected_by == "val/best_f1"
    assert record.kept["val/f1"] == best["val/f1"] and record.final["val/f1"] == rows[-1]["val/f1"]
    assert sum(p.tp for p in record.pictures) == best["val/tp"]
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert state["epoch"] == best["epoch"]
    assert state["best_threshold"] == pytest.approx(best["val/best_threshold"])
    assert not (tmp_path / "run" / "selected.pt").exists()  # resume state is removed
    assert [r["train/lr"] for r in rows] == sorted((r["train/lr"] for r in rows), reverse=True)


def test_early_stopping_ends_a_run_that_stops_improving(demo_data: Path, tmp_path: Path) -> None:
    # val/collapsed is 0 every epoch: it never improves after epoch 1.
    config = learning_config(
        demo_data,
        optim={"epochs": 5, "early_stop_patience": 1},
        eval={"preview_pictures": 0, "select_key": "val/collapsed"},
    )
    record = train_run(config, tmp_path / "run", progress=False)
    assert record.status == "completed" and record.stopped_early
    assert record.epochs_done == 2 and record.selected_epoch == 1
    assert "train/recall" in record.final  # the training-split pass runs when it stops
    from segtune.core.records import kept_epoch_words

    # val/collapsed has no per-picture form: the lead over the last epoch, no interval.
    margin = record.selection_margin
    assert margin is not None and margin.last_epoch == 2 and margin.low is None
    assert kept_epoch_words(record) == (
        "epoch 1 of 2, selected by val/collapsed (0.0000 against 0.0000 at epoch 2: +0.0000);"
        " stopped early at epoch 2"
    )


def test_a_kept_earlier_epoch_has_training_metrics_of_its_own_weights(
    demo_data: Path, tmp_path: Path
) -> None:
    # The training-split pass runs after the last epoch; a run that keeps an earlier one
    # (here epoch 1 of 2) scores the kept weights on it too (was: blank train/* columns).
    from segtune.data.layout import load_pictures
    from segtune.inference.evaluate import evaluate_checkpoint
    from segtune.inference.predict import Predictor

    config = learning_config(
        demo_data,
        optim={"epochs": 2, "early_stop_patience": 1},
        eval={"preview_pictures": 0, "select_key": "val/collapsed", "train_eval_pictures": "all"},
    )
    record = train_run(config, tmp_path / "run", progress=False)
    assert record.kept_epoch == 1 and record.epochs_done == 2
    rows = RunFolder(tmp_path / "run").read_metrics()
    assert rows[0]["train/f1"] == record.kept["train/f1"]  # the kept epoch's row, in metrics.csv
    scored = evaluate_checkpoint(
        Predictor.load(tmp_path / "run"),
        load_pictures(demo_data / "train"),
        split="train",
        threshold=config.eval.threshold,
        threshold_source="fixed",
        progress=False,
    )
    for key in ("train/tp", "train/fp", "train/fn", "train/f1"):
        assert record.kept[key] == pytest.approx(scored.metrics[key], abs=1e-9), key
    assert record.final["train/f1"] == rows[1]["train/f1"]  # the last epoch's pass is kept too


def test_the_selected_epochs_lead_over_the_last_is_given_with_its_interval() -> None:
    from segtune.core.metrics import PictureCounts, ProbabilityHistogram
    from segtune.core.records import RunRecord, kept_epoch_words
    from segtune.engine.ledger import selection_margin
    from segtune.engine.validate import SplitResult

    def split(tp: list[int]) -> SplitResult:
        pictures = [PictureCounts(i + 1, f"p{i}", t, 10, 100 - t, 100) for i, t in enumerate(tp)]
        f1 = 2 * sum(tp) / (2 * sum(tp) + 10 * len(tp) + sum(100 - t for t in tp))
        return SplitResult({"val/f1": f1}, ProbabilityHistogram(10), pictures)

    kept, last = split([90, 40, 85, 60]), split([80, 45, 80, 62])
    margin = selection_margin("val/f1", kept, last, 7)
    assert margin is not None and margin.last_epoch == 7 and margin.low is not None
    lead = 550 / 715 - 534 / 707  # F1 = 2·TP / (2·TP + FP + FN) summed over the pictures
    assert margin.kept_value - margin.last_value == pytest.approx(lead, abs=1e-12)
    assert margin.within_noise  # one picture of four went the other way
    record = RunRecord(
        status="completed",
        epochs=9,
        epochs_done=9,
        threshold=0.5,
        selected_epoch=5,
        selected_by="val/f1",
        selection_margin=margin,
    )
    words = kept_epoch_words(record)
    assert words.startswith("epoch 5 of 9, selected by val/f1 (") and "at epoch 7: +0.0139" in words
    assert words.endswith("over the validation pictures, within picture-sample noise)")
    assert selection_margin("train/f1", kept, last, 7) is None  # not in the validation values


def test_flips_average_the_four_flipped_predictions(demo_data: Path) -> None:
    import torch

    from segtune.core.config import PagesConfig
    from segtune.engine.infer import predict_probabilities
    from segtune.engine.model import build_model

    config = tiny_config(demo_data)
    torch.manual_seed(0)
    model = build_model(config.model)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    pages = PagesConfig(page_size=32)
    device = torch.device("cpu")

    def p(img: np.ndarray) -> np.ndarray:
        return predict_probabilities(model, np.ascontiguousarray(img), pages, device)

    manual = (
        p(image)
        + p(image[:, ::-1])[:, ::-1]
        + p(image[::-1])[::-1]
        + p(image[::-1, ::-1])[::-1, ::-1]
    ) / 4
    flips = predict_probabilities(model, image, pages, device, tta="flips")
    assert np.allclose(flips, manual, atol=1e-6) and not np.allclose(flips, p(image), atol=1e-4)


def test_a_run_validated_with_flips_says_so(demo_data: Path, tmp_path: Path) -> None:
    from segtune.analysis.summary import read_run
    from segtune.core.records import kept_epoch_words

    config = tiny_config(
        demo_data, optim={"epochs": 1}, eval={"preview_pictures": 0, "tta": "flips"}
    )
    record = train_run(config, tmp_path / "run", progress=False)
    assert record.tta == "flips"
    assert kept_epoch_words(record).endswith("; validated with test-time flips")
    assert read_run("grid", 0, tmp_path / "run", {}).tta == "flips"
    # A record written before the field existed: its config.yaml says what ran.
    summary = tmp_path / "run" / "summary.json"
    older = json.loads(summary.read_text())
    del older["tta"]
    summary.write_text(json.dumps(older))
    assert RunRecord.load(summary).tta == "none"
    assert read_run("grid", 0, tmp_path / "run", {}).tta == "flips"


@pytest.mark.slow
def test_a_weight_average_is_what_the_run_evaluates_keeps_and_resumes(
    demo_data: Path, tmp_path: Path
) -> None:
    import torch

    from segtune.engine.model import build_model

    config = tiny_config(
        demo_data,
        optim={"epochs": 3, "ema_decay": 0.9},
        eval={"preview_pictures": 0, "select": "last"},
        runtime={"threads": 1},
        records={"keep_resume_state": True},
    )
    whole = train_run(config, tmp_path / "whole", progress=False)
    checkpoint = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    kept = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["model"]
    averaged = checkpoint["average"]["model"]
    assert checkpoint["average"]["updates"] > 0
    assert all(torch.equal(kept[k], averaged[k].cpu()) for k in kept)
    assert any(not torch.equal(kept[k], checkpoint["model"][k].cpu()) for k in kept)
    # The averaged weights are not the trained ones: evaluated alone they give other values.
    plain = train_run(
        tiny_config(
            demo_data,
            optim={"epochs": 3},
            eval={"preview_pictures": 0, "select": "last"},
            runtime={"threads": 1},
        ),
        tmp_path / "plain",
        progress=False,
    )
    assert plain.final["train/loss"] == whole.final["train/loss"]  # same training
    assert plain.final["val/ap"] != whole.final["val/ap"]  # other weights evaluated
    build_model(config.model).load_state_dict(kept)  # model.pt loads as a plain model

    def stop_after_first(epoch: int, values: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "cut", reporter=stop_after_first, progress=False)
    resumed = train_run(config, tmp_path / "cut", resume=True, progress=False)
    assert resumed.final == whole.final
    from segtune.core.records import kept_epoch_words

    assert whole.weight_average == 0.9 and plain.weight_average is None
    assert kept_epoch_words(whole) == "epoch 3 of 3 (the last); weights averaged (decay 0.9)"


def test_resuming_with_another_weight_average_setting_is_refused(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def stop_after_first(epoch: int, values: dict[str, float]) -> None:
        raise KeyboardInterrupt

    plain = tiny_config(demo_data, optim={"epochs": 2}, eval={"preview_pictures": 0})
    with pytest.raises(KeyboardInterrupt):
        train_run(plain, tmp_path / "run", reporter=stop_after_first, progress=False)
    records = RunFolder(tmp_path / "run")
    averaged = tiny_config(
        demo_data, optim={"epochs": 2, "ema_decay": 0.9}, eval={"preview_pictures": 0}
    )
    records.write_config(averaged)
    summary = (tmp_path / "run" / "summary.json").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint.pt" in err
    assert "optim.ema_decay is 0.9 but the checkpoint holds no weight average" in err
    assert (tmp_path / "run" / "summary.json").read_bytes() == summary  # nothing written
