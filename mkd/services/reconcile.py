"""Start-up reconciliation: make the records agree with the kernel before /readyz turns ready."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session

from mkd.db import repository
from mkd.db.models import EventRecord, InstanceRecord
from mkd.db.session import transaction
from mkd.domain.states import InstanceState, daemon_state_for
from mkd.kernel_types import KernelInstance
from mkd.services.context import Daemon
from mkd.services.instances import memory_json
from mkd.services.lifecycle import kimage_json
from mkd.services.pool_spec import spec_of, store_pool
from mkd.services.publish import publish
from mkd.services.records import add_event, bump

START_UNKNOWN = "start outcome unknown"


def _desired_state(record: InstanceRecord, kernel: KernelInstance, active_reported: bool) -> tuple[str, str | None]:
    recorded = InstanceState(record.state)
    state = daemon_state_for(kernel.kernel_state, recorded=recorded, active_reported=active_reported,
                             kimage_present=kernel.kimage is not None)
    failure = record.failure if state is InstanceState.FAILED else None
    if record.intent == "start":
        if state is InstanceState.ACTIVE:
            return state.value, None
        if not active_reported and state is InstanceState.LOADED:
            # rfc-v2 cannot tell whether the reboot syscall ran: say so rather than guess.
            return InstanceState.FAILED.value, START_UNKNOWN
    if kernel.failure and state is InstanceState.FAILED:
        failure = kernel.failure
    return state.value, failure


def _uses(kernel: KernelInstance) -> dict[str, str]:
    if kernel.kimage is None:
        return {}
    uses = {"kernel": kernel.kimage.kernel_sha256}
    if kernel.kimage.initrd_sha256:
        uses["initrd"] = kernel.kimage.initrd_sha256
    return uses


def reconcile(*, daemon: Daemon) -> list[dict[str, Any]]:
    """Returns what changed; each change is also a `reconciled` event."""
    active_reported = daemon.host.capabilities.get("active_reported", True)
    daemon.store.clear_partial()
    with daemon.kernel_lock:
        kernel_view = {k.id: k for k in daemon.backend.list_instances()}
        changes: list[dict[str, Any]] = []
        events: list[EventRecord] = []
        with transaction(daemon.engine) as session:
            known_images: set[str] = set()
            for record in repository.list_instances(session=session):
                kernel = kernel_view.pop(record.id, None)
                if kernel is None:
                    change = {"id": record.id, "name": record.name, "uid": record.uid, "from": record.state,
                              "to": None, "cause": "kernel", "detail": "the kernel has no such instance"}
                    session.delete(record)
                else:
                    state, failure = _desired_state(record, kernel, active_reported)
                    kimage = kimage_json(kernel, kernel.kimage.cmdline if kernel.kimage else "")
                    if kimage is not None and record.kimage is not None:
                        kimage["cmdline"] = record.kimage.get("cmdline", kimage["cmdline"])
                    memory = memory_json(kernel)
                    same = (state == record.state and record.intent is None
                            and kernel.kernel_state == record.kernel_state and memory == record.memory
                            and (kimage is None) == (record.kimage is None))
                    if same:
                        continue
                    change = {"id": record.id, "name": record.name, "uid": record.uid, "from": record.state,
                              "to": state, "cause": "kernel",
                              "detail": failure or f"kernel reports {kernel.kernel_state}"}
                    record.state, record.failure, record.intent = state, failure, None
                    record.kernel_state, record.memory, record.kimage = kernel.kernel_state, memory, kimage
                    bump(record)
                    session.add(record)
                    uses = {role: sha for role, sha in _uses(kernel).items()
                            if sha in known_images or repository.get_image(session=session, sha256=sha)}
                    known_images.update(uses.values())
                    session.flush()
                    repository.set_image_uses(session=session, instance_id=record.id, uses=uses)
                changes.append(change)
                events.append(add_event(session=session, type="reconciled", instance_id=record.id, data=change))
            for kernel in kernel_view.values():
                state, failure = _desired_state(
                    InstanceRecord(id=kernel.id, name=kernel.name, uid="", state="READY", kernel_state=""),
                    kernel, active_reported)
                adopted = InstanceRecord(
                    id=kernel.id, name=kernel.name, uid=str(uuid.uuid4()), state=state,
                    kernel_state=kernel.kernel_state, failure=failure, memory=memory_json(kernel),
                    resources={"cpus": list(kernel.cpus), "memory_bytes": kernel.memory_bytes,
                               "llc_way_mask": kernel.llc_way_mask, "devices": list(kernel.devices),
                               "numa_node": None},
                    kimage=kimage_json(kernel, kernel.kimage.cmdline if kernel.kimage else ""),
                )
                session.add(adopted)
                change = {"id": kernel.id, "name": kernel.name, "uid": adopted.uid, "from": None, "to": state,
                          "cause": "kernel", "detail": "adopted an instance the records did not have"}
                changes.append(change)
                events.append(add_event(session=session, type="reconciled", instance_id=kernel.id, data=change))
            pool_change = _reconcile_pool(daemon, session)
            if pool_change is not None:
                changes.append(pool_change)
                events.append(add_event(session=session, type="reconciled", instance_id=None, data=pool_change))
        daemon.ledger = None
    publish(daemon, events)
    return changes


def _reconcile_pool(daemon: Daemon, session: Session) -> dict[str, Any] | None:
    """The kernel's baseline wins: a crash after the kernel applied a new pool left the old record."""
    kernel_spec = daemon.backend.read_pool().spec
    record = repository.get_pool(session=session)
    if kernel_spec is None or kernel_spec == spec_of(record):
        return None
    store_pool(session, kernel_spec)
    return {"id": None, "name": "pool", "uid": None, "from": None, "to": None, "cause": "kernel",
            "detail": "the pool definition was updated to the kernel's baseline"}
