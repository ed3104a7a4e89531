"""Instance records: create (JSON or device tree), read, list, hot-update, delete."""

from __future__ import annotations

import base64
import errno
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mkd.crash_points import crash_point
from mkd.db import repository
from mkd.db.models import InstanceRecord
from mkd.db.session import transaction
from mkd.domain.allocation.plan import plan_instances
from mkd.domain.allocation.update import plan_patch
from mkd.domain.requests import InstanceRequest
from mkd.domain.states import Action, InstanceState, allowed_actions, daemon_state_for, transition
from mkd.errors import InvalidInput, KernelError
from mkd.kernel_types import MAX_INSTANCE_ID, MIN_INSTANCE_ID, InstanceSpec, KernelInstance
from mkd.services.capability_checks import refuse_llc_without_capability, refuse_memory_hot_add
from mkd.services.console_attach import forget_console
from mkd.services.context import Daemon
from mkd.services.desired import follow_action, merged_resources, request_delete
from mkd.services.fleet_ownership import refuse_if_fleet_owned
from mkd.services.holdings import holding_of, ledger_for, resources_of
from mkd.services.idempotency import remember
from mkd.services.publish import publish
from mkd.services.read_model import InstancePage, InstanceView
from mkd.services.records import (
    add_event,
    bump,
    check_if_match,
    etag_of,
    instance_public,
    resolve_ref,
)

MAX_PAGE = 1000


def memory_json(kernel: KernelInstance) -> list[dict[str, Any]]:
    return [{"base": c.base, "bytes": c.bytes, "numa_node": c.numa_node} for c in kernel.memory]


def _would_be(spec: InstanceSpec, capabilities: Mapping[str, bool]) -> dict[str, Any]:
    return {
        "id": spec.id, "name": spec.name, "uid": "", "state": InstanceState.READY.value,
        "kernel_state": "ready", "resources": resources_of(spec), "memory": [], "kimage": None,
        "failure": None, "allowed_actions": allowed_actions(InstanceState.READY, capabilities),
        "version": 0, "created_at": "", "updated_at": "",
    }


def create_instances(
    *, daemon: Daemon, requests: list[InstanceRequest], dry_run: bool, as_items: bool = False, cause: str = "api",
) -> list[tuple[dict[str, Any], str]]:
    """Validate the whole plan, then create every instance, all or nothing."""
    if not requests:
        raise InvalidInput("the plan describes no instance")
    with daemon.kernel_lock:
        ledger = ledger_for(daemon)
        for request in requests:  # before the plan: its LLC checks would answer EINVAL first
            refuse_llc_without_capability(daemon, request.resources.llc_way_mask, f"instance {request.name!r}",
                                          llc_ways=request.resources.llc_ways)
        specs = plan_instances(ledger, requests, u32_memory=daemon.host.kernel_profile == "rfc-v2")
        for spec in specs:
            # DESIGN "Ids and refs": the kernel creates ids above 2047 from an overlay (spec 8.5.2)
            # but cannot load them; this daemon never asks for one.
            if not MIN_INSTANCE_ID <= spec.id <= MAX_INSTANCE_ID:
                raise KernelError(errno.EINVAL,
                                  f"instance id {spec.id} is outside {MIN_INSTANCE_ID}..{MAX_INSTANCE_ID}")
        if dry_run:
            return [(_would_be(spec, daemon.host.capabilities), "") for spec in specs]
        created = daemon.backend.create_instances(specs)
        crash_point("create.after_kernel")
        try:
            with transaction(daemon.engine) as session:
                records: list[InstanceRecord] = []
                events = []
                for spec, kernel in zip(specs, created, strict=True):
                    state = daemon_state_for(kernel.kernel_state, recorded=InstanceState.READY,
                                             active_reported=daemon.host.capabilities.get("active_reported", True))
                    record = InstanceRecord(
                        id=spec.id, name=spec.name, uid=str(uuid.uuid4()), state=state.value,
                        kernel_state=kernel.kernel_state, resources=resources_of(spec),
                        memory=memory_json(kernel),
                    )
                    session.add(record)
                    session.flush()
                    events.append(add_event(session=session, type="created", instance_id=spec.id, data={
                        "id": spec.id, "name": spec.name, "uid": record.uid, "from": None,
                        "to": state.value, "cause": cause}))
                    records.append(record)
                if as_items:
                    remember(session, status=201,
                             body={"items": [instance_public(r, daemon.host.capabilities) for r in records]})
                else:
                    remember(session, status=201, body=instance_public(records[0], daemon.host.capabilities),
                             headers={"location": f"/v1/instances/{records[0].id}", "etag": etag_of(records[0])})
        except BaseException:
            # The kernel has them but the records could not be written: take them back out.
            for spec in specs:
                try:
                    daemon.backend.delete_instance(spec.id)
                except KernelError:
                    pass
            daemon.ledger = None
            raise
        for record in records:
            ledger.add(holding_of(record))  # with the memory per node the kernel actually carved
        publish(daemon, events)
        return [(instance_public(r, daemon.host.capabilities), etag_of(r)) for r in records]


