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


ORIGINS = (
    "per axis of length L: [0] when L <= P; otherwise 0, S, 2S, ... (each < L - P), then "
    "L - P: the last page sits flush with the border (S = P - overlap); pages row by row"
)
PADDING = (
    "a page reaching past the border (only when a side is shorter than P) is zero-padded "
    "to P x P; the padding's predictions are cut before stitching"
)
STITCH = (
    "probability = sum over the pages covering a pixel of window * page probability, "
    "divided by the sum of their windows"
)
TO_RGB = (
    "channels chosen (reading.channels: indices, or 'mean'), alpha dropped; then 8-bit "
    "values as they are, 16-bit integers // 257, floats in [0, 1] x 255 rounded (or, with "
    "reading.intensity_window [lo, hi]: round(clip((v - lo) * 255 / (hi - lo), 0, 255))); a "
    "grey picture's value repeated in all three channels"
)
RESIZE = (
    "the uint8 RGB picture resized bilinearly (Pillow) to (round(H f), round(W f)), f = "
    "scale, or longest_side / max(H, W); the probability map resized back bilinearly "
    "(Pillow, 32-bit float) to H x W"
)
TTA = (
    "the mean over views of each page's probability, each mapped back: none = identity; "
    "flips = identity, horizontal, vertical, both; dihedral = those four and the same four "
    "of the transposed page; with several tta_scales, the mean of the maps at each scale "
    "(resize times the factor, or the picture's own size times it), each resized back"
)


def export_metadata(predictor: Predictor, fmt: str) -> dict[str, Any]:
    """Everything a caller needs to use the exported graph exactly as ``segtune predict``
    does, without segtune's source: reading, resizing, page placement, the blend window
    (its formula and its 1-D profile), stitching, test-time views and the threshold."""
    from segtune.core.version import VERSION as __version__
    from segtune.data.tiles import BLEND_FORMULAS, blend_profile

    config = predictor.config
    pages = config.pages
    resize = pages.resize
    profile, floor = blend_profile(pages.page_size, pages.blend, pages.patch_overlap)
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
            "stride": pages.page_size - pages.patch_overlap,
            "origins": ORIGINS,
            "padding": PADDING,
            "blend": pages.blend,
            "window": {
                "formula": "window = max(outer(profile, profile), floor); "
                + BLEND_FORMULAS[pages.blend],
                "profile": [float(v) for v in profile],
                "floor": floor,
                "dtype": "float32",
            },
            "stitch": STITCH,
            "resize": None if resize is None else resize.model_dump(),
            "resize_rule": RESIZE,
        },
        "reading": {
            "intensity_window": (
                None if predictor.reading.window is None else list(predictor.reading.window)
            ),
            "channels": predictor.reading.channels,
            "to_rgb": TO_RGB,
        },
        "threshold": {
            "best": predictor.best_threshold,
            "best_source": None
            if predictor.best_threshold is None
            else f"F1-best on the run's validation split at epoch {predictor.epoch}",
            "default": config.eval.threshold,
            "rule": "a pixel is positive when its probability >= the threshold",
        },
        "best_threshold": predictor.best_threshold,
        "epoch": predictor.epoch,
        "tta": predictor.tta,
        "tta_scales": predictor.tta_scales,
        "tta_rule": TTA,
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
