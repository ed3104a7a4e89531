"""Changes the kernel makes on its own (a spawn halted itself, an instance failed) become records."""

from __future__ import annotations

from mkd.db import repository
from mkd.db.session import transaction
from mkd.domain.states import InstanceState, daemon_state_for
from mkd.kernel_types import KernelEvent
from mkd.services.context import Daemon
from mkd.services.publish import publish
from mkd.services.records import bump, state_event

# What of the console a kernel-initiated change keeps (DESIGN "Desired state": "the console's
# last lines (up to 4 KiB)").
LAST_CONSOLE_BYTES = 4096


def apply_kernel_event(daemon: Daemon, change: KernelEvent) -> None:
    """Record a change the kernel made on its own as a `state` event with cause `kernel`; the
    event keeps what the console showed last (the reason a person will ask for)."""
    console = daemon.console.tail(change.id, LAST_CONSOLE_BYTES) if daemon.console is not None else ""
    with daemon.kernel_lock, transaction(daemon.engine) as session:
        record = repository.get_instance(session=session, instance_id=change.id)
        if record is None:
            return
        now = _status_now(daemon, change)
        to = daemon_state_for(now, recorded=InstanceState(record.state),
                              active_reported=daemon.host.capabilities.get("active_reported", True))
        if to.value == record.state and now == record.kernel_state:
            return  # the daemon's own action since the poll's read recorded this already
        events = []
        if to.value != record.state:
            event = state_event(session=session, record=record, from_state=record.state,
                                to_state=to.value, cause="kernel")
            if console:
                event.data = {**event.data, "console": console}
            events.append(event)
        record.state = to.value
        record.kernel_state = now
        failure = None
        if to is InstanceState.FAILED:
            failure = change.reason or "the kernel reports the instance failed"
            if console:
                failure = f"{failure}; the console showed last:\n{console}"
        record.failure = failure
        bump(record)
        session.add(record)
    publish(daemon, events)


def _status_now(daemon: Daemon, change: KernelEvent) -> str:
    """The instance's status as the kernel says it now. The poll read it without the kernel lock,
    so an action of the daemon (which holds the lock and records the kernel's answer: a stop, an
    unload, a start again) may have come between that read and this one; the poll's word is
    kept only for an instance the kernel no longer lists."""
    return daemon.backend.read_status(change.id) or change.to_state
