"""Quality on real data: DeepCrack with the published protocol, then a small loss study.

    .venv/bin/python bench/deepcrack.py [--device cpu|cuda] [--epochs 25] [--budget-min 60]
        [--study-epochs 3] [--scale 0.5] [--page 128] [--encoder resnet18] [--batch 8]
        [--precision bf16] [--bce-weight 0.2] [--pos-weight 1] [--positive-fraction 0.25]
        [--val 30] [--augment hflip,vflip,rot90[,zoom,brightness_contrast]]
        [--tta dihedral|flips|none] [--tta-scales 0.75,1,1.25] [--ema DECAY] [--seed 0]
        [--select best|last] [--no-study] [--data FOLDER] [--keep FOLDER]

Trains on ../shared/data/deepcrack/train minus a seeded validation split carved from
it, evaluates on test/ with the published protocol (exact pixel matching, TP/FP/FN
summed over the whole test set, best threshold in 0.01 steps) and prints precision,
recall and F1 next to DeepCrack-BN (F1 0.852) and DeepCrack-GF (F1 0.868). Then a
bce_weight × pos_weight study selected by validation F1, and its best run on test.

The default is the best setting measured within 60 minutes on a 2-core CPU with bf16
kernels (an Intel Xeon with AMX; BENCHMARKS.md): Unet/ResNet-18 from random weights,
bf16 autocast, pictures at half size, 25 epochs, the loss settings the small loss study
selected (bce_weight 0.2, pos_weight 1), and test-time augmentation over the 8
symmetries of a page at scales ×0.75, ×1, ×1.25. On a CPU without bf16 kernels, where
bf16 is emulated and fp32 is about 3× slower, it computes in fp32 and tests the 4 flips at
one scale. Without ``--epochs``, the run trains the epochs (at most 25) that fit, with
test/'s evaluation, in ``--budget-min`` minutes on this machine, timed by ``segtune
plan``'s probe. The printed settings say exactly what ran. The validation split is
evaluated with the same test-time augmentation as test/, so the threshold it selects is
matched to the probabilities it is applied to.
"""

from __future__ import annotations

import csv
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import DEEPCRACK, machine, parse, parser  # isort: skip
from segtune.core.config import build_run_config
from segtune.core.records import kept_epoch_words, tta_words
from segtune.core.runtime import cpu_computes_bf16
from segtune.data.layout import load_pictures
from segtune.engine.train import train_run
from segtune.inference.evaluate import pixel_shares
from segtune.inference.predict import Predictor
from segtune.study.spec import build_spec
from segtune.study.sweep import StudyRunner

PUBLISHED = {"DeepCrack-BN": (0.858, 0.846, 0.852), "DeepCrack-GF": (None, None, 0.868)}


LIMIT: int | None = None  # --limit: the first N pictures of train/ and of test/ (smoke)


def carve(data: Path, tmp: Path, val_count: int, seed: int) -> tuple[Path, Path]:
    pictures = load_pictures(data / "train")[:LIMIT]
    val = set(p.stem for p in random.Random(seed).sample(pictures, val_count))
    paths = {}
    for name, keep in (("train", lambda s: s not in val), ("val", lambda s: s in val)):
        path = tmp / f"{name}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "mask"])
            for p in pictures:
                if keep(p.stem):
                    w.writerow([p.image, p.mask])
        paths[name] = path
    return paths["train"], paths["val"]


