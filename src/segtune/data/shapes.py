"""Masks drawn as shapes: LabelMe's JSON files (one per picture, beside it or in masks/).

Every closed shape is positive, whatever its label: polygons, rectangles, circles, and
the bitmaps LabelMe stores for its "mask" shapes. Open shapes (lines, line strips,
points) mark no area and are refused, as are files that are not LabelMe's (COCO keeps a
whole dataset in one file: rasterise it into one mask picture each first).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, UnidentifiedImageError

from segtune.core.errors import DataError

SHAPE_SUFFIX = ".json"
_OPEN = ("line", "linestrip", "point", "points")


def _load(path: Path) -> dict[str, Any]:
    """The file's JSON, checked to be LabelMe's (shapes and the picture's size)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DataError(
            f"{path}: not a LabelMe file (no 'shapes' list); other JSON annotations (COCO "
            "keeps a dataset in one file) need rasterising into one mask picture each"
        )
    if not all(isinstance(shape, dict) for shape in data["shapes"]):
        raise DataError(f"{path}: every entry of 'shapes' must be an object")
    for key in ("imageHeight", "imageWidth"):
        if not isinstance(data.get(key), int) or data[key] < 1:
            raise DataError(f"{path}: {key} missing or not a positive integer")
    return data


def shape_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of the picture a shape file annotates."""
    data = _load(path)
    return int(data["imageHeight"]), int(data["imageWidth"])


def shape_labels(path: Path) -> Counter[str]:
    """How many shapes of each label the file holds."""
    return Counter(str(s.get("label", "")) for s in _load(path)["shapes"])


def rasterise(path: Path) -> NDArray[np.uint8]:
    """The file's shapes as a mask picture: 255 inside any shape, 0 elsewhere; a shape's
    outline is inside it (as LabelMe draws them)."""
    data = _load(path)
    height, width = int(data["imageHeight"]), int(data["imageWidth"])
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for i, shape in enumerate(data["shapes"], start=1):
        kind = shape.get("shape_type") or "polygon"
        where = f"{path}: shape {i} ({shape.get('label', '')!s}, {kind})"
        points = _points(shape.get("points"), where)
        if kind in _OPEN:
            raise DataError(
                f"{where}: an open shape marks no area; draw it as a polygon (or rasterise "
                "lines at their width yourself)"
            )
        if kind == "polygon" and len(points) >= 3:
            draw.polygon(points, fill=255, outline=255)
        elif kind == "rectangle" and len(points) == 2:
            (x1, y1), (x2, y2) = points
            draw.rectangle((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), 255, 255)
        elif kind == "circle" and len(points) == 2:
            (cx, cy), (ex, ey) = points
            r = math.hypot(ex - cx, ey - cy)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255, outline=255)
        elif kind == "mask" and len(points) == 2:
            bitmap = _bitmap(shape, where)
            x, y = _bitmap_origin(points, where)
            canvas.paste(255, (x, y, x + bitmap.width, y + bitmap.height), bitmap)
        else:
            raise DataError(f"{where}: unsupported shape or wrong number of points ({len(points)})")
    return np.asarray(canvas)


def _points(raw: object, where: str) -> list[tuple[float, float]]:
    if not isinstance(raw, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, int | float) for v in p)
        for p in raw
    ):
        raise DataError(f"{where}: points must be a list of [x, y] numbers")
    return [(float(x), float(y)) for x, y in raw]


def _bitmap(shape: dict[str, Any], where: str) -> Image.Image:
    """A "mask" shape's bitmap (a base64 PNG over its bounding box) as a paste mask."""
    try:
        raw = base64.b64decode(str(shape.get("mask", "")), validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            bits = np.asarray(im.convert("L")) > 0
    except (binascii.Error, OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{where}: unreadable mask bitmap ({exc})") from exc
    return Image.fromarray(bits.astype(np.uint8) * 255)


def _bitmap_origin(points: list[tuple[float, float]], where: str) -> tuple[int, int]:
    """Where a "mask" shape's bitmap goes: its first point, the box's top-left corner."""
    (x1, y1), (x2, y2) = points
    if x2 < x1 or y2 < y1:
        raise DataError(f"{where}: a mask shape's points must be its box's top-left, bottom-right")
    return round(x1), round(y1)
