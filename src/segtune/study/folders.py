"""One run folder per point of a stage, with its earlier attempts inside it.

``runs/<stage>/<point name>/`` holds the current attempt's run records and
``point.json`` (the point's parameters and identity fingerprint). An attempt that failed
is moved to ``attempts/<n>/`` before the next one starts; an interrupted attempt (a
killed worker, Ctrl-C, SIGTERM) is continued in place from its last epoch checkpoint,
by whichever worker claims the point next.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segtune.core.errors import ConfigError
from segtune.core.records import RunFolder, RunRecord, write_json


def point_folder_name(point: str, params: dict[str, Any]) -> str:
    """``bce_weight-0.2_pos_weight-5-<hash>`` for a grid point, ``slot-0003`` for a
    sampler slot; the hash of the exact point keeps truncated names apart."""
    if point.startswith("slot-"):
        return point
    parts = [f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in params.items()]
    text = "_".join(parts) or "run"
    text = "".join(c if c.isalnum() or c in "-_.+" else "-" for c in text)[:100]
    return f"{text}-{hashlib.sha1(point.encode()).hexdigest()[:6]}"


@dataclass(frozen=True)
class Attempt:
    """What to do with a point folder before training: resume it or start fresh."""

    resume: bool
    archived: Path | None


class PointFolder:
    """The run folder of one point."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = RunFolder(path)

    @property
    def info_path(self) -> Path:
        return self.path / "point.json"

    def info(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.info_path.read_text()))
        except (OSError, ValueError):
            return None

    def write_info(self, point: str, params: dict[str, Any], fingerprint: str, study: str) -> None:
        info = {"point": point, "params": params, "fingerprint": fingerprint, "study": study}
        write_json(self.info_path, info)

    def check_study(self, study: str) -> None:
        """Refuse a point folder another study wrote (a folder belongs to one study;
        ``point.json`` from before this check names none)."""
        owner = (self.info() or {}).get("study")
        if owner is not None and owner != study:
            raise ConfigError(
                f"{self.path}: a point of study {owner!r}, not of study {study!r}; a study "
                "folder belongs to one study"
            )

    def summary(self) -> RunRecord | None:
        try:
            return self.records.read_record()
        except (OSError, ValueError):
            return None

    def finished(self, fingerprint: str) -> RunRecord | None:
        """The summary of a run of this fingerprint that finished (a worker killed after
        the run and before telling the study leaves one); None otherwise."""
        info, summary = self.info(), self.summary()
        if info is None or summary is None or info.get("fingerprint") != fingerprint:
            return None
        return summary if summary.finished else None

    def prepare(self, fingerprint: str) -> Attempt:
        """Get the folder ready for an attempt of ``fingerprint``: remove the temporary
        files a killed write left, and resume an interrupted attempt of the same run from
        its checkpoint; any other earlier attempt is moved to ``attempts/<n>/``."""
        if not self.path.exists():
            return Attempt(resume=False, archived=None)
        self.records.remove_temporary_files()
        info, summary = self.info(), self.summary()
        if summary is None and info is None:
            return Attempt(resume=False, archived=None)
        same = info is not None and info.get("fingerprint") == fingerprint
        unfinished = summary is not None and summary.status in ("running", "interrupted")
        if same and unfinished and self.records.checkpoint_path.exists():
            return Attempt(resume=True, archived=None)
        return Attempt(resume=False, archived=self._archive())

    def attempts(self) -> list[Path]:
        root = self.path / "attempts"
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def _archive(self) -> Path:
        """Move the folder's records (not earlier attempts) to ``attempts/<n>/``."""
        target = self.path / "attempts" / f"{len(self.attempts()) + 1:02d}"
        target.mkdir(parents=True)
        for entry in self.path.iterdir():
            if entry.name != "attempts":
                os.replace(entry, target / entry.name)
        return target
