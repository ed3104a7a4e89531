"""Declared instances (DESIGN "Desired state"): apply a document, show it, and let imperative
actions move the spec with them. The reconciler (services/reconciler.py) does the kernel work."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from mkd.db import repository
from mkd.db.models import DeclaredRecord, InstanceRecord, utcnow
from mkd.db.session import transaction
from mkd.domain.desired import conditions
from mkd.domain.desired.plan import Boot, Capabilities, Have, plan
from mkd.domain.desired.spec import DeclaredSpec
from mkd.domain.requests import InstanceRequest, resource_request_of
from mkd.domain.states import InstanceState
from mkd.errors import InvalidInput, KernelError, errno_value
from mkd.services.context import Daemon
from mkd.services.fleet_ownership import check_labels, refuse_if_fleet_owned
from mkd.services.publish import publish
from mkd.services.records import add_event, bump, check_if_match, etag_of, instance_public, resolve_ref

API_VERSION = "mkd.dev/v1"


@dataclass(frozen=True)
class Applied:
    body: dict[str, Any]
    etag: str
    created: bool


def capabilities(daemon: Daemon) -> Capabilities:
    return Capabilities.of(daemon.host.capabilities)


def have_of(record: InstanceRecord | None, declared: DeclaredRecord | None) -> Have | None:
    """The instance as the planner sees it."""
    if record is None:
        return None
    kimage = record.kimage
    boot = Boot(kimage["kernel"], kimage.get("initrd"), kimage.get("cmdline") or "") if kimage else None
    applied = declared.applied_resources if declared is not None else None
    return Have(InstanceState(record.state), boot, applied or {}, record.id, record.failure)


def document_of(record: InstanceRecord | None, declared: DeclaredRecord) -> dict[str, Any]:
    """What `?format=document` answers and `mkd apply` takes back unchanged."""
    status: dict[str, Any] = {
        "generation": declared.generation, "observed_generation": declared.observed_generation,
        "restarts": declared.restarts, "conditions": declared.conditions, "last_failure": declared.last_failure,
        "state": record.state if record is not None else None, "id": record.id if record is not None else None,
    }
    return {
        "apiVersion": API_VERSION, "kind": "Instance",
        "metadata": {"name": declared.name, "labels": dict(declared.labels)},
        "spec": declared.spec, "status": status,
    }


def would_be(daemon: Daemon, record: InstanceRecord | None, name: str, spec: DeclaredSpec) -> dict[str, Any]:
    """The instance a dry run shows: the record as it is, or the one a create would make."""
    if record is not None:
        return instance_public(record, daemon.host.capabilities)
    return {
        "id": spec.id or 0, "name": name, "uid": "", "state": "EMPTY", "kernel_state": "",
        "resources": {"cpus": list(spec.resources.get("cpus") or []),
                      "memory_bytes": int(spec.resources.get("memory_bytes") or 0),
                      "llc_way_mask": spec.resources.get("llc_way_mask"),
                      "devices": list(spec.resources.get("devices") or []), "numa_node": None},
        "memory": [], "kimage": None, "failure": None, "version": 0, "created_at": "", "updated_at": "",
        "allowed_actions": [],
    }


def _check_images(session: Session, spec: DeclaredSpec) -> None:
    for role, sha in (("kernel", spec.kernel), ("initrd", spec.initrd)):
        if sha is not None and repository.get_image(session=session, sha256=sha) is None:
            raise KernelError(errno.ENOENT, f"spec.{role} {sha} is not in the image store", body_content=True)


def apply_document(
    *, daemon: Daemon, name: str, labels: dict[str, str], spec: DeclaredSpec, dry_run: bool, if_match: str | None,
    cause: str = "api",
) -> Applied:
    """PUT /v1/instances/{name}: create, adopt or replace; the same document again changes nothing.
    The fleet's node agent applies its instances here too (cause `fleet`)."""
    check_labels(labels, cause=cause)
    from mkd.services.instances import create_instances  # the create path shares its checks

    profile = daemon.host.kernel_profile
    with daemon.kernel_lock:
        with transaction(daemon.engine) as session:
            record = repository.get_instance_by_name(session=session, name=name)
            declared = session.get(DeclaredRecord, name)
            refuse_if_fleet_owned(name, declared, cause=cause, instance_id=record.id if record else None)
            if record is not None:
                check_if_match(if_match, etag_of(record))
            if declared is not None and declared.deleting:
                raise KernelError(errno.EBUSY, f"instance {name!r} is being deleted",
                                  instance_id=record.id if record else None)
            if (record is not None and spec.id is not None and spec.id != record.id
                    and spec.update_strategy != "Recreate"):
                raise InvalidInput(f"spec.id {spec.id} differs from the instance's id {record.id}; "
                                   "changing it needs updateStrategy: Recreate",
                                   extra={"errno": "EINVAL", "errno_value": errno_value("EINVAL")})
            _check_images(session, spec)
            same = declared is not None and declared.spec == spec.to_json() and declared.labels == labels
            if same and record is not None and not dry_run:
                return Applied(instance_public(record, daemon.host.capabilities), etag_of(record), created=False)
            if dry_run:
                steps, blocked = plan(have_of(record, declared), spec.want(profile), capabilities(daemon))
                body = would_be(daemon, record, name, spec)
                # The generation the PUT would leave: the same when the document changes nothing.
                body["generation"] = 1 if declared is None else declared.generation + (0 if same else 1)
                body["plan"] = [{"action": s.step.value, "reason": s.reason} for s in steps]
                if blocked is not None:
                    body["plan"].append({"action": "none", "reason": f"{blocked.blocker.value}: {blocked.message}"})
                return Applied(body, etag_of(record) if record else "", created=record is None)
        created = record is None
        if created:
            request = InstanceRequest(name=name, id=spec.id, resources=resource_request_of(spec.resources))
            create_instances(daemon=daemon, requests=[request], dry_run=False)
        with transaction(daemon.engine) as session:
            record = repository.get_instance_by_name(session=session, name=name)
            if record is None:
                raise KernelError(errno.ENOENT, f"instance {name!r} disappeared while it was applied")
            declared = session.get(DeclaredRecord, name)
            if declared is None:
                declared = DeclaredRecord(name=name, spec=spec.to_json(), labels=labels, generation=1)
                # A new instance has the spec's resources; an adopted one has them when they are
                # exactly what it holds, else the reconciler updates it.
                if created or _holds_exactly(record, spec.resources):
                    declared.applied_resources = spec.resources
            else:
                declared.generation += 1
                declared.spec = spec.to_json()
                declared.labels = labels
            _release(declared)  # a new generation clears CrashLoop, Stopped, Unsupported
            declared.updated_at = utcnow()
            session.add(declared)
            bump(record)
            session.add(record)
            session.flush()
            event = spec_event(session, record, declared, cause=cause)
            session.refresh(record)
            body, etag = instance_public(record, daemon.host.capabilities), etag_of(record)
    publish(daemon, [event])
    wake_reconciler(daemon, name)
    return Applied(body, etag, created)


