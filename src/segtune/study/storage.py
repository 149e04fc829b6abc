"""Where a study lives: its folder, its Optuna storage and its recorded subsets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import optuna

from segtune.data.pairs import Picture
from segtune.errors import ConfigError, SegtuneError
from segtune.records import write_json
from segtune.train import Subsets


def default_storage(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'study.db').resolve()}"


def redact(url: str) -> str:
    """Hide a password in a storage URL before printing it."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; SQLite waits on locks (several local workers)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as exc:
        raise ConfigError(
            f"--storage {redact(url)}: database driver missing ({exc}); install segtune[postgres]"
        ) from exc
    except Exception as exc:
        raise SegtuneError(
            f"--storage {redact(url)}: cannot open ({type(exc).__name__}: {exc})"
        ) from exc


def stage_study_name(study: str, stage: str) -> str:
    return f"{study}:{stage}"


def write_study_info(study_dir: Path, info: dict[str, Any]) -> None:
    write_json(study_dir / "study.json", info)


def read_study_info(study_dir: Path) -> dict[str, Any]:
    """``study.json``; its ``storage`` is None for the SQLite file inside the folder, so a
    study folder can be moved or copied and still be read."""
    path = study_dir / "study.json"
    if not path.is_file():
        raise SegtuneError(f"{study_dir}: not a study folder (no study.json)")
    info = dict(json.loads(path.read_text()))
    info["storage"] = info.get("storage") or default_storage(study_dir)
    return info


def _pictures_to_json(pictures: list[Picture]) -> list[dict[str, str]]:
    return [{"stem": p.stem, "image": str(p.image), "mask": str(p.mask)} for p in pictures]


def _pictures_from_json(rows: list[dict[str, str]]) -> list[Picture]:
    return [Picture(r["stem"], Path(r["image"]), Path(r["mask"])) for r in rows]


def recorded_subsets(study_dir: Path, sample: Subsets) -> Subsets:
    """The study's subsets: recorded at first use in ``subsets.json``, then always read back.

    ``sample`` is the subset drawn now; if a recording exists it wins (every run and
    worker of a study uses the same pictures).
    """
    path = study_dir / "subsets.json"
    if path.exists():
        data = json.loads(path.read_text())
        return Subsets(_pictures_from_json(data["train"]), _pictures_from_json(data["val"]))
    write_json(
        path, {"train": _pictures_to_json(sample.train), "val": _pictures_to_json(sample.val)}
    )
    return sample


def read_subsets(study_dir: Path) -> Subsets | None:
    path = study_dir / "subsets.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return Subsets(_pictures_from_json(data["train"]), _pictures_from_json(data["val"]))
