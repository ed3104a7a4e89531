"""GET /v1/instances/{ref}/wait (DESIGN "Desired state"): answer once a state, a converged
generation or a deletion is reached. Waiters wake on the event bus and read the instance once
per event that names it; they never poll the database in a loop, and they are bounded."""

from __future__ import annotations

import asyncio
import errno
from dataclasses import dataclass
from typing import Any

from mkd.db.models import DeclaredRecord
from mkd.db.session import transaction
from mkd.domain.desired.conditions import terminal
from mkd.domain.desired.plan import DesiredState
from mkd.domain.states import InstanceState
from mkd.errors import InvalidInput, KernelError, OverLimit
from mkd.services.context import Daemon
from mkd.services.records import instance_public, resolve_ref


@dataclass(frozen=True)
class Verdict:
    done: bool
    body: dict[str, Any] | None  # the instance (None: deleted)
    ident: tuple[int | None, str | None]  # id and name, to pick this instance's events


def _check(daemon: Daemon, ref: str, state: InstanceState | None, generation: int | None,
           deleted: bool) -> Verdict:
    with transaction(daemon.engine) as session:
        try:
            record = resolve_ref(session=session, ref=ref)
        except KernelError as exc:
            if deleted and exc.errno == "ENOENT":
                # Gone once its spec is gone too: the reconciler drops the declared row a step
                # after the instance, and until then the name is not free for a new PUT.
                declared = session.get(DeclaredRecord, ref)
                return Verdict(declared is None, None, (None, ref if declared is not None else None))
            if exc.errno == "ENOENT" and session.get(DeclaredRecord, ref) is not None:
                return Verdict(False, None, (None, ref))  # declared, between a Recreate's delete and create
            raise
        body = instance_public(record, daemon.host.capabilities)
        ident = (record.id, record.name)
        if deleted:
            return Verdict(False, body, ident)
        declared = record.declared
        if state is not None and record.state == state.value:
            return Verdict(True, body, ident)
        if generation is not None:
            if declared is None:
                raise InvalidInput(f"instance {record.name!r} has no spec: it has no generation to wait for")
            if declared.observed_generation >= generation and _in_spec_state(declared, record.state) and all(
                    c["status"] == "True" or c["reason"] == "NotRequested" for c in declared.conditions):
                return Verdict(True, body, ident)
        if declared is not None and (condition := terminal(declared.conditions)) is not None:
            raise KernelError(errno.EBUSY, f"{condition['type']} is False ({condition['reason']}): "
                              f"{condition['message']}", instance_id=record.id, extra={"instance": body})
        # A declared instance the reconciler still drives (restarts) is not finished by FAILED.
        recovering = declared is not None and declared.held is None and not declared.deleting
        if record.state == InstanceState.FAILED.value and state is not InstanceState.FAILED and not recovering:
            raise KernelError(errno.EBUSY, f"instance {record.name!r} is FAILED: {record.failure or 'no reason'}",
                              instance_id=record.id, extra={"instance": body})
        return Verdict(False, body, ident)


def _in_spec_state(declared: DeclaredRecord, state: str) -> bool:
    """The kernel is where the spec says (conditions lag a crash by one reconciler pass, so they
    alone would call a just-FAILED instance converged)."""
    if declared.spec.get("paused"):
        return True
    return DesiredState(declared.spec.get("state", DesiredState.ACTIVE.value)).instance_state.value == state


def _limit(daemon: Daemon) -> int:
    return daemon.settings.limits.max_waiters


async def wait_for(daemon: Daemon, *, ref: str, state: InstanceState | None, generation: int | None,
                   deleted: bool, timeout_s: float) -> dict[str, Any] | None:
    if daemon.waiters >= _limit(daemon):
        raise OverLimit("max_waiters", f"{daemon.waiters} requests already wait; at most {_limit(daemon)}",
                        retry_after_s=1)
    daemon.waiters += 1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    keys = [ref]
    changed = daemon.signals.watch(keys)  # before the first read, so nothing between is missed
    try:
        verdict = await asyncio.to_thread(_check, daemon, ref, state, generation, deleted)
        more = [str(k) for k in verdict.ident if k is not None and str(k) != ref]
        if more:
            daemon.signals.unwatch(keys, changed)
            keys = [ref, *more]
            changed = daemon.signals.watch(keys)
            verdict = await asyncio.to_thread(_check, daemon, ref, state, generation, deleted)
        while not verdict.done:
            left = deadline - loop.time()
            if left <= 0:
                current = verdict.body["state"] if verdict.body else "unknown"
                raise KernelError(errno.ETIMEDOUT, f"not reached within {timeout_s:g} s; the instance is {current}",
                                  instance_id=verdict.ident[0], extra={"instance": verdict.body})
            try:
                await asyncio.wait_for(changed.wait(), left)
            except TimeoutError:
                pass  # one last read below, then the deadline answers
            changed.clear()
            verdict = await asyncio.to_thread(_check, daemon, ref, state, generation, deleted)
        return verdict.body
    finally:
        daemon.signals.unwatch(keys, changed)
        daemon.waiters -= 1
