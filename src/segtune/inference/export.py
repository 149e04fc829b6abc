"""Export a trained network to ONNX or TorchScript, for serving without segtune.

The exported graph takes pages as float32 ``(N, 3, P, P)`` holding the picture's RGB
values 0..255 (after the run's channel selection and intensity window), applies the
ImageNet normalisation itself and returns probabilities ``(N, 1, P, P)``. Everything a
caller needs to tile, window and threshold like segtune is stored in the file as JSON:
ONNX metadata property ``segtune``, TorchScript extra file ``segtune.json``.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segtune.core.errors import ConfigError, SegtuneError
from segtune.core.records import atomic_write_bytes
from segtune.engine.model import IMAGENET_MEAN, IMAGENET_STD, normalise
from segtune.inference.predict import Predictor

FORMATS = ("onnx", "torchscript")
METADATA_KEY = "segtune"


class PageProbabilities(nn.Module):
    """The run's network behind its input normalisation, with a sigmoid on top."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pages: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(normalise(pages)))


def export_metadata(predictor: Predictor, fmt: str) -> dict[str, Any]:
    """What a caller needs to use the exported graph as segtune does."""
    from segtune.core.version import VERSION as __version__

    config = predictor.config
    pages = config.pages
    resize = pages.resize
    return {
        "format": fmt,
        "segtune_version": __version__,
        "model": {"arch": config.model.arch, "encoder": config.model.encoder},
        "input": {
            "name": "pages",
            "shape": ["batch", 3, pages.page_size, pages.page_size],
            "dtype": "float32",
            "values": "RGB 0..255 after channel selection and intensity window",
            "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "normalised_inside": True,
        },
        "output": {"name": "probabilities", "shape": ["batch", 1, "P", "P"]},
        "pages": {
            "page_size": pages.page_size,
            "patch_overlap": pages.patch_overlap,
            "blend": pages.blend,
            "resize": None if resize is None else resize.model_dump(),
        },
        "reading": {
            "intensity_window": (
                None if predictor.reading.window is None else list(predictor.reading.window)
            ),
            "channels": predictor.reading.channels,
        },
        "best_threshold": predictor.best_threshold,
        "epoch": predictor.epoch,
        "tta": predictor.tta,
        "tta_scales": predictor.tta_scales,
    }


def export_model(predictor: Predictor, fmt: str, out: Path) -> dict[str, Any]:
    """Write ``predictor``'s network to ``out`` in ``fmt``; returns the stored metadata.
    The file appears whole or not at all."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)} (got {fmt!r})")
    # NCHW weights: channels-last strides (segtune's default memory format) make
    # torch.export specialise the batch dimension.
    net = PageProbabilities(predictor.model).to("cpu").eval()
    net.to(memory_format=torch.contiguous_format)
    size = predictor.config.pages.page_size
    example = torch.rand(1, 3, size, size) * 255.0
    meta = export_metadata(predictor, fmt)
    write = _onnx_bytes if fmt == "onnx" else _torchscript_bytes
    data = write(net, example, meta)
    atomic_write_bytes(out, data)
    return meta


def _torchscript_bytes(net: nn.Module, example: torch.Tensor, meta: dict[str, Any]) -> bytes:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on smp's shape checks
        traced = torch.jit.trace(net, example)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})
    return buffer.getvalue()


def _onnx_bytes(net: nn.Module, example: torch.Tensor, meta: dict[str, Any]) -> bytes:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError as exc:
        raise SegtuneError(
            f"--format onnx needs the onnx and onnxscript packages ({exc.name} is missing): "
            "pip install 'segtune[export]'"
        ) from exc
    batch = torch.export.Dim("batch", min=1, max=4096)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=["pages"],
            output_names=["probabilities"],
            dynamic_shapes={"pages": {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(meta)
    return bytes(proto.SerializeToString())


def read_metadata(path: Path) -> dict[str, Any]:
    """The segtune metadata of an exported file (ONNX or TorchScript)."""
    if path.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path))
        for entry in proto.metadata_props:
            if entry.key == METADATA_KEY:
                return dict(json.loads(entry.value))
        raise SegtuneError(f"{path}: no segtune metadata")
    files = {f"{METADATA_KEY}.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return dict(json.loads(files[f"{METADATA_KEY}.json"]))