def get_instance(*, daemon: Daemon, ref: str) -> InstanceView:
    """From the read model (call when `daemon.reads.current`, else refresh it first)."""
    return daemon.reads.instance(ref)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "id":
            raise ValueError(prefix)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cursor {cursor!r} is not one this daemon issued") from exc


def list_instances(
    *, daemon: Daemon, state: InstanceState | None, limit: int, cursor: str | None,
    labels: dict[str, str] | None = None,
) -> InstancePage:
    """Oldest id first, from the read model (as get_instance)."""
    return daemon.reads.page(after=decode_cursor(cursor), limit=limit, state=state.value if state else None,
                             labels=labels, encode_cursor=encode_cursor)


def delete_instance(*, daemon: Daemon, ref: str, if_match: str | None, cause: str = "api") -> bool:
    """Delete now (True), or, for a declared instance asked by a client, let the reconciler drive
    it down and delete it (False: DESIGN "Desired state", 202)."""
    with daemon.kernel_lock:
        with transaction(daemon.engine) as session:
            record = resolve_ref(session=session, ref=ref)
            refuse_if_fleet_owned(record.name, record.declared, cause=cause, instance_id=record.id)
            check_if_match(if_match, etag_of(record))
        if cause == "api" and record.declared is not None:
            try:
                request_delete(daemon=daemon, record=record)
            except KernelError as exc:
                refuse(daemon, record, "delete", exc)
                raise
            return False
        try:
            transition(InstanceState(record.state), Action.DELETE)
            daemon.backend.delete_instance(record.id)
        except KernelError as exc:
            refuse(daemon, record, "delete", exc)
            raise
        crash_point("delete.after_kernel")
        with transaction(daemon.engine) as session:
            gone = repository.get_instance(session=session, instance_id=record.id)
            if gone is not None:
                session.delete(gone)
            event = add_event(session=session, type="deleted", instance_id=record.id, data={
                "id": record.id, "name": record.name, "uid": record.uid, "from": record.state,
                "to": None, "cause": cause})
            remember(session, status=204, body=None)
        if daemon.ledger is not None:  # else the next use rebuilds it from the records
            daemon.ledger.remove(record.id)
        forget_console(daemon, record.id)
        publish(daemon, [event])
        return True


