"""The one status poller: the tree kernel raises no notification (spec 8.4), so every
`[daemon] status_poll_interval_s` the daemon reads each instance's id and status files, in one
worker-thread call (DESIGN "Two kernel generations"). The consoles are read when readable, by
their own thread (`console_reader`), not here."""

from __future__ import annotations

import logging

from mkd.kernel_types import KernelEvent
from mkd.services.context import Daemon
from mkd.services.kernel_events import apply_kernel_event

log = logging.getLogger("mkd")


def poll_kernel(daemon: Daemon) -> list[KernelEvent]:
    """One poll: record what the kernel changed on its own; returns those changes. (Recording a
    change reads its console first, so the panic trace that went with a crash is in the event.)"""
    changes = daemon.backend.poll_changes()
    for change in changes:
        try:
            apply_kernel_event(daemon, change)
        except Exception:  # one bad change must not stop the others
            log.exception("could not apply kernel event %s", change)
    return changes
