"""CSV manifests: read in the dialects spreadsheets write, relative and Windows paths,
names for images of one stem, and `segtune manifest` writing one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segtune.cli.main import main
from segtune.core.errors import DataError
from segtune.data.layout import find_pairs
from tests.data.helpers import write_pair


def test_manifest_with_relative_paths(tmp_path: Path) -> None:
    write_pair(tmp_path, "x")
    write_pair(tmp_path, "y")
    (tmp_path / "list.csv").write_text(
        "image,mask\nimages/x.png,masks/x.png\nimages/y.png,masks/y.png\n"
    )
    pictures, problems = find_pairs(tmp_path / "list.csv")
    assert problems == [] and [p.stem for p in pictures] == ["x", "y"]
    (tmp_path / "bad.csv").write_text("img,mask\n")
    with pytest.raises(DataError, match="needs 'image' and 'mask' columns"):
        find_pairs(tmp_path / "bad.csv")


@pytest.mark.parametrize(
    "text",
    [
        "image;mask\nimages/x.png;masks/x.png\n\nimages/y.png;masks/y.png\n",  # Excel, comma locale
        "\ufeffImage,Mask\r\nimages/x.png,masks/x.png\r\nimages/y.png,masks/y.png\r\n",
        " image , mask\nimages/x.png, masks/x.png\nimages/y.png,  masks/y.png\n",
        "image\tmask\nimages/x.png\timages/../masks/x.png\nimages/y.png\tmasks/y.png\n",
    ],
    ids=["semicolons", "bom-crlf-capitals", "spaces", "tabs"],
)
def test_manifests_in_spreadsheet_dialects_are_read(tmp_path: Path, text: str) -> None:
    write_pair(tmp_path, "x")
    write_pair(tmp_path, "y")
    (tmp_path / "list.csv").write_text(text, encoding="utf-8")
    pictures, problems = find_pairs(tmp_path / "list.csv")
    assert problems == [] and [p.stem for p in pictures] == ["x", "y"]
    assert pictures[0].mask == tmp_path / "masks" / "x.png"


def test_a_manifest_problem_names_its_line_and_the_columns_found(tmp_path: Path) -> None:
    write_pair(tmp_path, "x")  # blank lines and rows of separators (Excel's) are skipped
    (tmp_path / "gaps.csv").write_text(
        "image,mask\n\nimages/x.png,masks/x.png\n,,\nimages/y.png,\n"
    )
    _, problems = find_pairs(tmp_path / "gaps.csv")
    assert problems == [f"{tmp_path / 'gaps.csv'}: line 5: missing image or mask field"]
    (tmp_path / "labels.csv").write_text("Image;Label\nimages/x.png;masks/x.png\n")
    with pytest.raises(DataError, match=r"needs 'image' and 'mask' columns; found 'image;label'$"):
        find_pairs(tmp_path / "labels.csv")


def test_a_manifest_names_pictures_of_one_stem_by_their_folders(tmp_path: Path) -> None:
    for folder in ("cityA", "cityB"):
        write_pair(tmp_path / folder, "0001")
    (tmp_path / "list.csv").write_text(
        "image,mask\n"
        + "".join(f"{c}/images/0001.png,{c}/masks/0001.png\n" for c in ("cityA", "cityB"))
        + "cityA/images/0001.png,cityA/masks/0001.png\n"
    )
    pictures, problems = find_pairs(tmp_path / "list.csv")
    assert [p.stem for p in pictures] == ["cityA/images/0001", "cityB/images/0001"]
    assert problems == [
        f"{tmp_path / 'list.csv'}: line 4: {tmp_path / 'cityA/images/0001.png'} is listed twice"
    ]


def test_a_manifest_written_on_windows_is_read(tmp_path: Path) -> None:
    write_pair(tmp_path / "data", "a")
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,mask\ndata\\images\\a.png,data\\masks\\a.png\n")
    (picture,), problems = find_pairs(manifest)
    assert problems == [] and picture.image == (tmp_path / "data" / "images" / "a.png")
    assert picture.mask == tmp_path / "data" / "masks" / "a.png"


def test_segtune_manifest_pairs_sibling_folders_as_drive_ships_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # DRIVE's training/: images/21_training.tif, 1st_manual/21_manual1.gif (the labels),
    # mask/21_training_mask.gif (the field of view).
    root = tmp_path / "training"
    for sub in ("images", "1st_manual", "mask"):
        (root / sub).mkdir(parents=True)
    for k in (21, 22):
        Image.fromarray(np.full((8, 8, 3), k, np.uint8)).save(root / "images" / f"{k}_training.tif")
        Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(
            root / "1st_manual" / f"{k}_manual1.gif"
        )
        Image.fromarray(np.full((8, 8), 255, np.uint8)).save(
            root / "mask" / f"{k}_training_mask.gif"
        )
    out = tmp_path / "lists" / "train.csv"
    out.parent.mkdir()
    argv = ["manifest", str(root / "images"), str(root / "1st_manual"), "--out", str(out)]
    assert main([*argv, "--roi", str(root / "mask")]) == 0
    assert "wrote 2 picture(s)" in capsys.readouterr().out
    assert out.read_text().splitlines()[:2] == [
        "image,mask,roi",
        "../training/images/21_training.tif,../training/1st_manual/21_manual1.gif,"
        "../training/mask/21_training_mask.gif",
    ]
    pictures, problems = find_pairs(out)  # read back as training reads it
    assert problems == [] and [(p.stem, p.mask.name, p.roi and p.roi.name) for p in pictures] == [
        ("21_training", "21_manual1.gif", "21_training_mask.gif"),
        ("22_training", "22_manual1.gif", "22_training_mask.gif"),
    ]
    assert main(argv) == 2 and "exists (use --force" in capsys.readouterr().err
    # A problem writes nothing; an image without a mask may be listed without one.
    (root / "1st_manual" / "22_manual1.gif").unlink()
    fresh = tmp_path / "lists" / "fresh.csv"
    argv[-1] = str(fresh)
    assert main(argv) == 1 and not fresh.exists()
    assert "22_training.tif: image without mask" in capsys.readouterr().err
    assert main([*argv, "--missing-masks", "empty"]) == 0
    assert fresh.read_text().splitlines()[2] == "../training/images/22_training.tif,"
    assert [p.mask is None for p in find_pairs(fresh, "empty")[0]] == [False, True]
