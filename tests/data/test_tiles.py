from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segtune.core.errors import ConfigError
from segtune.data.tiles import (
    Stitcher,
    axis_origins,
    extract_page,
    page_origins,
    resize_probabilities,
    resized_shape,
)


def _round_trip(image: np.ndarray, page: int, overlap: int, blend: str) -> np.ndarray:
    h, w = image.shape
    stitcher = Stitcher((h, w), page, blend, overlap)  # type: ignore[arg-type]
    for origin in page_origins(h, w, page, overlap):
        content, _ = extract_page(image, origin, page)
        assert content.shape == (page, page)
        stitcher.add(content, origin)  # identity predictor
    return stitcher.finalize()


@pytest.mark.parametrize("blend", ["mean", "gaussian", "linear"])
@pytest.mark.parametrize("overlap", [0, 5, 16])
@pytest.mark.parametrize("shape", [(100, 77), (32, 32), (20, 45), (7, 9), (65, 129)])
def test_identity_round_trip_is_exact(shape: tuple[int, int], overlap: int, blend: str) -> None:
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    out = _round_trip(image, 32, overlap, blend)
    assert out.shape == shape
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_padding_is_marked_invalid() -> None:
    image = np.ones((10, 6, 3), np.uint8)
    page, valid = extract_page(image, (0, 0), 16)
    assert page.shape == (16, 16, 3)
    assert valid.sum() == 60 and valid[:10, :6].all() and not valid[10:].any()
    assert page[10:].sum() == 0


def test_last_page_is_flush_with_border() -> None:
    assert axis_origins(100, 32, 8) == [0, 24, 48, 68]
    assert axis_origins(64, 32, 0) == [0, 32]
    assert axis_origins(20, 32, 8) == [0]


@pytest.mark.parametrize(
    ("page", "overlap", "message"),
    [
        (32, 32, "patch_overlap .* must be smaller"),
        (32, 40, "patch_overlap .* must be smaller"),
        (0, 0, "page_size must be positive"),
        (32, -1, "patch_overlap must be >= 0"),
    ],
)
def test_bad_geometry_is_a_clear_error(page: int, overlap: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        axis_origins(100, page, overlap)


@settings(max_examples=150, deadline=None)
@given(length=st.integers(1, 600), page=st.integers(1, 128), data=st.data())
def test_origins_cover_every_pixel_within_bounds(
    length: int, page: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, page - 1))
    origins = axis_origins(length, page, overlap)
    covered = np.zeros(length, bool)
    for o in origins:
        assert o >= 0 and (o + page <= length or length < page)
        covered[o : o + page] = True
    assert covered.all()
    assert origins == sorted(set(origins))
    if length > page:
        assert origins[-1] == length - page
        assert all(b - a <= page - overlap for a, b in itertools.pairwise(origins))


def test_resize_shape_and_inverse() -> None:
    assert resized_shape(400, 200, 0.5, None) == (200, 100)
    assert resized_shape(400, 200, None, 100) == (100, 50)
    prob = np.full((50, 25), 0.25, np.float32)
    back = resize_probabilities(prob, (400, 200))
    assert back.shape == (400, 200)
    np.testing.assert_allclose(back, 0.25, atol=1e-6)


def test_batched_adds_equal_single_adds() -> None:
    import torch

    rng = np.random.default_rng(3)
    h, w, page, overlap = 70, 53, 32, 12
    one = Stitcher((h, w), page, "gaussian", overlap)
    many = Stitcher((h, w), page, "gaussian", overlap)
    origins = page_origins(h, w, page, overlap)
    preds = rng.random((len(origins), page, page)).astype(np.float32)
    for p, o in zip(preds, origins, strict=True):
        one.add(p, o)
    many.add_batch(torch.from_numpy(preds), origins)
    np.testing.assert_array_equal(one.finalize(), many.finalize())


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 150),
    w=st.integers(1, 90),
    page=st.sampled_from([16, 32]),
    overlap=st.integers(0, 15),
    blend=st.sampled_from(["mean", "gaussian", "linear"]),
    batch=st.integers(1, 7),
)
def test_band_stitcher_hands_out_rows_in_order_equal_to_the_whole_stitch(
    h: int, w: int, page: int, overlap: int, blend: str, batch: int
) -> None:
    import torch

    from segtune.data.tiles import BandStitcher

    rng = np.random.default_rng(h * 1000 + w)
    origins = page_origins(h, w, page, overlap)
    predictions = torch.from_numpy(rng.random((len(origins), page, page)).astype(np.float32))
    whole = Stitcher((h, w), page, blend, overlap)  # type: ignore[arg-type]
    bands = BandStitcher((h, w), page, origins, blend, overlap)  # type: ignore[arg-type]
    got = []
    for start in range(0, len(origins), batch):
        chunk = origins[start : start + batch]
        whole.add_batch(predictions[start : start + batch], chunk)
        got += bands.add_batch(predictions[start : start + batch], chunk)
    rows = [y for y, _ in got]
    assert rows == sorted(rows) and rows[0] == 0
    assert all(y + b.shape[0] == nxt for (y, b), nxt in zip(got, [*rows[1:], h], strict=True))
    stitched = np.concatenate([b for _, b in got])
    assert np.array_equal(stitched, whole.finalize())  # the same values, bit for bit
    assert bands._sum.shape[0] <= page  # never more than a page of rows held
