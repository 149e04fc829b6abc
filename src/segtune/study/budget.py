"""``segtune init --budget``: a starting study that fits a time budget on this machine.

A :class:`Start` is what ``init`` decides (encoder, page size, resize, epochs, pages
per epoch, grid, race seeds). Its time comes from :class:`CostModel`: each candidate
encoder's training step and validation pass are timed once on real pages at a reference
page size (the plan's own probe), scaled by the pixels a run trains and validates, and
priced with the plan's formula (:func:`segtune.study.plan.run_seconds`) for every run
the study can make (a race that drops nothing). :func:`fit` walks a fixed ladder of cuts,
each the next cheapest loss of quality, until the estimate fits; every cut is a line
saying what changed and what it saved.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from segtune.core.config import RunConfig, build_run_config
from segtune.core.errors import ConfigError
from segtune.data.io import image_size
from segtune.data.layout import Picture
from segtune.data.tiles import page_origins, resized_shape

ENCODERS = ("resnet34", "resnet18", "mobilenet_v2")
REFERENCE_PAGE = 128
BATCH = 8
MIN_PAGES_PER_EPOCH = 4 * BATCH
LARGE_PLAN_S = 4 * 3600  # without --budget, a plan above this names what would cut it


def parse_duration(text: str) -> float:
    """``2h``, ``30m``, ``90min``, ``1h30m``, ``45s``, ``1.5h`` → seconds."""
    units = {"h": 3600, "hr": 3600, "m": 60, "min": 60, "s": 1, "sec": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text.strip().lower())
    rebuilt = "".join(f"{n}{u}" for n, u in parts)
    if not parts or rebuilt != re.sub(r"\s+", "", text.strip().lower()):
        raise ConfigError(f"--budget {text!r}: expected a duration such as 2h, 30m or 1h30m")
    if any(u not in units for _, u in parts):
        raise ConfigError(f"--budget {text!r}: units are h, m (or min) and s")
    seconds = sum(float(n) * units[u] for n, u in parts)
    if seconds < 60:
        raise ConfigError(f"--budget {text!r}: at least a minute")
    return seconds


@dataclass(frozen=True)
class Start:
    """What ``init`` writes into a spec."""

    encoder: str
    page_size: int
    scale: float | None
    epochs: int
    pages_per_epoch: int | None
    pos_weights: tuple[float, ...]
    bce_weights: tuple[float, ...]
    max_seeds: int

    @property
    def configs(self) -> int:
        return len(self.pos_weights) * len(self.bce_weights)

    @property
    def runs(self) -> int:
        """Every run the study can make: the grid, and every race seed (none dropped)."""
        return self.configs * self.max_seeds


@dataclass(frozen=True)
class EncoderCost:
    step_s: float  # one training step of BATCH pages of REFERENCE_PAGE px
    val_s_per_mp: float  # validation, per megapixel the network sees
    overhead_s: float  # per run: building the model, writing checkpoints


@dataclass
class CostModel:
    """A study's time on one worker for any :class:`Start`, from a probe per encoder."""

    config: RunConfig  # the spec's fixed settings (data, masks, precision, device)
    train_sizes: list[tuple[int, int]]
    val_sizes: list[tuple[int, int]]
    costs: dict[str, EncoderCost]

    def pages_per_epoch(self, start: Start) -> int:
        pages = 0
        for h, w in self.train_sizes:
            rh, rw = resized_shape(h, w, start.scale, None)
            pages += len(page_origins(rh, rw, start.page_size, start.page_size // 8))
        return pages if start.pages_per_epoch is None else min(pages, start.pages_per_epoch)

    def run_seconds(self, start: Start) -> float:
        from segtune.study.plan import DataStats, Probe, run_seconds

        cost = self.costs[start.encoder]
        pixels = (start.page_size / REFERENCE_PAGE) ** 2
        seen = (start.scale or 1.0) ** 2  # validation: the pixels the network sees
        val_pixels = sum(h * w for h, w in self.val_sizes)
        data = DataStats(
            train_pictures=len(self.train_sizes),
            val_pictures=len(self.val_sizes),
            pages_per_epoch=self.pages_per_epoch(start),
            mean_valid_share=1.0,
            small_pictures=0,
            positive_fraction=0.0,
            pictures_with_positives=0.0,
            page_positive_share=0.0,
            cache_gb=0.0,
            val_pixels=val_pixels,
        )
        config = self.config.model_copy(
            update={"optim": self.config.optim.model_copy(update={"epochs": start.epochs})}
        )
        probe = Probe(cost.step_s * pixels, cost.val_s_per_mp * seen, 0.0, "")
        return run_seconds(config, data, probe) + cost.overhead_s

    def study_seconds(self, start: Start) -> float:
        return self.run_seconds(start) * start.runs


def reference_costs(
    config: RunConfig,
    train: list[Picture],
    val: list[Picture],
    encoders: tuple[str, ...] = ENCODERS,
    say: Callable[[str], None] | None = None,
    page_size: int = REFERENCE_PAGE,
    scale: float | None = None,
) -> dict[str, EncoderCost]:
    """Each encoder's step and validation, timed by the plan's probe at ``page_size`` px
    pages (``scale``: resized pictures) and a batch of BATCH, expressed at
    REFERENCE_PAGE px pages and the picture's own size."""
    from segtune.study.plan import probe

    out = {}
    for encoder in encoders:
        if say is not None:
            say(f"timing {encoder} on {page_size} px pages")
        tree = config.model_dump(mode="json")
        tree["model"]["encoder"] = encoder
        tree["pages"].update(page_size=page_size, patch_overlap=page_size // 8)
        tree["pages"]["resize"] = None if scale is None else {"scale": scale}
        tree["optim"].update(batch_size=BATCH, micro_batch_size=None)
        measured = probe(build_run_config(tree, "init"), train, val, steps=3, passes=1)
        out[encoder] = EncoderCost(
            measured.seconds_per_step * (REFERENCE_PAGE / page_size) ** 2,
            measured.seconds_per_val_megapixel / (scale or 1.0) ** 2,
            measured.run_overhead_s,
        )
    return out


def sizes(pictures: list[Picture]) -> list[tuple[int, int]]:
    return [image_size(p.image) for p in pictures]


Cut = tuple[str, str, Callable[[Start, CostModel], Start | None]]  # spec key, words, cut


def _encoder(to: str) -> Callable[[Start, CostModel], Start | None]:
    def cut(s: Start, _: CostModel) -> Start | None:
        return replace(s, encoder=to) if ENCODERS.index(s.encoder) < ENCODERS.index(to) else None

    return cut


def _cap_pages(cap: int) -> Callable[[Start, CostModel], Start | None]:
    def cut(s: Start, m: CostModel) -> Start | None:
        return replace(s, pages_per_epoch=cap) if m.pages_per_epoch(s) > cap else None

    return cut


def _seeds(to: int) -> Callable[[Start, CostModel], Start | None]:
    return lambda s, _: replace(s, max_seeds=to) if s.max_seeds > to else None


def _grid(pos: int, bce: tuple[float, ...]) -> Callable[[Start, CostModel], Start | None]:
    def cut(s: Start, _: CostModel) -> Start | None:
        if s.configs <= pos * len(bce):
            return None
        weights = s.pos_weights
        picked = tuple(weights[round(i * (len(weights) - 1) / (pos - 1))] for i in range(pos))
        return replace(s, pos_weights=picked, bce_weights=bce)

    return cut


def _half_size(s: Start, m: CostModel) -> Start | None:
    """Pictures at half their size, while the median picture still covers a page."""
    scale = (s.scale or 1.0) / 2
    shorter = sorted(min(h, w) for h, w in m.train_sizes)[len(m.train_sizes) // 2]
    return replace(s, scale=scale) if shorter * scale >= s.page_size else None


def _epochs(to: int) -> Callable[[Start, CostModel], Start | None]:
    return lambda s, _: replace(s, epochs=to) if s.epochs > to else None


# Each the next cheapest loss: a smaller encoder, fewer pages an epoch (a different share
# every epoch), fewer race seeds, a coarser grid, smaller pictures, fewer epochs.
LADDER: tuple[Cut, ...] = (
    ("encoder", "encoder resnet18", _encoder("resnet18")),
    ("pages_per_epoch", "at most 2000 pages an epoch", _cap_pages(2000)),
    ("race", "race up to 3 seeds", _seeds(3)),
    ("encoder", "encoder mobilenet_v2", _encoder("mobilenet_v2")),
    ("grid", "grid of 3 pos_weight × 2 bce_weight", _grid(3, (0.2, 0.8))),
    ("scale", "pictures at half size", _half_size),
    ("epochs", "3 epochs", _epochs(3)),
    ("pages_per_epoch", "at most 500 pages an epoch", _cap_pages(500)),
    ("grid", "grid of 2 pos_weight × 2 bce_weight", _grid(2, (0.2, 0.8))),
    ("race", "race up to 2 seeds", _seeds(2)),
    ("epochs", "2 epochs", _epochs(2)),
)


@dataclass
class Fitted:
    start: Start
    seconds: float
    lines: list[tuple[str, str]]  # (spec key, what changed and what it saved)
    fits: bool


def _words(seconds: float) -> str:
    from segtune.study.plan import duration_words

    return duration_words(seconds)


def fit(start: Start, model: CostModel, budget: float) -> Fitted:
    """Cut ``start`` down the ladder until its estimate fits ``budget``; the last cut
    caps the pages an epoch to what fits (never below MIN_PAGES_PER_EPOCH)."""
    lines: list[tuple[str, str]] = []
    seconds = model.study_seconds(start)
    for key, name, cut in LADDER:
        if seconds <= budget:
            break
        smaller = cut(start, model)
        if smaller is None:
            continue
        after = model.study_seconds(smaller)
        lines.append((key, f"{name}: {_words(seconds)} → {_words(after)}"))
        start, seconds = smaller, after
    if seconds > budget:
        pages = model.pages_per_epoch(start)
        share = budget / seconds
        cap = max(MIN_PAGES_PER_EPOCH, math.floor(pages * share * 0.95 / BATCH) * BATCH)
        if cap < pages:
            smaller = replace(start, pages_per_epoch=cap)
            after = model.study_seconds(smaller)
            words = f"at most {cap} pages an epoch: {_words(seconds)} → {_words(after)}"
            lines.append(("pages_per_epoch", words))
            start, seconds = smaller, after
    return Fitted(start, seconds, lines, seconds <= budget)


def biggest_cuts(start: Start, model: CostModel, most: int = 3) -> list[str]:
    """The ``most`` single cuts of the ladder that save the most, each with its effect."""
    before = model.study_seconds(start)
    effects = []
    for _, name, cut in LADDER:
        smaller = cut(start, model)
        if smaller is not None:
            effects.append((model.study_seconds(smaller), name))
    effects.sort()
    return [f"{name}: {_words(before)} → {_words(after)}" for after, name in effects[:most]]


def budgeted_start(
    config: RunConfig,
    train: list[Picture],
    val: list[Picture],
    start: Start,
    budget: float | None,
    say: Callable[[str], None] | None = None,
    budget_words: str | None = None,
) -> tuple[Start, dict[str, str], list[str]]:
    """The start to write, a comment per changed choice, and the lines to print: with a
    ``budget``, what was cut to fit it; without, the estimate and the biggest cuts when
    it exceeds LARGE_PLAN_S (else just the estimate)."""
    costs = reference_costs(config, train, val, (start.encoder,), say)
    model = CostModel(config, sizes(train), sizes(val), costs)
    from segtune.core.runtime import resolve_device

    device = str(resolve_device(config.runtime.device))
    seconds = model.study_seconds(start)
    if budget is None and seconds <= LARGE_PLAN_S:
        return start, {}, [f"estimated {_words(seconds)} on {device} with one worker"]
    others = tuple(e for e in ENCODERS if e != start.encoder)
    model.costs.update(reference_costs(config, train, val, others, say))
    if budget is None:
        lines = [
            f"estimated {_words(seconds)} on {device} with one worker ({start.runs} runs at "
            f"most); what cuts it most (or give --budget, e.g. --budget 2h):"
        ]
        return start, {}, lines + [f"  {c}" for c in biggest_cuts(start, model)]
    fitted = fit(start, model, budget)
    # Time the chosen encoder at the chosen pages (a step does not scale exactly with
    # its pixels) and fit again from there.
    chosen, estimated = fitted.start, fitted.seconds
    model.costs.update(
        reference_costs(config, train, val, (chosen.encoder,), say, chosen.page_size, chosen.scale)
    )
    retimed = model.study_seconds(chosen)
    again = fit(chosen, model, budget)
    cuts = list(fitted.lines)
    if _words(retimed) != _words(estimated):
        note = f"{chosen.encoder} timed on {chosen.page_size} px pages: {_words(estimated)} → "
        cuts.append(("", note + _words(retimed)))
    fitted = Fitted(again.start, again.seconds, cuts + again.lines, again.fits)
    why: dict[str, str] = {}
    said = budget_words or _words(budget)
    for key, words in fitted.lines:
        if key:  # a cut (not a re-timing): a comment on the spec line it changed
            why[key] = f"--budget {said}: {words}"
    out = [f"--budget {said} on {device}: {words}" for _, words in fitted.lines]
    verdict = "fits" if fitted.fits else "still exceeds it: the smallest start of the ladder"
    out.append(
        f"estimated {_words(fitted.seconds)} with one worker ({fitted.start.runs} runs at "
        f"most), {verdict}"
    )
    return fitted.start, why, out