def test_protocol(
    data: Path, checkpoint: Path, device: str, tta: str, scales: list[float]
) -> dict[str, float]:
    """Published protocol on test/: exact pixel matching, TP/FP/FN summed over the test
    set, the best threshold in 0.01 steps (the dataset-best F1); and, honestly, F1 at the
    threshold selected on the validation split (what ``segtune evaluate --threshold best``
    reports)."""
    from segtune.data.io import read_image, read_mask

    predictor = Predictor.load(checkpoint, device)
    predictor.augment(tta, scales)
    pos, neg = np.zeros(100, np.int64), np.zeros(100, np.int64)
    chosen = predictor.best_threshold or 0.5
    tp = fp = fn = 0
    for pic in load_pictures(data / "test")[:LIMIT]:
        prob = predictor.probabilities(read_image(pic.image, predictor.reading))
        assert pic.mask is not None  # test/ has a mask for every picture
        mask = read_mask(pic.mask)
        idx = np.clip((prob * 100).astype(np.int64), 0, 99)
        pos += np.bincount(idx[mask], minlength=100)
        neg += np.bincount(idx[~mask], minlength=100)
        pred = prob >= chosen
        tp += int((pred & mask).sum())
        fp += int((pred & ~mask).sum())
        fn += int((~pred & mask).sum())
    tps = np.cumsum(pos[::-1])[::-1][1:].astype(float)  # thresholds 0.01 … 0.99
    fps = np.cumsum(neg[::-1])[::-1][1:].astype(float)
    precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=tps + fps > 0)
    recall = tps / max(pos.sum(), 1)
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros_like(tps),
        where=precision + recall > 0,
    )
    i = int(np.argmax(f1))
    return {
        "threshold": (i + 1) / 100,
        "precision": float(precision[i]),
        "recall": float(recall[i]),
        "f1": float(f1[i]),
        "selected_threshold": chosen,
        "f1@selected": 2 * tp / max(2 * tp + fp + fn, 1),
        "positive_share": float(pos.sum() / max(pos.sum() + neg.sum(), 1)),
    }


def base_tree(train: Path, val: Path, a: Any) -> dict[str, Any]:
    return {
        "data": {"train": str(train), "val": str(val), "seed": 0},
        "pages": {
            "page_size": a.page,
            "patch_overlap": a.page // 8,
            "blend": "gaussian",
            **({"resize": {"scale": a.scale}} if a.scale != 1.0 else {}),
        },
        "model": {
            "encoder": a.encoder,
            **({"decoder_channels": channels(a.decoder_channels)} if a.decoder_channels else {}),
        },
        "optim": {
            "epochs": a.epochs,
            "batch_size": a.batch,
            "learning_rate": a.lr,
            **({"ema_decay": a.ema} if a.ema else {}),
        },
        "loss": {"bce_weight": a.bce_weight, "pos_weight": a.pos_weight, "dice_smooth": 1e-5},
        "sampling": {"positive_fraction": a.positive_fraction, "augment": a.augment.split(",")},
        "eval": {
            "preview_pictures": 0,
            "select": a.select,
            "train_eval_pictures": 20,
            "tta": a.tta,
            "tta_scales": scales(a),
        },
        "runtime": {
            "device": a.device,
            "precision": a.precision,
            "seed": a.seed,
            "num_workers": 0 if a.device == "cpu" else 4,
        },
    }


def channels(words: str) -> list[int]:
    return [int(c) for c in words.split(",")]


def scales(a: Any) -> list[float]:
    return [float(s) for s in a.tta_scales.split(",")]


def fit_epochs(tree: dict[str, Any], data: Path, wanted: int, seconds: float) -> int:
    """Epochs of this setting whose run and test/ evaluation fit in ``seconds`` here.

    A run is priced as ``segtune plan`` prices it (``segtune.study.plan.run_seconds`` of its
    probe: a few training steps and one validation picture in the run's precision and
    test-time views), test/ at the probe's rate per megapixel. An epoch of this setting
    took 1.03× the probe's estimate alone on an AVX2 EPYC and 1.10× next to a test run,
    so 15 % of the time is kept in reserve."""
    from segtune.data.io import image_size
    from segtune.data.subsets import resolve_subsets
    from segtune.study.plan import data_stats, probe, run_seconds

    config = build_run_config(tree)
    subsets = resolve_subsets(config.data)
    stats = data_stats(config, subsets.train, subsets.val)
    timed = probe(config, subsets.train, subsets.val)
    test_s = sum(h * w for h, w in map(image_size, test_images(data))) / 1e6
    test_s *= timed.seconds_per_val_megapixel

    def run_s(epochs: int) -> float:
        optim = config.optim.model_copy(update={"epochs": epochs})
        return run_seconds(config.model_copy(update={"optim": optim}), stats, timed)

    fits = next((n for n in range(wanted, 0, -1) if run_s(n) + test_s <= 0.85 * seconds), 1)
    print(
        f"fit: {timed.seconds_per_step:.2f} s per step, {run_s(fits):.0f} s for {fits} "
        f"epoch(s) and {test_s:.0f} s for test/ (segtune plan's probe): {fits} of {wanted} "
        f"epochs fit in {seconds / 60:.0f} min"
    )
    return fits


