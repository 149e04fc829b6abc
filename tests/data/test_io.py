from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segtune.core.errors import DataError
from segtune.data.io import MaskReading, read_ignored, read_image, read_mask


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_grayscale_is_replicated_to_rgb(tmp_path: Path) -> None:
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    img = read_image(_save(tmp_path / "g.png", gray))
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    assert np.array_equal(img[:, :, 0], gray) and np.array_equal(img[:, :, 2], gray)


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    img = read_image(_save(tmp_path / "a.png", rgba))
    assert img.shape == (4, 4, 3) and int(img[0, 0, 0]) == 200


def test_palette_image_expands_through_palette(tmp_path: Path) -> None:
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    im.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[0, 0].tolist() == [10, 20, 30]


def test_16bit_scaled_to_8bit(tmp_path: Path) -> None:
    arr = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "x.tif", arr)
    img = read_image(tmp_path / "x.tif")
    assert img[0, :, 0].tolist() == [0, 100, 255]
    Image.fromarray(arr).save(tmp_path / "x16.png")
    assert read_image(tmp_path / "x16.png")[0, :, 1].tolist() == [0, 100, 255]


@pytest.mark.parametrize("positive", [1, 255, 7])
def test_mask_accepts_zero_and_one_positive_value(tmp_path: Path, positive: int) -> None:
    arr = np.zeros((4, 4), dtype=np.uint8)
    arr[1, 2] = positive
    mask = read_mask(_save(tmp_path / "m.png", arr))
    assert mask.dtype == np.bool_ and mask.sum() == 1 and mask[1, 2]


def test_palette_mask_reads_indices(tmp_path: Path) -> None:
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    im.putpixel((3, 0), 1)
    im.save(tmp_path / "pm.png")
    mask = read_mask(tmp_path / "pm.png")
    assert mask.sum() == 1 and mask[0, 3]


def test_mask_with_three_values_names_file_and_values(tmp_path: Path) -> None:
    arr = np.array([[0, 1, 255]], dtype=np.uint8)
    path = _save(tmp_path / "bad.png", arr)
    with pytest.raises(DataError, match=r"bad\.png: mask has 3 distinct values \(0, 1, 255\)"):
        read_mask(path)


def test_truncated_png_is_reported(tmp_path: Path) -> None:
    path = _save(tmp_path / "t.png", np.zeros((64, 64, 3), dtype=np.uint8) + 90)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"t\.png: unreadable or truncated"):
        read_image(path)


@pytest.mark.parametrize("compression", ["lzw", "zlib", "jpeg"])
def test_compressed_tiff_is_read(compression: str, tmp_path: Path) -> None:
    image = np.zeros((32, 48, 3), np.uint8)
    image[8:24, 10:30] = (200, 100, 50)
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 10:30] = 255
    tifffile.imwrite(tmp_path / "i.tif", image, compression=compression)
    tifffile.imwrite(tmp_path / "m.tif", mask, compression="lzw")
    out = read_image(tmp_path / "i.tif")
    assert out.shape == (32, 48, 3)
    tolerance = 40 if compression == "jpeg" else 0  # JPEG is lossy
    assert int(np.abs(out.astype(int) - image).max()) <= tolerance
    assert read_mask(tmp_path / "m.tif").sum() == 16 * 20


def test_a_lossy_mask_is_refused_with_its_cause(tmp_path: Path) -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[8:12, 4:28] = 255
    Image.fromarray(mask).save(tmp_path / "m.jpg", quality=90)
    with pytest.raises(
        DataError, match=r"distinct values .* save masks as PNG, or .*mask_threshold"
    ):
        read_mask(tmp_path / "m.jpg")


def test_a_threshold_binarises_masks_with_grey_edges(tmp_path: Path) -> None:
    truth = np.zeros((32, 32), bool)
    truth[8:12, 4:28] = True
    # Kvasir-SEG ships its masks as colour JPEG: white on black, edges and channels blurred.
    Image.fromarray(np.repeat(truth[:, :, None] * np.uint8(255), 3, axis=2)).save(
        tmp_path / "m.jpg", quality=75
    )
    with pytest.raises(
        DataError, match=r"(distinct values|colours besides black) .*mask_threshold"
    ):
        read_mask(tmp_path / "m.jpg")
    assert np.array_equal(read_mask(tmp_path / "m.jpg", MaskReading(threshold=128)), truth)
    # A mask resized with interpolation: grey edges between 0 and 255.
    big = np.kron(truth, np.ones((4, 4), bool)).astype(np.uint8) * 255
    Image.fromarray(big).resize((40, 40), Image.Resampling.BILINEAR).save(tmp_path / "r.png")
    with pytest.raises(DataError, match=r"distinct values .*blended edges.*--mask-threshold"):
        read_mask(tmp_path / "r.png")
    resized = read_mask(tmp_path / "r.png", MaskReading(threshold=128))
    assert abs(int(resized.sum()) - truth.sum() * (40 / 32) ** 2) <= 0.1 * truth.sum()
    # The threshold is in the file's units (a float mask in [0, 1]) and compares ≥.
    tifffile.imwrite(tmp_path / "f.tif", np.array([[0.0, 0.3, 0.5, 0.9]], np.float32))
    assert read_mask(tmp_path / "f.tif", MaskReading(threshold=0.5)).tolist() == [
        [False, False, True, True]
    ]


