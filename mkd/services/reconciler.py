"""The reconciler (DESIGN "Desired state"): makes the kernel match each declared instance's spec
and keeps it so, through the same services as the imperative API.

One instance at a time per instance, `concurrency` in parallel. Work arrives by `wake` (a spec
changed), by the event bus (the kernel took an instance out of ACTIVE), and by a tick every
`poll_interval_s` that picks what is unconverged or due; converged instances cost nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import or_
from sqlmodel import col, select

from mkd.db import repository
from mkd.db.models import DeclaredRecord, InstanceRecord, utcnow
from mkd.db.session import transaction
from mkd.domain.desired import conditions
from mkd.domain.desired.plan import (
    MAX_PLAN_STEPS,
    START_OUTCOME_UNKNOWN,
    Blocked,
    Blocker,
    Have,
    Planned,
    Step,
    Want,
    next_step,
)
from mkd.domain.desired.restart import Backoff, CrashLoop, Restart, StaysDown, StopCause, decide, recent
from mkd.domain.desired.spec import DeclaredSpec
from mkd.domain.requests import InstanceRequest, resource_request_of
from mkd.domain.states import InstanceState
from mkd.errors import KernelError, MkdError
from mkd.services import instances, lifecycle
from mkd.services.context import Daemon
from mkd.services.desired import capabilities, have_of, spec_event
from mkd.services.publish import publish
from mkd.services.records import add_event, bump

log = logging.getLogger("mkd.reconciler")

# A failed step is retried after this backoff (doubling from the first, capped): a broken spec
# must not become a refused event every tick.
RETRY_BACKOFF = Backoff(initial_s=1.0, max_s=60.0)
CONSOLE_TAIL_BYTES = 4096


@dataclass(frozen=True)
class PassResult:
    steps: int
    converged: bool


def _now_iso() -> str:
    return utcnow().isoformat()


def _load(daemon: Daemon, name: str) -> tuple[InstanceRecord | None, DeclaredRecord | None]:
    with transaction(daemon.engine) as session:
        return repository.get_instance_by_name(session=session, name=name), session.get(DeclaredRecord, name)


def _record_outcome(daemon: Daemon, name: str, want: Want, generation: int, *,
                    problem: conditions.Problem | None, converged: bool = False, held: str | None = None,
                    failed_step: bool = False) -> None:
    """Store conditions (and observed_generation when converged) in one transaction. `want` is
    the spec of `generation`: if a newer spec was stored during the pass, this outcome is about
    the old one (converged to it, held or backed off for it) and is dropped; the pass the new
    spec's wake runs records its own."""
    with transaction(daemon.engine) as session:
        declared = session.get(DeclaredRecord, name)
        if declared is None or declared.generation != generation:
            return
        if declared.held is not None and held is None:
            return  # decided meanwhile (a crash seen on the bus): that decision's conditions stand
        record = repository.get_instance_by_name(session=session, name=name)
        now_conditions = conditions.merge(
            declared.conditions, conditions.observe(have_of(record, declared), want, problem), _now_iso())
        changed = now_conditions != declared.conditions
        declared.conditions = now_conditions
        if converged:
            changed |= declared.observed_generation != declared.generation or declared.failures != 0
            declared.observed_generation = declared.generation
            declared.failures = 0
            declared.not_before = None
        if held is not None:
            changed |= declared.held != held
            declared.held = held
        if failed_step:
            declared.failures += 1
            declared.not_before = time.time() + RETRY_BACKOFF.delay(declared.failures)
            changed = True
        if not changed:
            return
        declared.updated_at = utcnow()
        session.add(declared)
        if record is not None:
            bump(record)  # what a client sees of the instance changed
            session.add(record)
    daemon.signals.notify([name])


def _finish_delete(daemon: Daemon, name: str) -> None:
    with transaction(daemon.engine) as session:
        declared = session.get(DeclaredRecord, name)
        if declared is not None and declared.deleting:
            session.delete(declared)
    daemon.signals.notify([name])


