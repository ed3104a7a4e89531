"""Daemon instance states and the one transition table (DESIGN.md "States")."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from mkd.errors import KernelError


class InstanceState(StrEnum):
    EMPTY = "EMPTY"
    READY = "READY"
    LOADING = "LOADING"
    LOADED = "LOADED"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"


class Action(StrEnum):
    LOAD = "load"
    UNLOAD = "unload"
    UNLOAD_FORCE = "unload_force"
    START = "start"
    STOP = "stop"
    STOP_FORCE = "stop_force"
    DELETE = "delete"
    UPDATE = "update"


@dataclass(frozen=True)
class Allowed:
    """The daemon lets the action reach the kernel; `target` is the state on success (None: deleted)."""

    target: InstanceState | None
    via: InstanceState | None = None  # state recorded while the kernel call is in flight


@dataclass(frozen=True)
class Refused:
    errno_code: int
    reason: str


Rule = Allowed | Refused

S = InstanceState
A = Action

_NO_KIMAGE = Refused(errno.ENOENT, "instance has no kimage to unload")
_IN_FLIGHT = Refused(errno.EBUSY, "a load of this instance is in flight")

# Every (state, action) pair is listed: a missing pair is a bug caught by the exhaustive test.
TRANSITIONS: dict[tuple[InstanceState, Action], Rule] = {
    # EMPTY: record exists, no resources applied.
    (S.EMPTY, A.LOAD): Refused(errno.EINVAL, "instance has no resources applied (EMPTY)"),
    (S.EMPTY, A.UNLOAD): _NO_KIMAGE,
    (S.EMPTY, A.UNLOAD_FORCE): _NO_KIMAGE,
    (S.EMPTY, A.START): Refused(errno.EINVAL, "no kimage loaded for this instance"),
    (S.EMPTY, A.STOP): Refused(errno.EINVAL, "instance is not ACTIVE"),
    (S.EMPTY, A.STOP_FORCE): Refused(errno.EINVAL, "instance is neither ACTIVE nor LOADED"),
    (S.EMPTY, A.DELETE): Allowed(None),
    (S.EMPTY, A.UPDATE): Allowed(S.EMPTY),
    # READY: resources applied, no kimage.
    (S.READY, A.LOAD): Allowed(S.LOADED, via=S.LOADING),
    (S.READY, A.UNLOAD): _NO_KIMAGE,
    (S.READY, A.UNLOAD_FORCE): _NO_KIMAGE,
    (S.READY, A.START): Refused(errno.EINVAL, "no kimage loaded for this instance"),
    (S.READY, A.STOP): Refused(errno.EINVAL, "instance is not ACTIVE"),
    (S.READY, A.STOP_FORCE): Refused(errno.EINVAL, "instance is neither ACTIVE nor LOADED"),
    (S.READY, A.DELETE): Allowed(None),
    (S.READY, A.UPDATE): Allowed(S.READY),
    # LOADING: a load call of this daemon is in flight.
    (S.LOADING, A.LOAD): _IN_FLIGHT,
    (S.LOADING, A.UNLOAD): _IN_FLIGHT,
    (S.LOADING, A.UNLOAD_FORCE): _IN_FLIGHT,
    (S.LOADING, A.START): _IN_FLIGHT,
    (S.LOADING, A.STOP): _IN_FLIGHT,
    (S.LOADING, A.STOP_FORCE): _IN_FLIGHT,
    (S.LOADING, A.DELETE): _IN_FLIGHT,
    (S.LOADING, A.UPDATE): _IN_FLIGHT,
    # LOADED: a kimage is associated.
    (S.LOADED, A.LOAD): Refused(errno.EBUSY, "instance already has a kimage"),
    (S.LOADED, A.UNLOAD): Allowed(S.READY),
    (S.LOADED, A.UNLOAD_FORCE): Allowed(S.READY),
    (S.LOADED, A.START): Allowed(S.ACTIVE),
    (S.LOADED, A.STOP): Refused(errno.EINVAL, "graceful halt needs an ACTIVE instance"),
    (S.LOADED, A.STOP_FORCE): Allowed(S.LOADED),
    (S.LOADED, A.DELETE): Refused(errno.EBUSY, "instance has a kimage: unload it first"),
    (S.LOADED, A.UPDATE): Allowed(S.LOADED),
    # ACTIVE: started.
    (S.ACTIVE, A.LOAD): Refused(errno.EBUSY, "instance already has a kimage"),
    (S.ACTIVE, A.UNLOAD): Refused(errno.EBUSY, "instance is ACTIVE: stop it first or unload with force"),
    (S.ACTIVE, A.UNLOAD_FORCE): Allowed(S.READY),
    (S.ACTIVE, A.START): Refused(errno.EBUSY, "instance is already ACTIVE"),
    (S.ACTIVE, A.STOP): Allowed(S.LOADED),
    (S.ACTIVE, A.STOP_FORCE): Allowed(S.LOADED),
    (S.ACTIVE, A.DELETE): Refused(errno.EBUSY, "instance is ACTIVE"),
    (S.ACTIVE, A.UPDATE): Allowed(S.ACTIVE),
    # FAILED: the kernel's rules decide load/unload/start; the kernel answer wins.
    (S.FAILED, A.LOAD): Allowed(S.LOADED, via=S.LOADING),
    (S.FAILED, A.UNLOAD): Allowed(S.READY),
    (S.FAILED, A.UNLOAD_FORCE): Allowed(S.READY),
    (S.FAILED, A.START): Allowed(S.ACTIVE),
    (S.FAILED, A.STOP): Refused(errno.EINVAL, "instance is not ACTIVE"),
    (S.FAILED, A.STOP_FORCE): Allowed(S.LOADED),
    (S.FAILED, A.DELETE): Allowed(None),
    (S.FAILED, A.UPDATE): Refused(errno.EBUSY, "instance is FAILED"),
}


def transition(state: InstanceState, action: Action) -> Allowed:
    """The rule for `action` in `state`; a refusal raises KernelError and changes nothing."""
    rule = TRANSITIONS[(state, action)]
    if isinstance(rule, Refused):
        raise KernelError(rule.errno_code, f"{action.value} refused in state {state.value}: {rule.reason}")
    return rule


# Actions that also need a host capability (DESIGN "Two kernel generations"): rfc-v2 has no halt
# command and cannot update an instance's resources.
REQUIRED_CAPABILITY: dict[Action, str] = {A.STOP: "halt", A.STOP_FORCE: "halt", A.UPDATE: "hot_update"}


def allowed_actions(state: InstanceState, capabilities: Mapping[str, bool]) -> list[str]:
    """The actions the daemon lets reach the kernel now: the Allowed rules of TRANSITIONS for
    `state`, less those whose capability the host lacks. Clients show these instead of keeping a
    copy of the table; the kernel may still refuse (FAILED defers to it)."""
    def capable(action: Action) -> bool:
        needed = REQUIRED_CAPABILITY.get(action)
        return needed is None or capabilities.get(needed, False)

    return [action.value for action in Action if isinstance(TRANSITIONS[(state, action)], Allowed) and capable(action)]


# Raw kernel status string -> daemon state (spec §1: v2 reports `loading` while a kimage is attached).
KERNEL_STATE_MAP: dict[str, InstanceState] = {
    "empty": S.EMPTY,
    "ready": S.READY,
    "loading": S.LOADED,
    "loaded": S.LOADED,
    "active": S.ACTIVE,
    "failed": S.FAILED,
}


def daemon_state_for(
    kernel_state: str, *, recorded: InstanceState, active_reported: bool, kimage_present: bool = True
) -> InstanceState:
    """What the daemon should record given the kernel's word (used by actions and reconciliation).

    `kimage_present`: whether the kernel lists a kimage for the instance (/proc/kimage). rfc-v2's
    `loading` without one is the seed's dangling kimage (spec 2.3 note): DESIGN "States" FAILED.
    """
    if kernel_state == "loading" and not kimage_present:
        return S.FAILED
    mapped = KERNEL_STATE_MAP.get(kernel_state, S.FAILED)
    # rfc-v2 never reports active: the daemon's own ACTIVE stands while the kimage is still there.
    if not active_reported and mapped is S.LOADED and recorded is S.ACTIVE:
        return S.ACTIVE
    return mapped
