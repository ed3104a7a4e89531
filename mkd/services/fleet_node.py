"""What the fleet's node agent reads of its daemon and asks of it (DESIGN "Fleet"): its
capacity, its fleet instances as documents, its images, and handing it a placed instance."""

from __future__ import annotations

import errno
from typing import Any

from sqlmodel import select

from mkd.db import repository
from mkd.db.models import DeclaredRecord, ImageRecord
from mkd.db.session import transaction
from mkd.domain.desired.spec import DeclaredSpec
from mkd.errors import KernelError, NotFound
from mkd.services.context import Daemon
from mkd.services.desired import apply_document, document_of, request_delete
from mkd.services.fleet_ownership import FLEET, OWNER_LABEL, RESCHEDULE_LABEL, is_fleet_owned
from mkd.services.holdings import ledger_for


def capacity(daemon: Daemon) -> dict[str, Any]:
    """Free pool CPUs and memory by NUMA node, counting what fleet instances hold as free: the
    fleet books those itself (allocations/<node>), so they must not count twice."""
    with daemon.kernel_lock:
        ledger = ledger_for(daemon)
        cpus = len(ledger.free_cpus)
        by_node = ledger.free_memory_by_node
        memory = dict(by_node) if by_node is not None else {0: ledger.free_memory_bytes}
        with transaction(daemon.engine) as session:
            owned = {d.name for d in session.exec(select(DeclaredRecord)).all() if is_fleet_owned(d)}
        for holding in ledger.holdings():
            if holding.name not in owned:
                continue
            cpus += len(holding.cpus)
            spread = holding.numa_memory or {min(memory, default=0): holding.memory_bytes}
            for node, size in spread.items():
                memory[node] = memory.get(node, 0) + size
    return {"cpus_free": cpus, "memory_free": {str(node): size for node, size in sorted(memory.items())}}


def fleet_instances(daemon: Daemon) -> dict[str, dict[str, Any]]:
    """Every fleet-owned declared instance of this node, as its document (with `status`)."""
    with transaction(daemon.engine) as session:
        owned = [d for d in session.exec(select(DeclaredRecord)).all() if is_fleet_owned(d)]
        records = {r.name: r for r in repository.list_instances(session=session, names=[d.name for d in owned])}
        return {d.name: document_of(records.get(d.name), d) for d in owned}


def image_digests(daemon: Daemon) -> list[str]:
    with transaction(daemon.engine) as session:
        return list(session.exec(select(ImageRecord.sha256)).all())


def has_image(daemon: Daemon, sha256: str) -> bool:
    with transaction(daemon.engine) as session:
        return repository.get_image(session=session, sha256=sha256) is not None


def apply_fleet_instance(daemon: Daemon, name: str, labels: dict[str, str], spec: DeclaredSpec,
                         reschedule: str = "Never") -> None:
    """Declare the placed instance here, marked as the fleet's (events say cause `fleet`). A local
    instance of the same name that is not the fleet's is never taken over: 409 EEXIST."""
    with transaction(daemon.engine) as session:
        record = repository.get_instance_by_name(session=session, name=name)
        declared = session.get(DeclaredRecord, name)
        if (record is not None or declared is not None) and not is_fleet_owned(declared):
            raise KernelError(errno.EEXIST, f"a local instance named {name!r} exists on this node and is not "
                              "the fleet's", instance_id=record.id if record else None)
    apply_document(daemon=daemon, name=name, labels={**labels, OWNER_LABEL: FLEET, RESCHEDULE_LABEL: reschedule},
                   spec=spec, dry_run=False,
                   if_match=None, cause=FLEET)


def remove_fleet_instance(daemon: Daemon, name: str) -> bool:
    """Drive the fleet instance down and delete it; True once it is gone."""
    with transaction(daemon.engine) as session:
        declared = session.get(DeclaredRecord, name)
        record = repository.get_instance_by_name(session=session, name=name)
        if declared is None:
            return True  # nothing declared: nothing of the fleet is here
        if not is_fleet_owned(declared):
            raise NotFound(f"instance {name!r} is not a fleet instance here")
        deleting = declared.deleting
    if record is None:
        # Declared but never created (or already deleted): forget the declaration.
        with transaction(daemon.engine) as session:
            gone = session.get(DeclaredRecord, name)
            if gone is not None:
                session.delete(gone)
        return True
    if not deleting:
        request_delete(daemon=daemon, record=record, cause=FLEET)
    return False