def _holds_exactly(record: InstanceRecord, resources: dict[str, Any]) -> bool:
    cpus = resources.get("cpus")
    return (cpus is not None and sorted(cpus) == sorted(record.resources.get("cpus", []))
            and int(resources.get("memory_bytes") or 0) == int(record.resources.get("memory_bytes", 0))
            and not resources.get("devices") and not record.resources.get("devices")
            and resources.get("llc_way_mask") == record.resources.get("llc_way_mask"))


def spec_event(session: Session, record: InstanceRecord | None, declared: DeclaredRecord, *, cause: str,
               decision: str | None = None) -> Any:
    """`decision`: what the reconciler decided about an unrequested stop (its Running reason)."""
    data: dict[str, Any] = {"id": record.id if record else None, "name": declared.name,
                            "generation": declared.generation, "cause": cause}
    if decision is not None:
        data["decision"] = decision
    return add_event(session=session, type="spec", instance_id=record.id if record else None, data=data)


def wake_reconciler(daemon: Daemon, name: str) -> None:
    if daemon.reconciler is not None:
        daemon.reconciler.wake(name)


# -- imperative actions on a declared instance (DESIGN: they move the spec and bump generation) --

SPEC_FOR_ACTION = {"start": {"state": "Active"}, "stop": {"state": "Loaded"}, "unload": {"state": "Ready"}}


