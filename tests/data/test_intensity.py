"""``data.intensity`` and ``data.channels``: 12/16-bit and multispectral pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segtune.core.config import DataConfig
from segtune.core.errors import DataError
from segtune.data.intensity import resolve_reading
from segtune.data.io import ImageReading, read_image
from segtune.data.layout import Picture
from segtune.data.pairs import check_pictures


def _pictures(folder: Path, arrays: list[np.ndarray], planar: bool = False) -> list[Picture]:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    out = []
    for i, arr in enumerate(arrays):
        image, mask = folder / "images" / f"p{i}.tif", folder / "masks" / f"p{i}.png"
        if arr.ndim == 3 and planar:  # one plane per channel, as multispectral tools write
            tifffile.imwrite(
                image, np.moveaxis(arr, 2, 0), photometric="minisblack", planarconfig="separate"
            )
        elif arr.ndim == 3:
            tifffile.imwrite(image, arr, photometric="minisblack", planarconfig="contig")
        else:
            tifffile.imwrite(image, arr)
        Image.fromarray(np.zeros(arr.shape[:2], np.uint8)).save(mask)
        out.append(Picture(f"p{i}", image, mask))
    return out


def _twelve_bit(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(100, 4000, size=(16, 16)).astype(np.uint16)


def test_auto_stretches_12_bit_data_over_its_observed_range(tmp_path: Path) -> None:
    arrays = [_twelve_bit(0), _twelve_bit(1)]
    arrays[1][0, 0], arrays[0][0, 0] = 4095, 20
    pictures = _pictures(tmp_path, arrays)
    reading = resolve_reading(DataConfig(), pictures, tmp_path / "stats")
    assert reading.window == (20.0, 4095.0)
    image = read_image(pictures[1].image, reading)
    assert int(image[0, 0, 0]) == 255 and image.max() == 255  # was 4095 // 257 = 15
    assert int(read_image(pictures[0].image, reading)[0, 0, 0]) == 0
    assert read_image(pictures[1].image).max() == 15  # the dtype rule, without a window
    # The per-picture statistics are kept: a second resolution reads no picture.
    assert len(list((tmp_path / "stats").glob("*.npy"))) == 2
    for p in pictures:
        p.image.unlink()
        tifffile.imwrite(p.image, np.zeros((16, 16), np.uint16))  # new mtime: new stats
    assert resolve_reading(DataConfig(), pictures, tmp_path / "stats").window == (0.0, 1.0)


def test_percentile_window_ignores_hot_pixels(tmp_path: Path) -> None:
    arr = np.full((64, 64), 1000, np.uint16)
    arr[:32] = 3000
    arr[0, 0] = 65535  # one hot pixel
    pictures = _pictures(tmp_path, [arr])
    auto = resolve_reading(DataConfig(), pictures, tmp_path / "stats")
    assert auto.window == (1000.0, 65535.0)
    config = DataConfig.model_validate({"intensity": {"mode": "percentile"}})
    window = resolve_reading(config, pictures, tmp_path / "stats").window
    assert window == (1000.0, 3000.0)
    image = read_image(pictures[0].image, ImageReading(window))
    assert int(image[40, 0, 0]) == 0 and int(image[1, 1, 0]) == 255


def test_fixed_window_and_eight_bit_pictures_unchanged(tmp_path: Path) -> None:
    config = DataConfig.model_validate({"intensity": {"mode": "fixed", "low": 0, "high": 4095}})
    pictures = _pictures(tmp_path / "a", [_twelve_bit(0)])
    assert resolve_reading(config, pictures, tmp_path / "s").window == (0.0, 4095.0)
    eight = _pictures(tmp_path / "b", [np.arange(256, dtype=np.uint8).reshape(16, 16)])
    reading = resolve_reading(DataConfig(), eight, tmp_path / "s")
    assert reading.is_default and reading.key() == ""
    assert np.array_equal(
        read_image(eight[0].image, reading)[..., 0], read_image(eight[0].image)[..., 0]
    )
    assert not (tmp_path / "s").exists()  # 8-bit data: no picture decoded for statistics


@pytest.mark.parametrize("planar", [False, True])
def test_more_than_four_channels_need_data_channels(tmp_path: Path, planar: bool) -> None:
    arr = np.stack([np.full((8, 12), 10 * (c + 1), np.uint8) for c in range(6)], axis=2)
    (path,) = (p.image for p in _pictures(tmp_path, [arr], planar))
    from segtune.data.io import image_size

    assert image_size(path) == (8, 12)
    with pytest.raises(
        DataError, match=r"p0\.tif: 6 channels; choose one or three with data\.channels"
    ):
        read_image(path)
    assert read_image(path, ImageReading(channels=(5, 4, 3)))[0, 0].tolist() == [60, 50, 40]
    assert read_image(path, ImageReading(channels=(2,)))[0, 0].tolist() == [30, 30, 30]
    assert read_image(path, ImageReading(channels="mean"))[0, 0].tolist() == [35, 35, 35]
    with pytest.raises(DataError, match=r"asks for channel 6 but the picture has 6 channel"):
        read_image(path, ImageReading(channels=(6, 0, 1)))
    assert check_pictures(tmp_path).problems == []  # check-data: channels are chosen per run


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"channels": [0, 1]}, "data.channels: give one or three channel indices"),
        ({"channels": "max"}, "data.channels: expected mean or a list of channel indices"),
        ({"channels": [-1]}, "data.channels: channel indices are numbered from 0"),
        ({"intensity": {"mode": "fixed"}}, "mode fixed needs data.intensity.low"),
        ({"intensity": {"mode": "fixed", "low": 5, "high": 5}}, "low (5) must be below high"),
        ({"intensity": {"low": 5}}, "low/high are only used with mode fixed"),
        ({"intensity": {"mode": "percentile", "percentiles": [99, 1]}}, "percentiles must"),
        ({"intensity": {"mode": "gamma"}}, "data.intensity.mode"),
    ],
)
def test_bad_intensity_and_channel_settings_name_the_key(data: dict, message: str) -> None:
    from segtune.core.config import build_run_config
    from segtune.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_run_config({"data": data})