def _execute(daemon: Daemon, name: str, record: InstanceRecord | None, declared: DeclaredRecord,
             spec: DeclaredSpec, planned: Planned, stop_timeout_s: float) -> None:
    """Run one step through the services, as the reconciler (events say cause `reconciler`)."""
    profile = daemon.host.kernel_profile
    cause = "reconciler"
    step = planned.step
    if step is Step.CREATE:
        request = InstanceRequest(name=name, id=spec.id, resources=resource_request_of(spec.resources))
        instances.create_instances(daemon=daemon, requests=[request], dry_run=False, cause=cause)
        with transaction(daemon.engine) as session:
            fresh = session.get(DeclaredRecord, name)
            if fresh is not None:
                fresh.applied_resources = spec.resources
                session.add(fresh)
        return
    assert record is not None
    ref = str(record.id)
    if step is Step.UPDATE:
        instances.update_instance(daemon=daemon, ref=ref, changes=spec.resources, if_match=None, cause=cause)
    elif step is Step.LOAD:
        boot = spec.boot(profile)
        lifecycle.load(daemon=daemon, ref=ref, kernel=boot.kernel, initrd=boot.initrd, cmdline=boot.cmdline,
                       if_match=None, cause=cause)
    elif step is Step.UNLOAD:
        lifecycle.unload(daemon=daemon, ref=ref, force=False, if_match=None, cause=cause)
    elif step is Step.START:
        _start(daemon, name, record, declared, cause)
    elif step is Step.STOP:
        _stop(daemon, ref, cause, stop_timeout_s)
    elif step is Step.DELETE:
        instances.delete_instance(daemon=daemon, ref=ref, if_match=None, cause=cause)


def _start(daemon: Daemon, name: str, record: InstanceRecord, declared: DeclaredRecord, cause: str) -> None:
    restart = declared.last_failure is not None and declared.last_failure.get("restart_pending")
    lifecycle.start(daemon=daemon, ref=str(record.id), if_match=None, cause=cause)
    if not restart:
        return
    with transaction(daemon.engine) as session:
        fresh = session.get(DeclaredRecord, name)
        if fresh is None or fresh.last_failure is None:
            return
        now = time.time()
        attempt = int(fresh.last_failure.get("attempt", 1))
        fresh.restarts += 1
        fresh.restart_times = [*recent(tuple(fresh.restart_times), now), now]
        fresh.last_failure = {**fresh.last_failure, "restart_pending": False}
        session.add(fresh)
        event = add_event(session=session, type="restarted", instance_id=record.id, data={
            "id": record.id, "name": name, "attempt": attempt, "reason": fresh.last_failure.get("reason", "")})
    daemon.desired_metrics.restarts.labels(instance=name).inc()
    publish(daemon, [event])


def _stop(daemon: Daemon, ref: str, cause: str, stop_timeout_s: float) -> None:
    """Graceful, forced when the kernel's ACK wait (30 s, under stop_timeout_s) runs out."""
    began = time.monotonic()
    try:
        lifecycle.stop(daemon=daemon, ref=ref, force=False, if_match=None, cause=cause)
    except KernelError as exc:
        if exc.errno != "ETIMEDOUT" and time.monotonic() - began < stop_timeout_s:
            raise
        log.warning("graceful halt of %s did not finish (%s): forcing it", ref, exc.detail)
        lifecycle.stop(daemon=daemon, ref=ref, force=True, if_match=None, cause=cause)


def reconcile_one(daemon: Daemon, name: str, stop_timeout_s: float) -> PassResult:
    """Step the instance toward its spec until it converges, is blocked, or a step fails."""
    profile = daemon.host.kernel_profile
    caps = capabilities(daemon)
    for done in range(MAX_PLAN_STEPS):
        record, declared = _load(daemon, name)
        if declared is None:
            return PassResult(done, converged=True)
        spec = DeclaredSpec.from_json(declared.spec)
        want = spec.want(profile, deleting=declared.deleting)
        if declared.held is not None or (spec.paused and not declared.deleting):
            return PassResult(done, converged=False)
        if declared.not_before is not None and declared.not_before > time.time():
            return PassResult(done, converged=False)
        have = have_of(record, declared)
        if _stopped_unasked(declared, spec, have):
            assert have is not None
            note_unrequested_stop(daemon, name, have.state.value, have.failure or "")
            continue  # the decision (backoff, CrashLoop, Stopped) is read back next round
        nxt = next_step(have, want, caps)
        if nxt is None:
            if declared.deleting:
                _finish_delete(daemon, name)
            else:
                _record_outcome(daemon, name, want, declared.generation, problem=None, converged=True)
            return PassResult(done, converged=True)
        if isinstance(nxt, Blocked):
            _blocked(daemon, name, want, declared.generation, nxt)
            return PassResult(done, converged=False)
        try:
            _execute(daemon, name, record, declared, spec, nxt, stop_timeout_s)
            if nxt.step is Step.START:
                started, _ = _load(daemon, name)
                if started is not None and started.state != InstanceState.ACTIVE.value:
                    # it did not stay up: the same as a crash, never an immediate retry
                    note_unrequested_stop(daemon, name, started.state, started.failure or "")
        except MkdError as exc:
            what = exc.errno if isinstance(exc, KernelError) and exc.errno else type(exc).__name__
            problem = conditions.Problem(_condition_for(nxt.step), what, f"{nxt.step.value} failed: {exc.detail}")
            log.info("reconcile %s: %s failed: %s", name, nxt.step.value, exc.detail)
            _record_outcome(daemon, name, want, declared.generation, problem=problem, failed_step=True)
            return PassResult(done + 1, converged=False)
    raise RuntimeError(f"reconciling {name!r} did not converge in {MAX_PLAN_STEPS} steps")


