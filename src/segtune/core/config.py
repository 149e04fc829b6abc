"""Typed, frozen run configuration loaded from YAML, with ``key=value`` overrides.

Unknown keys and out-of-range values are errors naming the dotted key and the valid
range, e.g. ``loss.bce_weight: must be <= 1 (got 1.5)``.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from segtune.core.errors import ConfigError


class _Frozen(BaseModel):
    # .inf / .nan are refused naming the key (JSON records could never hold them).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Resize(_Frozen):
    """Resize applied to a picture before tiling: exactly one of the two keys."""

    scale: float | None = Field(None, gt=0, le=16)
    longest_side: int | None = Field(None, ge=8)

    @model_validator(mode="after")
    def _one_of(self) -> Resize:
        if (self.scale is None) == (self.longest_side is None):
            raise ValueError("give exactly one of resize.scale or resize.longest_side")
        return self


class IntensityConfig(_Frozen):
    """How raw values map onto the network's 0..255: ``auto`` keeps 8-bit pictures as
    they are and stretches the training pictures' observed range (min to max) for
    higher bit depths (12/16-bit microscopy would otherwise be crushed into 0..15);
    ``fixed`` maps ``low``..``high``; ``percentile`` maps the training pictures'
    ``percentiles`` (robust to hot pixels). Resolved once per run, recorded in its
    ``summary.json`` and ``model.pt``, and applied the same way by ``predict``."""

    mode: Literal["auto", "fixed", "percentile"] = "auto"
    low: float | None = None
    high: float | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)

    @model_validator(mode="after")
    def _consistent(self) -> IntensityConfig:
        if self.mode == "fixed":
            if self.low is None or self.high is None:
                raise ValueError("mode fixed needs data.intensity.low and data.intensity.high")
            if not self.low < self.high:
                raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        elif self.low is not None or self.high is not None:
            raise ValueError(f"low/high are only used with mode fixed (mode is {self.mode})")
        a, b = self.percentiles
        if not 0.0 <= a < b <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 ≤ low < high ≤ 100 (got [{a}, {b}])")
        return self


class DataConfig(_Frozen):
    train: Path | None = None
    val: Path | None = None
    train_subset: int | None = Field(None, ge=1)
    val_subset: int | None = Field(None, ge=1)
    seed: int = 0
    cache_dir: Path | None = None
    # Cap of the decoded-picture cache in GB (least recently used entries are evicted);
    # None: no cap. The cache holds the raw decoded pictures (H × W × 3 bytes each).
    cache_max_gb: float | None = Field(None, gt=0)
    # Largest picture (height × width) read; larger ones are refused naming the file.
    max_pixels: int = Field(2**31, ge=1)
    intensity: IntensityConfig = IntensityConfig()
    # Mask value of "don't care" pixels (e.g. 255 with positives 1): they never count in
    # the loss, a metric, a histogram or a per-picture count, like pixels outside a
    # picture's region of interest (roi/ folder or roi column). None: no such value.
    ignore_value: int | None = Field(None, ge=0)
    # Masks with grey or blended edges (saved as JPEG, resized with interpolation, drawn
    # anti-aliased): a pixel is positive when its value (grey level; a colour mask's
    # brightest channel) is at least this, in the file's own units (e.g. 128 of 0..255).
    # None: a mask holds 0 plus one positive value, anything else is refused.
    mask_threshold: float | None = Field(None, gt=0)
    # Masks that draw the positives black on white (document ground truth such as
    # DIBCO's: ink 0 on paper 255): positive where the mask is 0 (below mask_threshold).
    invert_masks: bool = False
    # An image without a mask (no file, or an empty manifest field): "refuse" (a problem
    # naming it) or "empty" (a picture without positives: defect-free pictures shipped
    # without a mask, as MVTec AD's good/ and most inspection datasets' negatives).
    missing_masks: Literal["refuse", "empty"] = "refuse"
    # Channels fed to the network from pictures with several: one index (replicated to
    # grey) or three (as RGB), numbered from 0, or "mean" (their mean as grey). None:
    # up to 4 channels as usual (alpha dropped); more are refused.
    channels: tuple[int, ...] | Literal["mean"] | None = None

    @field_validator("channels", mode="before")
    @classmethod
    def _mean_or_indices(cls, value: object) -> object:
        if isinstance(value, str) and value != "mean":
            raise ValueError("expected mean or a list of channel indices")
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        return value

    @field_validator("channels")
    @classmethod
    def _one_or_three(cls, value: tuple[int, ...] | str | None) -> tuple[int, ...] | str | None:
        if isinstance(value, tuple):
            if len(value) not in (1, 3):
                raise ValueError(f"give one or three channel indices (got {len(value)})")
            if min(value) < 0:
                raise ValueError("channel indices are numbered from 0")
        return value


class PagesConfig(_Frozen):
    page_size: int = Field(256, ge=16, le=16384)
    patch_overlap: int = Field(0, ge=0)
    resize: Resize | None = None
    blend: Literal["mean", "gaussian", "linear"] = "mean"

    def resize_at(self, factor: float) -> tuple[float | None, int | None]:
        """(scale, longest_side) of the resize times ``factor`` (a test-time scale)."""
        r = self.resize
        if r is None:
            return (None if factor == 1.0 else factor), None
        if r.scale is not None:
            return r.scale * factor, None
        assert r.longest_side is not None
        return None, max(8, round(r.longest_side * factor))

    @model_validator(mode="after")
    def _overlap_below_page(self) -> PagesConfig:
        if self.patch_overlap >= self.page_size:
            raise ValueError(
                f"pages.patch_overlap ({self.patch_overlap}) must be smaller than "
                f"pages.page_size ({self.page_size})"
            )
        return self


class ModelConfig(_Frozen):
    arch: str = "Unet"
    encoder: str = "resnet34"
    encoder_weights: str | None = None  # "none" / "null" (as written in YAML) mean None
    encoder_depth: int = Field(5, ge=3, le=5)
    decoder_channels: tuple[int, ...] | None = None

    @field_validator("encoder_weights")
    @classmethod
    def _none_word(cls, v: str | None) -> str | None:
        return None if v is not None and v.strip().lower() in ("none", "null", "") else v


class LossConfig(_Frozen):
    bce_weight: float = Field(0.5, ge=0.0, le=1.0)
    dice_smooth: float = Field(1e-5, ge=0.0)
    pos_weight: float = Field(1.0, gt=0.0)


class OptimConfig(_Frozen):
    epochs: int = Field(5, ge=1)
    # At most this many training pages an epoch (a different seeded share of all the
    # pages every epoch): bounds a run's time on large datasets. None: every page.
    pages_per_epoch: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    micro_batch_size: int | None = Field(None, ge=1)
    learning_rate: float = Field(1e-4, gt=0.0)
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(0.0, ge=0.0)
    grad_clip: float | None = Field(None, gt=0.0)
    # A loss above this means the run diverged (BCE of sane logits stays far below it):
    # the run stops as failed, like a non-finite loss. None disables the check.
    max_loss: float | None = Field(1e4, gt=0.0)
    # With micro-batches: back-propagate the whole batch's Dice exactly (one extra
    # forward pass, segtune.engine.step) instead of a Dice per micro-batch.
    exact_batch_dice: bool = True
    # Learning-rate schedule, stepped per optimiser step (segtune.engine.schedule).
    schedule: Literal["constant", "cosine", "poly"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0.0)
    poly_power: float = Field(0.9, gt=0.0)
    # Stop after this many epochs without improvement of eval.select_key (None: never).
    early_stop_patience: int | None = Field(None, ge=1)
    # Evaluate, select and keep an exponential moving average of the weights, updated
    # after every optimiser step with this decay (segtune.engine.average; None: the weights as
    # trained). 0.998 averages over roughly the last 500 steps.
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)


class SamplingConfig(_Frozen):
    positive_fraction: float = Field(0.0, ge=0.0, le=1.0)
    augment: tuple[Literal["hflip", "vflip", "rot90", "brightness_contrast", "zoom"], ...] = (
        "hflip",
        "vflip",
        "rot90",
    )


class EvalConfig(_Frozen):
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    preview_pictures: int = Field(5, ge=0)
    # The training-split pass (eval mode, full stitched pictures) behind the train/*
    # metrics: on a seeded sample as large as the validation subset ("val"), on every
    # training picture ("all"), or on N pictures; at the last epoch and every
    # ``train_every`` epochs (0: the last epoch only). Each pass costs about as much as
    # the validation pass, so evaluating every training picture every epoch made a study
    # ~25 % slower than a plain training loop (BENCHMARKS.md, study overhead).
    train_eval_pictures: Annotated[int, Field(ge=1)] | Literal["val", "all"] = "val"
    train_every: int = Field(0, ge=0)
    histogram_bins: int = Field(1000, ge=10, le=100000)
    # F1, precision and recall with a pixel tolerance (thin structures: CrackForest's
    # 2 px) beside the exact ones: val/f1_2px. None: not scored.
    tolerance_px: int | None = Field(None, ge=1, le=50)
    # Which epoch a run keeps (weights, threshold, reported values): the last, or the
    # best by select_key (ties: the earliest). Never by a metric an over-predicting model
    # maximises (recall) unless asked: the default is threshold-free best F1.
    select: Literal["last", "best"] = "best"
    select_key: str = "val/best_f1"
    # Test-time augmentation in evaluation, evaluate and predict: the mean probability
    # over the identity, horizontal, vertical and both flips ("flips"), or those and the
    # same four of the transposed page ("dihedral": the 8 symmetries of a square page),
    # at each of ``tta_scales`` (factors on pages.resize, or on the picture's own size).
    tta: Literal["none", "flips", "dihedral"] = "none"
    tta_scales: list[Annotated[float, Field(ge=0.25, le=4.0)]] = Field(
        default_factory=lambda: [1.0], min_length=1, max_length=8
    )

    @field_validator("train_eval_pictures", mode="before")
    @classmethod
    def _null_means_all(cls, value: object) -> object:
        return "all" if value is None else value  # how segtune 0.1 wrote "all"

    @field_validator("select_key")
    @classmethod
    def _validation_metric(cls, value: str) -> str:
        from segtune.core.metrics import METRIC_WORDS

        split, _, name = value.partition("/")
        if split != "val" or name not in METRIC_WORDS or name in ("loss", "lr"):
            known = ", ".join(f"val/{m}" for m in METRIC_WORDS if m not in ("loss", "lr"))
            raise ValueError(f"{value!r} is not a validation metric; one of {known}")
        return value

    @field_validator("tta_scales")
    @classmethod
    def _distinct_scales(cls, value: list[float]) -> list[float]:
        if len(set(value)) != len(value):
            raise ValueError(f"each scale once (got {value})")
        return value

    def train_pass_due(self, epoch: int, epochs: int) -> bool:
        """Whether the training-split pass runs after ``epoch`` (of ``epochs``)."""
        return epoch == epochs or (self.train_every > 0 and epoch % self.train_every == 0)

    def train_eval_count(self, train: int, val: int) -> int:
        """How many training pictures the training-split pass evaluates (N: at most N)."""
        n = self.train_eval_pictures
        if n == "all":
            return train
        return min(train, val if n == "val" else n)


DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"


def check_device(name: str | None, key: str = "--device") -> str | None:
    """A device string's syntax, checked before any work (whether the device exists is
    checked where a run starts: a login node without a GPU can still prepare a study)."""
    if name is not None and re.match(DEVICE_PATTERN, name) is None:
        raise ConfigError(f"{key}: {name!r} is not a device (auto, cpu, mps, cuda, cuda:<n>)")
    return name


class RuntimeConfig(_Frozen):
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    num_workers: int = Field(0, ge=0)
    seed: int = Field(0, ge=0)
    # CPU threads of one run (torch.set_num_threads). None: torch's default for this
    # machine. The number used is recorded in summary.json: results are bitwise
    # reproducible only with the same device and thread count.
    threads: int | None = Field(None, ge=1, le=1024)
    # Channels-last tensors for the model and its inputs (None: on CUDA and CPU, where
    # they are faster). Like threads, it changes values only by float rounding; false
    # reproduces NCHW runs (segtune 0.1 on CPU) bit for bit.
    channels_last: bool | None = None
    # Live tracking (segtune.engine.loggers): epoch values, learning rate and the final overlay
    # strip mirrored into TensorBoard event files (<run>/tensorboard) and/or MLflow.
    loggers: tuple[Literal["tensorboard", "mlflow"], ...] = ()
    # MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite:///<run or study>/mlflow.db
    mlflow_uri: str | None = None


class RecordsConfig(_Frozen):
    # Keep the resume checkpoint (optimiser state: most of a run folder's size) after the
    # run completes; a completed run keeps only its weights-only model.pt by default.
    keep_resume_state: bool = False


class RunConfig(_Frozen):
    """Everything one run needs; written resolved to ``config.yaml`` in the run folder."""

    data: DataConfig = DataConfig()
    pages: PagesConfig = PagesConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    sampling: SamplingConfig = SamplingConfig()
    eval: EvalConfig = EvalConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    records: RecordsConfig = RecordsConfig()

    @model_validator(mode="after")
    def _micro_batch(self) -> RunConfig:
        micro = self.optim.micro_batch_size
        if micro is not None and micro > self.optim.batch_size:
            raise ValueError(
                f"optim.micro_batch_size ({micro}) must be <= optim.batch_size "
                f"({self.optim.batch_size})"
            )
        return self


def known_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of a run config (sections and their keys), for "did you mean"."""
    model = model or RunConfig
    keys: list[str] = []
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys += known_keys(kind, f"{dotted}.")
    return keys


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming the first bad key, what is wrong and the value given."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        near = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.75)
        hint = f" (did you mean {near[0]}?)" if near else ""
        return f"{prefix}{key}: unknown key{hint}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    given = err.get("input")
    shown = f" (got {given!r})" if given is not None and not isinstance(given, dict) else ""
    return f"{prefix}{key}: {msg}{shown}"


