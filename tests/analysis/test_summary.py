"""What the study summary says of the data, beside the runs."""

from __future__ import annotations

from pathlib import Path

from segtune.analysis.summary import mask_words
from segtune.core.config import DataConfig
from segtune.data.layout import Picture
from segtune.data.subsets import Subsets


def test_the_setup_says_how_masks_were_read_and_where_pixels_count() -> None:
    plain = [Picture(s, Path(f"{s}.png"), Path(f"{s}-m.png")) for s in ("a", "b")]
    with_roi = [Picture("c", Path("c.png"), Path("c-m.png"), Path("c-roi.png"))]
    data = DataConfig(mask_threshold=128, ignore_value=255)
    assert (
        mask_words(DataConfig(), Subsets(plain, plain[:1])) == "binary (0 and one positive value)"
    )
    assert mask_words(data, Subsets(plain, with_roi)) == (
        "positive where the value is at least 128 (data.mask_threshold); value 255 never "
        "counts (data.ignore_value); only pixels inside a region of interest count (1 of 3 "
        "pictures have one)"
    )
    assert mask_words(DataConfig(invert_masks=True), None) == "positive where 0 (data.invert_masks)"


def test_the_setup_says_how_many_pictures_have_no_mask() -> None:
    labelled = [Picture("crack/001", Path("1.png"), Path("1_mask.png"))]
    good = [Picture(f"good/00{k}", Path(f"{k}.png"), None) for k in range(3)]
    assert mask_words(DataConfig(missing_masks="empty"), Subsets(labelled + good, good[:1])) == (
        "binary (0 and one positive value); 4 of 5 pictures have no mask and count as having "
        "no positives (data.missing_masks: empty)"
    )
