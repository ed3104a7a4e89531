"""The reconciler's planner: from what an instance is to what its spec says, one step at a time.

Pure functions over small values, so every observed state × desired state × profile is a table
test. The reconciler executes a step through the same services as the imperative API, reads
the instance again and asks for the next step; `plan` runs the same function forward on a model
of each step's effect to show a dry run's whole sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from mkd.domain.states import InstanceState

S = InstanceState

# DESIGN "States": a start whose outcome was lost in a crash; never retried by itself.
START_OUTCOME_UNKNOWN = "start outcome unknown"


class DesiredState(StrEnum):
    READY = "Ready"
    LOADED = "Loaded"
    ACTIVE = "Active"

    @property
    def instance_state(self) -> InstanceState:
        return {"Ready": S.READY, "Loaded": S.LOADED, "Active": S.ACTIVE}[self.value]


class Step(StrEnum):
    CREATE = "create"
    UPDATE = "update"  # resources, in place (hot update where the profile has it)
    LOAD = "load"
    UNLOAD = "unload"
    START = "start"
    STOP = "stop"  # graceful; the reconciler forces it after stop_timeout_s
    DELETE = "delete"


class Blocker(StrEnum):
    UNSUPPORTED = "Unsupported"  # the profile cannot do it (rfc-v2: no halt, no hot update)
    START_OUTCOME_UNKNOWN = "StartOutcomeUnknown"  # left to the operator
    IN_FLIGHT = "InFlight"  # a load is running: look again later


@dataclass(frozen=True)
class Capabilities:
    halt: bool
    hot_update: bool
    per_instance_unload: bool

    @classmethod
    def of(cls, capabilities: Mapping[str, bool]) -> Capabilities:
        return cls(
            halt=capabilities.get("halt", False),
            hot_update=capabilities.get("hot_update", False),
            per_instance_unload=capabilities.get("per_instance_unload", False),
        )


@dataclass(frozen=True)
class Boot:
    """What a kimage is made of: the spec's kernel, initrd and command line."""

    kernel: str
    initrd: str | None = None
    cmdline: str = ""


@dataclass(frozen=True)
class Want:
    """The spec as the planner needs it; `state` None means the instance should not exist."""

    state: DesiredState | None
    boot: Boot | None
    resources: Mapping[str, Any]
    id: int | None = None
    recreate: bool = False  # updateStrategy: Recreate


@dataclass(frozen=True)
class Have:
    """The instance as the daemon's record shows it. `resources` is the spec resources last
    applied (what was asked, not the concrete CPUs chosen), so an automatic choice compares equal."""

    state: InstanceState
    boot: Boot | None
    resources: Mapping[str, Any]
    id: int
    failure: str | None = None


@dataclass(frozen=True)
class Planned:
    step: Step
    reason: str


@dataclass(frozen=True)
class Blocked:
    blocker: Blocker
    message: str


Next = Planned | Blocked | None  # None: converged


def next_step(have: Have | None, want: Want, caps: Capabilities) -> Next:
    """The one step that brings `have` closer to `want`, or why none can, or None when there."""
    if want.state is None:
        return _toward_deleted(have, caps)
    if have is None:
        return Planned(Step.CREATE, "the instance does not exist")
    if have.state is S.LOADING:
        return Blocked(Blocker.IN_FLIGHT, "a load of this instance is in flight")
    if have.state is S.FAILED:
        return _out_of_failed(have, caps)
    if want.id is not None and want.id != have.id:
        # DESIGN: a changed spec.id is refused at PUT unless updateStrategy is Recreate.
        return _recreate(have, caps, f"spec.id {want.id} differs from the instance's id {have.id}")
    if have.state is S.EMPTY:
        return Planned(Step.DELETE, "EMPTY has no resources applied: recreate it")
    if dict(have.resources) != dict(want.resources):
        return _change_resources(have, want, caps)
    return _toward_state(have, want, caps)


def _toward_deleted(have: Have | None, caps: Capabilities) -> Next:
    if have is None:
        return None
    if have.state is S.LOADING:
        return Blocked(Blocker.IN_FLIGHT, "a load of this instance is in flight")
    if have.state in (S.EMPTY, S.READY, S.FAILED):
        return Planned(Step.DELETE, "the instance is to be deleted")
    return _down_one(have, caps, "the instance is to be deleted")


