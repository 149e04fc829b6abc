"""The documentation cannot rot: the site builds with ``mkdocs build --strict`` (a broken
link, a missing page or a stale API reference fails), and the spec reference has a row
for every config key and no row for a key that does not exist."""

from __future__ import annotations

import re
import subprocess
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from segtune.core.config import RunConfig
from segtune.study.spec import StudySpec

ROOT = Path(__file__).resolve().parents[1]
SPEC_REFERENCE = ROOT / "docs" / "reference" / "spec.md"


def _models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (``X | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def config_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every settable key of a config model, dotted (``optim.epochs``; an optional section
    and its keys: ``pages.resize``, ``pages.resize.scale``; a list of sections as
    ``stages[].race.max_seeds``)."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        sections = _models(field.annotation)
        plain_section = sections == [field.annotation]  # always present: only its keys
        if not plain_section:
            keys.add(key)
        below = f"{key}[]." if typing.get_origin(field.annotation) is list else f"{key}."
        for section in sections:
            keys |= config_keys(section, below)
    return keys


def documented_keys() -> set[str]:
    """The keys named in the first cell of the reference's table rows."""
    keys: set[str] = set()
    for line in SPEC_REFERENCE.read_text().splitlines():
        if line.startswith("| `"):
            keys |= set(re.findall(r"`([A-Za-z_\[\].]+)`", line.split("|")[1]))
    return keys


def test_every_config_key_has_a_row_in_the_spec_reference_and_no_row_is_stale() -> None:
    run = config_keys(RunConfig)
    study = config_keys(StudySpec)
    study.add("data")  # the study's data section: the run config's data.* keys
    known = run | study
    documented = documented_keys()
    assert {"optim.pages_per_epoch", "stages[].race.max_seeds", "eval.tolerance_px"} <= known
    missing = sorted(known - documented)
    stale = sorted(documented - known)
    assert not missing, f"keys without a row in {SPEC_REFERENCE.name}: {missing}"
    assert not stale, f"rows naming keys that do not exist: {stale}"


def test_the_documentation_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for page in ("index.html", "reference/spec/index.html", "api/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "index.html").read_text()
    assert "run_study" in api and "study_answer" in api  # generated from the docstrings