def _stopped_unasked(declared: DeclaredRecord, spec: DeclaredSpec, have: Have | None) -> bool:
    """A converged Active instance that is no longer ACTIVE, with no restart decided yet: the
    kernel took it down (the bus may not have told the reconciler yet)."""
    if have is None or declared.deleting or spec.state.value != "Active":
        return False
    if declared.observed_generation != declared.generation or _restart_pending(declared):
        return False
    return have.state in (InstanceState.LOADED, InstanceState.FAILED) and have.failure != START_OUTCOME_UNKNOWN


def _restart_pending(declared: DeclaredRecord) -> bool:
    return bool(declared.last_failure and declared.last_failure.get("restart_pending"))


def _condition_for(step: Step) -> str:
    if step in (Step.CREATE, Step.UPDATE, Step.DELETE):
        return "ResourcesApplied"
    if step in (Step.LOAD, Step.UNLOAD):
        return "KernelLoaded"
    return "Running"


def _blocked(daemon: Daemon, name: str, want: Want, generation: int, blocked: Blocked) -> None:
    if blocked.blocker is Blocker.IN_FLIGHT:
        return  # a load of this daemon is running; the next tick looks again
    problem = conditions.Problem("Running", blocked.blocker.value, blocked.message)
    _record_outcome(daemon, name, want, generation, problem=problem, held=blocked.blocker.value)


_deciding = threading.Lock()


def note_unrequested_stop(daemon: Daemon, name: str, to_state: str, reason: str) -> None:
    """The kernel took a declared instance out of ACTIVE without a request: restart it later,
    give up (CrashLoop), or leave it stopped, as its restartPolicy says. The pass and the bus may
    both report one stop: one decision at a time, so the second reads the first's (read and write
    in one SQLite transaction do not exclude each other by themselves)."""
    with _deciding, transaction(daemon.engine) as session:
        declared = session.get(DeclaredRecord, name)
        record = repository.get_instance_by_name(session=session, name=name)
        if declared is None or declared.deleting or record is None or declared.held is not None:
            return
        if _restart_pending(declared):
            return  # already decided (the pass and the bus may both report the same stop)
        spec = DeclaredSpec.from_json(declared.spec)
        if spec.state.value != "Active" or record.state == InstanceState.ACTIVE.value:
            return
        console = console_tail(daemon, record.id)
        if to_state == InstanceState.FAILED.value:
            cause = StopCause.FAILED
        elif "panic" in reason.lower() or "kernel panic" in console.lower():
            cause = StopCause.PANIC
        else:
            cause = StopCause.STOPPED
        now = time.time()
        decision = decide(policy=spec.restart_policy, cause=cause, restart_times=tuple(declared.restart_times),
                          now=now, max_restarts=spec.max_restarts, backoff=spec.backoff)
        failure = {"reason": decision.reason, "console": console, "at": _now_iso(), "to": to_state}
        want = spec.want(daemon.host.kernel_profile)
        if isinstance(decision, Restart):
            declared.not_before = decision.at
            declared.last_failure = failure | {"restart_pending": True, "attempt": decision.attempt}
            problem = conditions.Problem("Running", "Restarting",
                                         f"{decision.reason}; restart {decision.attempt} in "
                                         f"{decision.at - now:.1f} s")
        elif isinstance(decision, CrashLoop):
            declared.held = "CrashLoop"
            declared.last_failure = failure
            problem = conditions.Problem("Running", "CrashLoop", decision.reason)
            daemon.desired_metrics.crash_loops.labels(instance=name).inc()
        else:
            assert isinstance(decision, StaysDown)
            declared.held = "Stopped"
            declared.last_failure = failure
            problem = conditions.Problem("Running", "Stopped", decision.reason)
        declared.conditions = conditions.merge(
            declared.conditions, conditions.observe(have_of(record, declared), want, problem), _now_iso())
        declared.updated_at = utcnow()
        session.add(declared)
        bump(record)
        session.add(record)
        # Clients show last_failure and the conditions; the state event came before this decision,
        # so without one of its own a page would keep the previous failure.
        event = spec_event(session, record, declared, cause="reconciler", decision=problem.reason)
    publish(daemon, [event])


