"""``segtune plan``: what a study will cost, and what in its spec cannot work, before
any run.

Counts come from the spec (points and runs per stage, repeats, refine/repeat stages as
upper bounds). Data statistics come from the training subset's headers and a sample of
its masks. The time estimate is measured: a few training steps on real pages at the
spec's page size, batch, micro-batch and precision, and the evaluation of one validation
picture, on this device, scaled by the pages and pictures of a run. Warnings name the key and
the numbers (:func:`spec_warnings`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from segtune.core.config import RunConfig
from segtune.core.metrics import trivially_maximised
from segtune.data.io import MaskReading, image_size
from segtune.data.layout import Picture
from segtune.data.pairs import MAJORITY, counted_mask, inverted_words, shared_pictures, shared_words
from segtune.data.tiles import page_origins, resized_shape
from segtune.study.spec import ParamValue, Range, StudySpec, grid_points

if TYPE_CHECKING:
    import torch

    from segtune.data.cache import PictureCache

MASK_SAMPLE = 20  # training masks decoded for the positive fraction
FLOAT32_EPS = float(np.finfo(np.float32).eps)


@dataclass
class StagePlan:
    name: str
    kind: str
    runs: int  # points × seeds (an upper bound for refine and repeat stages)
    note: str = ""
    least: int | None = None  # a race's fewest runs: every configuration's round 2

    @property
    def fewest(self) -> int:
        return self.runs if self.least is None else self.least


@dataclass
class DataStats:
    train_pictures: int
    val_pictures: int
    pages_per_epoch: int  # tiled pages of the training pictures (an epoch's steps × batch)
    mean_valid_share: float  # the average share of a page that is picture, not padding
    small_pictures: int  # pictures smaller than a page on some side
    positive_fraction: float  # of the sampled training masks' scored pixels
    pictures_with_positives: float  # share of the sampled training masks
    page_positive_share: float  # share of the sampled masks' pages holding a positive
    cache_gb: float  # decoded size of every picture and mask of the subsets
    val_pixels: int  # pixels of the validation pictures (evaluation cost)


@dataclass
class Probe:
    """What the plan measured on this machine: medians, and every repetition for the
    estimate's range."""

    seconds_per_step: float  # median of the timed training steps
    seconds_per_val_megapixel: float  # median of the timed validation passes
    peak_memory_mb: float
    memory_kind: str  # "CUDA peak allocated" or "process peak resident"
    largest_micro_batch: int | None = None  # when the batch does not fit (CUDA)
    step_times: list[float] = field(default_factory=list)
    val_times: list[float] = field(default_factory=list)  # seconds per megapixel
    loader_seconds: float = 0.0  # producing one batch (sampling, augmentation) in-process
    decode_s_per_mp: float = 0.0  # decoding a picture and its mask, not yet cached
    uncached_megapixels: float = 0.0  # of the subsets' pictures, not in the cache yet
    run_overhead_s: float = 0.0  # per run: building the model, writing checkpoints
    device: str = "cpu"
    threads: int = 1
    cpus: int = 1
    load: float | None = None  # 1-minute load average at probe time (other work)


# What the probe cannot see (run start-up, per-epoch records, the study's bookkeeping):
# measured 0–17 % on top of the plan (BENCHMARKS.md, plan accuracy).
UNSEEN_SHARE = 0.15
PREVIEW_BYTES_PER_PIXEL = 3.3  # image, mask and 16-bit probability PNGs (demo: 3.2)
OVERLAY_BYTES_PER_PIXEL = 1.0  # a report overlay and its thumbnail, PNG (demo: 1.0)
CURVES_BYTES = 45_000  # a run's curves figure in the report
REPORT_BYTES = 500_000  # the report's pages, tables and study-wide figures


@dataclass(frozen=True)
class Estimate:
    """The study's time on one worker: a range and its centre, in seconds."""

    low: float
    centre: float
    high: float
    per_run: float
    decode: float  # once per host: decoding pictures not yet cached


