"""Which consoles the daemon reads and when: from start-up for running instances, and from
before each start (the device drops output while nobody reads it, spec 8.8.4)."""

from __future__ import annotations

import logging

from mkd.db import repository
from mkd.db.models import InstanceRecord
from mkd.db.session import transaction
from mkd.domain.states import InstanceState
from mkd.errors import KernelError
from mkd.services.console_history import ConsoleHistory
from mkd.services.console_reader import start_console_reader
from mkd.services.context import Daemon

log = logging.getLogger("mkd.console")

CONSOLE_DIR = "console"


def open_console_history(daemon: Daemon) -> ConsoleHistory | None:
    """The console readers of a daemon whose kernel has a console device, else None. Running
    instances get a reader at once (their current boot's file goes on); the others are known
    so their stored history can be read."""
    if not daemon.host.capabilities.get("console", False):
        return None
    history = ConsoleHistory(
        daemon.settings.daemon.state_dir / CONSOLE_DIR,
        cap_bytes=daemon.settings.limits.console_history_bytes,
        open_console=daemon.backend.open_console,
    )
    with transaction(daemon.engine) as session:
        records = [(r.id, r.uid, r.state) for r in repository.list_instances(session=session)]
    for instance_id, uid, state in records:
        if state == InstanceState.ACTIVE.value:
            _attach(history, instance_id, uid, new_boot=False)
        else:
            history.know(instance_id, uid)
    start_console_reader(history)
    return history


def attach_before_start(daemon: Daemon, record: InstanceRecord) -> None:
    """Connect a reader and open the next boot's file, so the start's output is kept. A console
    that cannot be connected does not stop the start: it is logged."""
    if daemon.console is not None:
        _attach(daemon.console, record.id, record.uid, new_boot=True)


def forget_console(daemon: Daemon, instance_id: int) -> None:
    if daemon.console is not None:
        daemon.console.forget(instance_id)


def _attach(history: ConsoleHistory, instance_id: int, uid: str, *, new_boot: bool) -> None:
    try:
        history.attach(instance_id, uid, new_boot=new_boot)
    except (OSError, KernelError) as exc:
        log.warning("console of instance %d not connected, its output is not kept: %s", instance_id, exc)
