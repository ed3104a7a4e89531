"""Lifecycle actions: load (kexec_file_load), unload, start and stop (reboot commands).

Each action: lock -> resolve ref -> If-Match -> transition table -> daemon checks -> persist the
intent -> kernel call -> persist the kernel's answer and its events, in short transactions.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from mkd.crash_points import crash_point
from mkd.db import repository
from mkd.db.models import InstanceRecord
from mkd.db.session import transaction
from mkd.domain.requests import MAX_CMDLINE_BYTES
from mkd.domain.states import KERNEL_STATE_MAP, Action, InstanceState, daemon_state_for, transition
from mkd.errors import KernelError
from mkd.kernel_types import KernelInstance, LoadRequest
from mkd.kexec.flags import load_flags
from mkd.services.console_attach import attach_before_start
from mkd.services.context import Daemon
from mkd.services.desired import follow_action
from mkd.services.fleet_ownership import refuse_if_fleet_owned
from mkd.services.idempotency import remember
from mkd.services.instances import memory_json, refuse
from mkd.services.publish import publish
from mkd.services.records import bump, check_if_match, etag_of, instance_public, resolve_ref, state_event
from mkd.services.strict_isolation import check_strict_isolation

Result = tuple[dict[str, Any], str]


def _locate(daemon: Daemon, ref: str, if_match: str | None, cause: str) -> InstanceRecord:
    with transaction(daemon.engine) as session:
        record = resolve_ref(session=session, ref=ref)
        refuse_if_fleet_owned(record.name, record.declared, cause=cause, instance_id=record.id)
        check_if_match(if_match, etag_of(record))
        return record


def _set_state(
    daemon: Daemon, record_id: int, *, to: InstanceState, kernel: KernelInstance | None = None,
    intent: str | None = None, kimage: dict[str, Any] | None | bool = False, failure: str | None = None,
    image_uses: dict[str, str] | None = None, cause: str = "api", respond: bool = False,
    restore: InstanceRecord | None = None, follow: tuple[str, dict[str, Any] | None] | None = None,
) -> tuple[InstanceRecord, list[Any]]:
    """One transaction: the new state, what the kernel said, and the state event.

    The version (ETag) moves only when what a client sees changes; with `restore` (the record
    before a refused action) a record that ends up as it was gets its old version back, so a
    refusal changes nothing (DESIGN "States") even after a visible LOADING.
    """
    with transaction(daemon.engine) as session:
        record = repository.get_instance(session=session, instance_id=record_id)
        if record is None:
            raise KernelError(errno.ENOENT, f"instance {record_id} disappeared", instance_id=record_id)
        seen_before = _visible(record)
        events = []
        if record.state != to.value:
            events.append(state_event(session=session, record=record, from_state=record.state,
                                      to_state=to.value, cause=cause))
        record.state = to.value
        record.intent = intent
        record.failure = failure
        if kernel is not None:
            record.kernel_state = kernel.kernel_state
            record.memory = memory_json(kernel)
        if kimage is not False:
            record.kimage = kimage if isinstance(kimage, dict) else None
        if image_uses is not None:
            repository.set_image_uses(session=session, instance_id=record_id, uses=image_uses)
        if restore is not None and _visible(record) == _visible(restore):
            record.version, record.updated_at = restore.version, restore.updated_at
        elif _visible(record) != seen_before:
            bump(record)
        session.add(record)
        session.flush()
        if follow is not None:
            # DESIGN "Desired state": an imperative action on a declared instance moves its spec.
            moved = follow_action(session, record, follow[0], cause=cause, changes=follow[1])
            if moved is not None:
                events.append(moved)
                session.refresh(record)
        if respond:
            remember(session, status=200, body=instance_public(record, daemon.host.capabilities),
                     headers={"etag": etag_of(record)})
        return record, events


def _visible(record: InstanceRecord) -> dict[str, Any]:
    """What a client sees of a record, but for the version and time stamps. No capabilities are
    needed: allowed_actions follows the state, which is compared anyway."""
    shown = instance_public(record, {})
    for key in ("version", "updated_at"):
        del shown[key]
    return shown


def _after_refusal(daemon: Daemon, before: InstanceRecord, record: InstanceRecord, operation: str,
                   exc: KernelError, cause: str = "api") -> None:
    """Record what the kernel says now (a failed call may still have changed it), then the refusal.
    `before` is the record as the action found it, `record` as the intent left it."""
    try:
        kernel = daemon.backend.read_instance(record.id)
    except KernelError:
        kernel = None
    if kernel is None:
        # Nothing to learn from the kernel: undo the intent (LOADING never outlives the call).
        _, events = _set_state(daemon, record.id, to=InstanceState(before.state), restore=before, cause=cause)
        publish(daemon, events)
    else:
        state = daemon_state_for(kernel.kernel_state, recorded=InstanceState(record.state),
                                 active_reported=daemon.host.capabilities.get("active_reported", True),
                                 kimage_present=kernel.kimage is not None)
        kimage: dict[str, Any] | None | bool = False
        # A refused action on a FAILED instance keeps the reason it failed.
        failure = before.failure if state.value == before.state else None
        if kernel.kimage is None:
            kimage = None
            if state is InstanceState.FAILED and failure is None:
                # DESIGN "States": the bug-compatible dangling kimage of a failed v2 load is FAILED.
                failure = kernel.failure or (
                    f"load failed with {exc.errno} and left a dangling kimage (bug-compatible mode)")
        elif record.state == InstanceState.LOADING.value or record.kimage is None:
            # DESIGN "States": the bug-compatible dangling kimage of a failed v2 load is FAILED.
            state = InstanceState.FAILED
            failure = f"load failed with {exc.errno} and left a dangling kimage (bug-compatible mode)"
        _, events = _set_state(daemon, record.id, to=state, kernel=kernel, kimage=kimage,
                               failure=failure, restore=before, cause=cause)
        publish(daemon, events)
    refuse(daemon, record, operation, exc)


def _run(
    daemon: Daemon, ref: str, if_match: str | None, action: Action, operation: str,
    call: Callable[[InstanceRecord], KernelInstance], *, intent: str | None = None,
    checks: Callable[[InstanceRecord], None] | None = None, cause: str = "api",
) -> tuple[InstanceRecord, KernelInstance]:
    with daemon.kernel_lock:
        record = before = _locate(daemon, ref, if_match, cause)
        try:
            rule = transition(InstanceState(record.state), action)
            if checks is not None:
                checks(record)
        except KernelError as exc:
            refuse(daemon, record, operation, exc)
            raise
        if rule.via is not None or intent is not None:
            via = rule.via or InstanceState(record.state)
            record, events = _set_state(daemon, record.id, to=via, intent=intent or operation, cause=cause)
            publish(daemon, events)
            crash_point(f"{operation}.after_intent")
        try:
            kernel = call(record)
        except KernelError as exc:
            _after_refusal(daemon, before, record, operation, exc, cause)
            raise
        crash_point(f"{operation}.after_kernel")
        return record, kernel


def load(
    *, daemon: Daemon, ref: str, kernel: str, initrd: str | None, cmdline: str | None, if_match: str | None,
    cause: str = "api",
) -> Result:
    def request_for(record: InstanceRecord) -> LoadRequest:
        return LoadRequest(
            kernel=daemon.store.path_for(kernel),
            initrd=daemon.store.path_for(initrd) if initrd else None,
            cmdline=(cmdline.encode() + b"\0") if cmdline else None,  # the length counts the NUL
            flags=load_flags(record.id, has_initrd=initrd is not None),
            kernel_sha256=kernel, initrd_sha256=initrd,
        )

    def checks(record: InstanceRecord) -> None:
        # DESIGN "Running": loaders without a command-line limit get a daemon cap of 64 KiB (bytes,
        # with the NUL), whatever the characters.
        if cmdline is not None and len(cmdline.encode()) + 1 > MAX_CMDLINE_BYTES:
            raise KernelError(errno.EINVAL, f"command line is {len(cmdline.encode()) + 1} bytes with its NUL; "
                              f"the daemon's limit is {MAX_CMDLINE_BYTES}", body_content=True)
        with transaction(daemon.engine) as session:
            for role, sha in (("kernel", kernel), ("initrd", initrd)):
                if sha is not None and repository.get_image(session=session, sha256=sha) is None:
                    raise KernelError(errno.ENOENT, f"{role} image {sha} is not in the image store",
                                      body_content=True)
        if daemon.settings.daemon.strict_isolation:
            check_strict_isolation(daemon, daemon.backend.read_instance(record.id), request_for(record))

    def call(record: InstanceRecord) -> KernelInstance:
        return daemon.backend.kexec_file_load(request_for(record))

    # The kernel call and the record of its outcome happen under one hold of the lock, so a second
    # request waiting for it sees the outcome (and gets EBUSY), never the state before.
    with daemon.kernel_lock:
        record, kernel_instance = _run(daemon, ref, if_match, Action.LOAD, "load", call, checks=checks,
                                        cause=cause)
        uses = {"kernel": kernel} | ({"initrd": initrd} if initrd else {})
        updated, events = _set_state(
            daemon, record.id, to=InstanceState.LOADED, kernel=kernel_instance,
            kimage=kimage_json(kernel_instance, cmdline or ""), image_uses=uses, respond=True, cause=cause,
            follow=("load", {"kernel": kernel, "initrd": initrd, "cmdline": cmdline or ""}),
        )
    publish(daemon, events)
    return instance_public(updated, daemon.host.capabilities), etag_of(updated)


def kimage_json(kernel: KernelInstance, cmdline: str) -> dict[str, Any] | None:
    k = kernel.kimage
    if k is None:
        return None
    return {
        "kernel": k.kernel_sha256, "initrd": k.initrd_sha256, "cmdline": cmdline, "loader": k.loader,
        "start": k.start, "spawnable": k.spawnable,
        "segments": [{"kind": s.kind, "mem": s.mem, "memsz": s.memsz, "bufsz": s.bufsz,
                      "sha256": s.sha256, "in_pool": s.in_pool} for s in k.segments],
        "segments_source": k.segments_source,
    }


def unload(*, daemon: Daemon, ref: str, force: bool, if_match: str | None, cause: str = "api") -> Result:
    action = Action.UNLOAD_FORCE if force else Action.UNLOAD
    with daemon.kernel_lock:
        record, kernel = _run(daemon, ref, if_match, action, "unload", lambda r: daemon.backend.unload(r.id),
                              cause=cause)
        # READY, unless the kernel says otherwise: the rfc-v2 bug-compatible unload returns 0 and
        # leaves a dangling kimage where it was (FAILED, spec 2.5).
        state = daemon_state_for(kernel.kernel_state, recorded=InstanceState.READY,
                                 active_reported=daemon.host.capabilities.get("active_reported", True),
                                 kimage_present=kernel.kimage is not None)
        failure = kernel.failure if state is InstanceState.FAILED else None
        updated, events = _set_state(daemon, record.id, to=state, kernel=kernel, kimage=None,
                                     failure=failure, image_uses={}, respond=True, cause=cause,
                                     follow=("unload", None))
    publish(daemon, events)
    return instance_public(updated, daemon.host.capabilities), etag_of(updated)


def start(*, daemon: Daemon, ref: str, if_match: str | None, cause: str = "api") -> Result:
    # The intent is stored before the reboot syscall: a crash in between becomes FAILED
    # "start outcome unknown" at reconcile (DESIGN "States").
    with daemon.kernel_lock:
        record, kernel = _run(daemon, ref, if_match, Action.START, "start",
                              lambda r: _start_with_console(daemon, r), intent="start", cause=cause)
        # rfc-v2 never reports active: the daemon sets ACTIVE when the start syscall returns 0,
        # unless the kernel already says the instance failed (DESIGN "States": FAILED).
        failed = KERNEL_STATE_MAP.get(kernel.kernel_state) is InstanceState.FAILED
        updated, events = _set_state(
            daemon, record.id, to=InstanceState.FAILED if failed else InstanceState.ACTIVE, kernel=kernel,
            failure=f"the kernel reports {kernel.kernel_state!r} after start" if failed else None, respond=True,
            cause=cause, follow=("start", None))
    publish(daemon, events)
    return instance_public(updated, daemon.host.capabilities), etag_of(updated)


def _start_with_console(daemon: Daemon, record: InstanceRecord) -> KernelInstance:
    # The reader is connected before the syscall: the device drops output nobody reads (8.8.4).
    attach_before_start(daemon, record)
    return daemon.backend.start(record.id)


def stop(*, daemon: Daemon, ref: str, force: bool, if_match: str | None, cause: str = "api") -> Result:
    def checks(_record: InstanceRecord) -> None:
        if not daemon.host.capabilities.get("halt", False):
            raise KernelError(errno.EINVAL, "rfc-v2 has no halt")

    action = Action.STOP_FORCE if force else Action.STOP
    with daemon.kernel_lock:
        record, kernel = _run(daemon, ref, if_match, action, "stop",
                              lambda r: daemon.backend.stop(r.id, force=force), checks=checks, cause=cause)
        updated, events = _set_state(daemon, record.id, to=InstanceState.LOADED, kernel=kernel, respond=True,
                                     cause=cause, follow=("stop", None))
    publish(daemon, events)
    return instance_public(updated, daemon.host.capabilities), etag_of(updated)
