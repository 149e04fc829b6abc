"""Bad input gets one line naming the file or key, exit status 2, and nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from segtune.cli.main import main
from segtune.core.config import build_run_config
from segtune.data.io import read_image
from segtune.data.layout import find_pairs
from tests.conftest import tiny_tree


def _spec(data: Path, **changes: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {
        "name": "bad",
        "data": {"train": str(data / "train"), "val": str(data / "val")},
        "fixed": {k: v for k, v in tiny_tree(data).items() if k != "data"},
        "stages": [{"name": "g", "grid": {"loss.bce_weight": [0.5]}}],
    }
    tree.update(changes)
    return tree


SPEC_CASES = {
    "inf value": ({"fixed": {"loss": {"pos_weight": float("inf")}}}, "loss.pos_weight"),
    "nan in a grid": (
        {"stages": [{"name": "g", "grid": {"loss.pos_weight": [float("nan")]}}]},
        "loss.pos_weight",
    ),
    "empty grid": ({"stages": [{"name": "g", "grid": {}}]}, "grid needs at least one key"),
    "test split objective": ({"objective": {"metric": "test/recall"}}, "'test/recall'"),
    "val loss objective": ({"objective": {"metric": "val/loss"}}, "val/recall"),
    "negative seed": ({"fixed": {"runtime": {"seed": -1}}}, "runtime.seed"),
}


@pytest.mark.parametrize("case", list(SPEC_CASES), ids=list(SPEC_CASES))
def test_bad_spec_is_one_line_and_writes_nothing(
    case: str, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changes, named = SPEC_CASES[case]
    tree = _spec(demo_data, **changes)
    if case == "negative seed":
        tree["fixed"]["runtime"]["seed"] = -1
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tree))
    study = tmp_path / "study"
    assert main(["sweep", str(path), "--dir", str(study)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and named in err, err
    assert not study.exists()


def test_encoder_weights_none_as_written_in_yaml_means_no_weights(demo_data: Path) -> None:
    for word in ("none", "None", "null"):
        config = build_run_config(tiny_tree(demo_data, model={"encoder_weights": word}))
        assert config.model.encoder_weights is None


def _folder(tmp_path: Path, mask_suffix: str) -> Path:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "21.png")
    if mask_suffix == ".gif":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "21.gif")
    else:
        (root / "masks" / f"21{mask_suffix}").write_bytes(b"MATLAB 5.0 MAT-file")
    return root


def test_gif_masks_are_found_in_the_folder_layout(tmp_path: Path) -> None:
    pictures, problems = find_pairs(_folder(tmp_path, ".gif"))
    assert problems == [] and [p.mask.name for p in pictures] == ["21.gif"]


def test_unsupported_mask_format_is_named(tmp_path: Path) -> None:
    _, problems = find_pairs(_folder(tmp_path, ".mat"))
    assert len(problems) == 1 and "21.mat: unsupported mask format .mat" in problems[0]
    assert problems[0].endswith("; save each array as a PNG (0 and 255)")


def test_unsupported_image_format_is_named_not_called_missing(tmp_path: Path) -> None:
    # A phone's HEIC beside its mask: "mask without image" would send the user looking
    # for a file that is there.
    root = _folder(tmp_path, ".gif")
    (root / "images" / "21.png").rename(root / "images" / "21.heic")
    (root / "images" / "._21.heic").write_bytes(b"macOS metadata")
    _, problems = find_pairs(root)
    assert len(problems) == 1 and problems[0].endswith(
        "images/21.heic: unsupported image format .heic (supported: .png, .jpg, .jpeg, "
        ".tif, .tiff, .bmp, .gif, .webp, .ppm, .pgm, .pbm, .pnm, .jp2, .j2k)"
    )


def test_jpeg_2000_pictures_are_read(tmp_path: Path) -> None:
    root = _folder(tmp_path, ".gif")
    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "images" / "21.jp2")  # lossless by default
    (root / "images" / "21.png").unlink()
    (picture,), problems = find_pairs(root)
    assert problems == [] and picture.image.name == "21.jp2"
    assert np.array_equal(read_image(picture.image), rgb)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"image,mask\na.png\n", "line 2: missing image or mask field"),
        (b"image,mask\na.png,a.png\n\xff\xfe.png,b.png\n", "line 3: not UTF-8 text"),
    ],
    ids=["missing field", "not utf-8"],
)
def test_bad_manifest_names_the_csv_and_line(
    content: bytes, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(content)
    assert main(["check-data", str(manifest)]) in (1, 2)
    err = capsys.readouterr().err
    assert f"{manifest}: {expected}" in err and "Traceback" not in err


def test_pictures_over_max_pixels_are_refused_naming_the_file(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tiny_tree(demo_data)
    tree["data"]["max_pixels"] = 100
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tree))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "64x64 = 4096 pixels exceeds data.max_pixels (100)" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_picture_over_pillows_bomb_limit_is_read(tmp_path: Path) -> None:
    from segtune.data.io import image_size, read_mask

    path = tmp_path / "big.png"
    Image.new("1", (14000, 14000)).save(path)  # 196 million pixels > Pillow's 179 million
    assert image_size(path) == (14000, 14000)
    assert read_mask(path).shape == (14000, 14000)


def test_a_symlink_loop_in_a_data_folder_is_reported(tmp_path: Path) -> None:
    root = _folder(tmp_path, ".gif")
    (root / "images" / "loop.png").symlink_to(root / "images" / "loop.png")
    pictures, problems = find_pairs(root)
    assert [p.stem for p in pictures] == ["21"]
    assert problems == [f"{root / 'images' / 'loop.png'}: symbolic link loop or dangling link"]


@pytest.mark.parametrize("command", ["sweep", "train", "predict"])
def test_a_device_string_is_checked_before_any_work(
    command: str, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if command == "sweep":
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(_spec(demo_data)))
        args = ["sweep", str(path), "--dir", str(tmp_path / "study"), "--device", "gpu0"]
    elif command == "train":
        args = ["train", "--out", str(tmp_path / "study"), "--set", "runtime.device=gpu0"]
    else:
        args = ["predict", str(tmp_path / "m.pt"), str(tmp_path), "--out", str(tmp_path / "study")]
        args += ["--device", "gpu0"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gpu0" in err, err
    assert not (tmp_path / "study").exists()


def test_predict_reads_the_image_column_of_a_manifest(tmp_path: Path) -> None:
    from segtune.inference.predict import collect_inputs

    root = _folder(tmp_path, ".gif")
    manifest = tmp_path / "test.csv"
    manifest.write_text("image,mask\ndata/images/21.png,data/masks/21.gif\n")
    assert collect_inputs([manifest]) == [(root / "images" / "21.png").resolve()]


def test_encoder_weights_from_a_local_smp_state_dict(tmp_path: Path) -> None:
    import segmentation_models_pytorch as smp
    import torch

    from segtune.core.config import ModelConfig
    from segtune.core.errors import ConfigError
    from segtune.engine.model import build_model

    source = smp.create_model("Unet", encoder_name="mobilenet_v2", encoder_weights=None)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(source.encoder.state_dict(), path)
    model = build_model(ModelConfig(encoder="mobilenet_v2", encoder_weights=str(path)))
    for name, tensor in source.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], tensor), name
    with pytest.raises(ConfigError, match=r"model\.encoder_weights: .*mobilenet_v2\.pth"):
        build_model(ModelConfig(encoder="resnet18", encoder_weights=str(path)))


@pytest.mark.parametrize("where", ["is a file", "under a file"])
@pytest.mark.parametrize("command", ["train", "predict"])
def test_an_out_folder_that_cannot_be_made_is_one_line(
    command: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    out = blocker if where == "is a file" else blocker / "run"
    if command == "train":
        args = ["train", "--out", str(out)]
    else:
        args = ["predict", str(tmp_path / "m.pt"), str(tmp_path), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--out {out}" in err and "is a file" in err, err
    assert blocker.read_text() == "x"


def test_a_mistyped_command_or_key_gets_the_nearest_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["swep", "spec.yaml"]) == 2
    assert "unknown command 'swep' (did you mean sweep?" in capsys.readouterr().err
    assert main(["train", "--set", "optim.epoch=3", "--out", str(tmp_path / "r")]) == 2
    assert "optim.epoch: unknown key (did you mean optim.epochs?)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    from segtune import __version__

    assert capsys.readouterr().out.strip() == f"segtune {__version__}"


def test_every_option_of_every_command_has_help() -> None:
    import argparse

    from segtune.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, command in sub.choices.items()
        for action in command._actions
        if action.help is None and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []


def test_quiet_prints_results_only(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_tree(demo_data)))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress, no epoch lines
    assert captured.out.startswith("run completed: ")


def test_a_refused_database_write_shows_the_drivers_words_not_optunas_wrapper() -> None:
    import sqlite3

    from optuna.exceptions import StorageInternalError

    from segtune.cli.main import _storage_problem

    try:
        try:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        except sqlite3.OperationalError as cause:
            raise StorageInternalError(
                "An exception is raised during the commit. This typically happens due to "
                "invalid data in the commit, e.g. exceeding max length."
            ) from cause
    except StorageInternalError as exc:
        line = _storage_problem(exc)
    assert line == (
        "study database: attempt to write a readonly database (check that the study folder "
        "and database are writable)"
    )
