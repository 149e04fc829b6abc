"""``segtune split`` and ``segtune init`` given one folder."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from segtune.cli.main import main
from tests.data.test_splits import write_dataset


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_split_writes_manifests_that_check_data_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "data")
    out = tmp_path / "splits"
    assert main(["split", str(data), "--val", "0.2", "--test", "4", "--out", str(out), "-q"]) == 0
    said = capsys.readouterr().out
    assert "val: 8 pictures, positives" in said and "test: 4 pictures" in said
    files = {name: _rows(out / f"{name}.csv") for name in ("train", "val", "test")}
    images = [r["image"] for rows in files.values() for r in rows]
    assert len(images) == len(set(images)) == 40
    assert all(not Path(i).is_absolute() for i in images)  # relative: the folder can move
    assert not list(out.glob("*.png")) and not list(out.glob("*.tif"))  # nothing copied
    assert main(["check-data", str(out / "val.csv")]) == 0
    # Again without --force: one line, the manifests as they were.
    before = (out / "val.csv").read_text()
    assert main(["split", str(data), "--val", "3", "--seed", "5", "--out", str(out), "-q"]) == 2
    assert capsys.readouterr().err.strip().endswith("exists (use --force to overwrite)")
    assert (out / "val.csv").read_text() == before


def test_split_refuses_what_it_cannot_do_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "data", n=6)
    out = ["--out", str(tmp_path / "o"), "-q"]
    for args, words in [
        ([], "say how to split: --val FRACTION|N or --val-from FILE|GLOB"),
        (["--val", "6"], "no picture left for training"),
        (["--val-from", "nothing*"], "'nothing*': no such file, and no picture matches it"),
    ]:
        assert main(["split", str(data), *out, *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (args, err)
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["split", str(data), "--val", "2", "--out", str(afile), "-q"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {afile}: is a file, not a folder"
    with pytest.raises(SystemExit):  # argparse's own usage error
        main(["split", str(data), *out, "--val", "abc"])
    assert "expected a fraction (0.1) or a count (30), got 'abc'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_init_given_one_folder_splits_it_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "data")
    spec = tmp_path / "crack.yaml"
    assert main(["init", str(data), "--out", str(spec), "-q", "--no-probe"]) == 0
    said = capsys.readouterr().out
    assert "no validation folder given: split" in said and "val: 4 pictures" in said
    tree = yaml.safe_load(spec.read_text())
    assert tree["data"]["val"] == str((tmp_path / "crack-split" / "val.csv").resolve())
    assert len(_rows(Path(tree["data"]["train"]))) == 36
