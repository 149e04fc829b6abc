"""Where a study lives: its folder, its Optuna storage and its recorded subsets."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from segtune.core.errors import ConfigError, SegtuneError
from segtune.core.records import write_json
from segtune.data.layout import Picture
from segtune.data.subsets import Subsets, picture_stats

T = TypeVar("T")


def default_storage(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'study.db').resolve()}"


def redact(url: str) -> str:
    """Hide a password in a storage URL before printing it."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def without_password(url: str) -> str:
    """The URL with its password removed (what ``study.json`` records); the password
    then comes from the environment (``PGPASSWORD``, ``~/.pgpass``) or ``--storage``."""
    try:
        parsed = make_url(url)
    except Exception:
        return redact(url)
    if parsed.password is None:
        return url
    bare = sa.engine.URL.create(
        parsed.drivername,
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    )
    return bare.render_as_string(hide_password=False)


def check_storage_url(url: str) -> None:
    """Refuse a storage URL whose syntax or database kind is wrong, without connecting."""
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except Exception as exc:
        raise ConfigError(f"--storage {redact(url)}: not a database URL ({exc})") from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"--storage {redact(url)}: unsupported database {parsed.get_backend_name()!r} "
            "(sqlite:///path or postgresql://user@host/db)"
        )


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; SQLite waits on locks (several local workers)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as exc:
        raise ConfigError(
            f"--storage {redact(url)}: database driver missing ({exc}); install segtune[postgres]"
        ) from exc
    except Exception as exc:
        raise SegtuneError(
            f"--storage {redact(url)}: cannot open ({type(exc).__name__}: {redact(str(exc))})"
        ) from exc


@contextlib.contextmanager
def init_lock(url: str, name: str) -> Iterator[None]:
    """Serialise the creation of a study's tables between workers that start together.

    Optuna creates its schema without guarding against a concurrent creator, so two
    processes opening a new database at once can fail on its own tables. SQLite: an
    exclusive lock on a file beside the database; PostgreSQL: an advisory lock.
    """
    if url.startswith("sqlite"):
        db = make_url(url).database
        if not db or db == ":memory:":
            yield
            return
        lock_path = Path(db).with_name(Path(db).name + ".init-lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                # Made here, it follows the umask like every other file (SQLite makes a
                # database 0644 whatever the umask; its journals copy the database's mode).
                os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o666))
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    if url.startswith("postgresql"):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        key = zlib.crc32(f"segtune:{name}".encode()) - 2**31
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        finally:
            engine.dispose()
        return
    yield


def retry_on_race(fn: Callable[[], T], attempts: int = 6) -> T:
    """Call ``fn``, again after a short wait if it lost a race on schema creation."""
    for i in range(attempts):
        try:
            return fn()
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
            if i == attempts - 1:
                raise
            time.sleep(0.3 * (i + 1))
    raise AssertionError("unreachable")


def stage_study_name(study: str, stage: str) -> str:
    return f"{study}:{stage}"


def write_study_info(study_dir: Path, info: dict[str, Any]) -> None:
    """Write ``study.json`` if its content changed (an unchanged study keeps its file)."""
    path = study_dir / "study.json"
    if path.is_file():
        try:
            if json.loads(path.read_text()) == info:
                return
        except ValueError:
            pass
    write_json(path, info)


def read_study_info(study_dir: Path) -> dict[str, Any]:
    """``study.json``; its ``storage`` is None for the SQLite file inside the folder, so a
    study folder can be moved or copied and still be read."""
    path = study_dir / "study.json"
    if not path.is_file():
        raise SegtuneError(f"{study_dir}: not a study folder (no study.json)")
    info = dict(json.loads(path.read_text()))
    info["storage"] = info.get("storage") or default_storage(study_dir)
    return info


def _pictures_to_json(pictures: list[Picture]) -> list[dict[str, str]]:
    return [
        {"stem": p.stem, "image": str(p.image)}
        | ({"mask": str(p.mask)} if p.mask is not None else {})  # none: no positives
        | ({"roi": str(p.roi)} if p.roi is not None else {})
        for p in pictures
    ]


def _pictures_from_json(rows: list[dict[str, str]]) -> list[Picture]:
    return [
        Picture(
            r["stem"],
            Path(r["image"]),
            Path(r["mask"]) if "mask" in r else None,
            Path(r["roi"]) if "roi" in r else None,
        )
        for r in rows
    ]


def recorded_subsets(study_dir: Path, sample: Callable[[], Subsets]) -> Subsets:
    """The study's subsets: recorded at first use in ``subsets.json`` (with each picture's
    size and modification time), then always read back; ``sample`` draws them the first
    time (every run and worker of a study uses the same pictures)."""
    path = study_dir / "subsets.json"
    if path.exists():
        data = json.loads(path.read_text())
        subsets = Subsets(_pictures_from_json(data["train"]), _pictures_from_json(data["val"]))
        if "stats" not in data:  # recorded before picture stats existed
            data["stats"] = picture_stats(subsets)
            write_json(path, data)
        return subsets
    subsets = sample()
    write_json(
        path,
        {
            "train": _pictures_to_json(subsets.train),
            "val": _pictures_to_json(subsets.val),
            "stats": picture_stats(subsets),
        },
    )
    return subsets


def recorded_data_fingerprint(study_dir: Path) -> str | None:
    """The fingerprint of the study's pictures as they were when it started, kept when
    ``--retry-failed`` accepts pictures fixed since (their stats are updated)."""
    path = study_dir / "subsets.json"
    if not path.exists():
        return None
    value = json.loads(path.read_text()).get("data_fingerprint")
    return str(value) if value is not None else None


def accept_fixed_pictures(
    study_dir: Path, now: dict[str, list[dict[str, Any]]], fingerprint: str
) -> None:
    """Record today's picture stats, keeping the study's data fingerprint: pictures that
    failed points named and no completed run used were fixed (``--retry-failed``)."""
    path = study_dir / "subsets.json"
    data = json.loads(path.read_text())
    data["stats"] = now
    data.setdefault("data_fingerprint", fingerprint)
    write_json(path, data)


def recorded_stats(study_dir: Path) -> dict[str, list[dict[str, Any]]] | None:
    path = study_dir / "subsets.json"
    if not path.exists():
        return None
    stats = json.loads(path.read_text()).get("stats")
    return dict(stats) if stats is not None else None


def read_subsets(study_dir: Path) -> Subsets | None:
    path = study_dir / "subsets.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return Subsets(_pictures_from_json(data["train"]), _pictures_from_json(data["val"]))
