"""Predicting masks for new pictures of any size with a trained checkpoint."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from pydantic import ValidationError
from torch import nn

from segtune.core.config import EvalConfig, RunConfig, build_run_config
from segtune.core.errors import ConfigError, DataError, SegtuneError
from segtune.core.progress import Progress
from segtune.core.records import atomic_write_bytes, tta_words
from segtune.core.runtime import autocast_dtype, place_model, resolve_device
from segtune.data.io import (
    DEFAULT_READING,
    ImageReading,
    MaskReading,
    read_image,
    read_mask,
)
from segtune.data.layout import flat_folder, regions_of_interest
from segtune.data.manifests import manifest_path, manifest_rows
from segtune.data.names import distinct_names, pictures_by_key
from segtune.data.tiles import Band, gather, resize_image, resized_shape
from segtune.engine.infer import VIEWS, probability_bands
from segtune.engine.model import build_model


@dataclass
class Predictor:
    """A trained network with the page settings of its run."""

    model: nn.Module
    config: RunConfig
    device: torch.device
    best_threshold: float | None
    reading: ImageReading = DEFAULT_READING  # channels and intensity window of the run
    epoch: int | None = None  # the epoch whose weights these are (the run's kept epoch)
    tta: str = "none"  # eval.tta of the run, unless overridden (evaluate/predict --tta)
    tta_scales: list[float] = field(default_factory=lambda: [1.0])  # eval.tta_scales
    # The kept epoch's validation values (counts, F1, …): empty for checkpoints that
    # predate segtune 0.2's model.pt metrics.
    validation: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, checkpoint: Path, device: str = "auto") -> Predictor:
        """Load a run's ``model.pt`` (weights-only), or the ``checkpoint.pt`` of an older
        or unfinished run; a run folder means its ``model.pt``."""
        if checkpoint.is_dir():
            checkpoint = checkpoint / "model.pt"
        if not checkpoint.is_file():
            raise SegtuneError(f"{checkpoint}: checkpoint not found")
        try:  # weights only: a checkpoint never runs code when it is loaded
            with warnings.catch_warnings():  # torch's pickle-protocol notes: not one line
                warnings.simplefilter("ignore")
                state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            config = build_run_config(state["config"], str(checkpoint))
        except Exception as exc:
            why = (
                "not a torch file, or one holding more than weights and plain values"
                if "weights only" in str(exc).lower() or "load key" in str(exc)
                else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            )
            raise SegtuneError(f"{checkpoint}: not a segtune checkpoint ({why})") from exc
        dev = resolve_device(device)
        model = build_model(config.model)
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as exc:
            raise SegtuneError(
                f"{checkpoint}: its weights do not fit its model config ({config.model.arch}/"
                f"{config.model.encoder}): {str(exc).strip().splitlines()[-1].strip()}"
            ) from exc
        model = place_model(model, dev, config.runtime.channels_last).eval()
        recorded = state.get("metrics") or {}
        validation = {str(k): float(v) for k, v in recorded.items() if isinstance(v, int | float)}
        best = state.get("best_threshold", validation.get("val/best_threshold"))
        epoch = state.get("epoch")
        return cls(
            model,
            config,
            dev,
            None if best is None else float(best),
            _reading(state, config),
            None if epoch is None else int(epoch),
            config.eval.tta,
            list(config.eval.tta_scales),
            validation,
        )

    def probabilities(self, image: NDArray[np.uint8], batch_pages: int = 8) -> NDArray[np.float32]:
        """Probability map at the picture's own size (resize applied and inverted; the
        mean over the test-time scales)."""
        return gather(self.bands(image, batch_pages), image.shape[:2])

    def bands(self, image: NDArray[np.uint8], batch_pages: int = 8) -> Iterator[Band]:
        """:meth:`probabilities` as row bands, top to bottom (bounded memory at one scale
        without a resize: :func:`~segtune.engine.infer.probability_bands`)."""
        h, w = image.shape[:2]
        pages = self.config.pages

        def image_at(factor: float) -> NDArray[np.uint8]:
            return resize_image(image, resized_shape(h, w, *pages.resize_at(factor)))

        return probability_bands(
            self.model,
            image_at,
            (h, w),
            pages,
            self.device,
            scales=self.tta_scales,
            batch_pages=batch_pages,
            amp_dtype=autocast_dtype(self.config.runtime.precision, self.device),
            tta=self.tta,
        )

    def augment(self, tta: str | None, scales: str | Sequence[float] | None) -> None:
        """Override the run's eval.tta / eval.tta_scales (``--tta``, ``--tta-scales``
        "0.75,1,1.25"); None keeps the run's. Bad scales: one line naming the option."""
        if tta is not None:
            if tta not in VIEWS:
                raise ConfigError(f"--tta: expected one of {', '.join(VIEWS)} (got {tta!r})")
            self.tta = tta
        if scales is None:
            return
        try:
            values = (
                [float(s) for s in scales.split(",")] if isinstance(scales, str) else list(scales)
            )
            self.tta_scales = list(EvalConfig(tta_scales=values).tta_scales)
        except (ValueError, ValidationError) as exc:
            why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise ConfigError(
                f"--tta-scales: expected distinct factors in [0.25, 4] such as 0.75,1,1.25 "
                f"({why}; got {scales!r})"
            ) from exc

    @property
    def augmentation_changed(self) -> bool:
        """Whether predictions use another test-time augmentation than the run's
        validation did (so its selected threshold is not matched to them)."""
        return (self.tta, self.tta_scales) != (self.config.eval.tta, self.config.eval.tta_scales)

    def threshold(self, value: str | float) -> float:
        if value == "best":
            if self.best_threshold is None:
                raise ConfigError(
                    "--threshold best: the checkpoint records no validation F1-best threshold "
                    "(its model collapsed on validation: its best F1 is within 1.1x of "
                    "marking every pixel, or reaching it marks over 10x the positive pixels; "
                    "or it predates segtune 0.2); give --threshold a number"
                )
            if self.augmentation_changed:
                ran = tta_words(self.config.eval.tta, self.config.eval.tta_scales)
                here = tta_words(self.tta, self.tta_scales)
                print(
                    f"warning: --threshold best was selected on validation with test-time "
                    f"augmentation {ran!r}, used here with {here!r}: the probabilities "
                    "differ, so the threshold is not matched (train with these eval.tta and "
                    "eval.tta_scales for one that is)",
                    file=sys.stderr,
                )
            return self.best_threshold
        try:
            t = float(value)
        except ValueError as exc:
            raise ConfigError(
                f"--threshold: expected a number in (0, 1) or 'best' (got {value!r})"
            ) from exc
        if not 0.0 < t < 1.0:
            raise ConfigError(f"--threshold: must be in (0, 1) (got {t})")
        return t


