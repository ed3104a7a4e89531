"""Instance records: ref resolution, ETags, the public shape, and event recording."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from mkd.db import repository
from mkd.db.models import DeclaredRecord, EventRecord, InstanceRecord, utcnow
from mkd.domain.names import is_numeric_ref, name_problem
from mkd.domain.states import InstanceState, allowed_actions
from mkd.errors import KernelError, PreconditionFailed
from mkd.kernel_types import MAX_INSTANCE_ID, MIN_INSTANCE_ID
from mkd.services.event_bus import BusEvent


def parse_ref(ref: str) -> int | str:
    """DESIGN "Ids and refs": a numeric ref is an id (outside the id range EINVAL: the kernel's
    mk_id <= 0 and the unencodable ids, never masked); anything else a name (ENOENT when it
    cannot name an instance)."""
    if is_numeric_ref(ref):
        value = int(ref)
        if not MIN_INSTANCE_ID <= value <= MAX_INSTANCE_ID:
            raise KernelError(errno.EINVAL, f"instance id {value} is outside {MIN_INSTANCE_ID}..{MAX_INSTANCE_ID}")
        return value
    if name_problem(ref) is not None:
        raise KernelError(errno.ENOENT, f"no instance named {ref!r} (not a valid instance name)")
    return ref


def not_found(ref: int | str) -> KernelError:
    """ENOENT for a parsed ref (parse_ref) that names no instance."""
    if isinstance(ref, int):
        return KernelError(errno.ENOENT, f"no instance with id {ref}", instance_id=ref)
    return KernelError(errno.ENOENT, f"no instance named {ref!r}")


def resolve_ref(*, session: Session, ref: str) -> InstanceRecord:
    parsed = parse_ref(ref)
    if isinstance(parsed, int):
        record = repository.get_instance(session=session, instance_id=parsed)
    else:
        record = repository.get_instance_by_name(session=session, name=parsed)
    if record is None:
        raise not_found(parsed)
    return record


def etag_of(record: InstanceRecord) -> str:
    return f'"{record.uid}-{record.version}"'


def check_if_match(if_match: str | None, current_etag: str) -> None:
    if if_match is None:
        return
    candidates = [tag.strip() for tag in if_match.split(",")]
    if "*" in candidates:
        return
    if current_etag not in [c.removeprefix("W/") for c in candidates]:
        raise PreconditionFailed(f"If-Match {if_match} does not match the current ETag {current_etag}")


def instance_public(record: InstanceRecord, capabilities: Mapping[str, bool]) -> dict[str, Any]:
    """The instance as the API shows it; `capabilities` (the host's) decide `allowed_actions`."""
    resources = dict(record.resources)
    return {
        "id": record.id,
        "name": record.name,
        "uid": record.uid,
        "state": record.state,
        "kernel_state": record.kernel_state,
        "resources": {
            "cpus": list(resources.get("cpus", [])),
            "memory_bytes": int(resources.get("memory_bytes", 0)),
            "llc_way_mask": resources.get("llc_way_mask"),
            "devices": list(resources.get("devices", [])),
            "numa_node": resources.get("numa_node"),
        },
        "memory": list(record.memory),
        "kimage": record.kimage,
        "failure": record.failure,
        "allowed_actions": allowed_actions(InstanceState(record.state), capabilities),
        "version": record.version,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    } | declared_fields(record.declared)


def declared_fields(declared: DeclaredRecord | None) -> dict[str, Any]:
    """DESIGN "Desired state": what an instance with a spec shows beside the fields it always had."""
    if declared is None:
        return {}
    return {
        "spec": declared.spec, "generation": declared.generation,
        "observed_generation": declared.observed_generation, "restarts": declared.restarts,
        "labels": dict(declared.labels), "conditions": list(declared.conditions),
        "last_failure": declared.last_failure, "deleting": declared.deleting,
    }


def bump(record: InstanceRecord) -> None:
    record.version += 1
    record.updated_at = utcnow()


def add_event(
    *, session: Session, type: str, instance_id: int | None, data: dict[str, Any]
) -> EventRecord:
    event = EventRecord(type=type, instance_id=instance_id, data=data)
    session.add(event)
    session.flush()
    return event


def state_event(
    *, session: Session, record: InstanceRecord, from_state: str, to_state: str, cause: str = "api"
) -> EventRecord:
    return add_event(
        session=session,
        type="state",
        instance_id=record.id,
        data={"id": record.id, "name": record.name, "uid": record.uid, "from": from_state, "to": to_state,
              "cause": cause},
    )


def to_bus(events: list[EventRecord]) -> list[BusEvent]:
    return [BusEvent(id=e.id or 0, type=e.type, data=dict(e.data)) for e in events]


