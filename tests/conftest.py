"""Shared fixtures: small generated pictures, a tiny network config, a private cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from segtune.config import RunConfig, build_run_config
from segtune.data.synthetic import write_demo_data

ROOT = Path(__file__).resolve().parents[1]
DEEPCRACK = ROOT.parent / "shared" / "data" / "deepcrack"

TINY_MODEL = {"encoder": "mobilenet_v2", "encoder_depth": 3, "decoder_channels": [16, 8, 4]}


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 train + 4 val generated pictures of 64×64."""
    out = tmp_path_factory.mktemp("demo-data")
    write_demo_data(out, pictures=16, size=64, seed=3)
    return out


def tiny_tree(data: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {
        "data": {"train": str(data / "train"), "val": str(data / "val")},
        "pages": {"page_size": 32, "patch_overlap": 8},
        "model": dict(TINY_MODEL),
        "optim": {"epochs": 1, "batch_size": 8, "learning_rate": 0.003},
        "eval": {"preview_pictures": 2},
        "runtime": {"device": "cpu"},
    }
    for key, value in sections.items():
        tree.setdefault(key, {}).update(value)
    return tree


def tiny_config(data: Path, **sections: dict[str, Any]) -> RunConfig:
    return build_run_config(tiny_tree(data, **sections))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
