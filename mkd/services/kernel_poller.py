"""The one status poller: the tree kernel raises no notification (spec 8.4), so every
`[daemon] status_poll_interval_s` the daemon reads the status of each instance it records as
ACTIVE (the only ones the kernel changes on its own, spec 8.2.2), in one worker-thread call
(DESIGN "Two kernel generations"). The consoles are read when readable, by their own thread
(`console_reader`), not here.

Which ids are ACTIVE is asked of the database only after a commit wrote an instance row (the
read model's memo), so a converged daemon polls without a query."""

from __future__ import annotations

import logging

from mkd.db import repository
from mkd.db.session import transaction
from mkd.domain.states import InstanceState
from mkd.kernel_types import KernelEvent
from mkd.services.context import Daemon
from mkd.services.kernel_events import apply_kernel_event

log = logging.getLogger("mkd")


def poll_kernel(daemon: Daemon) -> list[KernelEvent]:
    """One poll: record what the kernel changed on its own; returns those changes. (Recording a
    change reads its console first, so the panic trace that went with a crash is in the event.)"""
    changes = daemon.backend.poll_changes(running_ids(daemon))
    for change in changes:
        try:
            apply_kernel_event(daemon, change)
        except Exception:  # one bad change must not stop the others
            log.exception("could not apply kernel event %s", change)
    return changes


def running_ids(daemon: Daemon) -> list[int]:
    """The instances whose status the kernel may change on its own: those recorded ACTIVE (under
    rfc-v2 the status never says `active`, so the record is what tells a running one)."""
    return list(daemon.reads.memo("active_ids", lambda: _active_ids(daemon)))


def _active_ids(daemon: Daemon) -> list[int]:
    with transaction(daemon.engine) as session:
        return repository.instance_ids_in(session=session, state=InstanceState.ACTIVE.value)
