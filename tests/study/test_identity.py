from __future__ import annotations

from segtune.core.config import build_run_config
from segtune.study.identity import changed_keys, fingerprint, run_identity

TREE = {
    "data": {"train": "/d/train", "val": "/d/val"},
    "model": {"encoder": "resnet18"},
    "optim": {"epochs": 3},
}
DATA = "0123456789abcdef0123"


def test_a_setting_added_later_keeps_recorded_fingerprints_while_off() -> None:
    # The fingerprint segtune computed for this config before optim.ema_decay existed
    # (f15d3f9): studies recorded then must resume without their points counting as
    # changed. A new setting with an "off" value belongs in identity.ADDED_OFF.
    off = run_identity(build_run_config(TREE), DATA)
    assert fingerprint(off) == "1ae5a56db2c136e64d42"
    assert "optim.ema_decay" not in off
    on_tree = {**TREE, "optim": {"epochs": 3, "ema_decay": 0.99}}
    on = run_identity(build_run_config(on_tree), DATA)
    assert fingerprint(on) != fingerprint(off)
    assert changed_keys(off, on) == "optim.ema_decay (unset) → 0.99"


def test_where_a_run_executes_is_not_part_of_its_identity() -> None:
    moved = {**TREE, "data": {"train": "/e/train", "val": "/e/val"}, "runtime": {"threads": 1}}
    assert run_identity(build_run_config(moved), DATA) == run_identity(build_run_config(TREE), DATA)
