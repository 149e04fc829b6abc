"""``segtune export``: the ONNX and TorchScript files compute what PyTorch computes."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from segtune.cli.main import main
from segtune.core.errors import SegtuneError
from segtune.data.io import read_image
from segtune.data.layout import load_pictures
from segtune.engine.train import train_run
from segtune.inference.export import PageProbabilities, export_model, read_metadata
from segtune.inference.predict import Predictor
from tests.conftest import learning_config, tiny_config


@pytest.fixture(scope="module")
def checkpoint(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("export-run")
    assert train_run(tiny_config(demo_data), run, progress=False).status == "completed"
    return run / "model.pt"


def _pages(demo_data: Path, size: int) -> torch.Tensor:
    """Two real pages (float RGB 0..255), as segtune feeds the network."""
    pictures = load_pictures(demo_data / "val")[:2]
    crops = [read_image(p.image)[:size, :size] for p in pictures]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_matches_pytorch(
    fmt: str, checkpoint: Path, demo_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'ts'}"
    assert main(["export", str(checkpoint), "--format", fmt, "--out", str(out), "-q"]) == 0
    predictor = Predictor.load(checkpoint, "cpu")
    size = predictor.config.pages.page_size
    pages = _pages(demo_data, size)
    with torch.no_grad():
        expected = PageProbabilities(predictor.model).eval()(pages).numpy()
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["pages"]
        got = session.run(None, {"pages": pages.numpy()})[0]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
            loaded = torch.jit.load(str(out), map_location="cpu")  # as users load it
        with torch.no_grad():
            got = loaded(pages).numpy()
    assert got.shape == expected.shape == (2, 1, size, size)
    assert float(np.abs(got - expected).max()) < 1e-4
    assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0  # probabilities
    meta = read_metadata(out)
    assert meta["format"] == fmt
    assert meta["pages"]["page_size"] == size
    assert meta["pages"]["patch_overlap"] == predictor.config.pages.patch_overlap
    assert meta["best_threshold"] == predictor.best_threshold
    assert meta["input"]["normalisation"]["mean"] == [0.485, 0.456, 0.406]
    # Self-contained: the window itself, the placement rule, the threshold and its source.
    from segtune.data.tiles import blend_window

    window = meta["pages"]["window"]
    rebuilt = np.maximum(np.outer(window["profile"], window["profile"]), window["floor"])
    blend = predictor.config.pages.blend
    assert np.array_equal(
        rebuilt.astype(np.float32), blend_window(size, blend, meta["pages"]["patch_overlap"])
    )
    assert "flush with the border" in meta["pages"]["origins"]
    assert meta["threshold"]["best"] == predictor.best_threshold
    assert meta["segtune_version"] and meta["reading"]["to_rgb"]


def test_export_refusals(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    predictor = Predictor.load(checkpoint, "cpu")
    with pytest.raises(SegtuneError, match="--format: expected one of onnx, torchscript"):
        export_model(predictor, "tflite", tmp_path / "m.tflite")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(SegtuneError, match=r"needs the onnx and onnxscript packages.*\[export\]"):
        export_model(predictor, "onnx", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written
    missing = tmp_path / "nope" / "model.pt"
    assert main(["export", str(missing), "--format", "onnx", "--out", str(tmp_path / "m")]) == 2


SCRIPT = Path(__file__).parents[2] / "docs" / "examples" / "onnx_predict.py"


def test_the_docs_onnxruntime_script_reproduces_predict_without_segtune(
    demo_data: Path, tmp_path: Path
) -> None:
    """docs/examples/onnx_predict.py, run where `import segtune` fails, on a run with
    overlapping Gaussian-blended pages, a resize, flips and two test-time scales, on a
    square and a ragged picture (one side shorter than a page): within 1e-5 of
    `segtune predict`'s probabilities, and the same mask."""
    import subprocess

    from PIL import Image

    config = learning_config(
        demo_data,
        pages={"page_size": 32, "patch_overlap": 8, "blend": "gaussian", "resize": {"scale": 0.75}},
        eval={"tta": "flips", "tta_scales": [1.0, 1.25]},
    )
    run = tmp_path / "run"
    assert train_run(config, run, progress=False).status == "completed"
    model = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(model), "-q"]) == 0
    square = load_pictures(demo_data / "val")[0].image
    ragged = tmp_path / "ragged.png"
    Image.fromarray(read_image(square)[:50, :37]).save(ragged)
    predictor = Predictor.load(run / "model.pt", "cpu")
    blocked = (
        "import runpy, sys; sys.modules['segtune'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    for picture in (square, ragged):
        mask, npy = tmp_path / f"{picture.stem}-mask.png", tmp_path / f"{picture.stem}.npy"
        args = [str(SCRIPT), str(model), str(picture), str(mask), "--npy", str(npy)]
        done = subprocess.run(
            [sys.executable, "-c", blocked, *args], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        got = np.load(npy)
        expected = predictor.probabilities(read_image(picture))
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) < 1e-5
        threshold = predictor.threshold("best")
        undecided = np.abs(expected - threshold) < 1e-5
        written = np.asarray(Image.open(mask)) > 0
        assert np.array_equal(written[~undecided], (expected >= threshold)[~undecided])
    source = SCRIPT.read_text()
    assert "import segtune" not in source and "from segtune" not in source
