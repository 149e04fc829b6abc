"""The refusal table: bad spec, config, arguments or data, over every command that reads
pictures. A refused command exits 2 with exactly one line on stderr naming the file,
line or key, no traceback, and leaves no run folder, study folder or output behind;
``check-data`` prints one line per problem and exits 1; ``predict`` writes the good
pictures and exits 1 when some could not be read."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

from segtune.cli.main import main
from tests.conftest import tiny_tree

Setup = Callable[[Path], None]  # mutates the case's copy of the data (tmp/data)


@dataclass(frozen=True)
class Case:
    command: str  # check-data, train, sweep, predict, manifest, evaluate
    expect: str  # in the stderr line; {data} and {tmp} are filled in
    config: dict[str, Any] = field(default_factory=dict)  # merged into the run config
    spec: dict[str, Any] = field(default_factory=dict)  # replaces top-level spec keys
    setup: Setup | None = None
    args: tuple[str, ...] = ()
    code: int = 2  # check-data cases: 1 (a data problem)
    raw_file: str | None = None  # the config / spec file's text, as written


# Data changes -----------------------------------------------------------------------


def _first(data: Path, split: str, kind: str) -> Path:
    return sorted((data / split / kind).iterdir())[0]


def _image_without_mask(data: Path) -> None:
    _first(data, "val", "masks").unlink()


def _no_val_masks(data: Path) -> None:
    shutil.rmtree(data / "val" / "masks")


def _mask_without_image(data: Path) -> None:
    _first(data, "val", "images").unlink()


def _truncated_image(data: Path) -> None:
    path = _first(data, "val", "images")
    path.write_bytes(path.read_bytes()[:60])


def _garbage_image(data: Path) -> None:
    _first(data, "val", "images").write_bytes(b"not a picture at all")


def _mask_other_size(data: Path) -> None:
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(_first(data, "val", "masks"))


def _train_mask_other_size(data: Path) -> None:
    Image.fromarray(np.zeros((64, 40), np.uint8)).save(_first(data, "train", "masks"))


def _non_binary_mask(data: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[:10], mask[10:20] = 1, 2
    Image.fromarray(mask).save(_first(data, "val", "masks"))


def _non_binary_train_mask(data: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[:10], mask[10:20] = 128, 255
    Image.fromarray(mask).save(_first(data, "train", "masks"))


def _colour_mask(data: Path) -> None:
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[:10, :, 0] = 255
    mask[10:20, :, 1] = 255
    Image.fromarray(mask).save(_first(data, "val", "masks"))


def _mat_mask(data: Path) -> None:
    mask = _first(data, "val", "masks")
    mask.unlink()
    mask.with_suffix(".mat").write_bytes(b"MATLAB 5.0 MAT-file")


def _symlink_loop(data: Path) -> None:
    loop = data / "val" / "images" / "loop.png"
    loop.symlink_to(loop)


def _empty_split(data: Path) -> None:
    for kind in ("images", "masks"):
        for path in (data / "val" / kind).iterdir():
            path.unlink()


def _no_val_folder(data: Path) -> None:
    shutil.rmtree(data / "val")


def _multipage_mask(data: Path) -> None:
    mask = _first(data, "val", "masks")
    mask.unlink()
    pages = [np.zeros((32, 32), np.uint8), np.zeros((64, 64), np.uint8)]
    with tifffile.TiffWriter(mask.with_suffix(".tif")) as tif:
        for page in pages:
            tif.write(page)


def _six_channels(data: Path) -> None:
    for path in (data / "train" / "images").iterdir():
        path.unlink()
        arr = np.zeros((64, 64, 6), np.uint8)
        tifffile.imwrite(
            path.with_suffix(".tif"), arr, photometric="minisblack", planarconfig="contig"
        )


def _manifest(text: bytes) -> Setup:
    def setup(data: Path) -> None:
        (data / "val.csv").write_bytes(text)

    return setup


def _corrupt_train_image(data: Path) -> None:
    path = _first(data, "train", "images")
    path.write_bytes(path.read_bytes()[:80])


def _write_model_pt(kind: str) -> Setup:
    def setup(data: Path) -> None:
        target = data.parent / "model.pt"
        if kind == "garbage":
            target.write_bytes(b"\x00\x01 this is not a checkpoint")
        elif kind == "pickle":
            target.write_bytes(pickle.dumps({"hello": "world"}))
        elif kind == "other architecture":
            import torch

            from segtune.core.config import build_run_config, config_to_dict
            from segtune.engine.model import build_model

            config = build_run_config(tiny_tree(data))
            other = build_run_config(tiny_tree(data, model={"decoder_channels": [32, 16, 8]}))
            state = {
                "model": build_model(other.model).state_dict(),
                "config": config_to_dict(config),
            }
            torch.save(state, target)

    return setup


def _one_bad_picture(data: Path) -> None:
    _garbage_image(data)


def _loop_in_manifest(data: Path) -> None:
    (data / "loop-a.png").symlink_to(data / "loop-b.png")
    (data / "loop-b.png").symlink_to(data / "loop-a.png")
    (data / "val.csv").write_text("image,mask\nloop-a.png,loop-a.png\n")


def _fifo_picture(data: Path) -> None:
    path = _first(data, "val", "images")
    path.unlink()
    os.mkfifo(path)


def _loop_among_pictures(data: Path) -> None:
    folder = data / "val" / "images"
    (folder / "zz-loop.png").symlink_to(folder / "zz-loop.png")  # a link to itself


DEEP = "[" * 20_000 + "]" * 20_000  # nesting the YAML parser's recursion cannot take


CASES: dict[str, Case] = {
    # check-data: one line per problem, exit 1 -------------------------------------
    "check image without mask": Case(
        "check-data", "image without mask", setup=_image_without_mask, code=1
    ),
    "check mask without image": Case(
        "check-data", "mask without image", setup=_mask_without_image, code=1
    ),
    "check truncated image": Case(
        "check-data", "unreadable or truncated", setup=_truncated_image, code=1
    ),
    "check garbage image": Case("check-data", "unreadable", setup=_garbage_image, code=1),
    "check mask size": Case("check-data", "does not match image", setup=_mask_other_size, code=1),
    "check non-binary mask": Case("check-data", "distinct values", setup=_non_binary_mask, code=1),
    "check colour mask": Case(
        "check-data", "colour mask with 2 colours besides black", setup=_colour_mask, code=1
    ),
    "check mat mask": Case("check-data", "unsupported mask format .mat", setup=_mat_mask, code=1),
    "check symlink loop": Case("check-data", "symbolic link loop", setup=_symlink_loop, code=1),
    "check multipage mask": Case(
        "check-data", "does not match image", setup=_multipage_mask, code=1
    ),
    "check empty split": Case("check-data", "no pictures", setup=_empty_split, code=1),
    "check missing folder": Case("check-data", "val", setup=_no_val_folder, code=1),
    "check csv missing field": Case(
        "check-data",
        "line 2: missing image or mask field",
        setup=_manifest(b"image,mask\nimages/a.png\n"),
        code=1,
    ),
    "check csv not utf-8": Case(
        "check-data",
        "not UTF-8 text",
        setup=_manifest(b"image,mask\n\xff\xfe.png,b.png\n"),
        code=1,
    ),
    "check csv symlink loop": Case(
        "check-data", "loop-a.png: symbolic link loop", setup=_loop_in_manifest, code=1
    ),
    "check fifo as picture": Case(
        "check-data", "not a regular file (a FIFO)", setup=_fifo_picture, code=1
    ),
    "check csv missing file": Case(
        "check-data",
        "nope.png",
        setup=_manifest(b"image,mask\nimages/nope.png,masks/nope.png\n"),
        code=1,
    ),
    # train: config ----------------------------------------------------------------
    "train bad yaml": Case("train", "c.yaml", raw_file="optim: {epochs: [1,\n"),
    "train yaml not a mapping": Case("train", "c.yaml", raw_file="- 1\n- 2\n"),
    "train duplicate key": Case(
        "train",
        "c.yaml: key 'optim' given twice (lines 1 and 2)",
        raw_file="optim: {epochs: 1}\noptim: {epochs: 2}\n",
    ),
    "train nested too deep": Case(
        "train", "c.yaml: line 1: nested deeper than 64 levels", raw_file=f"a: {DEEP}\n"
    ),
    "train unknown section": Case("train", "optimiser", config={"optimiser": {"epochs": 1}}),
    "train unknown key": Case("train", "optim.epoch", config={"optim": {"epoch": 3}}),
    "train zero epochs": Case("train", "optim.epochs", config={"optim": {"epochs": 0}}),
    "train negative lr": Case(
        "train", "optim.learning_rate", config={"optim": {"learning_rate": -1}}
    ),
    "train threshold above 1": Case("train", "eval.threshold", config={"eval": {"threshold": 1.5}}),
    "train tiny page": Case("train", "pages.page_size", config={"pages": {"page_size": 8}}),
    "train overlap above page": Case(
        "train", "patch_overlap", config={"pages": {"patch_overlap": 32}}
    ),
    "train inf": Case("train", "loss.pos_weight", config={"loss": {"pos_weight": float("inf")}}),
    "train nan": Case("train", "loss.bce_weight", config={"loss": {"bce_weight": float("nan")}}),
    "train negative seed": Case("train", "runtime.seed", config={"runtime": {"seed": -1}}),
    "train unknown arch": Case("train", "model.arch", config={"model": {"arch": "UNetXL"}}),
    "train unknown encoder": Case(
        "train", "model.encoder", config={"model": {"encoder": "resnet9000"}}
    ),
    "train decoder channels length": Case(
        "train", "decoder_channels", config={"model": {"decoder_channels": [16, 8]}}
    ),
    "train bad device": Case("train", "runtime.device", config={"runtime": {"device": "gpu"}}),
    "train unknown augment": Case(
        "train", "sampling.augment", config={"sampling": {"augment": ["twirl"]}}
    ),
    "train missing weights file": Case(
        "train", "encoder_weights", config={"model": {"encoder_weights": "/nope/w.pth"}}
    ),
    "train fixed intensity without bounds": Case(
        "train", "data.intensity", config={"data": {"intensity": {"mode": "fixed"}}}
    ),
    "train two channels": Case("train", "data.channels", config={"data": {"channels": [0, 1]}}),
    "train subset too large": Case(
        "train", "subset of 50 pictures", config={"data": {"train_subset": 50}}
    ),
    "train missing config file": Case("train", "nope.yaml", args=("--config-file", "nope.yaml")),
    "train out is a file": Case("train", "is a file", args=("--out-file",)),
    # train: data ------------------------------------------------------------------
    "train missing val folder": Case("train", "val", setup=_no_val_folder),
    "train mask size": Case("train", "does not match image", setup=_train_mask_other_size),
    "train max pixels": Case(
        "train", "exceeds data.max_pixels", config={"data": {"max_pixels": 99}}
    ),
    "train non-binary mask": Case("train", "distinct values", setup=_non_binary_train_mask),
    "train corrupt image": Case("train", "unreadable or truncated", setup=_corrupt_train_image),
    "train six channels": Case("train", "6 channels", setup=_six_channels),
    "train empty val": Case("train", "val", setup=_empty_split),
    # sweep: spec ------------------------------------------------------------------
    "sweep bad yaml": Case("sweep", "s.yaml", raw_file="name: x\nstages: [\n"),
    "sweep duplicate section": Case(
        "sweep",
        "s.yaml: key 'fixed' given twice (lines 2 and 4)",
        raw_file="name: x\nfixed: {}\nstages: []\nfixed:\n  optim: {epochs: 1}\n",
    ),
    "sweep duplicate nested key": Case(
        "sweep",
        "s.yaml: key 'epochs' given twice (lines 4 and 5)",
        raw_file="name: x\nfixed:\n  optim:\n    epochs: 1\n    epochs: 2\n",
    ),
    "sweep nested too deep": Case(
        "sweep", "s.yaml: line 1: nested deeper than 64 levels", raw_file=f"name: {DEEP}\n"
    ),
    "sweep postgres refused": Case(
        "sweep",
        "check that the PostgreSQL server is up",
        args=("--storage", "postgresql+psycopg2://nobody@127.0.0.1:1/none"),
    ),
    "sweep empty grid": Case("sweep", "grid", spec={"stages": [{"name": "g", "grid": {}}]}),
    "sweep no stages": Case("sweep", "stages", spec={"stages": []}),
    "sweep nan in grid": Case(
        "sweep",
        "loss.pos_weight",
        spec={"stages": [{"name": "g", "grid": {"loss.pos_weight": [float("nan")]}}]},
    ),
    "sweep unknown grid key": Case(
        "sweep",
        "loss.bce_wieght",
        spec={"stages": [{"name": "g", "grid": {"loss.bce_wieght": [1]}}]},
    ),
    "sweep grid value out of range": Case(
        "sweep",
        "loss.bce_weight",
        spec={"stages": [{"name": "g", "grid": {"loss.bce_weight": [1.5]}}]},
    ),
    "sweep duplicate stages": Case(
        "sweep",
        "g",
        spec={
            "stages": [
                {"name": "g", "grid": {"loss.bce_weight": [0.5]}},
                {"name": "g", "grid": {"loss.bce_weight": [0.2]}},
            ]
        },
    ),
    "sweep test objective": Case(
        "sweep", "test/recall", spec={"objective": {"metric": "test/recall"}}
    ),
    "sweep val loss objective": Case(
        "sweep", "val/loss", spec={"objective": {"metric": "val/loss"}}
    ),
    "sweep unknown encoder": Case(
        "sweep", "model.encoder", config={"model": {"encoder": "resnet9000"}}
    ),
    "sweep bad device": Case("sweep", "runtime.device", config={"runtime": {"device": "tpu"}}),
    "sweep negative seed": Case("sweep", "runtime.seed", config={"runtime": {"seed": -1}}),
    "sweep percentiles reversed": Case(
        "sweep",
        "data.intensity",
        config={"data": {"intensity": {"mode": "percentile", "percentiles": [90, 10]}}},
    ),
    "sweep zero workers": Case("sweep", "--workers", args=("--workers", "0")),
    "sweep bad storage": Case("sweep", "--storage", args=("--storage", "mysql+nope://x/y")),
    "sweep missing spec": Case("sweep", "nope.yaml", args=("--spec-file", "nope.yaml")),
    # sweep: data ------------------------------------------------------------------
    "sweep missing val folder": Case("sweep", "val", setup=_no_val_folder),
    "sweep mask size": Case("sweep", "does not match image", setup=_train_mask_other_size),
    "sweep max pixels": Case(
        "sweep", "exceeds data.max_pixels", config={"data": {"max_pixels": 99}}
    ),
    # predict ----------------------------------------------------------------------
    "predict missing checkpoint": Case("predict", "checkpoint not found"),
    "predict garbage checkpoint": Case(
        "predict", "not a segtune checkpoint", setup=_write_model_pt("garbage")
    ),
    "predict pickle": Case("predict", "not a segtune checkpoint", setup=_write_model_pt("pickle")),
    "predict other architecture": Case(
        "predict", "do not fit", setup=_write_model_pt("other architecture")
    ),
    "predict missing input": Case("predict", "no such file", args=("--input", "nope")),
    "predict bad threshold": Case("predict", "--threshold", args=("--threshold", "2")),
    "predict bad device": Case("predict", "gpu0", args=("--device", "gpu0")),
    "predict out is a file": Case("predict", "is a file", args=("--out-file",)),
    "predict one bad picture": Case("predict", "unreadable", setup=_one_bad_picture, code=1),
    "predict symlink loop among pictures": Case(
        "predict", "zz-loop.png: symbolic link loop", setup=_loop_among_pictures, code=1
    ),
    "predict out under proc": Case("predict", "/proc/segtune-refused", args=("--out-proc",)),
    # evaluate ---------------------------------------------------------------------
    "evaluate out is a folder": Case(
        "evaluate", "is a folder; give a file name", args=("--out-folder",)
    ),
    # manifest ---------------------------------------------------------------------
    "manifest out exists": Case("manifest", "exists (use --force", args=("--out-file",)),
    "manifest out not csv": Case("manifest", "a manifest is a .csv file", args=("--out-txt",)),
    "manifest missing masks folder": Case("manifest", "no such folder", setup=_no_val_masks),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, demo_data: Path) -> Path:
    """One tiny trained run whose ``model.pt`` the predict cases use."""
    from segtune.core.config import build_run_config
    from segtune.engine.train import train_run

    run = tmp_path_factory.mktemp("trained") / "run"
    train_run(build_run_config(tiny_tree(demo_data)), run, progress=False)
    return run / "model.pt"


def _merge(tree: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value)
        else:
            tree[key] = value


def _arguments(case: Case, tmp: Path, data: Path) -> tuple[list[str], Path]:
    """The command line of a case and the output it must not leave behind."""
    out = tmp / "out"
    extra = list(case.args)
    if "--out-file" in extra:
        extra.remove("--out-file")
        out = tmp / "taken"
        out.write_text("x")
    if case.command == "manifest":
        out = tmp / ("taken.csv" if out.name == "taken" else "out.csv")
        if "--out-txt" in extra:
            extra.remove("--out-txt")
            out = tmp / "pairs.txt"
        elif out.name == "taken.csv":
            out.write_text("x")
        folders = [str(data / "val" / "images"), str(data / "val" / "masks")]
        return ["manifest", *folders, "--out", str(out), *extra], out
    if case.command == "check-data":
        source = data / "val.csv" if (data / "val.csv").exists() else data / "val"
        return ["check-data", str(data / "train"), str(source)], out
    if case.command == "evaluate":
        out = tmp / "outdir"
        out.mkdir()
        return ["evaluate", str(tmp / "model.pt"), str(data / "val"), "--out", str(out)], out
    if "--out-proc" in extra:
        extra.remove("--out-proc")
        out = Path("/proc/segtune-refused")
    if case.command == "predict":
        checkpoint = tmp / "model.pt"
        inputs = str(data / "val")
        if "--input" in extra:
            i = extra.index("--input")
            inputs = str(tmp / extra[i + 1])
            del extra[i : i + 2]
        return ["predict", str(checkpoint), inputs, "--out", str(out), *extra], out
    tree = tiny_tree(data, optim={"epochs": 1})
    _merge(tree, case.config)
    if case.command == "train":
        path = tmp / "c.yaml"
        if "--config-file" in extra:
            i = extra.index("--config-file")
            path = tmp / extra[i + 1]
            del extra[i : i + 2]
        else:
            path.write_text(case.raw_file or yaml.safe_dump(tree))
        return ["train", str(path), "--out", str(out), *extra], out
    spec: dict[str, Any] = {
        "name": "refused",
        "data": tree.pop("data"),
        "fixed": tree,
        "stages": [{"name": "g", "grid": {"loss.bce_weight": [0.5]}}],
    }
    spec.update(case.spec)
    path = tmp / "s.yaml"
    if "--spec-file" in extra:
        i = extra.index("--spec-file")
        path = tmp / extra[i + 1]
        del extra[i : i + 2]
    else:
        path.write_text(case.raw_file or yaml.safe_dump(spec))
    return ["sweep", str(path), "--dir", str(out), *extra], out


def test_the_table_has_every_kind_of_case() -> None:
    commands = {c.command for c in CASES.values()}
    assert commands == {"check-data", "train", "sweep", "predict", "manifest", "evaluate"}
    assert len(CASES) >= 87


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_refused_with_one_line(
    name: str,
    demo_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    case = CASES[name]
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    if case.command in ("predict", "evaluate") and case.expect != "checkpoint not found":
        shutil.copy(request.getfixturevalue("trained"), tmp_path / "model.pt")
    if case.setup is not None:
        case.setup(data)  # may replace the model.pt
    argv, out = _arguments(case, tmp_path, data)
    before = out.read_text() if out.is_file() else None
    code = main(argv)
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert code == case.code, err
    assert "Traceback" not in err
    assert any(case.expect in line for line in lines), err
    if case.command == "check-data":
        assert all(line.startswith("error: ") or ": " in line for line in lines), err
        return
    if case.code == 1:  # predict: the bad picture named, the good ones written
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 2 and case.expect in errors[0], err
        assert errors[1:] == ["error: 1 picture(s) could not be read"], err
        readable = [p for p in (data / "val" / "images").iterdir() if p.exists()]
        if name == "predict one bad picture":
            assert errors[0].endswith(
                f"(cannot identify image file '{_first(data, 'val', 'images')}')"
            )
            readable = readable[1:]
        assert len(list(out.glob("*.png"))) == len(readable)
        return
    if case.command == "evaluate":  # the folder given as --out is left as it was
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert out.is_dir() and not any(out.iterdir())
        return
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    if before is not None:
        assert out.read_text() == before  # a file given as --out is left as it was
    else:
        assert not out.exists(), f"{out} was left behind"


def test_output_piped_into_a_reader_that_stops_ends_quietly() -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from segtune.cli import main as cli\n"
        "def loud(args):\n"
        "    for i in range(100000):\n"
        "        print('line', i)\n"
        "    return 0\n"
        "cli._cmd_check_data = loud\n"
        "sys.exit(cli.main(['check-data', 'x']))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"line 0\n"
    proc.stdout.close()  # `segtune … | head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""


def test_bare_segtune_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: segtune") and "split" in out and "sweep" in out


def test_a_bad_set_names_the_study_without_empty_brackets(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.study.helpers import write_spec

    spec = write_spec(tmp_path / "s.yaml", demo_data, "named", {"loss.bce_weight": [0.5]})
    args = ["sweep", str(spec), "--dir", str(tmp_path / "st"), "--set", "foo=1"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == "error: study named: foo: unknown key"
