"""Shared fixtures: small generated pictures, a tiny network config, a private cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from segtune.core.config import RunConfig, build_run_config
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


def learning_config(data: Path, **sections: dict[str, Any]) -> RunConfig:
    """:func:`tiny_config` trained long enough to separate the demo's positives (AP about
    0.5 in 2 s): a model with a validation F1-best threshold, where one epoch of the tiny
    model is collapsed (its best F1 within 1.1x of marking every pixel)."""
    learns = {
        "optim": {"epochs": 3, "batch_size": 8, "learning_rate": 0.01},
        "sampling": {"positive_fraction": 0.5},
    }
    for key, value in sections.items():
        learns.setdefault(key, {}).update(value)
    return tiny_config(data, **learns)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def finished_study(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished two-stage study (grid of 4, refine of 1; 2 epochs) with its rendered
    report, shared by every test that only reads a study (tests that change one restore
    what they change)."""
    from segtune.cli.main import main
    from tests.study.helpers import write_spec

    root = tmp_path_factory.mktemp("finished-study")
    grid = {"loss.bce_weight": [0.2, 0.8], "loss.pos_weight": [1, 10]}
    spec = write_spec(
        root / "s.yaml",
        demo_data,
        "rep",
        grid,
        epochs=2,
        stages=[
            {"name": "grid", "grid": grid},
            {
                "name": "fine",
                "refine": {"from": "grid", "top_k": 1, "fixed": {"loss.pos_weight": 10}},
            },
        ],
    )
    assert main(["sweep", str(spec), "--dir", str(root / "study")]) == 0
    return root / "study"