def test_object_labelled_masks_are_read_with_a_threshold_of_one(tmp_path: Path) -> None:
    # GlaS labels each gland with its own value (0 background, 1..n objects) in a BMP.
    arr = np.zeros((12, 12), np.uint8)
    arr[1:3, 1:3], arr[5:7, 5:7], arr[9:11, 2:8] = 1, 2, 3
    _save(tmp_path / "train_1_anno.bmp", arr)
    with pytest.raises(DataError, match=r"4 distinct values .*1 for object labels\)$"):
        read_mask(tmp_path / "train_1_anno.bmp")
    mask = read_mask(tmp_path / "train_1_anno.bmp", MaskReading(threshold=1))
    assert np.array_equal(mask, arr > 0)


def test_a_binary_mask_below_the_threshold_is_refused_not_read_empty(tmp_path: Path) -> None:
    arr = np.zeros((8, 8), np.uint8)
    arr[2:4] = 1  # 0/1 masks read with a threshold meant for 0..255
    _save(tmp_path / "m.png", arr)
    with pytest.raises(DataError, match=r"m.png: mask holds 0 and 1 only, below .*128"):
        read_mask(tmp_path / "m.png", MaskReading(threshold=128))
    assert read_mask(tmp_path / "m.png", MaskReading(threshold=1)).sum() == 16
    _save(tmp_path / "empty.png", np.zeros((8, 8), np.uint8))  # no positives: fine
    assert not read_mask(tmp_path / "empty.png", MaskReading(threshold=128)).any()


def test_inverted_masks_read_black_as_positive(tmp_path: Path) -> None:
    ink = np.zeros((8, 8), bool)
    ink[2:4, 1:7] = True  # text strokes
    # DIBCO-style ground truth: ink black (0) on white paper, a bilevel BMP.
    Image.fromarray(~ink).convert("1").save(tmp_path / "gt.bmp")
    assert np.array_equal(read_mask(tmp_path / "gt.bmp", MaskReading(invert=True)), ink)
    assert np.array_equal(read_mask(tmp_path / "gt.bmp"), ~ink)  # as stored: paper positive
    # With a don't-care value: neither positive nor counted, inverted or not.
    arr = np.where(ink, 0, 255).astype(np.uint8)
    arr[7] = 128
    _save(tmp_path / "gt.png", arr)
    reading = MaskReading(ignore_value=128, invert=True)
    expected = ink.copy()
    assert np.array_equal(read_mask(tmp_path / "gt.png", reading), expected)
    assert read_ignored(tmp_path / "gt.png", reading)[7].all()
    # Grey edges and black positives: positive below the threshold.
    _save(tmp_path / "grey.png", np.array([[0, 100, 127, 128, 255]], np.uint8))
    assert read_mask(tmp_path / "grey.png", MaskReading(threshold=128, invert=True)).tolist() == [
        [True, True, True, False, False]
    ]
    assert MaskReading(invert=True).for_roi() == MaskReading()


def test_a_mask_reading_says_what_it_does() -> None:
    assert MaskReading().words() == "binary (0 and one positive value)"
    assert MaskReading(ignore_value=255, threshold=128, invert=True).words() == (
        "positive where the value is below 128 (data.mask_threshold, data.invert_masks); "
        "value 255 never counts (data.ignore_value)"
    )
    assert MaskReading(threshold=0.5).words() == (
        "positive where the value is at least 0.5 (data.mask_threshold)"
    )


def test_a_threshold_with_an_ignore_value(tmp_path: Path) -> None:
    arr = np.array([[0, 10, 200, 255, 254]], np.uint8)  # 255: don't care
    _save(tmp_path / "m.png", arr)
    reading = MaskReading(ignore_value=255, threshold=128)
    assert read_mask(tmp_path / "m.png", reading).tolist() == [[False, False, True, False, True]]
    assert read_ignored(tmp_path / "m.png", reading).tolist() == [
        [False, False, False, True, False]
    ]
    # A region of interest is read with the threshold, never with the ignore value.
    assert reading.for_roi() == MaskReading(threshold=128)


def test_a_tiff_stack_is_refused_and_overviews_are_not(tmp_path: Path) -> None:
    from segtune.data.io import image_size

    rng = np.random.default_rng(0)
    volume = rng.integers(0, 255, (3, 32, 48), dtype=np.uint8)  # 3 slices of a volume
    tifffile.imwrite(tmp_path / "stack.tif", volume, photometric="minisblack")
    for read in (read_image, read_mask, image_size):
        with pytest.raises(DataError, match="a stack of 3 pages of the same size"):
            read(tmp_path / "stack.tif")
    # A picture followed by its half-size overview (as GeoTIFFs store them) is one picture.
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as tif:
        tif.write(volume[0])
        tif.write(volume[0][::2, ::2], subfiletype=1)
    assert image_size(tmp_path / "pyramid.tif") == (32, 48)
    assert np.array_equal(read_image(tmp_path / "pyramid.tif")[:, :, 0], volume[0])


