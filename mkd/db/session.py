"""Engine and sessions for the daemon's SQLite database (WAL, foreign keys on, synchronous=FULL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

# DESIGN "Durability": a 2xx means the change is on disk. In WAL mode FULL syncs the WAL at every
# commit; NORMAL only at checkpoints, so a power cut could take back acknowledged commits.
Synchronous = Literal["full", "normal"]
# DESIGN "Security": the database (and SQLite's -wal and -shm, which copy its mode) is 0600.
DATABASE_MODE = 0o600


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, synchronous: Synchronous) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use the umask), and narrow an
    older, wider one together with its -wal and -shm."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, DATABASE_MODE))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if each.exists():
            os.chmod(each, DATABASE_MODE)


def make_engine(path: Path, *, synchronous: Synchronous = "full") -> Engine:
    create_private(path)
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})
    event.listen(engine, "connect", partial(_sqlite_pragmas, synchronous=synchronous))
    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One short transaction: commit on success, roll back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