@dataclass
class Plan:
    spec: StudySpec
    stages: list[StagePlan]
    data: DataStats
    warnings: list[str]
    probe: Probe | None = None
    model_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return sum(s.runs for s in self.stages)

    def seconds_per_run(self) -> float | None:
        if self.probe is None:
            return None
        return run_seconds(self.spec.run_config({}), self.data, self.probe)

    @property
    def fewest_runs(self) -> int:
        return sum(s.fewest for s in self.stages)

    def estimate(self) -> Estimate | None:
        """Low: the fastest repetitions and the fewest runs (a race that drops what it
        can at its first look); centre: the medians, every planned run and the probe's
        overheads; high: the slowest repetitions, every run, and ``UNSEEN_SHARE`` for
        what the probe cannot see."""
        p = self.probe
        if p is None:
            return None
        c = self.spec.run_config({})
        steps = p.step_times or [p.seconds_per_step]
        vals = p.val_times or [p.seconds_per_val_megapixel]

        def per_run(step: float, val: float) -> float:
            return run_seconds(c, self.data, p, step + p.loader_seconds, val) + p.run_overhead_s

        centre_run = per_run(p.seconds_per_step, p.seconds_per_val_megapixel)
        decode = p.decode_s_per_mp * p.uncached_megapixels
        low = per_run(min(steps), min(vals)) * self.fewest_runs + decode
        high = per_run(max(steps), max(vals)) * (1 + UNSEEN_SHARE) * self.runs + decode
        centre = centre_run * self.runs + decode
        return Estimate(low, centre, high, centre_run, decode)

    def disk_bytes(self) -> tuple[float, float, float]:
        """(run records, previews, report) in bytes for every planned run."""
        c = self.spec.run_config({})
        mean_val = self.data.val_pixels / max(self.data.val_pictures, 1)
        shown = min(c.eval.preview_pictures, self.data.val_pictures)
        previews = shown * mean_val * PREVIEW_BYTES_PER_PIXEL
        report = REPORT_BYTES + self.runs * (
            CURVES_BYTES + 2 * shown * mean_val * OVERLAY_BYTES_PER_PIXEL
        )
        return self.model_mb * 2**20 * self.runs, previews * self.runs, report

    def lines(self) -> list[str]:
        c = self.spec.run_config({})
        out = [f"plan of study {self.spec.name}:"]
        for s in self.stages:
            out.append(f"  stage {s.name} ({s.kind}): {s.runs} run(s){s.note}")
        out.append(
            f"  {self.runs} run(s) of {c.optim.epochs} epoch(s); each epoch "
            f"{self.data.pages_per_epoch} pages of {c.pages.page_size} px from "
            f"{self.data.train_pictures} training pictures, {self.data.val_pictures} "
            "validation pictures evaluated"
        )
        est = self.estimate()
        if self.probe is not None and est is not None:
            p = self.probe
            fewest = (
                f"; {self.fewest_runs} runs if every race drops all it can at its first look"
                if self.fewest_runs != self.runs
                else ""
            )
            load = "" if p.load is None else f", load {p.load:.1f} from other work at probe time"
            out.append(
                f"  time with one worker: about {duration_words(est.centre)} (range "
                f"{duration_words(est.low)} – {duration_words(est.high)}); "
                f"{duration_words(est.per_run)} per run{fewest}"
            )
            out.append(
                f"    assumes {p.device}, {p.threads} thread(s) of {p.cpus} CPU(s){load}; "
                f"measured {_spread(p.step_times, 's')} per step of {c.optim.batch_size} pages "
                f"({len(p.step_times)} warm steps) + {p.loader_seconds:.2g} s to load a batch, "
                f"{_spread(p.val_times, 's')} per validation megapixel "
                f"({len(p.val_times)} passes), {p.run_overhead_s:.1f} s per run to build the "
                f"model and write checkpoints"
                + (
                    f", {duration_words(est.decode)} once to decode pictures not yet cached"
                    if est.decode >= 1
                    else ""
                )
                + f"; the high end adds {UNSEEN_SHARE:.0%} for what a probe cannot see"
            )
            out.append(
                f"  memory of one step: {self.probe.peak_memory_mb:.0f} MB "
                f"({self.probe.memory_kind})"
            )
            if self.probe.largest_micro_batch is not None:
                out.append(
                    f"  the batch does not fit: optim.micro_batch_size "
                    f"{self.probe.largest_micro_batch} does"
                )
        else:
            out.append("  time and memory: not probed (segtune plan SPEC measures them)")
        records, previews, report = self.disk_bytes()
        out.append(
            f"  disk: about {(records + previews + report) / 1e6:.0f} MB in the study folder "
            f"({self.model_mb:.1f} MB model.pt and {previews / max(self.runs, 1) / 1e6:.1f} MB "
            f"of previews per run, {report / 1e6:.0f} MB report), decoded cache "
            f"{self.data.cache_gb:.2f} GB"
        )
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _spread(values: list[float], unit: str) -> str:
    """``0.29 s`` or ``0.29–0.31 s``."""
    if not values:
        return f"? {unit}"
    low, high = min(values), max(values)
    if f"{low:.2g}" == f"{high:.2g}":
        return f"{statistics.median(values):.2g} {unit}"
    return f"{low:.2g}–{high:.2g} {unit}"


