"""Predict a mask with a model from `segtune export --format onnx`, without segtune.

Needs numpy, Pillow and onnxruntime only: everything else (page placement, the blend
window, resizing, test-time views, the threshold) is read from the metadata segtune
stores in the file. Reproduces `segtune predict` within 1e-5 (a test runs this script
with segtune made unimportable).

    python onnx_predict.py model.onnx picture.png mask.png [--threshold 0.5] [--npy prob.npy]

8-bit pictures with the default reading (no channel selection, no intensity window);
other readings are described in the metadata's reading.to_rgb.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnxruntime as ort
from PIL import Image


def read_rgb(path: str) -> np.ndarray:
    """A picture as uint8 RGB (H, W, 3): grey repeated in three channels, alpha dropped."""
    arr = np.asarray(Image.open(path))
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] in (1, 2):
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3].astype(np.uint8))


def origins(length: int, page: int, overlap: int) -> list[int]:
    """Page starts along one axis: every stride, the last one flush with the border."""
    if length <= page:
        return [0]
    starts = list(range(0, length - page, page - overlap))
    return [*starts, length - page]


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    shape = (max(1, round(h * factor)), max(1, round(w * factor)))
    if shape == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize(shape[::-1], Image.Resampling.BILINEAR))


def views(pages: np.ndarray, session: ort.InferenceSession, tta: str) -> np.ndarray:
    """(N, P, P) probabilities: the mean over the test-time views, each mapped back."""
    flips = [(), (3,), (2,), (2, 3)]
    chosen = {"none": [(False, ())], "flips": [(False, f) for f in flips]}.get(
        tta, [(t, f) for t in (False, True) for f in flips]
    )
    total = np.zeros((pages.shape[0], pages.shape[2], pages.shape[3]), np.float32)
    for transposed, dims in chosen:
        x = pages.transpose(0, 1, 3, 2) if transposed else pages
        x = np.flip(x, dims) if dims else x
        prob = session.run(None, {"pages": np.ascontiguousarray(x, np.float32)})[0]
        prob = np.flip(prob, dims) if dims else prob
        prob = prob.transpose(0, 1, 3, 2) if transposed else prob
        total += prob[:, 0]
    return total / len(chosen)


def probability_map(image: np.ndarray, session: ort.InferenceSession, meta: dict) -> np.ndarray:
    """The stitched probability map of a picture already at the network's scale."""
    pages = meta["pages"]
    size, overlap = pages["page_size"], pages["patch_overlap"]
    profile = np.asarray(pages["window"]["profile"], np.float64)
    window = np.maximum(np.outer(profile, profile), pages["window"]["floor"]).astype(np.float32)
    h, w = image.shape[:2]
    total = np.zeros((h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    corners = [(y, x) for y in origins(h, size, overlap) for x in origins(w, size, overlap)]
    for start in range(0, len(corners), 8):
        chunk = corners[start : start + 8]
        batch = np.zeros((len(chunk), size, size, 3), np.float32)
        for i, (y, x) in enumerate(chunk):
            crop = image[y : y + size, x : x + size]
            batch[i, : crop.shape[0], : crop.shape[1]] = crop  # zero padding past the border
        prob = views(batch.transpose(0, 3, 1, 2), session, meta["tta"])
        for p, (y, x) in zip(prob, chunk, strict=True):
            ph, pw = min(size, h - y), min(size, w - x)
            total[y : y + ph, x : x + pw] += p[:ph, :pw] * window[:ph, :pw]
            weight[y : y + ph, x : x + pw] += window[:ph, :pw]
    return total / weight


def predict(image: np.ndarray, session: ort.InferenceSession, meta: dict) -> np.ndarray:
    """Probabilities at the picture's own size: the mean over the test-time scales."""
    h, w = image.shape[:2]
    resize = meta["pages"]["resize"] or {}
    maps = []
    for factor in meta["tta_scales"]:
        if resize.get("scale") is not None:
            f = resize["scale"] * factor
        elif resize.get("longest_side") is not None:
            f = max(8, round(resize["longest_side"] * factor)) / max(h, w)
        else:
            f = factor
        prob = probability_map(resized(image, f), session, meta)
        if prob.shape != (h, w):
            back = Image.fromarray(prob.astype(np.float32), mode="F")
            prob = np.asarray(back.resize((w, h), Image.Resampling.BILINEAR), np.float32)
        maps.append(prob)
    return (np.sum(maps, axis=0) / len(maps)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("picture")
    parser.add_argument("mask")
    parser.add_argument("--threshold", type=float, help="default: the run's best threshold")
    parser.add_argument("--npy", help="also save the probabilities (float32 .npy)")
    args = parser.parse_args()
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["segtune"])
    prob = predict(read_rgb(args.picture), session, meta)
    threshold = args.threshold or meta["threshold"]["best"] or meta["threshold"]["default"]
    Image.fromarray(((prob >= threshold) * 255).astype(np.uint8)).save(args.mask)
    if args.npy:
        np.save(args.npy, prob)


if __name__ == "__main__":
    main()
