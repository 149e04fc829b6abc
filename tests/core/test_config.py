from __future__ import annotations

from pathlib import Path

import pytest

from segtune.core.config import load_run_config
from segtune.core.errors import ConfigError


def test_defaults_and_overrides() -> None:
    config = load_run_config(None, ["loss.bce_weight=0.25", "pages.resize.scale=0.5"])
    assert config.loss.bce_weight == 0.25 and config.pages.resize is not None
    assert config.pages.resize.scale == 0.5 and config.optim.batch_size == 16


def test_unknown_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("loss:\n  bce_wieght: 0.5\n")
    with pytest.raises(ConfigError, match=r"loss\.bce_wieght: unknown key"):
        load_run_config(tmp_path / "c.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.bce_weight=1.5", r"loss\.bce_weight: .*less than or equal to 1 \(got 1\.5\)"),
        ("loss.pos_weight=0", r"loss\.pos_weight: .*greater than 0"),
        ("pages.patch_overlap=300", r"pages: pages\.patch_overlap \(300\) must be smaller"),
        ("optim.optimizer=sgd", r"optim\.optimizer: .*'adam' or 'adamw'"),
    ],
)
def test_out_of_range_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_run_config(None, [override])


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("loss:\n  bce_weight: [0.5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: bad YAML at line \d+"):
        load_run_config(tmp_path / "c.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_run_config(tmp_path / "nope.yaml")