def run_seconds(
    c: RunConfig,
    data: DataStats,
    probe: Probe,
    step_s: float | None = None,
    val_s_per_mp: float | None = None,
) -> float:
    """One run's time from the probe (or the given step and validation times): its
    steps, a validation every epoch, each training-split pass, and (at most) an earlier
    kept epoch's second passes."""
    step_s = probe.seconds_per_step if step_s is None else step_s
    val_s_per_mp = probe.seconds_per_val_megapixel if val_s_per_mp is None else val_s_per_mp
    steps = math.ceil(data.pages_per_epoch / c.optim.batch_size)
    megapixels = data.val_pixels / 1e6
    # The training-split pass: its pictures, priced as validation's average picture.
    share = c.eval.train_eval_count(data.train_pictures, data.val_pictures) / max(
        data.val_pictures, 1
    )
    passes = sum(c.eval.train_pass_due(e, c.optim.epochs) for e in range(1, c.optim.epochs + 1))
    evals = c.optim.epochs + passes * share  # validation every epoch
    if c.eval.select == "best" and c.optim.epochs > 1:  # at most: an earlier kept epoch
        # validated and passed again
        evals += 1 + share
    return c.optim.epochs * steps * step_s + evals * megapixels * val_s_per_mp


def duration_words(seconds: float) -> str:
    """``45 s``, ``3.5 min``, ``42 min``, ``3.5 h``: a plan's durations (a tenth of a
    minute below 20 minutes, so a range of a few minutes reads as one)."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 1200:
        return f"{seconds / 60:.1f} min"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def stage_plans(spec: StudySpec) -> list[StagePlan]:
    """Runs per stage: exact for grid and tpe stages, upper bounds for derived ones."""
    out = []
    for stage in spec.stages:
        if stage.grid is not None:
            runs = len(grid_points(stage.grid)) * spec.repeats
            note = (
                f" ({len(grid_points(stage.grid))} points × {spec.repeats} seeds)"
                if (spec.repeats > 1)
                else ""
            )
            out.append(StagePlan(stage.name, "grid", runs, note))
        elif stage.tpe is not None:
            runs = stage.tpe.n_trials
            out.append(StagePlan(stage.name, "tpe", runs))
        elif stage.refine is not None:
            source = spec.stage(stage.refine.from_)
            grid = source.grid or {}
            free = [k for k in grid if k not in stage.refine.fixed]
            # each free key: its value and the midpoints to its neighbours (≤ 3 values)
            local = math.prod(min(3, len(grid[k])) for k in free)
            runs = stage.refine.top_k * local * spec.repeats
            note = (
                f": up to {runs}, known when {source.name} finishes (identical points are "
                "reused, not retrained)"
            )
            out.append(StagePlan(stage.name, "refine", runs, note))
        elif stage.repeat is not None:
            runs = stage.repeat.top_k * stage.repeat.seeds
            r = stage.repeat
            note = f" (the {r.top_k} best of {r.from_} × {r.seeds} new seeds)"
            out.append(StagePlan(stage.name, "repeat", runs, note))
        else:
            assert stage.race is not None
            race = stage.race
            origin = next(p for p in out if p.name == race.from_)
            configs = origin.runs // (spec.repeats if origin.kind in ("grid", "refine") else 1)
            runs = configs * (race.max_seeds - 1)
            if race.budget_runs is not None:
                runs = min(runs, race.budget_runs)
            note = (
                f": up to {runs} ({configs} configurations of {race.from_} × up to "
                f"{race.max_seeds - 1} new seed{'s' if race.max_seeds > 2 else ''}; fewer as "
                "configurations are dropped)"
            )
            out.append(StagePlan(stage.name, "race", runs, note, least=min(configs, runs)))
    return out


def data_stats(config: RunConfig, train: list[Picture], val: list[Picture]) -> DataStats:
    """Page counts from the headers; positives from a sample of the training masks."""
    r = config.pages.resize
    scale, longest = (r.scale, r.longest_side) if r else (None, None)
    size, overlap = config.pages.page_size, config.pages.patch_overlap
    sizes = {p.image: image_size(p.image) for p in [*train, *val]}  # headers, read once
    pages, valid, small = 0, 0.0, 0
    for pic in train:
        h, w = resized_shape(*sizes[pic.image], scale, longest)
        origins = page_origins(h, w, size, overlap)
        pages += len(origins)
        valid += sum(min(size, h - y) * min(size, w - x) for y, x in origins) / size**2
        small += h < size or w < size
    cache_bytes = sum(h * w * 4 for h, w in sizes.values())  # RGB + mask
    val_pixels = sum(h * w for h, w in (sizes[p.image] for p in val))
    sample = train[:: max(1, len(train) // MASK_SAMPLE)][:MASK_SAMPLE]
    positives, pixels, with_pos, page_pos, page_all = 0, 0, 0, 0, 0
    masks = MaskReading(
        config.data.ignore_value, config.data.mask_threshold, config.data.invert_masks
    )
    for pic in sample:
        mask, counted = counted_mask(pic, masks)  # as the loss and metrics count them
        positives += int(mask.sum())
        pixels += counted
        with_pos += bool(mask.any())
        # The pages as training cuts them, after pages.resize, in the mask's pixels.
        h, w = mask.shape
        rh, rw = resized_shape(h, w, scale, longest)
        for y, x in page_origins(rh, rw, size, overlap):
            page_all += 1
            rows = slice(y * h // rh, -(-(y + size) * h // rh))
            cols = slice(x * w // rw, -(-(x + size) * w // rw))
            page_pos += bool(mask[rows, cols].any())
    return DataStats(
        train_pictures=len(train),
        val_pictures=len(val),
        pages_per_epoch=min(pages, config.optim.pages_per_epoch or pages),
        mean_valid_share=valid / max(pages, 1),
        small_pictures=small,
        positive_fraction=positives / max(pixels, 1),
        pictures_with_positives=with_pos / max(len(sample), 1),
        page_positive_share=page_pos / max(page_all, 1),
        cache_gb=cache_bytes / 1e9,
        val_pixels=val_pixels,
    )


def _searched_values(spec: StudySpec, key: str) -> list[float]:
    values: list[float] = []
    for stage in spec.stages:
        if stage.grid is not None and key in stage.grid:
            values += [float(v) for v in stage.grid[key] if _number(v)]
        if stage.tpe is not None and key in stage.tpe.ranges:
            rng = stage.tpe.ranges[key]
            if isinstance(rng, Range):
                values += [rng.low, rng.high]
            else:
                values += [float(v) for v in rng if _number(v)]
    return values


def _number(v: ParamValue) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def spec_warnings(spec: StudySpec, data: DataStats) -> list[str]:
    """What in the spec cannot work on this data, naming the key and the numbers."""
    c = spec.run_config({})
    out: list[str] = []
    batch_pixels = c.optim.batch_size * c.pages.page_size**2 * data.mean_valid_share
    positives = data.positive_fraction * batch_pixels  # Σy of a typical batch
    smooth = sorted(set(_searched_values(spec, "loss.dice_smooth")))
    if len(smooth) > 1 and positives > 0:
        # Σp + Σy of a batch with positives is at least Σy; float32 resolves s only when
        # it changes that sum by more than half an ulp.
        ulp = FLOAT32_EPS * 2 ** math.floor(math.log2(max(positives, 1e-30)))
        if max(smooth) < ulp / 2:
            empty = (1 - data.page_positive_share) ** c.optim.batch_size
            when = (
                f"sampling.positive_fraction {c.sampling.positive_fraction:g} puts positive "
                "pages in every batch, so that never happens"
                if c.sampling.positive_fraction > 0
                else f"about {empty:.1%} of batches hold no positive page"
            )
            out.append(
                f"loss.dice_smooth: the values {', '.join(f'{v:g}' for v in smooth)} cannot "
                f"change the loss of a batch holding positive pixels: a batch of "
                f"{c.optim.batch_size} pages of {c.pages.page_size} px with positive "
                f"fraction {data.positive_fraction:.2%} sums Σy ≈ {positives:.3g}, where "
                f"float32 resolves steps of {ulp:.3g}; dice_smooth matters only in a batch "
                f"without positives whose predictions are all near 0 ({when}); these runs "
                "repeat each other up to noise"
            )
    trivial = trivially_maximised(spec.objective.metric)
    if trivial is not None:
        out.append(
            f"objective {spec.objective.metric}: {trivial}; rank by val/f1, val/ap or "
            "val/best_f1 (recall stays in the report beside it)"
        )
    f = data.positive_fraction
    if f > MAJORITY:
        out.append(f"data: {inverted_words(f, c.data.invert_masks)}")
    weights = _searched_values(spec, "loss.pos_weight") or [c.loss.pos_weight]
    if 0 < f < 1:
        ratio = (1 - f) / f
        if max(weights) < ratio / 10:
            out.append(
                f"loss.pos_weight: the largest value {max(weights):g} is far below the data's "
                f"imbalance (1 − f)/f = {ratio:.3g} (positive fraction {f:.2%})"
            )
        elif min(weights) > ratio * 10:
            out.append(
                f"loss.pos_weight: the smallest value {min(weights):g} far exceeds the data's "
                f"imbalance (1 − f)/f = {ratio:.3g} (positive fraction {f:.2%})"
            )
    if data.small_pictures:
        out.append(
            f"pages.page_size {c.pages.page_size}: {data.small_pictures} training picture(s) "
            "are smaller than a page on some side (their pages are mostly padding)"
        )
    if data.mean_valid_share < 0.5:
        out.append(
            f"pages.page_size {c.pages.page_size}: pages are {1 - data.mean_valid_share:.0%} "
            "padding on average; a smaller page (or pages.resize) wastes less compute"
        )
    if c.sampling.positive_fraction > 0 and data.pictures_with_positives == 0:
        out.append(
            f"sampling.positive_fraction {c.sampling.positive_fraction:g}: none of the "
            f"{min(MASK_SAMPLE, data.train_pictures)} sampled training masks holds a positive "
            "pixel, so no positive page can be supplied"
        )
    return out


def largest_fitting_micro_batch(try_step: Callable[[int], None], batch: int) -> int | None:
    """The largest micro-batch (halving from ``batch``) for which ``try_step`` does not
    run out of memory; None when not even 1 fits. ``try_step`` raises MemoryError or
    torch's OutOfMemoryError when a size does not fit."""
    import torch

    size = batch
    while size >= 1:
        try:
            try_step(size)
            return size
        except (MemoryError, torch.cuda.OutOfMemoryError):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size //= 2
    return None


