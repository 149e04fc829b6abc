from __future__ import annotations

import random
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segtune.cli.main import main
from segtune.core.errors import DataError
from segtune.data.layout import Picture
from segtune.data.pairs import check_pictures, sample_subset, shared_pictures
from tests.conftest import DEEPCRACK
from tests.data.helpers import write_pair


def test_each_problem_is_reported_naming_the_file(tmp_path: Path) -> None:
    write_pair(tmp_path, "good")
    write_pair(tmp_path, "sizes", mask_size=(8, 9))
    write_pair(tmp_path, "values", mask_values=(0, 1, 2))
    write_pair(tmp_path, "broken")
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "lonely.jpg")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / "orphan.png")
    report = check_pictures(tmp_path)
    text = "\n".join(report.problems)
    assert [p.stem for p in report.pictures] == ["good"]
    assert "lonely.jpg: image without mask" in text
    assert "orphan.png: mask without image" in text
    assert "sizes.png: size 9x8 does not match image sizes.png 8x8" in text
    assert "values.png: mask has 3 distinct values" in text
    assert "broken.png: unreadable" in text
    assert len(report.problems) == 5


def test_check_data_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_pair(tmp_path / "ok", "a")
    assert main(["check-data", str(tmp_path / "ok")]) == 0
    assert "1 pictures" in capsys.readouterr().out
    write_pair(tmp_path / "bad", "a", mask_values=(0, 3, 4))
    assert main(["check-data", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "a.png: mask has 3 distinct values" in err


def test_subset_is_reproducible_whatever_the_input_order() -> None:
    pics = [Picture(f"p{i:03d}", Path(f"{i}.png"), Path(f"m{i}.png")) for i in range(50)]
    shuffled = pics[:]
    random.Random(1).shuffle(shuffled)
    a = sample_subset(pics, 10, seed=7)
    b = sample_subset(shuffled, 10, seed=7)
    assert a == b and a == sorted(a)
    assert sample_subset(pics, 10, seed=8) != a


def test_subset_larger_than_available_names_both_numbers() -> None:
    pics = [Picture(f"p{i}", Path("i"), Path("m")) for i in range(3)]
    with pytest.raises(DataError, match="subset of 5 pictures requested but only 3 are available"):
        sample_subset(pics, 5, seed=0)


@pytest.mark.skipif(not DEEPCRACK.is_dir(), reason="../shared/data/deepcrack not present")
def test_deepcrack_train_passes_with_300_pictures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-data", str(DEEPCRACK / "train")]) == 0
    out = capsys.readouterr().out
    assert "300 pictures" in out and "544x384 (300)" in out


def _strips(root: Path, width: int, pictures: int = 3) -> None:
    """Pictures of 64x64 px (each folder's and picture's own noise), each with one
    horizontal strip ``width`` px wide, 60 long."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    rng = np.random.default_rng(zlib.crc32(root.name.encode()))
    for i in range(pictures):
        noise = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(root / "images" / f"{i}.png")
        m = np.zeros((64, 64), np.uint8)
        m[10 + i : 10 + i + width, 2:62] = 255
        Image.fromarray(m).save(root / "masks" / f"{i}.png")


def test_structure_width_is_measured_from_the_masks(tmp_path: Path) -> None:
    for width in (3, 7):
        _strips(tmp_path / str(width), width)
        report = check_pictures(tmp_path / str(width))
        # boundary: two long edges (2 x 60) and the ends' inner pixels (2 x (width - 2))
        expected = 2 * (60 * width) / (120 + 2 * (width - 2))
        assert report.structure_width == pytest.approx(expected)
        assert abs(expected - width) < 0.1 * width


def test_check_data_says_when_two_folders_masks_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _strips(tmp_path / "thin", 3)
    _strips(tmp_path / "same", 3)
    _strips(tmp_path / "wide", 7)
    assert main(["check-data", str(tmp_path / "thin"), str(tmp_path / "same")]) == 0
    out = capsys.readouterr().out
    assert "same vs " in out and "positive share x1.00, structure width x1.00" in out
    assert "note:" not in out
    assert main(["check-data", str(tmp_path / "thin"), str(tmp_path / "wide")]) == 0
    out = capsys.readouterr().out
    assert "typical width 3.0 px" in out and "typical width 6.5 px" in out
    assert "positive share x2.33, structure width x2.19" in out
    assert "note: positive share and structure width differ by more than x1.25" in out


@pytest.mark.skipif(not DEEPCRACK.is_dir(), reason="../shared/data/deepcrack not present")
def test_deepcrack_test_masks_are_wider_than_train_masks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The shift behind DeepCrack's threshold gap (BENCHMARKS.md): test/ masks hold 1.49x
    the positive share of train/'s, in structures 1.39x as wide."""
    assert main(["check-data", str(DEEPCRACK / "train"), str(DEEPCRACK / "test")]) == 0
    out = capsys.readouterr().out
    assert "positive share x1.49, structure width x1.39" in out
    assert "note: positive share and structure width differ" in out


def test_exif_orientation_is_named_where_it_explains_a_mismatch(tmp_path: Path) -> None:
    # A phone photo stored 48x32 with EXIF orientation 6 (shown turned, 32x48) and its
    # mask drawn on the shown picture; a square one shown upside down (orientation 3).
    def photo(stem: str, size: tuple[int, int], orientation: int, mask: tuple[int, int]) -> None:
        write_pair(tmp_path, stem, size=size, mask_size=mask)
        exif = Image.Exif()
        exif[0x0112] = orientation
        image = Image.fromarray(np.full((*size, 3), 100, np.uint8))
        (tmp_path / "images" / f"{stem}.png").unlink()
        image.save(tmp_path / "images" / f"{stem}.jpg", exif=exif)

    photo("turned", (32, 48), 6, mask=(48, 32))
    photo("upside", (16, 16), 3, mask=(16, 16))
    report = check_pictures(tmp_path)
    (problem,) = report.problems
    assert problem.endswith(
        "turned.png: size 32x48 does not match image turned.jpg 48x32 (the image's EXIF "
        "orientation 6 shows it turned, as 32x48: segtune reads pixels as stored; save the "
        "image upright, e.g. with PIL.ImageOps.exif_transpose)"
    )
    assert [p.stem for p in report.pictures] == ["upside"]
    assert any(
        line.startswith("note: 1 image(s) carry an EXIF orientation (upside.jpg)")
        for line in report.summary_lines()
    )


def _deepcrack_split(root: Path, stems: list[str]) -> None:
    for kind, suffix in (("images", ".jpg"), ("masks", ".png")):
        (root / kind).mkdir(parents=True)
        for stem in stems:
            source = DEEPCRACK / "train" / kind / f"{stem}{suffix}"
            (root / kind / f"{stem}{suffix}").write_bytes(source.read_bytes())


def test_pictures_of_one_split_copied_into_another_are_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stems = sorted(p.stem for p in (DEEPCRACK / "train" / "images").iterdir())[:5]
    _deepcrack_split(tmp_path / "train", stems[:4])
    _deepcrack_split(tmp_path / "val", stems[3:])  # one picture in both
    (tmp_path / "val" / "images" / f"{stems[3]}.jpg").rename(
        tmp_path / "val" / "images" / "renamed.jpg"
    )
    (tmp_path / "val" / "masks" / f"{stems[3]}.png").rename(
        tmp_path / "val" / "masks" / "renamed.png"
    )
    train = check_pictures(tmp_path / "train").pictures
    val = check_pictures(tmp_path / "val").pictures
    assert [(a.stem, b.stem) for a, b in shared_pictures(train, val)] == [("renamed", stems[3])]
    assert shared_pictures(train, [p for p in val if p.stem != "renamed"]) == []
    assert main(["check-data", str(tmp_path / "train"), str(tmp_path / "val")]) == 0
    out = capsys.readouterr().out
    assert (
        f"note: 1 {tmp_path / 'val'} picture(s) are also {tmp_path / 'train'} pictures (the "
        f"same file: renamed = {stems[3]}): scores on them measure memory, not "
        "generalisation; remove them from one side"
    ) in out
