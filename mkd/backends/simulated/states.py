"""Instance states and the kernel's transition tables (spec 1, 1.1, 1.2), as pure data.

A kernel entry point runs its own checks in the kernel's order; when it reaches the step that
depends on the instance state it asks `transition()`, which either names the next state or
raises the errno the table gives for that state.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum

from mkd.errors import KernelError
from mkd.kernel_types import KernelProfile


class KState(IntEnum):
    """enum mk_instance_state; value 2 is `loading` under rfc-v2 and `loaded` under tree (spec 1)."""

    EMPTY = 0
    READY = 1
    LOADED = 2
    ACTIVE = 3
    FAILED = 4


_STATUS = {
    "rfc-v2": ("empty", "ready", "loading", "active", "failed"),
    "tree": ("empty", "ready", "loaded", "active", "failed"),
}


def status_string(profile: KernelProfile, state: int) -> str:
    """The word the sysfs `status` file prints (without the newline); out of range is `unknown`."""
    names = _STATUS[profile]
    return names[state] if 0 <= state < len(names) else "unknown"


def parse_status(profile: KernelProfile, text: str) -> KState:
    """Reverse of status_string; an unknown word parses as FAILED (spec 1)."""
    names = _STATUS[profile]
    word = text.strip()
    return KState(names.index(word)) if word in names else KState.FAILED


class KEvent(StrEnum):
    LOAD_ASSOCIATE = "load-associate"  # v2: kimage linked to the instance, before segments (2.3 step 5)
    LOAD_SUCCESS = "load-success"  # kexec_file_load returned 0
    LOAD_FAILURE = "load-failure"  # a failure after association, default (non-bug-compatible) path
    KIMAGE_FREE = "kimage-free"  # unload, slot replacement, error path
    START = "start"  # reboot(LINUX_REBOOT_CMD_MULTIKERNEL) spawn succeeded
    HALT = "halt"  # reboot(..._HALT), ACK received
    HALT_FORCE = "halt-force"  # reboot(..._HALT_FORCE)
    SPAWN_HALTED = "spawn-halted"  # MK_SYS_HALTED from the spawn (tree, async)
    DESTROY = "destroy"  # v2 rmdir, tree instance-remove
    UPDATE = "update"  # tree resource ops on /instances/<name>
    FAULT_FAIL = "fault-fail"  # simulator fault injection: spawn died


class Outcome(Enum):
    DESTROYED = "destroyed"
    UNCHANGED = "unchanged"
    VIA_ACK = "via-ack"  # allowed, but only once the running spawn ACKs (tree hot update)


@dataclass(frozen=True)
class Refusal:
    errno_code: int
    reason: str


Result = KState | Outcome | Refusal
_ALL = tuple(KState)


def _every(result: Result) -> dict[KState, Result]:
    return dict.fromkeys(_ALL, result)


def _only(allowed: dict[KState, Result], refusal: Refusal) -> dict[KState, Result]:
    return {state: allowed.get(state, refusal) for state in _ALL}


_NO_HALT_V2 = Refusal(errno.EINVAL, "rfc-v2 has no halt")

TRANSITIONS: dict[KernelProfile, dict[KEvent, dict[KState, Result]]] = {
    # spec 1.1
    "rfc-v2": {
        # the v2 load path checks only the kimage pointer, never the state (2.3 steps 2-5)
        KEvent.LOAD_ASSOCIATE: _every(KState.LOADED),
        KEvent.LOAD_SUCCESS: _every(Outcome.UNCHANGED),  # "v2 never sets ACTIVE on load"
        KEvent.LOAD_FAILURE: _every(KState.READY),
        KEvent.KIMAGE_FREE: _every(KState.READY),
        KEvent.START: _every(Outcome.UNCHANGED),  # multikernel_kexec_by_id changes no state
        KEvent.HALT: _every(_NO_HALT_V2),
        KEvent.HALT_FORCE: _every(_NO_HALT_V2),
        KEvent.SPAWN_HALTED: _every(Outcome.UNCHANGED),  # v2 has no MK_SYS_HALTED handler
        KEvent.DESTROY: _only(
            {KState.EMPTY: Outcome.DESTROYED, KState.READY: Outcome.DESTROYED, KState.FAILED: Outcome.DESTROYED},
            Refusal(errno.EBUSY, "instance is loading or active"),
        ),
        KEvent.UPDATE: _every(Refusal(errno.EOPNOTSUPP, "rfc-v2 cannot update instance resources")),
        KEvent.FAULT_FAIL: _every(KState.FAILED),
    },
    # spec 1.2
    "tree": {
        KEvent.LOAD_ASSOCIATE: _every(Outcome.UNCHANGED),  # "state is not touched before success"
        KEvent.LOAD_SUCCESS: _every(KState.LOADED),
        KEvent.LOAD_FAILURE: _every(Outcome.UNCHANGED),
        KEvent.KIMAGE_FREE: _every(KState.READY),  # no state guard, even ACTIVE (vector 24)
        KEvent.START: _only({KState.LOADED: KState.ACTIVE}, Refusal(errno.EBUSY, "instance is not loaded")),
        KEvent.HALT: _only({KState.ACTIVE: KState.LOADED}, Refusal(errno.EINVAL, "instance is not active")),
        KEvent.HALT_FORCE: _only(
            {KState.ACTIVE: KState.LOADED, KState.LOADED: KState.LOADED},
            Refusal(errno.EINVAL, "instance is neither active nor loaded"),
        ),
        # the workqueue handler only acts on an ACTIVE instance; a late message is dropped
        KEvent.SPAWN_HALTED: {**_every(Outcome.UNCHANGED), KState.ACTIVE: KState.LOADED},
        KEvent.DESTROY: _only(
            {KState.EMPTY: Outcome.DESTROYED, KState.READY: Outcome.DESTROYED, KState.FAILED: Outcome.DESTROYED},
            Refusal(errno.EBUSY, "instance is loaded or active"),
        ),
        KEvent.UPDATE: _only(
            {
                KState.EMPTY: Outcome.UNCHANGED,
                KState.READY: Outcome.UNCHANGED,
                KState.LOADED: Outcome.UNCHANGED,
                KState.ACTIVE: Outcome.VIA_ACK,
            },
            Refusal(errno.EBUSY, "instance has failed"),
        ),
        KEvent.FAULT_FAIL: _every(KState.FAILED),
    },
}


def check(profile: KernelProfile, state: KState, event: KEvent, *, instance_id: int | None = None) -> KState | Outcome:
    """The table's answer for `event` in `state`; a refusal is raised as a KernelError (nothing changes)."""
    result = TRANSITIONS[profile][event][state]
    if isinstance(result, Refusal):
        raise KernelError(
            result.errno_code,
            f"{result.reason} (state {status_string(profile, state)})",
            instance_id=instance_id,
        )
    return result


def transition(profile: KernelProfile, state: KState, event: KEvent, *, instance_id: int | None = None) -> KState:
    """Next state for a state-changing event (UNCHANGED keeps `state`)."""
    result = check(profile, state, event, instance_id=instance_id)
    if isinstance(result, KState):
        return result
    if result is Outcome.UNCHANGED:
        return state
    raise ValueError(f"{event.value} is not a plain state change ({result.value})")