def probe(
    config: RunConfig,
    train: list[Picture],
    val: list[Picture],
    steps: int = 5,
    passes: int = 3,
    say: Callable[[str], None] | None = None,
) -> Probe:
    """Time ``steps`` warm training steps on real pages, loading a batch, ``passes``
    validation passes over one picture, building the model and writing a checkpoint,
    and decoding a picture; ``say`` hears what is being timed."""
    import os
    import resource

    import torch

    from segtune.core.runtime import autocast_dtype, place_model, resolve_device
    from segtune.data.cache import open_cache
    from segtune.engine.average import WeightAverage
    from segtune.engine.model import build_model
    from segtune.engine.step import batch_forward, step_gradients

    tell = say or (lambda _: None)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    device = resolve_device(config.runtime.device)
    amp_dtype = autocast_dtype(config.runtime.precision, device)  # timed as the run computes
    cache = open_cache(config.data)
    uncached = _uncached_megapixels(cache, config, [*train, *val])
    tell("decoding a picture")
    decode = _decode_seconds_per_mp(config, train[0])
    batch = config.optim.batch_size
    tell("building the model")
    t0 = time.perf_counter()
    model = place_model(build_model(config.model), device, config.runtime.channels_last)
    build_s = time.perf_counter() - t0
    images, targets, valid = _probe_batch(config, train, cache)
    loader_s = _loader_seconds(config, train, cache)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.learning_rate)
    decay = config.optim.ema_decay
    average = WeightAverage(model, decay) if decay else None
    forward = batch_forward(model, images, targets, valid, device, amp_dtype)

    def backward(term: torch.Tensor) -> None:
        term.backward()

    def step(micro: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        step_gradients(model, forward, batch, micro, valid, config, backward)
        optimizer.step()
        if average is not None:
            average.update(model)
        if device.type == "cuda":
            torch.cuda.synchronize()

    micro = config.optim.micro_batch_size or batch
    largest = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        fits = largest_fitting_micro_batch(step, micro)
        if fits != micro:
            largest, micro = fits, fits or 1
    tell(f"timing {steps} training steps of {batch} pages")
    step(micro)  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(micro)
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        memory, kind = torch.cuda.max_memory_allocated() / 2**20, "CUDA peak allocated"
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        kind = "process peak resident"
    tell(f"timing {passes} validation passes")
    val_times = [
        _validation_seconds_per_mp(model, config, val[0], cache, device, amp_dtype, micro)
        for _ in range(passes + 1)
    ][1:]  # the first pass warms up (its kernels, its pages)
    checkpoint_s = _checkpoint_seconds(model, optimizer)
    epochs = config.optim.epochs
    return Probe(
        statistics.median(times),
        statistics.median(val_times),
        memory,
        kind,
        largest,
        step_times=times,
        val_times=val_times,
        loader_seconds=loader_s if config.runtime.num_workers == 0 else 0.0,
        decode_s_per_mp=decode,
        uncached_megapixels=uncached,
        run_overhead_s=build_s + checkpoint_s * (epochs + 1),
        device=str(device),
        threads=torch.get_num_threads(),
        cpus=os.cpu_count() or 1,
        load=load,
    )


def _uncached_megapixels(cache: PictureCache, config: RunConfig, pictures: list[Picture]) -> float:
    """Megapixels of the pictures whose decoded image is not in the cache yet (decoded
    once per host, by the first run that reads them)."""
    r = config.pages.resize
    scale, longest = (r.scale, r.longest_side) if r else (None, None)
    total = 0.0
    for pic in pictures:
        entry = cache.root / f"{cache.key(pic.image, 'image', scale, longest)}.npy"
        if not entry.exists():
            h, w = image_size(pic.image)
            total += h * w / 1e6
    return total


def _decode_seconds_per_mp(config: RunConfig, picture: Picture) -> float:
    """Reading, converting and resizing one picture and its mask, per megapixel."""
    from segtune.data.io import ImageReading, read_image, read_mask
    from segtune.data.tiles import resize_image

    masks = MaskReading(
        config.data.ignore_value, config.data.mask_threshold, config.data.invert_masks
    )
    t0 = time.perf_counter()
    image = read_image(picture.image, ImageReading())
    if picture.mask is not None:
        read_mask(picture.mask, masks)
    r = config.pages.resize
    if r is not None:
        h, w = image.shape[:2]
        resize_image(image, resized_shape(h, w, r.scale, r.longest_side))
    h, w = image.shape[:2]
    return (time.perf_counter() - t0) / (h * w / 1e6)


def _loader_seconds(
    config: RunConfig, train: list[Picture], cache: PictureCache, batches: int = 3
) -> float:
    """Seconds the run's own loader takes to sample, cut and augment one batch of the
    first training pictures (in-process, as with runtime.num_workers 0)."""
    from segtune.data.pages import load_split, page_loader

    loaded = load_split(train[: max(1, min(len(train), 4))], cache, config.pages)
    loader, sampler = page_loader(
        loaded,
        config.model_copy(update={"runtime": config.runtime.model_copy(update={"num_workers": 0})}),
        pin_memory=False,
    )
    times: list[float] = []
    epoch = 0
    while len(times) < batches:
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        for _ in loader:
            times.append(time.perf_counter() - t0)
            if len(times) >= batches:
                break
            t0 = time.perf_counter()
        epoch += 1
        if epoch > batches:  # an empty epoch: nothing to time
            break
    return statistics.median(times) if times else 0.0


def _checkpoint_seconds(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> float:
    """Writing the model and optimizer state once (a run writes one every epoch)."""
    import tempfile

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
            Path(tmp) / "checkpoint.pt",
        )
        return time.perf_counter() - t0


def _probe_batch(
    config: RunConfig, train: list[Picture], cache: PictureCache
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training batch (images, targets, valid pixels) of real pages of the first
    training pictures, repeated to the batch size."""
    import torch

    from segtune.data.pages import load_split
    from segtune.data.tiles import extract_page

    loaded = load_split(train[: max(1, min(len(train), 4))], cache, config.pages)
    size, batch = config.pages.page_size, config.optim.batch_size
    pages = []
    for lp in loaded:
        h, w = lp.image.shape[:2]
        for y, x in page_origins(h, w, size, config.pages.patch_overlap):
            pages.append((lp, y, x))
    pages = (pages * math.ceil(batch / max(len(pages), 1)))[:batch]
    cut = [extract_page(lp.image, (y, x), size) for lp, y, x in pages]  # (page, valid)
    images = torch.stack([torch.from_numpy(page).permute(2, 0, 1) for page, _ in cut])
    valid = torch.stack([torch.from_numpy(v) for _, v in cut])
    targets = torch.stack(
        [torch.from_numpy(extract_page(lp.mask, (y, x), size)[0]) for lp, y, x in pages]
    )
    return images, targets, valid


def _validation_seconds_per_mp(
    model: torch.nn.Module,
    config: RunConfig,
    picture: Picture,
    cache: PictureCache,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    batch_pages: int,
) -> float:
    """Seconds per megapixel of the validation pass, timed on ``picture``."""
    from segtune.engine.infer import predict_at_scales

    h, w = image_size(picture.image)

    def image_at(factor: float) -> NDArray[np.uint8]:
        return np.asarray(cache.image(picture.image, *config.pages.resize_at(factor)))

    for factor in config.eval.tta_scales:  # decoded once, as in training's later epochs
        image_at(factor)
    t0 = time.perf_counter()
    predict_at_scales(
        model,
        image_at,
        (h, w),
        config.pages,
        device,
        scales=config.eval.tta_scales,
        amp_dtype=amp_dtype,
        batch_pages=batch_pages,
        tta=config.eval.tta,
    )
    return (time.perf_counter() - t0) / (h * w / 1e6)


def make_plan(
    spec: StudySpec, *, measure: bool = True, device: str | None = None, progress: bool = False
) -> Plan:
    """The plan of a study; ``measure`` runs the timed probe on ``device`` (default: the
    spec's); ``progress``: a line on stderr for each thing timed, and every few seconds."""
    import sys

    from segtune.core.progress import Heartbeat
    from segtune.core.runtime import precision_note, resolve_device
    from segtune.data.subsets import resolve_subsets

    config = spec.run_config({})
    if device is not None:
        config = config.model_copy(
            update={"runtime": config.runtime.model_copy(update={"device": device})}
        )
    subsets = resolve_subsets(config.data)
    data = data_stats(config, subsets.train, subsets.val)
    plan = Plan(spec, stage_plans(spec), data, spec_warnings(spec, data))
    shared = shared_pictures(subsets.train, subsets.val)
    if shared:
        plan.warnings.append(shared_words(shared, "validation", "training"))
    if measure:

        def say(what: str) -> None:
            if progress:
                print(f"plan: {what}…", file=sys.stderr, flush=True)

        with Heartbeat("plan: probing", progress):
            plan.probe = probe(config, subsets.train, subsets.val, say=say)
        note = precision_note(config.runtime.precision, resolve_device(config.runtime.device))
        if note:
            plan.warnings.append(note.removeprefix("note: "))
    plan.model_mb = _model_mb(config)
    return plan


def _model_mb(config: RunConfig) -> float:
    from segtune.engine.model import build_model

    model = build_model(config.model.model_copy(update={"encoder_weights": None}))
    return sum(p.numel() * 4 for p in model.state_dict().values()) / 2**20