def update_instance(
    *, daemon: Daemon, ref: str, changes: Mapping[str, object], if_match: str | None, cause: str = "api",
) -> tuple[dict[str, Any], str]:
    """PATCH: `changes` is a merge patch of the instance's resources (DESIGN "Device trees per profile").
    A declared instance's spec moves with an imperative PATCH; the reconciler's own update records
    that the spec's resources are applied."""
    with daemon.kernel_lock:
        with transaction(daemon.engine) as session:
            record = resolve_ref(session=session, ref=ref)
            refuse_if_fleet_owned(record.name, record.declared, cause=cause, instance_id=record.id)
            check_if_match(if_match, etag_of(record))
        try:
            if not daemon.host.capabilities.get("hot_update", False):
                raise KernelError(errno.EOPNOTSUPP,
                                  f"the {daemon.host.kernel_profile} kernel cannot update an instance's resources")
            transition(InstanceState(record.state), Action.UPDATE)
            refuse_llc_without_capability(daemon, _int_or_none(changes.get("llc_way_mask")),
                                          f"the update of {record.name!r}",
                                          llc_ways=_int_or_none(changes.get("llc_ways")))
            ledger = ledger_for(daemon)
            spec, _diff = plan_patch(ledger, record.id, changes)
            spec = replace(spec, name=record.name)
            refuse_memory_hot_add(daemon, active=record.state == InstanceState.ACTIVE.value,
                                  current_bytes=int(record.resources.get("memory_bytes", 0)),
                                  wanted_bytes=spec.memory_bytes)
            kernel = daemon.backend.update_instance(spec)
        except KernelError as exc:
            if exc.extra.get("applied"):
                _record_partial_update(daemon, record, exc)
            refuse(daemon, record, "update", exc)
            raise
        with transaction(daemon.engine) as session:
            fresh = resolve_ref(session=session, ref=str(record.id))
            fresh.resources = resources_of(spec)
            fresh.memory = memory_json(kernel)
            fresh.kernel_state = kernel.kernel_state
            bump(fresh)
            session.add(fresh)
            session.flush()
            events = []
            if fresh.declared is not None:
                wanted = merged_resources(fresh.declared.spec["resources"], changes)
                if cause == "api":
                    moved = follow_action(session, fresh, "update", cause=cause, changes={"resources": wanted})
                    events = [moved] if moved is not None else []
                else:
                    fresh.declared.applied_resources = wanted
                    session.add(fresh.declared)
                session.flush()
                session.refresh(fresh)
            result = instance_public(fresh, daemon.host.capabilities), etag_of(fresh)
            remember(session, status=200, body=result[0], headers={"etag": result[1]})
        ledger.remove(record.id)
        ledger.add(holding_of(fresh))
    publish(daemon, events)
    return result


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _record_partial_update(daemon: Daemon, record: InstanceRecord, exc: KernelError) -> None:
    """DESIGN "States" exception: a PATCH of an ACTIVE instance that failed part-way changed what
    `applied` lists (spec 8.7: no undo). The record takes the kernel's view (new ETag), the
    refusal is stored for idempotency, and the caller adds the `refused` event."""
    try:
        kernel = daemon.backend.read_instance(record.id)
    except KernelError:
        return
    with transaction(daemon.engine) as session:
        fresh = repository.get_instance(session=session, instance_id=record.id)
        if fresh is None:
            return
        fresh.resources = {**fresh.resources, "cpus": list(kernel.cpus), "memory_bytes": kernel.memory_bytes,
                           "devices": list(kernel.devices)}
        fresh.memory = memory_json(kernel)
        fresh.kernel_state = kernel.kernel_state
        bump(fresh)
        session.add(fresh)
        session.flush()
        if exc.instance_id is None:
            exc.instance_id = record.id
        remember(session, status=exc.status, body=exc.problem(f"/v1/instances/{record.id}"))
        holding = holding_of(fresh)
    if daemon.ledger is not None:
        daemon.ledger.remove(record.id)
        daemon.ledger.add(holding)


def refuse(daemon: Daemon, record: InstanceRecord, operation: str, exc: KernelError) -> None:
    """Log a refusal with an errno on an existing instance (DESIGN "Events": `refused`), and name
    the instance in the problem (DESIGN "Errors": `instance_id`) whichever check refused."""
    if exc.instance_id is None:
        exc.instance_id = record.id
    if exc.errno is None:
        return
    with transaction(daemon.engine) as session:
        data = {"id": record.id, "name": record.name, "operation": operation, "errno": exc.errno}
        if "applied" in exc.extra:  # a hot-plug that failed part-way (spec 8.7): what took effect
            data["applied"] = exc.extra["applied"]
        event = add_event(session=session, type="refused", instance_id=record.id, data=data)
    publish(daemon, [event])

