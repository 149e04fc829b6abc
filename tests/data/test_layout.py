"""Where a split's pictures are: folders, tags, one folder holding both, manifests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segtune.core.errors import DataError
from segtune.data.layout import find_pairs
from segtune.data.pairs import check_pictures
from tests.conftest import DEEPCRACK
from tests.data.helpers import write_pair


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        find_pairs(tmp_path)


def test_missing_masks_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=r"masks: folder missing \(expected .*/masks\)$"):
        find_pairs(tmp_path)
    # DRIVE's training/ folder: the masks are in 1st_manual/, mask/ is the field of view.
    for name in ("1st_manual", "mask"):
        (tmp_path / name).mkdir()
    with pytest.raises(
        DataError,
        match=r"masks: folder missing \(expected .*/masks; found 1st_manual/, mask/: rename "
        r"the folder of masks to masks/ \(a region of interest's to roi/\), or list the "
        r"pairs in a CSV manifest: segtune manifest IMAGES MASKS --out FILE.csv writes one\)$",
    ):
        find_pairs(tmp_path)


def test_folder_order_does_not_matter(tmp_path: Path) -> None:
    for stem in ("c", "a", "b"):
        write_pair(tmp_path / "one", stem)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    a, _ = find_pairs(tmp_path / "one")
    assert [p.stem for p in a] == ["a", "b", "c"]


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
        write_pair(tmp_path, image, mask_values=(0,) * i + (255,))
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


def test_one_missing_file_leaves_the_rest_paired_by_tag(tmp_path: Path) -> None:
    # ISIC's layout with one mask missing and one mask whose image is missing: two
    # problems naming the files, not every picture "without mask".
    for k in range(5):
        write_pair(tmp_path, f"ISIC_{k:07d}")
        mask = tmp_path / "masks" / f"ISIC_{k:07d}.png"
        mask.rename(mask.with_name(f"ISIC_{k:07d}_segmentation.png"))
    (tmp_path / "masks" / "ISIC_0000003_segmentation.png").unlink()
    (tmp_path / "images" / "ISIC_0000004.png").unlink()
    pictures, problems = find_pairs(tmp_path)
    assert [p.stem for p in pictures] == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    assert problems == [
        f"{tmp_path}/images/ISIC_0000003.png: image without mask (no {tmp_path}/masks/"
        "ISIC_0000003.*; if it has no positives: data.missing_masks: empty)",
        f"{tmp_path}/masks/ISIC_0000004_segmentation.png: mask without image (no "
        f"{tmp_path}/images/ISIC_0000004.*)",
    ]


def test_names_that_do_not_pair_one_to_one_stay_unpaired(tmp_path: Path) -> None:
    # Two annotators' masks per image (CHASE_DB1): no tag pairs them one to one.
    write_pair(tmp_path, "Image_01L")
    (tmp_path / "masks" / "Image_01L.png").rename(tmp_path / "masks" / "Image_01L_1stHO.png")
    shutil.copy(
        tmp_path / "masks" / "Image_01L_1stHO.png", tmp_path / "masks" / "Image_01L_2ndHO.png"
    )
    report = check_pictures(tmp_path)
    assert report.pictures == [] and len(report.problems) == 3
    assert "Image_01L.png: image without mask" in report.problems[0]


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
    from segtune.inference.predict import collect_inputs

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
        "benign (5)_mask or the like; if it has no positives: data.missing_masks: empty)",
        f"{tmp_path / 'busi' / 'x.png'}: image without mask (no mask named x_mask or the like; "
        "if it has no positives: data.missing_masks: empty)",
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
    # DeepCrack as it ships: train_img/ and train_lab/ beside each other.
    for name in ("train_img", "train_lab"):
        (tmp_path / "deepcrack" / name).mkdir(parents=True)
    with pytest.raises(
        DataError,
        match=r"segtune manifest IMAGES MASKS --out FILE.csv writes one; found "
        r"train_img/, train_lab/\)$",
    ):
        find_pairs(tmp_path / "deepcrack")


def test_hidden_files_are_not_pictures(tmp_path: Path) -> None:
    from segtune.inference.predict import collect_inputs

    write_pair(tmp_path, "0001")
    # macOS's metadata files, as copying to a USB disk or a network share leaves them.
    for sub in ("images", "masks"):
        (tmp_path / sub / "._0001.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    report = check_pictures(tmp_path)
    assert report.problems == [] and [p.stem for p in report.pictures] == ["0001"]
    assert [p.name for p in collect_inputs([tmp_path])] == ["0001.png"]


def test_predict_keeps_pictures_whose_names_only_look_like_masks(tmp_path: Path) -> None:
    from segtune.inference.predict import collect_inputs

    for name in ("scan.png", "road_seg.png", "a.png", "a_mask.png"):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / name)
    # a_mask.png is a's mask; road_seg.png has no picture "road" to be the mask of.
    assert [p.name for p in collect_inputs([tmp_path])] == ["a.png", "road_seg.png", "scan.png"]
