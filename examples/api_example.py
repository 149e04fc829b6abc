"""segtune from Python: a demo dataset, one run, a two-point study, its answer, a test score.

.venv/bin/python examples/api_example.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

import segtune
from segtune.data.synthetic import write_demo_data


def main(out: Path) -> None:
    write_demo_data(out / "data", pictures=16, size=64, seed=0)
    tiny = {
        "pages": {"page_size": 32},
        "model": {"encoder": "mobilenet_v2", "encoder_depth": 3, "decoder_channels": [16, 8, 4]},
        "optim": {"epochs": 2, "batch_size": 8, "learning_rate": 0.003},
        "runtime": {"device": "cpu"},
    }
    data = {"train": str(out / "data" / "train"), "val": str(out / "data" / "val")}
    (out / "run.yaml").write_text(yaml.safe_dump({"data": data, **tiny}))
    record = segtune.train_run(segtune.load_config(out / "run.yaml"), out / "run", progress=False)
    print(f"run {record.status}: validation F1 {record.kept['val/f1']:.3f}")

    spec = {
        "name": "api",
        "data": data,
        "fixed": tiny,
        "stages": [{"name": "grid", "grid": {"loss.pos_weight": [1.0, 10.0]}}],
        "objective": {"metric": "val/f1"},
    }
    (out / "spec.yaml").write_text(yaml.safe_dump(spec))
    study = segtune.run_study(out / "spec.yaml", out / "study", sets=["optim.epochs=1"])
    assert study.exit_code == 0 and study.model_path is not None
    print(
        f"model to use: {study.model_path} ({study.objective} {study.metrics[study.objective]:.3f})"
    )
    summary = segtune.load_study(out / "study")
    answer = segtune.study_answer(summary)
    for sentence in answer.sentences:  # what the report opens with
        print(sentence)
    assert answer.model is not None
    tied = [c.label for c in answer.objective.tied()]
    print(f"configurations tied with the best: {tied}")

    model = answer.model.path  # the median seed of the best configuration
    # its validation F1-best threshold; a model that collapsed on validation has none
    threshold = answer.model.threshold if answer.model.threshold is not None else 0.5
    result = segtune.evaluate_run(model, [out / "data" / "val"], threshold=threshold)
    print(f"test F1 {result.metrics['test/f1']:.3f} at threshold {result.threshold:.3f}")
    masks = segtune.predict_masks(model, [out / "data" / "val"], out / "masks")
    print(f"wrote {len(masks)} masks")
    meta = segtune.export_run(model, "torchscript", out / "model.ts")
    print(f"exported pages of {meta['pages']['page_size']} px to {out / 'model.ts'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
