"""Hand-made run records for analysis tests (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from segtune.analysis.summary import RunSummary, StudySummary
from segtune.core.metrics import PictureCounts

STEMS = ["p-a", "p-b", "p-c"]


def fake_run(
    root: Path,
    trial: int,
    recall: float,
    counts: list[tuple[int, int, int]],
    params: dict[str, float] | None = None,
    stage: str = "grid",
    status: str = "completed",
) -> RunSummary:
    """A run whose 3 preview pictures have the given (tp, fp, fn), with preview files."""
    run_dir = root / f"{stage}-{trial}"
    prev = run_dir / "previews"
    prev.mkdir(parents=True, exist_ok=True)
    pictures = []
    for i, ((tp, fp, fn), stem) in enumerate(zip(counts, STEMS, strict=True), start=1):
        base = f"{i:02d}-{stem}"
        mask = np.zeros((16, 16), np.uint8)
        mask[4:8, 2:14] = 255
        prob = np.zeros((16, 16), np.uint16)
        if tp:
            prob[4:6, 2:14] = 65535
        if fp:
            prob[12, 0:4] = 65535
        Image.fromarray(mask).save(prev / f"{base}-mask.png")
        Image.fromarray(prob).save(prev / f"{base}-prob.png")
        Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(prev / f"{base}-image.png")
        pictures.append(PictureCounts(i, stem, tp, fp, fn, positives=tp + fn))
    history = [
        {
            "epoch": e,
            "train/loss": 0.5 / e,
            **{f"{split}/recall": recall * e / 2 for split in ("train", "val")},
            **{f"{split}/precision": 0.5 for split in ("train", "val")},
            **{f"{split}/f1": 0.4 for split in ("train", "val")},
        }
        for e in (1, 2)
    ]
    final = {
        "val/recall": recall,
        "val/precision": 0.5,
        "val/f1": 0.4,
        "val/ap": 0.45,
        "train/recall": recall,
        "train/f1": 0.4,
        "train/loss": 0.25,
        "val/tp": float(sum(tp for tp, _, _ in counts)),
        "val/fp": float(sum(fp for _, fp, _ in counts)),
        "val/fn": float(sum(fn for _, _, fn in counts)),
    }
    pr = {
        "split": "val",
        "threshold": [0.0, 0.5, 0.99],
        "precision": [0.1, 0.5, 1.0],
        "recall": [1.0, recall, 0.0],
    }
    return RunSummary(
        stage,
        trial,
        run_dir,
        params or {"loss.bce_weight": 0.1 * trial, "loss.pos_weight": 1.0},
        status,
        final,
        2,
        0.5,
        pictures,
        history,
        pr,
    )


def fake_summary(runs: list[RunSummary], top_k: int = 2) -> StudySummary:
    searched = {
        "grid": {
            "loss.bce_weight": sorted({r.params["loss.bce_weight"] for r in runs}),
            "loss.pos_weight": sorted({r.params["loss.pos_weight"] for r in runs}),
        }
    }
    return StudySummary(
        name="fake",
        study_dir=Path("."),
        objective="val/recall",
        direction="maximize",
        top_k=top_k,
        threshold=0.5,
        seed=0,
        train_pictures=10,
        val_pictures=3,
        train_eval_pictures=3,
        train_every=0,
        masks="binary (0 and one positive value)",
        preview_stems=STEMS,
        fixed={"optim.epochs": 2},
        searched=searched,
        runs=runs,
        epochs=2,
    )