def test_images(data: Path) -> list[Path]:
    return [p.image for p in load_pictures(data / "test")]


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--epochs", type=int, help="of the baseline run (default: 25, or what fits --budget-min)"
    )
    p.add_argument("--study-epochs", type=int, default=3, help="of each loss-study run")
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--page", type=int, default=128)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument(
        "--decoder-channels",
        help="model.decoder_channels, comma-separated (default: smp's 256,128,64,32,16)",
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val", type=int, default=30)
    p.add_argument(
        "--tta",
        choices=("none", "flips", "dihedral"),
        help="eval.tta (default: dihedral, but flips on a CPU without bf16 kernels)",
    )
    p.add_argument(
        "--tta-scales",
        help="eval.tta_scales, comma-separated (default: 0.75,1,1.25, but 1 on a CPU "
        "without bf16 kernels)",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--bce-weight", type=float, default=0.2)
    p.add_argument("--pos-weight", type=float, default=1.0)
    p.add_argument("--positive-fraction", type=float, default=0.25)
    p.add_argument(
        "--augment", default="hflip,vflip,rot90", help="sampling.augment, comma-separated"
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="default: bf16, but fp32 on a CPU without bf16 kernels (emulated there, 9x slower)",
    )
    p.add_argument(
        "--ema", type=float, default=None, help="optim.ema_decay (default: the weights as trained)"
    )
    p.add_argument(
        "--select", default="best", choices=("best", "last"), help="eval.select (kept epoch)"
    )
    p.add_argument("--no-study", action="store_true", help="the baseline run only")
    p.add_argument(
        "--budget-min",
        type=float,
        default=60,
        help="without --epochs: train the epochs (at most 25) whose run and test/ "
        "evaluation fit in this many minutes here (0: 25 epochs)",
    )
    p.add_argument("--data", type=Path, default=DEEPCRACK, help="holds train/ and test/")
    p.add_argument("--keep", type=Path, help="copy the baseline run's folder here")
    p.add_argument("--seed", type=int, default=0, help="runtime.seed (weights, sampling)")
    p.add_argument("--limit", type=int, help="the first N pictures of train/ and test/ only")
    a = parse(
        p,
        epochs=1,
        scale=0.125,
        page=32,
        encoder="mobilenet_v2",
        decoder_channels="32,16,8,8,4",
        val=4,
        tta="none",
        tta_scales="1",
        precision="fp32",
        no_study=True,
        limit=16,
    )
    global LIMIT
    LIMIT = a.limit
    # A CPU without bf16 kernels (AVX2 only) emulates bf16, 9x slower than fp32, and is
    # about 3x slower in fp32 than bf16 on one with them: there the default computes in
    # fp32 and tests 4 views at one scale (24 views cost most of the budget there).
    native = a.device != "cpu" or cpu_computes_bf16()
    a.precision = a.precision or ("bf16" if native else "fp32")
    a.tta = a.tta or ("dihedral" if native else "flips")
    a.tta_scales = a.tta_scales or ("0.75,1,1.25" if native else "1")
    torch.set_num_threads(torch.get_num_threads())
    print(f"machine: {machine()}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        train, val = carve(a.data, tmp, a.val, seed=0)
        if a.epochs is None:
            a.epochs = 25
            if a.budget_min:
                a.epochs = fit_epochs(base_tree(train, val, a), a.data, 25, a.budget_min * 60)
        tree = base_tree(train, val, a)
        config = build_run_config(tree)
        print(
            f"settings: Unet/{a.encoder} (random init, decoder channels "
            f"{a.decoder_channels or '256,128,64,32,16'}), {a.epochs} epochs, pages {a.page} px "
            f"overlap {a.page // 8} gaussian, pictures scaled x{a.scale}, batch {a.batch}, lr {a.lr}, "
            f"bce_weight {a.bce_weight:g}, pos_weight {a.pos_weight:g}, dice_smooth 1e-5, "
            f"positive_fraction {a.positive_fraction:g}, augment {a.augment}, "
            f"{len(load_pictures(a.data / 'train')) - a.val} train / {a.val} val (carved from train, seed 0), device {a.device}, "
            f"precision {a.precision}, schedule {config.optim.schedule}, "
            f"weight average {config.optim.ema_decay or 'none'}, kept epoch: "
            f"{'the last' if config.eval.select == 'last' else 'by ' + config.eval.select_key}, test-time "
            f"{tta_words(config.eval.tta, config.eval.tta_scales)} (validation too), "
            f"seed {a.seed}"
        )
        t0 = time.perf_counter()
        summary = train_run(config, tmp / "run", progress=False)
        if a.keep:
            shutil.copytree(tmp / "run", a.keep, dirs_exist_ok=True)
            shutil.copy(val, a.keep / "val.csv")
        base = test_protocol(a.data, tmp / "run" / "model.pt", a.device, a.tta, scales(a))
        print(
            f"baseline run: {time.perf_counter() - t0:.0f} s, kept {kept_epoch_words(summary)}, "
            f"validation F1 {summary.kept['val/f1']:.3f} at threshold 0.5, "
            f"{summary.kept['val/best_f1']:.3f} at its best threshold"
        )
        print(
            f"{'model':28s} {'precision':>9s} {'recall':>7s} {'F1':>6s}  (test/, best threshold in 0.01 steps)"
        )
        for name, (pr, rc, f1) in PUBLISHED.items():
            print(
                f"{name + ' (published)':28s} {pr or float('nan'):9.3f} {rc or float('nan'):7.3f} {f1:6.3f}"
            )
        print(
            f"{'segtune baseline':28s} {base['precision']:9.3f} {base['recall']:7.3f} {base['f1']:6.3f}"
            f"  dataset-best threshold {base['threshold']:.2f}; F1 at the threshold selected "
            f"on validation ({base['selected_threshold']:.3f}): {base['f1@selected']:.3f}"
        )
        val_share = pixel_shares(summary.kept, "val")
        if val_share is not None:
            print(
                f"positive pixels: test/ {base['positive_share']:.2%}, validation "
                f"{val_share[0]:.2%} (x{base['positive_share'] / val_share[0]:.2f}; a threshold "
                "selected on validation transfers to pictures annotated like validation's)"
            )

        if a.no_study:
            print(f"total wall time {time.perf_counter() - start:.0f} s")
            return
        fixed = {k: v for k, v in tree.items() if k != "data"}
        fixed["optim"] = {**fixed["optim"], "epochs": a.study_epochs}
        spec = build_spec(
            {
                "name": "deepcrack-loss",
                "data": tree["data"],
                "fixed": fixed,
                "stages": [
                    {
                        "name": "grid",
                        "grid": {"loss.bce_weight": [0.2, 0.8], "loss.pos_weight": [1, 10]},
                    }
                ],
                "objective": {"metric": "val/f1", "direction": "maximize"},
                "preview_pictures": 0,
            },
            "bench",
        )
        t0 = time.perf_counter()
        runner = StudyRunner(spec, tmp / "study", progress=False)
        runner.run()
        best = runner.ranked("grid")[0]
        from segtune.analysis.ranking import rank
        from segtune.analysis.summary import load_study_summary

        ranked = rank(load_study_summary(tmp / "study"), "val/f1")
        print(
            "loss study, validation F1 of each configuration, difference to the best [95 %: "
            f"{ranked.noise_words()}], tied with the best:"
        )
        for c in ranked.configs:
            k = ranked.comparison(c)
            print(
                f"  {c.label} {c.params}: {c.mean('val/f1'):.3f}  diff {k.interval}  "
                f"tied {'yes' if k.tied else 'no'}"
            )
        tuned = test_protocol(
            a.data,
            tmp / "study" / best.user_attrs["run_dir"] / "model.pt",
            a.device,
            a.tta,
            scales(a),
        )
        print(
            f"loss study: bce_weight x pos_weight = 2 x 2, {a.study_epochs} epoch(s) each, selected by "
            f"validation F1 ({best.value:.3f}): {best.params}; {time.perf_counter() - t0:.0f} s"
        )
        print(
            f"{'segtune tuned':28s} {tuned['precision']:9.3f} {tuned['recall']:7.3f} {tuned['f1']:6.3f}"
            f"  dataset-best threshold {tuned['threshold']:.2f}; F1 at the threshold selected "
            f"on validation ({tuned['selected_threshold']:.3f}): {tuned['f1@selected']:.3f}"
        )
        same = a.study_epochs == a.epochs
        note = (
            ""
            if same
            else f" (the study's runs train {a.study_epochs} epoch(s), the baseline {a.epochs})"
        )
        print(f"test F1 moved by {tuned['f1'] - base['f1']:+.3f} with tuning{note}")
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