def _out_of_failed(have: Have, caps: Capabilities) -> Next:
    if have.failure == START_OUTCOME_UNKNOWN:
        return Blocked(Blocker.START_OUTCOME_UNKNOWN, "a start whose outcome is unknown is left to the operator")
    if caps.per_instance_unload:
        return Planned(Step.UNLOAD, f"FAILED ({have.failure or 'the kernel says failed'}): unload to READY")
    return Planned(Step.DELETE, "FAILED and the kernel has no per-instance unload: recreate it")


def _recreate(have: Have, caps: Capabilities, why: str) -> Next:
    if have.state in (S.EMPTY, S.READY):
        return Planned(Step.DELETE, f"{why}: recreate")
    return _down_one(have, caps, f"{why}: recreate")


def _down_one(have: Have, caps: Capabilities, why: str) -> Next:
    """One step down from LOADED or ACTIVE."""
    if have.state is S.ACTIVE:
        if not caps.halt:
            return Blocked(Blocker.UNSUPPORTED, f"{why}, but the kernel has no halt: ACTIVE cannot be stopped")
        return Planned(Step.STOP, why)
    if not caps.per_instance_unload:
        return Blocked(Blocker.UNSUPPORTED, f"{why}, but the kernel has no per-instance unload")
    return Planned(Step.UNLOAD, why)


def _change_resources(have: Have, want: Want, caps: Capabilities) -> Next:
    why = "the spec's resources changed"
    if caps.hot_update:
        return Planned(Step.UPDATE, why)  # READY directly, LOADED and ACTIVE through the kernel
    if want.recreate:
        return _recreate(have, caps, f"{why} and the kernel cannot update in place")
    return Blocked(
        Blocker.UNSUPPORTED,
        f"{why}, the kernel cannot update resources in place and updateStrategy is not Recreate",
    )


def _toward_state(have: Have, want: Want, caps: Capabilities) -> Next:
    assert want.state is not None
    target = want.state.instance_state
    if have.boot is not None and have.boot != want.boot:
        return _down_one(have, caps, "the spec's kernel, initrd or command line changed")
    if have.state is target:
        return None
    if have.state is S.READY:
        return Planned(Step.LOAD, f"desired state {want.state.value}")
    if have.state is S.LOADED:
        if target is S.ACTIVE:
            return Planned(Step.START, "desired state Active")
        return _down_one(have, caps, "desired state Ready")
    # ACTIVE, wanted lower
    return _down_one(have, caps, f"desired state {want.state.value}")


def apply_step(have: Have | None, want: Want, step: Step) -> Have | None:
    """What a step leaves when it succeeds: the model `plan` runs forward."""
    if step is Step.DELETE:
        return None
    if step is Step.CREATE:
        return Have(S.READY, None, want.resources, want.id if want.id is not None else 0)
    assert have is not None
    if step is Step.UPDATE:
        return replace(have, resources=want.resources)
    if step is Step.LOAD:
        return replace(have, state=S.LOADED, boot=want.boot, failure=None)
    if step is Step.UNLOAD:
        return replace(have, state=S.READY, boot=None, failure=None)
    if step is Step.START:
        return replace(have, state=S.ACTIVE)
    return replace(have, state=S.LOADED)  # STOP


# Longer than any sequence (down from ACTIVE, recreate, up to ACTIVE) so a loop is a bug, not a hang.
MAX_PLAN_STEPS = 12


def plan(have: Have | None, want: Want, caps: Capabilities) -> tuple[list[Planned], Blocked | None]:
    """Every step from `have` to `want` if each succeeds, and what blocks the rest (dry runs)."""
    steps: list[Planned] = []
    for _ in range(MAX_PLAN_STEPS):
        nxt = next_step(have, want, caps)
        if nxt is None:
            return steps, None
        if isinstance(nxt, Blocked):
            return steps, nxt
        steps.append(nxt)
        have = apply_step(have, want, nxt.step)
    raise RuntimeError(f"no convergence after {MAX_PLAN_STEPS} steps: {steps}")
