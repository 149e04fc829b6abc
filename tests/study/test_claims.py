"""The exactly-once core, directly: claim, race, takeover by pid and by heartbeat,
complete, release, retry — on SQLite and on PostgreSQL (like Optuna's storage tests)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from segtune.study.claims import CLAIMS, ClaimBoard, Heartbeat, PointIdentity

HOST = socket.gethostname()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'claims.db'}"
    else:
        make: Callable[[], str] = request.getfixturevalue("fresh_postgres")
        yield make()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_first_claim_wins_and_a_live_claim_is_not_taken(url: str) -> None:
    board = ClaimBoard(url, "s")
    first = board.try_claim("grid", "p", f"{HOST}:1:a", max_retries=1)
    assert first is not None and first.attempts == 1
    assert board.try_claim("grid", "p", "elsewhere:2:b", max_retries=1) is None
    assert board.owns(first)


def test_many_threads_racing_for_one_point_get_one_claim(url: str) -> None:
    boards = [ClaimBoard(url, "race") for _ in range(6)]
    won: list[object] = []
    barrier = threading.Barrier(len(boards))

    def contend(i: int) -> None:
        barrier.wait()
        claim = boards[i].try_claim("grid", "p", f"elsewhere:{i}:x", max_retries=1)
        if claim is not None:
            won.append(claim)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(boards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_dead_pid_on_this_host_is_taken_over(url: str) -> None:
    board = ClaimBoard(url, "pid")
    dead = board.try_claim("grid", "p", f"{HOST}:{_dead_pid()}:a", max_retries=1)
    assert dead is not None
    board.set_trial(dead, 7)
    taken = board.try_claim("grid", "p", f"{HOST}:1:b", max_retries=1)
    assert taken is not None and taken.stale_trial == 7 and taken.attempts == 2
    assert not board.owns(dead) and board.owns(taken)
    assert board.finish(dead, "complete") is False  # the old owner can no longer finish it


def test_stale_heartbeat_on_another_host_is_taken_over(url: str) -> None:
    board = ClaimBoard(url, "beat", grace_s=0.5)
    other = board.try_claim("grid", "p", "elsewhere:9:a", max_retries=1)
    assert other is not None
    assert board.try_claim("grid", "p", "elsewhere:10:b", max_retries=1) is None
    time.sleep(0.7)
    assert board.try_claim("grid", "p", "elsewhere:10:b", max_retries=1) is not None


def test_heartbeat_keeps_a_claim_and_notices_a_takeover(url: str) -> None:
    board = ClaimBoard(url, "hb", grace_s=1.0)
    claim = board.try_claim("grid", "p", "elsewhere:9:a", max_retries=1)
    assert claim is not None
    with Heartbeat(board, claim, interval_s=0.1) as beat:
        time.sleep(1.3)
        assert board.try_claim("grid", "p", "elsewhere:10:b", max_retries=1) is None
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(CLAIMS.update().values(owner="elsewhere:11:c"))
        engine.dispose()
        deadline = time.time() + 5
        while not beat.lost.is_set() and time.time() < deadline:
            time.sleep(0.05)
        assert beat.lost.is_set()


def test_complete_failed_release_and_retry(url: str) -> None:
    board = ClaimBoard(url, "life")
    owner = f"{HOST}:1:a"
    done = board.try_claim("grid", "done", owner, max_retries=0)
    assert done is not None and board.finish(done, "complete")
    assert board.try_claim("grid", "done", owner, max_retries=5) is None

    failed = board.try_claim("grid", "bad", owner, max_retries=0)
    assert failed is not None and board.finish(failed, "failed", "boom")
    assert board.try_claim("grid", "bad", owner, max_retries=0) is None  # out of retries
    assert board.retry_failed() == 1
    again = board.try_claim("grid", "bad", owner, max_retries=0)
    assert again is not None and again.attempts == 1

    cut = board.try_claim("grid", "cut", owner, max_retries=0)
    assert cut is not None
    board.release(cut)  # interrupted: not an attempt
    row = board.states("grid")["cut"]
    assert (row.state, row.attempts, row.reason) == ("failed", 0, "interrupted")
    assert board.try_claim("grid", "cut", owner, max_retries=0) is not None


def test_identities_and_reuse_lookup(url: str) -> None:
    board = ClaimBoard(url, "ids")
    owner = f"{HOST}:1:a"
    ident = PointIdentity("grid", "p", {"loss.pos_weight": 2}, {"loss.pos_weight": 2}, "fp1")
    board.record_identity(ident)
    board.record_identity(ident)  # recorded twice: still one row
    assert board.identities() == [ident]
    assert board.completed_with("fp1") is None  # not completed yet
    claim = board.try_claim("grid", "p", owner, max_retries=0)
    assert claim is not None and board.finish(claim, "complete")
    assert board.completed_with("fp1") == ident
    resampled = PointIdentity("grid", "p", {"loss.pos_weight": 3}, {"loss.pos_weight": 3}, "fp2")
    board.record_identity(resampled)  # a sampler slot that drew again replaces its row
    assert board.identities("grid") == [resampled]


def test_a_reader_creates_no_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    reader = ClaimBoard(url, "r", create=False)
    assert reader.states("grid") == {} and reader.identities() == []
    assert sa.inspect(sa.create_engine(url)).get_table_names() == []