MAX_YAML_DEPTH = 64  # nesting a spec never needs; deeper is refused before parsing


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (YAML keeps the last
    silently: a second ``fixed:`` would replace the whole section)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:  # as written: merge keys (<<) are not checked
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKey(key_node.value, seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"key {key!r} given twice (lines {first} and {second})")
        self.key, self.first, self.second = key, first, second


def _check_depth(text: str, source: object) -> None:
    """Refuse YAML nested deeper than MAX_YAML_DEPTH, counted by the (iterative) scanner
    before the (recursive) parser could overflow the stack."""
    depth = 0
    starts: tuple[type[yaml.Token], ...] = (
        yaml.BlockMappingStartToken,
        yaml.BlockSequenceStartToken,
        yaml.FlowMappingStartToken,
        yaml.FlowSequenceStartToken,
    )
    ends = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, starts):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                line = token.start_mark.line + 1
                raise ConfigError(
                    f"{source}: line {line}: nested deeper than {MAX_YAML_DEPTH} levels; a "
                    "spec or config needs a few"
                )
        elif isinstance(token, ends):
            depth -= 1


def parse_yaml(text: str, source: object) -> Any:
    """YAML text as data: duplicate keys, deep nesting and bad YAML are one-line
    ConfigErrors naming ``source``."""
    try:
        _check_depth(text, source)
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader
    except DuplicateKey as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: bad YAML{where}: {problem}") from exc


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or bad YAML is a one-line ConfigError."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = parse_yaml(path.read_text(), path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree['a']['b'] = value`` for ``key='a.b'``, creating mappings on the way."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (values parsed as YAML scalars) to a config tree."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from exc
        set_dotted(tree, key.strip(), value)
    return tree


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` into a deep copy of ``base``; neither input is shared with the
    result, so setting a key in the result never changes ``base`` or ``extra``."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` → ``{'a.b': 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def build_run_config(tree: dict[str, Any], source: str = "") -> RunConfig:
    """Validate a config tree; errors name the dotted key (prefixed by ``source``)."""
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{source}: " if source else "")) from exc


def load_run_config(path: Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load a run config from YAML (or defaults) and apply ``--set`` overrides."""
    tree = load_yaml(path) if path is not None else {}
    tree = apply_overrides(tree, overrides or [])
    return build_run_config(tree, str(path) if path else "config")


def config_to_dict(config: BaseModel) -> dict[str, Any]:
    """Plain YAML-safe dict of a config (paths as strings, tuples as lists)."""
    return config.model_dump(mode="json")


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
