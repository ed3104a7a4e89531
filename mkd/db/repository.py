"""Keyword-only queries over the daemon's tables."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from mkd.db.models import DeclaredRecord, EventRecord, ImageRecord, ImageUse, InstanceRecord, PoolRecord


def get_instance(*, session: Session, instance_id: int) -> InstanceRecord | None:
    return session.get(InstanceRecord, instance_id)


def get_instance_by_name(*, session: Session, name: str) -> InstanceRecord | None:
    return session.exec(select(InstanceRecord).where(InstanceRecord.name == name)).first()


def list_instances(
    *, session: Session, state: str | None = None, after_id: int = 0, limit: int | None = None,
    names: list[str] | None = None,
) -> Sequence[InstanceRecord]:
    query = select(InstanceRecord).where(col(InstanceRecord.id) > after_id)
    if names is not None:
        query = query.where(col(InstanceRecord.name).in_(names))
    if state is not None:
        query = query.where(InstanceRecord.state == state)
    query = query.order_by(col(InstanceRecord.id))
    if limit is not None:
        query = query.limit(limit)
    return session.exec(query).all()


def instance_ids_in(*, session: Session, state: str) -> list[int]:
    """The ids of the instances recorded in `state` (one column: the status poll runs it each second)."""
    return list(session.exec(select(InstanceRecord.id).where(InstanceRecord.state == state)).all())


def declared_names_with_labels(*, session: Session, labels: dict[str, str]) -> list[str]:
    """Names of declared instances carrying every label given."""
    rows = session.exec(select(DeclaredRecord.name, DeclaredRecord.labels)).all()
    return [name for name, have in rows if all(have.get(k) == v for k, v in labels.items())]


def get_pool(*, session: Session) -> PoolRecord | None:
    return session.get(PoolRecord, 1)


def get_image(*, session: Session, sha256: str) -> ImageRecord | None:
    return session.get(ImageRecord, sha256)


def list_images(*, session: Session, after: str = "", limit: int = 100) -> Sequence[ImageRecord]:
    query = (
        select(ImageRecord).where(col(ImageRecord.sha256) > after).order_by(col(ImageRecord.sha256)).limit(limit)
    )
    return session.exec(query).all()


def unused_images(*, session: Session) -> Sequence[ImageRecord]:
    """Images no kimage holds."""
    used = select(ImageUse.sha256)
    return session.exec(select(ImageRecord).where(col(ImageRecord.sha256).not_in(used))).all()


def image_users(*, session: Session, sha256: str) -> list[int]:
    rows = session.exec(select(ImageUse.instance_id).where(ImageUse.sha256 == sha256)).all()
    return sorted(set(rows))


def set_image_uses(*, session: Session, instance_id: int, uses: dict[str, str]) -> None:
    for old in session.exec(select(ImageUse).where(ImageUse.instance_id == instance_id)).all():
        session.delete(old)
    session.flush()
    for role, sha in uses.items():
        session.add(ImageUse(instance_id=instance_id, sha256=sha, role=role))


def events_after(*, session: Session, after_id: int, limit: int = 1000) -> Sequence[EventRecord]:
    query = (
        select(EventRecord).where(col(EventRecord.id) > after_id).order_by(col(EventRecord.id)).limit(limit)
    )
    return session.exec(query).all()
