"""``segtune demo``: the whole tool on generated data, in a few minutes on a CPU."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from segtune.data.synthetic import write_demo_data

DEMO_PICTURES, DEMO_SIZE, DEMO_SEED = 40, 128, 0


def demo_spec_text() -> str:
    return resources.files("segtune").joinpath("resources/demo-study.yaml").read_text()


def run_demo(out: Path, workers: int = 1) -> int:
    """Generate the data (once), run the demo study (resumable), write the report."""
    from segtune.analysis.answer import answer
    from segtune.analysis.summary import load_study_summary
    from segtune.cli.sweep import finish_sweep
    from segtune.study.run import run_sweep

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "val" / "masks").is_dir():
        counts = write_demo_data(data, pictures=DEMO_PICTURES, size=DEMO_SIZE, seed=DEMO_SEED)
        print(
            f"demo data: {counts['train']} train + {counts['val']} val pictures "
            f"({DEMO_SIZE}x{DEMO_SIZE}) in {data}"
        )
    spec_path = out / "demo-study.yaml"  # a copy beside the data: edit it and re-run
    if not spec_path.exists():
        spec_path.write_text(demo_spec_text())
    if not (out / "study" / "study.json").exists():  # a new study: its plan first
        from segtune.study.plan import make_plan
        from segtune.study.spec import load_spec

        for line in make_plan(load_spec(spec_path), progress=True).lines():
            print(line)
    result = run_sweep(spec_path, str(out / "study"), None, workers, None, show_plan=False)
    status = finish_sweep(result)
    if status != 0:
        return status
    summary = load_study_summary(out / "study")
    print()
    print("Answer (the report opens with it):")
    for sentence in answer(summary).sentences:
        print("  - " + sentence.replace("**", "").replace("`", ""))
    print(f"report: {(out / 'study' / 'report' / 'report.html').resolve()}")
    print(f"study folder: {(out / 'study').resolve()}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0