def test_a_colour_mask_is_its_one_colour_on_black(tmp_path: Path) -> None:
    mask = np.zeros((16, 16, 3), np.uint8)
    mask[4:8, :] = (255, 0, 0)  # red on black
    Image.fromarray(mask).save(tmp_path / "red.png")
    assert np.array_equal(read_mask(tmp_path / "red.png"), mask.any(axis=2))
    mask[10:12, :] = (0, 128, 0)
    Image.fromarray(mask).save(tmp_path / "two.png")
    with pytest.raises(DataError, match=r"2 colours besides black \(#008000, #ff0000\)"):
        read_mask(tmp_path / "two.png")


def test_a_palette_that_does_not_start_with_black_is_read_by_colour(tmp_path: Path) -> None:
    # Pillow's GIF encoder gives an all-white region of interest a one-entry palette,
    # white at index 0: by index it would be all background.
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "roi.gif")
    assert Image.open(tmp_path / "roi.gif").getpalette()[:3] == [255, 255, 255]
    assert read_mask(tmp_path / "roi.gif").all()
    im = Image.new("P", (4, 4), 0)  # white at index 0: read as shown, white positive
    im.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    im.putpixel((3, 0), 1)
    im.save(tmp_path / "white-first.png")
    assert read_mask(tmp_path / "white-first.png").sum() == 15  # as shown: 15 white pixels


def test_cmyk_pictures_are_read_as_the_colours_they_print(tmp_path: Path) -> None:
    from tests.conftest import DEEPCRACK

    source = sorted((DEEPCRACK / "train" / "images").iterdir())[0]
    rgb = np.asarray(Image.open(source).convert("RGB"))
    cmyk = Image.fromarray(rgb).convert("CMYK")  # as scanned pages and print files come
    cmyk.save(tmp_path / "page.tif")
    cmyk.save(tmp_path / "page.jpg", quality=95)
    tifffile.imwrite(
        tmp_path / "page-lzw.tif", np.asarray(cmyk), photometric="separated", compression="lzw"
    )
    for name, tolerance in (("page.tif", 1), ("page-lzw.tif", 1), ("page.jpg", 8)):
        read = read_image(tmp_path / name).astype(int)
        assert read.shape == rgb.shape
        assert int(np.percentile(np.abs(read - rgb), 99)) <= tolerance, name


def test_transparent_mask_pixels_are_background(tmp_path: Path) -> None:
    # A drawing layer exported from an annotation or paint tool: one colour everywhere,
    # the positives marked by opacity alone. Read as shown over black, not as all red.
    drawn = np.zeros((16, 16), bool)
    drawn[3:6, 2:9] = True
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = drawn * 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "layer.png")
    assert np.array_equal(read_mask(tmp_path / "layer.png"), drawn)
    la = np.stack([np.full((16, 16), 255, np.uint8), drawn.astype(np.uint8) * 255], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "layer-la.png")
    assert np.array_equal(read_mask(tmp_path / "layer-la.png"), drawn)
    tifffile.imwrite(tmp_path / "layer.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    assert np.array_equal(read_mask(tmp_path / "layer.tif"), drawn)
    # Half-transparent edges are grey edges: refused without a threshold, cut by one.
    rgba[6, 2:9, 3] = 100
    Image.fromarray(rgba, "RGBA").save(tmp_path / "soft.png")
    with pytest.raises(DataError, match="mask_threshold"):
        read_mask(tmp_path / "soft.png")
    assert np.array_equal(read_mask(tmp_path / "soft.png", MaskReading(threshold=128)), drawn)
    assert read_mask(tmp_path / "soft.png", MaskReading(threshold=90)).sum() == drawn.sum() + 7
    # Drawn in black on a transparent layer (unpainted pixels stored white or black).
    for unpainted in (255, 0):
        black = np.zeros((16, 16, 4), np.uint8)
        black[..., :3] = np.where(drawn[..., None], 0, unpainted)
        black[..., 3] = drawn * 255
        Image.fromarray(black, "RGBA").save(tmp_path / f"black-{unpainted}.png")
        assert np.array_equal(read_mask(tmp_path / f"black-{unpainted}.png"), drawn)


def test_an_opaque_or_unset_alpha_channel_leaves_a_mask_as_stored(tmp_path: Path) -> None:
    drawn = np.zeros((8, 8), np.uint8)
    drawn[2:4, :] = 255
    for alpha in (255, 0):  # opaque, or an alpha channel nobody set
        la = np.stack([drawn, np.full((8, 8), alpha, np.uint8)], axis=2)
        Image.fromarray(la, "LA").save(tmp_path / f"a{alpha}.png")
        assert np.array_equal(read_mask(tmp_path / f"a{alpha}.png"), drawn > 0)