def console_tail(daemon: Daemon, instance_id: int) -> str:
    """The console's last lines (up to 4 KiB) where the daemon keeps a console; else ''."""
    reader = getattr(daemon, "console", None)
    if reader is None:
        return ""
    tail: str = reader.tail(instance_id, CONSOLE_TAIL_BYTES)
    return tail


def due_names(daemon: Daemon) -> list[str]:
    """Declared instances that are not converged, being deleted, or whose wait is over. The
    database is asked only after a commit wrote a declared row (the read model's memo), so a
    converged daemon's tick runs no query; a wait ending is a matter of the clock."""
    now = time.time()
    return [name for name, not_before in daemon.reads.memo("reconciler_pending", lambda: _pending(daemon))
            if not_before is None or not_before <= now]


def _pending(daemon: Daemon) -> list[tuple[str, float | None]]:
    with transaction(daemon.engine) as session:
        query = select(DeclaredRecord.name, DeclaredRecord.not_before).where(
            col(DeclaredRecord.held).is_(None),
            or_(col(DeclaredRecord.observed_generation) != col(DeclaredRecord.generation),
                col(DeclaredRecord.deleting), col(DeclaredRecord.not_before).is_not(None)),
        )
        return [(name, not_before) for name, not_before in session.exec(query).all()]


def all_names(daemon: Daemon) -> list[str]:
    with transaction(daemon.engine) as session:
        return list(session.exec(select(DeclaredRecord.name)).all())


class Reconciler:
    """The asyncio side: a queue of names, workers that run passes in threads, a tick, the bus."""

    def __init__(self, daemon: Daemon, *, concurrency: int, poll_interval_s: float, stop_timeout_s: float) -> None:
        self.daemon = daemon
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.stop_timeout_s = stop_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[str] | None = None
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self._again: set[str] = set()

    @property
    def busy(self) -> frozenset[str]:
        """The names a pass is running for now."""
        return frozenset(self._busy)

    def wake(self, name: str) -> None:
        """Thread-safe: look at `name` soon."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._enqueue, name)

    def _enqueue(self, name: str) -> None:
        if name in self._busy:
            self._again.add(name)  # one pass at a time per instance; run again after this one
            return
        if name in self._queued or self._queue is None:
            return
        self._queued.add(name)
        self._queue.put_nowait(name)
        self.daemon.desired_metrics.queue.set(len(self._queued))

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        for name in await asyncio.to_thread(all_names, self.daemon):
            self._enqueue(name)
        async with asyncio.TaskGroup() as tasks:
            for _ in range(self.concurrency):
                tasks.create_task(self._worker())
            tasks.create_task(self._tick())
            tasks.create_task(self._follow_bus())

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            name = await self._queue.get()
            self._queued.discard(name)
            self.daemon.desired_metrics.queue.set(len(self._queued))
            self._busy.add(name)
            began = time.monotonic()
            try:
                await asyncio.to_thread(reconcile_one, self.daemon, name, self.stop_timeout_s)
            except Exception:
                log.exception("reconciling %s failed", name)
            finally:
                self.daemon.desired_metrics.duration.observe(time.monotonic() - began)
                self._busy.discard(name)
                if name in self._again:
                    self._again.discard(name)
                    self._enqueue(name)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                for name in await asyncio.to_thread(due_names, self.daemon):
                    self._enqueue(name)
            except Exception:
                log.exception("reconciler tick failed")

    async def _follow_bus(self) -> None:
        """Kernel-initiated changes wake the instance; a stop nobody asked for is a crash."""
        while True:
            sub = self.daemon.bus.subscribe(client=False)
            try:
                while True:
                    event = await sub.queue.get()
                    if event is None:
                        break  # overflowed: resubscribe and look at everything
                    data = event.data
                    name = data.get("name")
                    if not isinstance(name, str):
                        continue
                    if (event.type == "state" and data.get("cause") == "kernel"
                            and data.get("from") == InstanceState.ACTIVE.value):
                        await asyncio.to_thread(note_unrequested_stop, self.daemon, name, str(data.get("to")),
                                                str(data.get("reason", "")))
                    if event.type in ("state", "spec", "deleted"):
                        self._enqueue(name)
            finally:
                self.daemon.bus.unsubscribe(sub)
            for name in await asyncio.to_thread(all_names, self.daemon):
                self._enqueue(name)


