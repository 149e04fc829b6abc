"""3 workers sharing one study on a real PostgreSQL server started by the test."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from segtune.cli import main
from tests.conftest import in_ci
from tests.study.helpers import finished_per_point, trial_states, write_spec


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bindir = _pg_bin()
    if bindir is None:
        if in_ci():
            pytest.fail("PostgreSQL binaries missing in CI (.ci/run must install postgresql)")
        pytest.skip("no PostgreSQL server binaries (install Debian's postgresql to run this test)")
    root = Path(tempfile.mkdtemp(prefix="segtune-pg-"))
    data = root / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: use the postgres account
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "segtune"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-p {port} -h 127.0.0.1 -k {root}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg2://segtune@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
def test_three_workers_on_postgres_finish_each_point_once(
    postgres_url: str, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = {"loss.bce_weight": [0.2, 0.5, 0.8], "loss.pos_weight": [1, 10]}
    spec = write_spec(tmp_path / "s.yaml", demo_data, "pg", grid)
    study = tmp_path / "study"
    assert (
        main(["sweep", str(spec), "--dir", str(study), "--storage", postgres_url, "--workers", "3"])
        == 0
    )
    counts = finished_per_point(postgres_url, "pg")
    assert len(counts) == 6 and set(counts.values()) == {1}
    assert trial_states(postgres_url, "pg") == {"COMPLETE": 6}
    assert "duplicates: 0" in capsys.readouterr().out
    assert not (study / "study.db").exists()
