from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segtune.cli import main
from segtune.data.pairs import Picture, check_pictures, find_pairs, sample_subset
from segtune.errors import DataError
from tests.conftest import DEEPCRACK


def _pair(
    root: Path,
    stem: str,
    size: tuple[int, int] = (8, 8),
    mask_size: tuple[int, int] | None = None,
    mask_values: tuple[int, ...] = (0, 255),
) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 100, np.uint8)).save(root / "images" / f"{stem}.png")
    m = np.zeros(mask_size or size, np.uint8)
    for i, v in enumerate(mask_values):
        m.flat[i] = v
    Image.fromarray(m).save(root / "masks" / f"{stem}.png")


def test_each_problem_is_reported_naming_the_file(tmp_path: Path) -> None:
    _pair(tmp_path, "good")
    _pair(tmp_path, "sizes", mask_size=(8, 9))
    _pair(tmp_path, "values", mask_values=(0, 1, 2))
    _pair(tmp_path, "broken")
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


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        find_pairs(tmp_path)


def test_missing_masks_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=r"masks: folder missing"):
        find_pairs(tmp_path)


def test_check_data_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _pair(tmp_path / "ok", "a")
    assert main(["check-data", str(tmp_path / "ok")]) == 0
    assert "1 pictures" in capsys.readouterr().out
    _pair(tmp_path / "bad", "a", mask_values=(0, 3, 4))
    assert main(["check-data", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "a.png: mask has 3 distinct values" in err


def test_manifest_with_relative_paths(tmp_path: Path) -> None:
    _pair(tmp_path, "x")
    _pair(tmp_path, "y")
    (tmp_path / "list.csv").write_text(
        "image,mask\nimages/x.png,masks/x.png\nimages/y.png,masks/y.png\n"
    )
    pictures, problems = find_pairs(tmp_path / "list.csv")
    assert problems == [] and [p.stem for p in pictures] == ["x", "y"]
    (tmp_path / "bad.csv").write_text("img,mask\n")
    with pytest.raises(DataError, match="needs 'image' and 'mask' columns"):
        find_pairs(tmp_path / "bad.csv")


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


def test_folder_order_does_not_matter(tmp_path: Path) -> None:
    for stem in ("c", "a", "b"):
        _pair(tmp_path / "one", stem)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    a, _ = find_pairs(tmp_path / "one")
    assert [p.stem for p in a] == ["a", "b", "c"]


@pytest.mark.skipif(not DEEPCRACK.is_dir(), reason="../shared/data/deepcrack not present")
def test_deepcrack_train_passes_with_300_pictures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-data", str(DEEPCRACK / "train")]) == 0
    out = capsys.readouterr().out
    assert "300 pictures" in out and "544x384 (300)" in out


def _strips(root: Path, width: int, pictures: int = 3) -> None:
    """Pictures of 64x64 px, each with one horizontal strip ``width`` px wide, 60 long."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(pictures):
        Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(root / "images" / f"{i}.png")
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
        _pair(tmp_path, stem, size=size, mask_size=mask)
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


@pytest.mark.parametrize(
    ("images", "masks", "rois"),
    [
        (
            ["ISIC_0000000", "ISIC_0000001"],
            ["ISIC_0000000_segmentation", "ISIC_0000001_segmentation"],
            None,
        ),
        (["104_sat", "119_sat"], ["104_mask", "119_mask"], None),  # DeepGlobe roads
        (
            ["21_training", "22_training"],
            ["21_manual1", "22_manual1"],
            ["21_training_mask", "22_training_mask"],
        ),
    ],
    ids=["isic", "deepglobe", "drive"],
)
def test_names_that_differ_by_a_shared_tag_pair(
    tmp_path: Path, images: list[str], masks: list[str], rois: list[str] | None
) -> None:
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        _pair(tmp_path, image, mask_values=(0,) * i + (255,))
        (tmp_path / "masks" / f"{image}.png").rename(tmp_path / "masks" / f"{mask}.gif")
        if rois:
            (tmp_path / "roi").mkdir(exist_ok=True)
            Image.fromarray(np.full((8, 8), 255, np.uint8)).save(
                tmp_path / "roi" / f"{rois[i]}.gif"
            )
    report = check_pictures(tmp_path)
    assert report.problems == []
    assert [(p.stem, p.mask.stem, p.roi and p.roi.stem) for p in report.pictures] == [
        (image, mask, rois[i] if rois else None)
        for i, (image, mask) in enumerate(zip(images, masks, strict=True))
    ]
    assert report.positive_fractions == {images[0]: 1 / 64, images[1]: 1 / 64}
    assert (
        f"masks paired by name (2): image {images[0]} with {masks[0]}, and so on"
        in (report.summary_lines()[1])
    )


def test_names_that_do_not_pair_one_to_one_stay_unpaired(tmp_path: Path) -> None:
    # Two annotators' masks per image (CHASE_DB1): no tag pairs them one to one.
    _pair(tmp_path, "Image_01L")
    (tmp_path / "masks" / "Image_01L.png").rename(tmp_path / "masks" / "Image_01L_1stHO.png")
    shutil.copy(
        tmp_path / "masks" / "Image_01L_1stHO.png", tmp_path / "masks" / "Image_01L_2ndHO.png"
    )
    report = check_pictures(tmp_path)
    assert report.pictures == [] and len(report.problems) == 3
    assert "Image_01L.png: image without mask" in report.problems[0]


def test_a_manifest_written_on_windows_is_read(tmp_path: Path) -> None:
    _pair(tmp_path / "data", "a")
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,mask\ndata\\images\\a.png,data\\masks\\a.png\n")
    (picture,), problems = find_pairs(manifest)
    assert problems == [] and picture.image == (tmp_path / "data" / "images" / "a.png")
    assert picture.mask == tmp_path / "data" / "masks" / "a.png"


def test_netpbm_pictures_pair_as_stare_ships_them(tmp_path: Path) -> None:
    # STARE: im0001.ppm pictures, im0001.ah.ppm labels (one annotator's tag).
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    sources = sorted((DEEPCRACK / "train" / "images").iterdir())[:2]
    for i, image in enumerate(sources, start=1):
        Image.open(image).convert("RGB").save(tmp_path / "images" / f"im{i:04d}.ppm")
        mask = next((DEEPCRACK / "train" / "masks").glob(f"{image.stem}.*"))
        Image.open(mask).convert("RGB").save(tmp_path / "masks" / f"im{i:04d}.ah.ppm")
    report = check_pictures(tmp_path)
    assert report.problems == []
    assert [(p.stem, p.mask.name) for p in report.pictures] == [
        ("im0001", "im0001.ah.ppm"),
        ("im0002", "im0002.ah.ppm"),
    ]
    deepcrack = check_pictures(DEEPCRACK / "train").positive_fractions
    assert [report.positive_fractions[f"im{i:04d}"] for i in (1, 2)] == [
        deepcrack[s.stem] for s in sources
    ]


def _flat(folder: Path, names: list[tuple[str, str]]) -> list[str]:
    """DeepCrack pictures written into one folder as (image file, mask file) names; the
    source stems, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((DEEPCRACK / "train" / "images").iterdir())[: len(names)]
    for source, (image, mask) in zip(sources, names, strict=True):
        Image.open(source).convert("RGB").save(folder / image)
        Image.open(next((DEEPCRACK / "train" / "masks").glob(f"{source.stem}.*"))).save(
            folder / mask
        )
    return [s.stem for s in sources]


@pytest.mark.parametrize(
    ("names", "note"),
    [
        ([("104_sat.jpg", "104_mask.png"), ("10452_sat.jpg", "10452_mask.png")], "tag"),
        ([("train_1.bmp", "train_1_anno.bmp"), ("train_2.bmp", "train_2_anno.bmp")], "tag"),
        (
            [
                ("benign (1).png", "benign (1)_mask.png"),
                ("malignant (3).png", "malignant (3)_mask.png"),
            ],
            "tag",
        ),
        (
            [("20160222_081011_1_361.jpg", "20160222_081011_1_361.png"), ("2_2.jpg", "2_2.png")],
            "format",
        ),
    ],
    ids=["deepglobe", "glas", "busi", "crack500"],
)
def test_a_folder_holding_images_and_masks_pairs_them(
    tmp_path: Path, names: list[tuple[str, str]], note: str
) -> None:
    sources = _flat(tmp_path / "train", names)
    report = check_pictures(tmp_path / "train")
    assert report.problems == []
    assert [(p.image.name, p.mask.name) for p in report.pictures] == sorted(names)
    deepcrack = check_pictures(DEEPCRACK / "train").positive_fractions
    stems = {Path(image).stem: source for (image, _), source in zip(names, sources, strict=True)}
    assert report.positive_fractions == {s: deepcrack[stems[s]] for s in stems}
    assert (
        f"told apart by {'the masks' + chr(39) + ' tag' if note == 'tag' else 'format'}"
        in (report.summary_lines()[1])
    )
    from segtune.predict import collect_inputs

    assert [p.name for p in collect_inputs([tmp_path / "train"])] == sorted(i for i, _ in names)


def test_a_folder_whose_names_do_not_say_which_is_the_mask(tmp_path: Path) -> None:
    # CHASE_DB1: two annotators' masks per picture; BUSI: a picture with a second mask.
    _flat(tmp_path / "chase", [("Image_01L.jpg", "Image_01L_1stHO.png")])
    shutil.copy(
        tmp_path / "chase" / "Image_01L_1stHO.png", tmp_path / "chase" / "Image_01L_2ndHO.png"
    )
    problems = check_pictures(tmp_path / "chase").problems
    assert problems == [
        "Image_01L: several mask files share this stem (Image_01L_1stHO.png, "
        "Image_01L_2ndHO.png); keep one, or list the pairs in a CSV manifest"
    ]
    _flat(
        tmp_path / "busi", [("benign (4).png", "benign (4)_mask.png"), ("benign (5).png", "x.png")]
    )
    problems = check_pictures(tmp_path / "busi").problems
    assert problems == [
        f"{tmp_path / 'busi' / 'benign (5).png'}: image without mask (no mask named "
        "benign (5)_mask or the like)",
        f"{tmp_path / 'busi' / 'x.png'}: image without mask (no mask named x_mask or the like)",
    ]
    shutil.copy(
        tmp_path / "busi" / "benign (4)_mask.png", tmp_path / "busi" / "benign (4)_mask_1.png"
    )
    assert (
        "benign (4): several mask files share this stem (benign (4)_mask.png, "
        "benign (4)_mask_1.png)" in check_pictures(tmp_path / "busi").problems[0]
    )
    _flat(tmp_path / "plain", [("a.png", "b.png")])
    with pytest.raises(DataError, match=r"plain: no images/ and masks/ folders, and no mask names"):
        find_pairs(tmp_path / "plain")
