"""The network: any segmentation_models_pytorch architecture, 3 channels in, 1 logit out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from segtune.core.config import ModelConfig
from segtune.core.errors import ConfigError

# Pictures are uint8 RGB; the network sees them normalised with ImageNet statistics,
# which suits both random and ImageNet-pretrained encoders.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_model(config: ModelConfig) -> nn.Module:
    """Build the network named by ``config``.

    ``encoder_weights`` is ``None`` (random init), ``"imagenet"`` (needs a reachable
    model hub or a filled local cache), or the path of a ``.pt``/``.pth`` state dict
    for the encoder.
    """
    kwargs: dict[str, Any] = {"encoder_depth": config.encoder_depth}
    if config.decoder_channels is not None:
        if len(config.decoder_channels) != config.encoder_depth:
            raise ConfigError(
                f"model.decoder_channels: needs {config.encoder_depth} values (one per "
                f"encoder stage), got {len(config.decoder_channels)}"
            )
        kwargs["decoder_channels"] = tuple(config.decoder_channels)
    _check_names(config)
    weights = config.encoder_weights
    hub_weights = weights if weights is not None and not is_weights_file(weights) else None
    try:
        model = smp.create_model(
            config.arch,
            encoder_name=config.encoder,
            encoder_weights=hub_weights,
            in_channels=3,
            classes=1,
            **kwargs,
        )
    except (KeyError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"model: cannot build {config.arch}/{config.encoder}: {first}") from exc
    except OSError as exc:
        raise ConfigError(
            f"model.encoder_weights: cannot fetch {weights!r} weights ({exc}); use none or a "
            "local weights file"
        ) from exc
    if weights is not None and is_weights_file(weights):
        _load_encoder_weights(model.encoder, Path(weights))
    return model


def _check_names(config: ModelConfig) -> None:
    """``model.arch`` and ``model.encoder`` against smp's names, before building."""
    import difflib

    from segmentation_models_pytorch.encoders import get_encoder_names

    archs = {cls.__name__: key for key, cls in smp.MODEL_ARCHITECTURES_MAPPING.items()}
    if config.arch.lower() not in archs.values():
        lower = {name.lower(): name for name in archs}
        near = difflib.get_close_matches(config.arch.lower(), list(lower), n=1, cutoff=0.5)
        hint = f"did you mean {lower[near[0]]}? " if near else ""
        raise ConfigError(
            f"model.arch: unknown architecture {config.arch!r} ({hint}one of: "
            f"{', '.join(sorted(archs))})"
        )
    names = get_encoder_names()
    if not config.encoder.startswith("tu-") and config.encoder not in names:
        near = difflib.get_close_matches(config.encoder, names, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise ConfigError(
            f"model.encoder: unknown encoder {config.encoder!r} ({hint}{len(names)} smp "
            "encoders, e.g. resnet34, mobilenet_v2, efficientnet-b0; timm ones as tu-<name>)"
        )


def _load_encoder_weights(encoder: nn.Module, path: Path) -> None:
    """Load an encoder state dict saved from smp (or timm/torchvision with smp's names).

    Keys the encoder does not have (a classifier head) are ignored; a missing encoder key
    or a shape that differs is an error naming the file and the first such key.
    """
    key = "model.encoder_weights"
    if not path.is_file():
        raise ConfigError(f"{key}: {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{key}: {path} is not a weights-only state dict ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{key}: {path} does not hold a state dict")
    own = encoder.state_dict()
    shared = [k for k in own if k in state]
    if not shared:
        raise ConfigError(f"{key}: {path} matches no encoder parameter")
    for name, tensor in own.items():
        if name not in state:
            raise ConfigError(f"{key}: {path} lacks encoder key {name!r}")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"{key}: {path}: {name!r} has shape {tuple(state[name].shape)}, the encoder "
                f"needs {tuple(tensor.shape)}"
            )
    # nn.Module's own loader: some smp encoders override load_state_dict.
    nn.Module.load_state_dict(encoder, {k: state[k] for k in shared}, strict=True)


def is_weights_file(weights: str) -> bool:
    return weights.endswith((".pt", ".pth", ".bin", ".safetensors")) or "/" in weights


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` → float normalised with ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std
