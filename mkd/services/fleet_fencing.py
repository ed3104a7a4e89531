"""Fencing a fleet node's instances (DESIGN "Fleet", fencing), so that no instance runs on two nodes.

A fenced instance is force-stopped and held (`held = "Fenced"`, condition Running False Fenced):
its spec is untouched and the reconciler leaves it, as with `paused`, until the node agent lifts
the fence once the node holds a lease and the placement again. The node agent fences
- its `reschedule: OnNodeLoss` instances when its lease has not been renewed for `lease_ttl_s`
  (the leader may re-place them `fence_grace_s` after the lease expired);
- at start, every fleet instance whose placement is not its own (by etcd, or without etcd by the
  placements it stored last), before it serves them.
Fencing is idempotent: calling it again stops what was started meanwhile (a reconciler pass that
was already past its check when the fence was set)."""

from __future__ import annotations

import logging

from sqlmodel import select

from mkd.db import repository
from mkd.db.models import DeclaredRecord, utcnow
from mkd.db.session import transaction
from mkd.domain.desired import conditions
from mkd.domain.desired.spec import DeclaredSpec
from mkd.domain.states import InstanceState
from mkd.errors import MkdError
from mkd.services import lifecycle
from mkd.services.context import Daemon
from mkd.services.desired import have_of, wake_reconciler
from mkd.services.fleet_ownership import FLEET, RESCHEDULE_LABEL, is_fleet_owned
from mkd.services.records import bump

log = logging.getLogger("mkd.fleet.fencing")


def movable(daemon: Daemon) -> set[str]:
    """Fleet instances of this node whose fleet spec says `reschedule: OnNodeLoss`."""
    with transaction(daemon.engine) as session:
        return {d.name for d in session.exec(select(DeclaredRecord)).all()
                if is_fleet_owned(d) and d.labels.get(RESCHEDULE_LABEL) == "OnNodeLoss"}


def fenced(daemon: Daemon) -> set[str]:
    with transaction(daemon.engine) as session:
        return {d.name for d in session.exec(select(DeclaredRecord)).all()
                if is_fleet_owned(d) and d.held == conditions.FENCED}


def fence(daemon: Daemon, names: set[str], why: str) -> list[str]:
    """Hold each named fleet instance and force-stop it if it runs; the names it stopped now."""
    stopped: list[str] = []
    for name in sorted(names):
        with transaction(daemon.engine) as session:
            declared = session.get(DeclaredRecord, name)
            record = repository.get_instance_by_name(session=session, name=name)
            if declared is None or not is_fleet_owned(declared):
                continue
            if declared.held != conditions.FENCED:
                declared.held = conditions.FENCED
                want = DeclaredSpec.from_json(declared.spec).want(daemon.host.kernel_profile,
                                                                  deleting=declared.deleting)
                problem = conditions.Problem("Running", conditions.FENCED, why)
                declared.conditions = conditions.merge(
                    declared.conditions, conditions.observe(have_of(record, declared), want, problem),
                    utcnow().isoformat())
                declared.updated_at = utcnow()
                session.add(declared)
                if record is not None:
                    bump(record)
                    session.add(record)
            running = record is not None and record.state == InstanceState.ACTIVE.value
        if running:
            try:
                lifecycle.stop(daemon=daemon, ref=name, force=True, if_match=None, cause=FLEET)
                stopped.append(name)
                log.warning("fenced %s: force-stopped (%s)", name, why)
            except MkdError as exc:  # gone or stopped meanwhile: the next call looks again
                log.warning("fencing %s: %s", name, exc.detail)
    daemon.signals.notify(sorted(names))
    return stopped


def unfence(daemon: Daemon, name: str) -> bool:
    """Lift the fence (the node holds a lease and the placement again); the reconciler starts it."""
    with transaction(daemon.engine) as session:
        declared = session.get(DeclaredRecord, name)
        if declared is None or declared.held != conditions.FENCED:
            return False
        declared.held = None
        declared.conditions = conditions.release(declared.conditions, utcnow().isoformat())
        if not declared.deleting:
            # Started again as a restart (event `restarted`, reason "fenced"): else the reconciler
            # would take the fence's stop for one the kernel did on its own.
            declared.last_failure = {"reason": "fenced", "restart_pending": True, "attempt": 1,
                                     "at": utcnow().isoformat()}
            declared.not_before = None
        declared.updated_at = utcnow()
        session.add(declared)
        record = repository.get_instance_by_name(session=session, name=name)
        if record is not None:
            bump(record)
            session.add(record)
    log.info("unfenced %s", name)
    wake_reconciler(daemon, name)
    daemon.signals.notify([name])
    return True


def running(daemon: Daemon, names: set[str]) -> set[str]:
    """Which of the named instances are ACTIVE here now."""
    with transaction(daemon.engine) as session:
        return {r.name for r in repository.list_instances(session=session, names=sorted(names))
                if r.state == InstanceState.ACTIVE.value}
