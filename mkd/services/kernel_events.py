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
        to = daemon_state_for(change.to_state, recorded=InstanceState(record.state),
                              active_reported=daemon.host.capabilities.get("active_reported", True))
        events = []
        if to.value != record.state:
            event = state_event(session=session, record=record, from_state=record.state,
                                to_state=to.value, cause="kernel")
            if console:
                event.data = {**event.data, "console": console}
            events.append(event)
        record.state = to.value
        record.kernel_state = change.to_state
        failure = None
        if to is InstanceState.FAILED:
            failure = change.reason or "the kernel reports the instance failed"
            if console:
                failure = f"{failure}; the console showed last:\n{console}"
        record.failure = failure
        bump(record)
        session.add(record)
    publish(daemon, events)
