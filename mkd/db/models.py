"""SQLModel tables. The schema is created by Alembic migrations only (mkd/db/migrations/versions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Optional

from sqlalchemy import JSON, Column, LargeBinary
from sqlalchemy.orm import relationship
from sqlmodel import Field, Relationship, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class PoolRecord(SQLModel, table=True):
    """The baseline the operator asked for; one row (id 1)."""

    __tablename__ = "pool"

    id: int = Field(default=1, primary_key=True)
    cpus: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    memory_base: int
    memory_bytes: int
    llc_way_mask: int | None = None
    devices: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    version: int = 1
    updated_at: datetime = Field(default_factory=utcnow)


class InstanceRecord(SQLModel, table=True):
    __tablename__ = "instance"

    id: int = Field(primary_key=True)
    name: str = Field(index=True, unique=True)
    uid: str = Field(unique=True)
    state: str
    kernel_state: str
    resources: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    memory: list[dict[str, int]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    kimage: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # An action whose kernel call may have happened but whose outcome is not recorded yet; set in
    # its own transaction before the call so a crash is detectable at reconcile.
    intent: str | None = None
    failure: str | None = None
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Its desired state, if declared (joined by name, loaded with the row: bodies show it).
    declared: Optional[DeclaredRecord] = Relationship(  # noqa: UP045 (SQLModel reads the string)
        sa_relationship=relationship(
            "DeclaredRecord",
            primaryjoin="foreign(InstanceRecord.name) == DeclaredRecord.name",
            viewonly=True,
            uselist=False,
            lazy="selectin",
        )
    )


class ImageRecord(SQLModel, table=True):
    __tablename__ = "image"

    sha256: str = Field(primary_key=True, max_length=64)
    size: int
    format: str
    created_at: datetime = Field(default_factory=utcnow)


class EventRecord(SQLModel, table=True):
    """Append-only log of state changes and refusals; `id` is the SSE event id."""

    __tablename__ = "event"

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(index=True)
    instance_id: int | None = Field(default=None, index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class IdempotencyRecord(SQLModel, table=True):
    """First response to a POST with an Idempotency-Key, stored in the same transaction as the change."""

    __tablename__ = "idempotency"

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(index=True, unique=True)  # sha256 of (token, method, path, key)
    request_hash: str
    status: int | None = None  # None while the first request is in flight
    headers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    body: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class ImageUse(SQLModel, table=True):
    """An image held by an instance's kimage; the foreign keys keep a used image from vanishing."""

    __tablename__ = "image_use"

    instance_id: int = Field(foreign_key="instance.id", primary_key=True, ondelete="CASCADE")
    sha256: str = Field(foreign_key="image.sha256", primary_key=True, ondelete="RESTRICT")
    role: str = Field(primary_key=True)  # "kernel" or "initrd"


class DeclaredRecord(SQLModel, table=True):
    """A declared instance (DESIGN "Desired state"), by name. Kept apart from the instance row,
    which mirrors the kernel: a Recreate deletes and creates the kernel instance, and a spec
    whose instance does not exist yet is still here."""

    __tablename__ = "declared"

    name: str = Field(primary_key=True)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    generation: int = 1
    observed_generation: int = 0
    conditions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The spec resources last applied, compared with the spec: an automatic choice (cpu_count) is
    # then no change.
    applied_resources: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    restarts: int = 0
    # Restart times (epoch seconds) still counted against maxRestarts; stored so a daemon restart
    # keeps the backoff.
    restart_times: list[float] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # No step before this time (epoch seconds): a restart's backoff, or a retry after a failed step.
    not_before: float | None = None
    # Steps that failed in a row: the retry backs off on it.
    failures: int = 0
    # Why the instance last stopped without a request, and its console's last lines then.
    last_failure: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Why the reconciler leaves it alone until a new generation or an imperative start
    # (CrashLoop, Stopped, StartOutcomeUnknown), or None.
    held: str | None = None
    # DELETE was asked: the reconciler drives it down, then deletes it and this row.
    deleting: bool = False
    updated_at: datetime = Field(default_factory=utcnow)
