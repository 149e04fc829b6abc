"""Exactly-once work claims, stored beside Optuna's tables in the same database.

Each point of a stage (a grid point, or a trial slot of a sampler stage) has at most one
row. A worker claims a point by inserting its row (the primary key makes exactly one
insert win) or by a compare-and-set update of a row whose owner is dead or whose
heartbeat is stale, or of a failed point with retries left. A worker keeps its claim
alive with a heartbeat; a killed worker's claim becomes stale and its point is re-run.
This works the same on SQLite (one machine) and PostgreSQL (many machines).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

_METADATA = sa.MetaData()
CLAIMS = sa.Table(
    "segtune_claims",
    _METADATA,
    sa.Column("study", sa.String(255), primary_key=True),
    sa.Column("stage", sa.String(255), primary_key=True),
    sa.Column("point", sa.String(1024), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # running | complete | failed
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
)
# What each point trains (see segtune.study.identity): the searched parameters, the
# run's identity and its fingerprint. Written before a point's first training; read to
# refuse a spec change that would alter recorded runs and to reuse identical runs.
IDENTITIES = sa.Table(
    "segtune_identities",
    _METADATA,
    sa.Column("study", sa.String(255), primary_key=True),
    sa.Column("stage", sa.String(255), primary_key=True),
    sa.Column("point", sa.String(1024), primary_key=True),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("identity", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
)

# A race's drops (segtune.core.racing): one row per dropped configuration, written once
# (the first worker to insert it wins; every worker computes the same drop from the same
# finished runs), with the runs the look used.
RACE_DROPS = sa.Table(
    "segtune_race_drops",
    _METADATA,
    sa.Column("study", sa.String(255), primary_key=True),
    sa.Column("stage", sa.String(255), primary_key=True),
    sa.Column("config", sa.String(1024), primary_key=True),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),  # JSON: lost_to, interval, level, p, runs
)


def worker_id() -> str:
    """``host:pid:random`` — unique per worker process."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _owner_alive(owner: str) -> bool | None:
    """True/False when the owner ran on this host (checked by pid); None if elsewhere."""
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return None
    pid = int(rest.split(":")[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class Claim:
    study: str
    stage: str
    point: str
    owner: str
    attempts: int
    stale_trial: int | None  # trial number of a dead worker's run of this point


@dataclass(frozen=True)
class PointIdentity:
    stage: str
    point: str
    params: dict[str, Any]
    identity: dict[str, Any]
    fingerprint: str


@dataclass(frozen=True)
class PointState:
    point: str
    state: str
    owner: str
    heartbeat: float
    attempts: int
    trial_number: int | None
    reason: str | None


def make_engine(url: str) -> sa.Engine:
    """An engine for the claims table (SQLite waits on locks instead of failing)."""
    if url.startswith("sqlite"):
        return sa.create_engine(url, connect_args={"timeout": 60}, poolclass=sa.pool.NullPool)
    return sa.create_engine(url, pool_pre_ping=True)


class ClaimBoard:
    """The claims of one study in one database."""

    def __init__(self, url: str, study: str, grace_s: float = 120.0, create: bool = True) -> None:
        self.engine = make_engine(url)
        self.study = study
        self.grace_s = grace_s
        self._has_identities = self._has_claims = True
        if create:
            _retry(self._create_table)
        else:  # a reader: never create tables; a study from before identities has none
            names = set(sa.inspect(self.engine).get_table_names())
            self._has_identities = IDENTITIES.name in names
            self._has_claims = CLAIMS.name in names

    def _create_table(self) -> None:
        # Workers on several machines may start together: PostgreSQL then reports the
        # loser of a concurrent CREATE TABLE as a duplicate; the table exists, so check again.
        try:
            _METADATA.create_all(self.engine)
        except (IntegrityError, ProgrammingError):
            _METADATA.create_all(self.engine)

    def states(self, stage: str) -> dict[str, PointState]:
        if not self._has_claims:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(CLAIMS).where(CLAIMS.c.study == self.study, CLAIMS.c.stage == stage)
            ).mappings()
            return {
                r["point"]: PointState(
                    r["point"],
                    r["state"],
                    r["owner"],
                    r["heartbeat"],
                    r["attempts"],
                    r["trial_number"],
                    r["reason"],
                )
                for r in rows
            }

    def is_stale(self, row: PointState, now: float | None = None) -> bool:
        if row.state != "running":
            return False
        alive = _owner_alive(row.owner)
        if alive is not None:
            return not alive
        return (now or time.time()) - row.heartbeat > self.grace_s

    def try_claim(self, stage: str, point: str, owner: str, max_retries: int) -> Claim | None:
        """Claim ``point`` for ``owner``; None if it is done, taken, or out of retries."""
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    CLAIMS.insert().values(
                        study=self.study,
                        stage=stage,
                        point=point,
                        state="running",
                        owner=owner,
                        heartbeat=now,
                        attempts=1,
                        trial_number=None,
                        reason=None,
                    )
                )
            return Claim(self.study, stage, point, owner, 1, None)
        except IntegrityError:
            pass
        row = self.states(stage).get(point)
        if row is None or row.state == "complete":
            return None
        if row.state == "failed" and row.attempts > max_retries:
            return None
        if row.state == "running" and not self.is_stale(row, now):
            return None
        # Compare-and-set on (owner, heartbeat, state): exactly one contender wins.
        with self.engine.begin() as conn:
            result = conn.execute(
                CLAIMS.update()
                .where(
                    CLAIMS.c.study == self.study,
                    CLAIMS.c.stage == stage,
                    CLAIMS.c.point == point,
                    CLAIMS.c.owner == row.owner,
                    CLAIMS.c.heartbeat == row.heartbeat,
                    CLAIMS.c.state == row.state,
                )
                .values(
                    state="running",
                    owner=owner,
                    heartbeat=now,
                    attempts=row.attempts + 1,
                    reason=None,
                )
            )
        if result.rowcount != 1:
            return None
        stale_trial = row.trial_number if row.state == "running" else None
        return Claim(self.study, stage, point, owner, row.attempts + 1, stale_trial)

    def _update(self, claim: Claim, **values: Any) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                CLAIMS.update()
                .where(
                    CLAIMS.c.study == claim.study,
                    CLAIMS.c.stage == claim.stage,
                    CLAIMS.c.point == claim.point,
                    CLAIMS.c.owner == claim.owner,
                )
                .values(**values)
            )
        return bool(result.rowcount == 1)

    def set_trial(self, claim: Claim, trial_number: int) -> None:
        self._update(claim, trial_number=trial_number, heartbeat=time.time())

    def beat(self, claim: Claim) -> bool:
        """Refresh the heartbeat; False if the claim was lost (taken over)."""
        return _retry(lambda: self._update(claim, heartbeat=time.time()))

    def finish(self, claim: Claim, state: str, reason: str | None = None) -> bool:
        return _retry(
            lambda: self._update(claim, state=state, reason=reason, heartbeat=time.time())
        )

    def release(self, claim: Claim, reason: str = "interrupted") -> None:
        """Give a running claim back without counting the attempt (interrupted, or the
        environment failed): it may be claimed again at once."""
        _retry(
            lambda: self._update(claim, state="failed", attempts=claim.attempts - 1, reason=reason)
        )

    def owns(self, claim: Claim) -> bool:
        """Whether ``claim`` is still held by its owner (not taken over)."""
        row = self.states(claim.stage).get(claim.point)
        return row is not None and row.owner == claim.owner and row.state == "running"

    def retry_failed(self) -> int:
        """Give every point that ran out of retries its attempts back; returns how many."""
        with self.engine.begin() as conn:
            result = conn.execute(
                CLAIMS.update()
                .where(CLAIMS.c.study == self.study, CLAIMS.c.state == "failed")
                .values(attempts=0, reason="retry requested")
            )
        return int(result.rowcount or 0)

    # --- race drops ----------------------------------------------------------------------
    def record_drop(self, stage: str, config: str, round_: int, decision: dict[str, Any]) -> None:
        """Record a race's drop once (a concurrent identical insert is a no-op)."""

        def write() -> None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        RACE_DROPS.insert().values(
                            study=self.study,
                            stage=stage,
                            config=config,
                            round=round_,
                            decision=json.dumps(decision, sort_keys=True),
                        )
                    )
            except IntegrityError:  # recorded by another worker
                pass

        _retry(write)

    def drops(self, stage: str) -> dict[str, dict[str, Any]]:
        """The recorded drops of a race stage: config key → decision (with its round)."""
        if RACE_DROPS.name not in set(sa.inspect(self.engine).get_table_names()):
            return {}
        query = sa.select(RACE_DROPS).where(
            RACE_DROPS.c.study == self.study, RACE_DROPS.c.stage == stage
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).fetchall()
        return {r.config: {**json.loads(r.decision), "round": r.round} for r in rows}

    # --- identities ----------------------------------------------------------------------
    def record_identity(self, ident: PointIdentity) -> None:
        """Record (or, for a sampler slot that drew new values, replace) what a point trains."""
        values = {
            "params": json.dumps(ident.params, sort_keys=True),
            "identity": json.dumps(ident.identity, sort_keys=True, default=str),
            "fingerprint": ident.fingerprint,
        }
        key = (
            IDENTITIES.c.study == self.study,
            IDENTITIES.c.stage == ident.stage,
            IDENTITIES.c.point == ident.point,
        )

        def write() -> None:
            with self.engine.begin() as conn:
                if conn.execute(IDENTITIES.update().where(*key).values(**values)).rowcount:
                    return
                try:
                    with conn.begin_nested():
                        conn.execute(
                            IDENTITIES.insert().values(
                                study=self.study, stage=ident.stage, point=ident.point, **values
                            )
                        )
                except IntegrityError:  # recorded meanwhile by another worker
                    conn.execute(IDENTITIES.update().where(*key).values(**values))

        _retry(write)

    def identities(self, stage: str | None = None) -> list[PointIdentity]:
        if not self._has_identities:
            return []
        query = sa.select(IDENTITIES).where(IDENTITIES.c.study == self.study)
        if stage is not None:
            query = query.where(IDENTITIES.c.stage == stage)
        with self.engine.connect() as conn:
            return [_identity(r) for r in conn.execute(query).mappings()]

    def completed_with(self, fingerprint: str) -> PointIdentity | None:
        """A point of any stage that completed a run with this fingerprint (not a reuse)."""
        if not self._has_identities:
            return None
        query = (
            sa.select(IDENTITIES)
            .join(
                CLAIMS,
                sa.and_(
                    CLAIMS.c.study == IDENTITIES.c.study,
                    CLAIMS.c.stage == IDENTITIES.c.stage,
                    CLAIMS.c.point == IDENTITIES.c.point,
                ),
            )
            .where(
                IDENTITIES.c.study == self.study,
                IDENTITIES.c.fingerprint == fingerprint,
                CLAIMS.c.state == "complete",
                sa.or_(CLAIMS.c.reason.is_(None), ~CLAIMS.c.reason.like("reused%")),
            )
            .order_by(IDENTITIES.c.stage, IDENTITIES.c.point)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _identity(row)


def _identity(row: Any) -> PointIdentity:
    return PointIdentity(
        row["stage"],
        row["point"],
        json.loads(row["params"]),
        json.loads(row["identity"]),
        row["fingerprint"],
    )


class Heartbeat:
    """Background thread that keeps a claim alive while its run trains; ``lost`` is set
    when another worker took the claim over (this one was paused past the grace time)."""

    def __init__(self, board: ClaimBoard, claim: Claim, interval_s: float) -> None:
        self._board, self._claim, self._interval = board, claim, interval_s
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="segtune-heartbeat")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._board.beat(self._claim):
                    self.lost.set()
                    return
            except Exception:  # a missed beat is retried at the next interval
                continue


def _retry(fn: Any, attempts: int = 8) -> Any:
    """Retry on transient lock errors (SQLite under several writers)."""
    for i in range(attempts):
        try:
            return fn()
        except OperationalError:
            if i == attempts - 1:
                raise
            time.sleep(0.2 * (i + 1))
    return None
