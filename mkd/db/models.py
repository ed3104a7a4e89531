"""SQLModel tables. The schema is created by Alembic migrations only (mkd/db/migrations/versions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary
from sqlmodel import Field, SQLModel


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