def follow_action(session: Session, record: InstanceRecord, operation: str, *, cause: str,
                  changes: dict[str, Any] | None = None) -> Any:
    """Move a declared instance's spec with an imperative action; returns the `spec` event or None.
    The reconciler's own steps (cause "reconciler") never change the spec or its generation."""
    if cause != "api":
        return None
    declared = session.get(DeclaredRecord, record.name)
    if declared is None:
        return None
    moved = dict(declared.spec)
    moved.update(SPEC_FOR_ACTION.get(operation, {}))
    moved.update(changes or {})
    if operation == "start":
        _release(declared)  # an imperative start clears CrashLoop and Stopped
        declared.not_before = None
        declared.failures = 0
    if moved == declared.spec:
        session.add(declared)
        return None
    declared.spec = moved
    declared.generation += 1
    if operation == "update" and changes is not None and "resources" in changes:
        declared.applied_resources = changes["resources"]
    _release(declared)
    declared.updated_at = utcnow()
    session.add(declared)
    session.flush()
    return spec_event(session, record, declared, cause=cause)


def request_delete(*, daemon: Daemon, record: InstanceRecord, cause: str = "api") -> None:
    """DELETE of a declared instance: 202, the reconciler drives it down and deletes it."""
    if record.state == InstanceState.ACTIVE.value and not daemon.host.capabilities.get("halt", False):
        raise KernelError(errno.EBUSY, f"the {daemon.host.kernel_profile} kernel has no halt: an ACTIVE "
                          "instance cannot be driven down", instance_id=record.id)
    with transaction(daemon.engine) as session:
        declared = session.get(DeclaredRecord, record.name)
        if declared is None:
            raise KernelError(errno.ENOENT, f"instance {record.name!r} has no spec", instance_id=record.id)
        if not declared.deleting:
            declared.deleting = True
            _release(declared)
            declared.generation += 1
            declared.updated_at = utcnow()
            session.add(declared)
            fresh = repository.get_instance(session=session, instance_id=record.id)
            if fresh is not None:
                bump(fresh)
                session.add(fresh)
            session.flush()
            event = spec_event(session, fresh, declared, cause=cause)
        else:
            event = None
    if event is not None:
        publish(daemon, [event])
    wake_reconciler(daemon, record.name)


def declared_names(session: Session) -> list[str]:
    return list(session.exec(select(DeclaredRecord.name)).all())


def images_in_specs(session: Session) -> dict[str, list[str]]:
    """sha256 -> the declared instances whose spec names it (they cannot be deleted or pruned)."""
    used: dict[str, list[str]] = {}
    for declared in session.exec(select(DeclaredRecord)).all():
        for role in ("kernel", "initrd"):
            sha = declared.spec.get(role)
            if sha:
                used.setdefault(sha, []).append(declared.name)
    return used


def get_document(*, daemon: Daemon, ref: str) -> tuple[dict[str, Any], str]:
    """`?format=document`: the Instance document of a declared instance."""
    with transaction(daemon.engine) as session:
        record = resolve_ref(session=session, ref=ref)
        if record.declared is None:
            raise InvalidInput(f"instance {record.name!r} has no spec: there is no document to show; "
                               "PUT one to adopt it")
        return document_of(record, record.declared), etag_of(record)


def _release(declared: DeclaredRecord) -> None:
    if declared.held == conditions.FENCED and not declared.deleting:
        return  # a new spec does not unfence: only the fleet's agent does (mkd.services.fleet_fencing)
    declared.held = None
    declared.conditions = conditions.release(declared.conditions, utcnow().isoformat())


# A count replaces the explicit set it counts, unless the patch gives both (as the PATCH does).
_COUNTED = {"cpu_count": "cpus", "llc_ways": "llc_way_mask"}


def merged_resources(spec_resources: dict[str, Any], changes: Any) -> dict[str, Any]:
    """A spec's resources after a JSON merge patch (RFC 7396): what an imperative PATCH makes them."""
    merged = dict(spec_resources)
    for key, value in dict(changes).items():
        merged[key] = value
    for count, explicit in _COUNTED.items():
        if count in changes and explicit not in changes:
            merged[explicit] = None
        if explicit in changes and count not in changes:
            merged[count] = None
    return merged
