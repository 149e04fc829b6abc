"""What a run *is*, as opposed to where it ran.

A run's identity is its resolved config without the settings that only say where and
how it runs (device, threads, loader processes, cache folder, the absolute data paths
of a moved study, preview count), plus a fingerprint of the pictures it trains and
evaluates on (stem, size and modification time of every image and mask of the study's
subsets). Two runs with the same identity train the same thing; a spec change that
would alter the identity of a recorded point is refused, so a report never describes
runs with settings they were not trained with.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from segtune.core.config import RunConfig, config_to_dict, flatten

# Keys that say where or how a run executes, not what it trains.
WHERE_KEYS = frozenset(
    {
        "data.train",
        "data.val",
        "data.cache_dir",
        "data.cache_max_gb",
        "data.max_pixels",
        "runtime.device",
        "runtime.num_workers",
        "runtime.threads",
        "runtime.channels_last",
        "runtime.loggers",
        "runtime.mlflow_uri",
        "eval.preview_pictures",
        "records.keep_resume_state",
    }
)
DATA_KEY = "data.pictures"
# Settings added after studies were recorded whose "off" value trains exactly as before
# they existed: left out of the identity while off, so those studies keep their
# fingerprints and resume (a new setting must be added here with its off value).
ADDED_OFF: dict[str, Any] = {
    "optim.ema_decay": None,
    "eval.tta_scales": [1.0],
    "data.mask_threshold": None,
    "data.invert_masks": False,
    "data.missing_masks": "refuse",
    "eval.tolerance_px": None,
    "optim.pages_per_epoch": None,
}


def run_identity(config: RunConfig, data: str) -> dict[str, Any]:
    """The flat ``key → value`` identity of a run (``data`` is the data fingerprint)."""
    flat = {
        k: v
        for k, v in flatten(config_to_dict(config)).items()
        if k not in WHERE_KEYS and not (k in ADDED_OFF and v == ADDED_OFF[k])
    }
    flat[DATA_KEY] = data
    return flat


def fingerprint(identity: dict[str, Any]) -> str:
    return _digest(identity)


def changed_keys(old: dict[str, Any], new: dict[str, Any], most: int = 6) -> str:
    """``optim.epochs 4 → 6, optim.learning_rate 0.003 → 0.01`` (at most ``most`` keys)."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    parts = []
    for key in keys[:most]:
        if key == DATA_KEY:
            parts.append("data: the pictures changed")
        else:
            parts.append(f"{key} {old.get(key, '(unset)')} → {new.get(key, '(unset)')}")
    if len(keys) > most:
        parts.append(f"and {len(keys) - most} more")
    return ", ".join(parts)


def changed_stems(
    recorded: dict[str, list[dict[str, Any]]], now: dict[str, list[dict[str, Any]]]
) -> list[tuple[str, str, str]]:
    """``(split, stem, what changed)`` of each picture whose size or modification time
    differ from the recording."""
    out = []
    for split, rows in recorded.items():
        current = {r["stem"]: r for r in now.get(split, [])}
        for row in rows:
            other = current.get(row["stem"])
            if other != row:
                what = "missing" if other is None else _stat_change(row, other)
                out.append((split, row["stem"], what))
    return out


def changed_pictures(
    recorded: dict[str, list[dict[str, Any]]], now: dict[str, list[dict[str, Any]]], most: int = 3
) -> list[str]:
    """Names of the pictures whose size or modification time differ from the recording."""
    out = [f"{split}/{stem} ({what})" for split, stem, what in changed_stems(recorded, now)]
    if len(out) > most:
        out = [*out[:most], f"and {len(out) - most} more"]
    return out


def _stat_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = []
    for part in ("image", "mask"):
        if old[f"{part}_bytes"] != new[f"{part}_bytes"]:
            parts.append(f"{part} {old[f'{part}_bytes']} → {new[f'{part}_bytes']} bytes")
        elif old[f"{part}_mtime"] != new[f"{part}_mtime"]:
            parts.append(f"{part} modified")
    return ", ".join(parts) or "changed"


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
