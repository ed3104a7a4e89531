"""The one status poller: the tree kernel raises no notification (spec 8.4), so every
`[daemon] status_poll_interval_s` the daemon reads the status of each instance it records as
ACTIVE (the only ones the kernel changes on its own, spec 8.2.2), in one worker-thread call
(DESIGN "Two kernel generations"). The consoles are read when readable, by their own thread
(`console_reader`), not here.

Which ids are ACTIVE is asked of the database only after a commit wrote an instance row: a
session hook counts those commits per engine, so a converged daemon polls without a query."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from mkd.db import repository
from mkd.db.models import InstanceRecord
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
    engine = daemon.engine
    written = _instance_commits.get(engine, 0)  # read before the query: a later commit re-asks
    cached = _active_ids.get(engine)
    if cached is not None and cached[0] == written:
        return list(cached[1])
    with transaction(engine) as session:
        ids = repository.instance_ids_in(session=session, state=InstanceState.ACTIVE.value)
    _active_ids[engine] = (written, ids)
    return list(ids)


# -- commits that wrote an instance row, per engine ------------------------------------------

_instance_commits: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()
_active_ids: weakref.WeakKeyDictionary[Engine, tuple[int, list[int]]] = weakref.WeakKeyDictionary()
_WROTE = "mkd.kernel_poller.wrote_instance"


def _flushed(session: Session, _context: Any) -> None:
    """after_flush: whether this flush wrote an instance row (new/dirty/deleted still list it)."""
    if any(isinstance(obj, InstanceRecord) for obj in (*session.new, *session.dirty, *session.deleted)):
        session.info[_WROTE] = True


def _committed(session: Session) -> None:
    if session.info.pop(_WROTE, False) and isinstance(session.bind, Engine):
        with _hook_lock:
            _instance_commits[session.bind] = _instance_commits.get(session.bind, 0) + 1


def _rolled_back(session: Session, *_args: Any) -> None:
    session.info.pop(_WROTE, None)


_hook_lock = threading.Lock()
_hooked = False


def install_write_counter() -> None:
    """Idempotent: the listeners are process-wide (every daemon's sessions), counted by engine."""
    global _hooked
    if _hooked:
        return
    with _hook_lock:
        if not _hooked:
            event.listen(Session, "after_flush", _flushed)
            event.listen(Session, "after_commit", _committed)
            event.listen(Session, "after_rollback", _rolled_back)
            _hooked = True


install_write_counter()  # at import, before the daemon's first session
