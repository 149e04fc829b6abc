from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segtune.cli.main import main
from segtune.core.records import RunFolder
from segtune.data.cache import PictureCache
from segtune.data.layout import load_pictures
from segtune.engine.model import normalise
from segtune.engine.train import train_run
from segtune.engine.validate import evaluate_split
from segtune.inference.predict import Predictor
from tests.conftest import learning_config


@pytest.fixture(scope="module", params=[0, 8], ids=["overlap0", "overlap8"])
def checkpoint(
    request: pytest.FixtureRequest, demo_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    run = tmp_path_factory.mktemp("predict-run")
    config = learning_config(
        demo_data,
        pages={
            "page_size": 32,
            "patch_overlap": request.param,
            "blend": "gaussian" if request.param else "mean",
        },
    )
    assert train_run(config, run, progress=False).status == "completed"
    assert not (run / "checkpoint.pt").exists()  # the resume state goes once complete
    return run / "model.pt"


@pytest.mark.parametrize("size", [(20, 27), (32, 32), (75, 50)], ids=["smaller", "equal", "larger"])
def test_output_size_equals_input_size(
    checkpoint: Path, tmp_path: Path, size: tuple[int, int]
) -> None:
    image = np.random.default_rng(1).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "pic.jpg")
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(checkpoint),
                str(tmp_path / "pic.jpg"),
                "--out",
                str(out),
                "--save-probabilities",
                "16",
                "--overlays",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    mask = np.asarray(Image.open(out / "pic.png"))
    assert mask.shape == size and set(np.unique(mask)) <= {0, 255}
    assert np.asarray(Image.open(out / "pic-prob.png")).shape == size
    assert (out / "pic-overlay.png").is_file()


def test_probabilities_equal_the_validation_pass(checkpoint: Path, demo_data: Path) -> None:
    predictor = Predictor.load(checkpoint, "cpu")
    pictures = load_pictures(demo_data / "val")[:2]
    cache = PictureCache(checkpoint.parent / "cache-check")
    result = evaluate_split(
        predictor.model,
        "val",
        pictures,
        cache,
        predictor.config.pages,
        predictor.device,
        threshold=0.5,
        bins=100,
        keep_previews=2,
    )
    for pic, expected in zip(pictures, result.previews, strict=True):
        image = np.asarray(Image.open(pic.image).convert("RGB"))
        got = predictor.probabilities(image)
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) <= 1e-5


def test_corrupt_picture_is_reported_and_the_rest_written(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "c"):
        Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(folder / f"{name}.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    code = main(
        ["predict", str(checkpoint), str(folder), "--out", str(tmp_path / "out"), "--device", "cpu"]
    )
    assert code == 1
    assert "b.png: unreadable or truncated" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]


def test_pictures_sharing_a_stem_are_written_under_their_folders(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    sources = {
        "cityA/0001.png": "cityA/0001",  # two folders (a nested dataset's), one name
        "cityB/0001.png": "cityB/0001",
        "scans/p.jpeg": "scans/p.jpeg",  # one folder, one stem, two formats
        "scans/p.tif": "scans/p.tif",
        "scans/q.png": "q",
    }
    for name in sources:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(tmp_path / name)
    out = tmp_path / "out"
    inputs = [str(tmp_path / d) for d in ("cityA", "cityB", "scans")]
    inputs.append(str(tmp_path / "scans" / "q.png"))  # named twice: predicted once
    assert main(["predict", str(checkpoint), *inputs, "--out", str(out), "-q"]) == 0
    said = capsys.readouterr().out
    assert "wrote 5 mask(s)" in said and "4 picture(s) share a stem" in said
    predictor = Predictor.load(checkpoint, "cpu")
    for name, written in sources.items():
        image = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        expected = (predictor.probabilities(image) >= 0.5).astype(np.uint8) * 255
        assert np.array_equal(np.asarray(Image.open(out / f"{written}.png")), expected), name
    assert len([p for p in out.rglob("*") if p.is_file()]) == 5


def test_best_threshold_comes_from_the_run(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictor = Predictor.load(checkpoint, "cpu")
    assert predictor.best_threshold is not None
    assert predictor.threshold("best") == predictor.best_threshold
    assert capsys.readouterr().err == ""  # the run's own test-time augmentation: matched
    with pytest.raises(Exception, match="must be in"):
        predictor.threshold("1.5")


def test_threshold_best_is_refused_for_a_model_that_collapsed_on_validation(
    checkpoint: Path, tmp_path: Path, demo_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose validation histogram is collapsed (ProbabilityHistogram.collapsed)
    records no best threshold: ``--threshold best`` is one line and exit 2, nothing
    written; a number still works."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["best_threshold"] = None
    state.get("metrics", {}).pop("val/best_threshold", None)
    collapsed = tmp_path / "model.pt"
    torch.save(state, collapsed)
    picture = next((demo_data / "val" / "images").iterdir())
    out = tmp_path / "masks"
    assert (
        main(["predict", str(collapsed), str(picture), "--out", str(out), "--threshold", "best"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --threshold best: the checkpoint records")
    assert "collapsed on validation" in err[0] and not out.exists()
    assert main(["predict", str(collapsed), str(picture), "--out", str(out), "-q"]) == 0


def test_model_pt_loads_weights_only_in_plain_smp(checkpoint: Path, demo_data: Path) -> None:
    import segmentation_models_pytorch as smp
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cfg = state["config"]["model"]
    net = smp.create_model(
        cfg["arch"],
        encoder_name=cfg["encoder"],
        encoder_weights=None,
        encoder_depth=cfg["encoder_depth"],
        decoder_channels=cfg["decoder_channels"],
        classes=1,
    )
    net.load_state_dict(state["model"])
    net.eval()
    norm = state["normalisation"]
    size = state["pages"]["page_size"]
    page = torch.rand(1, 3, size, size) * 255
    mean = torch.tensor(norm["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(norm["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        plain = torch.sigmoid(net((page / norm["scale"] - mean) / std))
        ours = torch.sigmoid(Predictor.load(checkpoint, "cpu").model(normalise(page)))
    assert torch.allclose(plain, ours, atol=1e-6)
    kept = RunFolder(checkpoint.parent).read_record().kept_epoch
    assert state["epoch"] == kept and 0.0 < state["best_threshold"] < 1.0


def test_garbage_or_foreign_checkpoints_are_one_line(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["config"]["model"]["decoder_channels"] = [32, 16, 8]  # another decoder
    foreign = tmp_path / "foreign.pt"
    torch.save(state, foreign)
    for path, words in ((garbage, "not a segtune checkpoint"), (foreign, "do not fit")):
        out = tmp_path / f"out-{path.stem}"
        assert main(["predict", str(path), str(tmp_path), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and words in err[0], err
        assert not out.exists()


def test_regions_of_interest_named_by_a_tag_are_found(tmp_path: Path) -> None:
    # DRIVE's layout: images/21_training.tif, roi/21_training_mask.gif (as training pairs).
    from segtune.inference.predict import find_rois

    for folder in ("images", "roi"):
        (tmp_path / folder).mkdir()
    for n in (21, 22):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
            tmp_path / "images" / f"{n}_training.tif"
        )
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(
            tmp_path / "roi" / f"{n}_training_mask.gif"
        )
    (tmp_path / "roi" / "notes.txt").write_text("not a picture")
    assert find_rois([tmp_path]) == {
        tmp_path / "images" / f"{n}_training.tif": tmp_path / "roi" / f"{n}_training_mask.gif"
        for n in (21, 22)
    }
