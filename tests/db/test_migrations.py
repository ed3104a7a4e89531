"""Every schema migration upgrades a database made by the previous release (DESIGN "Testing
notes"), and the models and the migrations describe the same schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel, select

from mkd.db import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from mkd.db.migrate import alembic_config, upgrade_to_head
from mkd.db.models import DeclaredRecord, InstanceRecord
from mkd.db.session import transaction


def test_a_0001_database_upgrades_with_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "mkd.sqlite3"
    command.upgrade(alembic_config(db), "0001")  # the schema the previous release created
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO instance (id, name, uid, state, kernel_state, resources, memory, kimage, intent, failure,"
            " version, created_at, updated_at) VALUES (7, 'web', 'u-7', 'LOADED', 'loaded',"
            " '{\"cpus\": [2, 3], \"memory_bytes\": 268435456}', '[]', NULL, NULL, NULL, 4,"
            " '2026-11-25 10:00:00', '2026-11-25 10:00:00')"
        )
    upgrade_to_head(db)
    engine = create_engine(f"sqlite:///{db}")
    with transaction(engine) as session:
        record = session.exec(select(InstanceRecord)).one()
        assert (record.id, record.name, record.state, record.version) == (7, "web", "LOADED", 4)
        assert record.resources == {"cpus": [2, 3], "memory_bytes": 268435456}
        # an instance of the previous release has no spec and behaves as before
        assert session.exec(select(DeclaredRecord)).all() == []


def test_models_match_the_migrations(tmp_path: Path) -> None:
    db = tmp_path / "mkd.sqlite3"
    upgrade_to_head(db)
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_downgrade_to_0001_and_back(tmp_path: Path) -> None:
    db = tmp_path / "mkd.sqlite3"
    upgrade_to_head(db)
    command.downgrade(alembic_config(db), "0001")
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(instance)")}
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "declared" not in tables and "instance" in tables and columns
    upgrade_to_head(db)
