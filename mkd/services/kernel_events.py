"""Changes the kernel makes on its own (a spawn halted itself, an instance failed) become records."""

from __future__ import annotations

from mkd.db import repository
from mkd.db.session import transaction
from mkd.domain.states import InstanceState, daemon_state_for
from mkd.kernel_types import KernelEvent
from mkd.services.context import Daemon
from mkd.services.publish import publish
from mkd.services.records import bump, state_event


def apply_kernel_event(daemon: Daemon, change: KernelEvent) -> None:
    with daemon.kernel_lock, transaction(daemon.engine) as session:
        record = repository.get_instance(session=session, instance_id=change.id)
        if record is None:
            return
        to = daemon_state_for(change.to_state, recorded=InstanceState(record.state),
                              active_reported=daemon.host.capabilities.get("active_reported", True))
        events = []
        if to.value != record.state:
            events.append(state_event(session=session, record=record, from_state=record.state,
                                      to_state=to.value, cause="kernel"))
        record.state = to.value
        record.kernel_state = change.to_state
        record.failure = change.reason or None if to is InstanceState.FAILED else None
        bump(record)
        session.add(record)
    publish(daemon, events)