def _reading(state: dict[str, Any], config: RunConfig) -> ImageReading:
    """How the run read its pictures: recorded in ``model.pt``; for older checkpoints,
    from the config (a fixed window; otherwise the dtype's rule, as segtune 0.1)."""
    window = state.get("intensity_window")
    intensity = config.data.intensity
    if window is None and intensity.mode == "fixed":
        window = (intensity.low, intensity.high)
    return ImageReading(
        None if window is None else (float(window[0]), float(window[1])), config.data.channels
    )


def find_rois(items: Sequence[Path]) -> dict[Path, Path]:
    """Regions of interest of the pictures to predict: ``roi/<stem>.*`` beside a
    folder's ``images/``, or a manifest's ``roi`` column (absent: every pixel)."""
    rois: dict[Path, Path] = {}
    for item in items:
        if item.is_file() and item.suffix.lower() == ".csv":
            for _, row in manifest_rows(item, ("image",)):
                if row.get("image") and row.get("roi"):
                    image = manifest_path(item, row["image"])
                    rois[image] = manifest_path(item, row["roi"])
        elif item.is_dir() and (item / "images").is_dir() and (item / "roi").is_dir():
            images = pictures_by_key(item / "images", [])
            found = regions_of_interest(item / "roi", images, [], [])  # as training pairs them
            rois.update({images[key][0]: roi for key, roi in found.items()})
    return rois


def _pictures_of(folder: Path, problems: list[str]) -> list[Path]:
    return sorted(p for paths in pictures_by_key(folder, problems).values() for p in paths)


def collect_inputs(items: Sequence[Path], problems: list[str] | None = None) -> list[Path]:
    """Picture files named directly, found in folders (and their ``images/``), or listed
    in the ``image`` column of a CSV manifest (as training reads it; masks are ignored).
    Files in a folder that cannot be pictures (a symbolic link loop, a FIFO) are added
    to ``problems``, one line each."""
    found: list[Path] = []
    problems = [] if problems is None else problems
    for item in items:
        if item.is_file() and item.suffix.lower() == ".csv":
            found.extend(_manifest_images(item))
        elif item.is_dir():
            found.extend(_folder_images(item, problems))
        elif item.exists():
            found.append(item)
        else:
            raise DataError(f"{item}: no such file or folder")
    if not found:
        raise DataError("no pictures to predict: " + ", ".join(map(str, items)))
    unique = {path.resolve(): path for path in reversed(found)}  # a file named twice: once
    return [path for path in found if unique[path.resolve()] is path]


def _folder_images(folder: Path, problems: list[str]) -> list[Path]:
    """A folder's pictures: those of its ``images/``; else all of them but the masks
    paired with one (a folder holding images and masks, :func:`flat_folder`); a file
    whose name only looks like a mask's, with no image to pair, is predicted."""
    if (folder / "images").is_dir():
        return _pictures_of(folder / "images", problems)
    pictures = set(_pictures_of(folder, problems))
    flat = flat_folder(folder, [])
    if flat is not None:
        images, masks, _ = flat
        pictures -= {p for stem, paths in masks.items() if stem in images for p in paths}
    return sorted(pictures)


