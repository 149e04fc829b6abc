"""Helpers for study tests: tiny specs, worker processes, trial counting."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from tests.conftest import TINY_MODEL


def write_spec(
    path: Path, data: Path, name: str, grid: dict[str, list[Any]], epochs: int = 1, **extra: Any
) -> Path:
    tree: dict[str, Any] = {
        "name": name,
        "data": {
            "train": str(data / "train"),
            "val": str(data / "val"),
            "seed": 0,
            "train_subset": 6,
            "val_subset": 3,
        },
        "fixed": {
            "pages": {"page_size": 32, "patch_overlap": 0},
            "model": dict(TINY_MODEL),
            "optim": {"epochs": epochs, "batch_size": 8, "learning_rate": 0.003},
            "runtime": {"device": "cpu"},
        },
        "stages": [{"name": "grid", "grid": grid}],
        "objective": {"metric": "val/recall", "direction": "maximize"},
        "top_k": 2,
        "preview_pictures": 2,
        "max_retries": 1,
        "heartbeat": {"interval_s": 1, "grace_s": 60},
    }
    tree.update(extra)
    path.write_text(yaml.safe_dump(tree))
    return path


def worker(
    spec: Path, study_dir: Path, storage: str | None = None, **env: str
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "segtune", "sweep", str(spec), "--dir", str(study_dir), "--worker"]
    if storage:
        cmd += ["--storage", storage]
    full_env = {**os.environ, "SEGTUNE_THREADS": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finished_per_point(storage: str, study: str, stage: str = "grid") -> Counter[str]:
    s = optuna.load_study(study_name=f"{study}:{stage}", storage=storage)
    return Counter(
        t.user_attrs["point"]
        for t in s.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE
    )


def trial_states(storage: str, study: str, stage: str = "grid") -> Counter[str]:
    s = optuna.load_study(study_name=f"{study}:{stage}", storage=storage)
    return Counter(t.state.name for t in s.get_trials(deepcopy=False))


def folder_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sqlite_url(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'study.db').resolve()}"
