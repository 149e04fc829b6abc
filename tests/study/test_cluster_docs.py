"""The cluster examples in docs/ parse, and the command each contains runs a study as
two concurrent workers against a local PostgreSQL database: every point exactly once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.study.helpers import finished_per_point, write_spec

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GRID = {"loss.pos_weight": [1.0, 4.0, 10.0]}

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _shims(tmp_path: Path) -> Path:
    """``srun`` as a pass-through and ``segtune`` as this interpreter's module."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (
        ("srun", 'exec "$@"'),
        ("segtune", f'exec {sys.executable} -m segtune "$@"'),
    ):
        shim = bin_dir / name
        shim.write_text(f"#!/usr/bin/env bash\n{body}\n")
        shim.chmod(0o755)
    return bin_dir


def _run_workers(commands: list[list[str]], env: dict[str, str], cwd: Path) -> None:
    procs = [
        subprocess.Popen(c, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for c in commands
    ]
    outputs = [p.communicate(timeout=600)[0].decode() for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]


def test_slurm_array_script(
    demo_data: Path, tmp_path: Path, fresh_postgres: Callable[[], str]
) -> None:
    script = DOCS / "slurm" / "sweep.sbatch"
    text = script.read_text()
    directives = dict(
        (m.group(1), m.group(2)) for m in re.finditer(r"^#SBATCH --([\w-]+)=?(\S*)", text, re.M)
    )
    assert directives["array"] == "0-7" and "requeue" in directives
    assert directives["signal"].startswith("TERM@")  # preemption → recorded interrupted
    assert re.search(r"^srun segtune sweep .*--workers 1$", text, re.M)
    spec = write_spec(tmp_path / "spec.yaml", demo_data, "slurm", GRID)
    # A password in the URL (the test server trusts loopback, so it is not checked).
    storage = fresh_postgres().replace("://segtune@", "://segtune:s3cret-pw@", 1)
    assert "s3cret-pw" in storage
    env = {
        **os.environ,
        "PATH": f"{_shims(tmp_path)}:{os.environ['PATH']}",
        "STUDY_SPEC": str(spec),
        "STUDY_DIR": str(tmp_path / "shared" / "studies" / "ref"),
        "SEGTUNE_STORAGE": storage,
        "SLURM_CPUS_PER_TASK": "1",
        "OMP_NUM_THREADS": "1",
    }
    tasks = [["bash", str(script)] for _ in range(2)]  # two array tasks at once
    _run_workers(tasks, {**env, "SLURM_ARRAY_TASK_ID": "0"}, tmp_path)
    done = finished_per_point(storage, "slurm")
    assert len(done) == 3 and set(done.values()) == {1}
    assert len(list((tmp_path / "shared/studies/ref/runs/grid").glob("*/model.pt"))) == 3
    # The password travels by environment only: never into study.json.
    assert "s3cret-pw" not in (tmp_path / "shared/studies/ref/study.json").read_text()


def _manifests() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DOCS / "kubernetes" / "study.yaml").read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_kubernetes_job(demo_data: Path, tmp_path: Path, fresh_postgres: Callable[[], str]) -> None:
    kinds = _manifests()
    assert set(kinds) == {"PersistentVolumeClaim", "Deployment", "Service", "Job"}
    assert kinds["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    db = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert db["image"].startswith("postgres:")
    assert (
        kinds["Service"]["spec"]["selector"]
        == kinds["Deployment"]["spec"]["selector"]["matchLabels"]
    )
    job = kinds["Job"]["spec"]
    assert job["parallelism"] == job["completions"] >= 2  # N identical workers
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    (volume,) = pod["volumes"]
    assert (
        volume["persistentVolumeClaim"]["claimName"]
        == kinds["PersistentVolumeClaim"]["metadata"]["name"]
    )
    (container,) = pod["containers"]
    (mount,) = container["volumeMounts"]
    assert mount["name"] == volume["name"]
    env_vars = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env_vars["SEGTUNE_STORAGE"]["valueFrom"]  # never a literal

    # The container command, with the volume at a local folder and the secret's URL.
    shared = tmp_path / "volume"
    shared.mkdir()
    write_spec(shared / "spec.yaml", demo_data, "k8s", GRID)
    command = [c.replace(mount["mountPath"], str(shared), 1) for c in container["command"]]
    storage = fresh_postgres()
    env = {
        **os.environ,
        "PATH": f"{_shims(tmp_path)}:{os.environ['PATH']}",
        **{k: e["value"] for k, e in env_vars.items() if "value" in e},
        "SEGTUNE_STORAGE": storage,
        "SEGTUNE_THREADS": "1",  # 2 workers on this 2-core machine, not the manifest's 8
    }
    _run_workers([command, command], env, tmp_path)
    done = finished_per_point(storage, "k8s")
    assert len(done) == 3 and set(done.values()) == {1}
    assert (shared / "studies" / "ref" / "study.json").exists()