def _manifest_images(manifest: Path) -> list[Path]:
    out = []
    for line, row in manifest_rows(manifest, ("image",)):
        if not row.get("image"):
            raise DataError(f"{manifest}: line {line}: missing image field")
        out.append(manifest_path(manifest, row["image"]))
    return out


@dataclass
class PredictResult:
    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def predict_files(
    predictor: Predictor,
    inputs: Sequence[Path],
    out: Path,
    *,
    threshold: float,
    save_probabilities: int | None = None,
    overlays: bool = False,
    progress: bool = True,
    batch_pages: int = 8,
    rois: dict[Path, Path] | None = None,
) -> PredictResult:
    """Write ``<stem>.png`` masks (0/255, input size) for each picture (pictures sharing
    a stem under their folders: :func:`output_names`); a bad picture is reported and
    skipped."""
    out.mkdir(parents=True, exist_ok=True)
    result = PredictResult()
    names = output_names(inputs)
    roi_reading = MaskReading(threshold=predictor.config.data.mask_threshold)
    bar = Progress(len(inputs), "predict", "pictures", enabled=progress)
    for path in inputs:
        try:
            image = read_image(path, predictor.reading)
        except DataError as exc:
            result.errors.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
            bar.update(1)
            continue
        mask, prob = _predicted(predictor, image, batch_pages, threshold, save_probabilities)
        roi = (rois or {}).get(path)
        if roi is not None:  # nothing is predicted outside the region of interest
            try:
                mask[~read_mask(roi, roi_reading)] = 0
            except DataError as exc:
                result.errors.append(str(exc))
                print(f"error: {exc}", file=sys.stderr)
                bar.update(1)
                continue
        target = write_outputs(out, names[path], mask, prob, image if overlays else None)
        result.written.append(target)
        bar.update(1)
    bar.close()
    return result


def encoded(
    band: NDArray[np.float32], threshold: float, bits: int | None
) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | NDArray[np.uint16] | None]:
    """A probability band as written: the mask (0/255) and, with ``bits``, the 8- or
    16-bit probabilities."""
    mask = (band >= threshold) * np.uint8(255)
    if bits == 8:
        return mask, (band * 255 + 0.5).astype(np.uint8)
    if bits == 16:
        return mask, (np.clip(band, 0, 1) * 65535 + 0.5).astype(np.uint16)
    return mask, None


def write_outputs(
    out: Path,
    name: str,
    mask: NDArray[np.uint8],
    prob: NDArray[np.uint8] | NDArray[np.uint16] | None,
    overlay_of: NDArray[np.uint8] | None = None,
) -> Path:
    """``<name>.png`` (and ``<name>-prob.png``, ``<name>-overlay.png``) under ``out``."""
    target = out / f"{name}.png"
    _write_png(target, Image.fromarray(mask))
    if prob is not None:
        _write_png(out / f"{name}-prob.png", Image.fromarray(prob))
    if overlay_of is not None:
        _write_png(out / f"{name}-overlay.png", Image.fromarray(_overlay(overlay_of, mask)))
    return target


def _predicted(
    predictor: Predictor,
    image: NDArray[np.uint8],
    batch_pages: int,
    threshold: float,
    bits: int | None,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | NDArray[np.uint16] | None]:
    """The mask (0/255, as written) and (with ``bits``) the 8- or 16-bit probabilities of
    a picture, filled band by band: a huge picture never holds its float map."""
    mask = np.empty(image.shape[:2], np.uint8)
    depth = {8: np.uint8, 16: np.uint16}.get(bits or 0)
    prob = None if depth is None else np.empty(image.shape[:2], depth)
    for y, band in predictor.bands(image, batch_pages):
        rows = slice(y, y + band.shape[0])
        mask[rows], part = encoded(band, threshold, bits)
        if prob is not None and part is not None:
            prob[rows] = part
    return mask, prob


def _overlay(image: NDArray[np.uint8], mask: NDArray[np.uint8], rows: int = 1024) -> NDArray:
    """The picture darkened, predicted positives in orange; in row blocks (no float copy
    of a whole huge picture)."""
    out = np.empty_like(image)
    for y in range(0, image.shape[0], rows):
        block = image[y : y + rows].astype(np.float32) * 0.6
        block[mask[y : y + rows] > 0] = [213, 94, 0]
        out[y : y + rows] = block.astype(np.uint8)
    return out


def output_names(inputs: Sequence[Path]) -> dict[Path, str]:
    """Where each picture's outputs go, relative to the output folder and without
    ``.png``: its name as :func:`~segtune.data.layout.distinct_names` gives it, so that
    pictures sharing a stem (``cityA/0001.jpg`` and ``cityB/0001.jpg``) land under their
    folders (``cityA/0001``) and none overwrites another."""
    return distinct_names(list(dict.fromkeys(inputs)))


def _write_png(path: Path, image: Image.Image) -> None:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
