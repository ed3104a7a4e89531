"""Conditions of a declared instance (DESIGN "Desired state"): ResourcesApplied, KernelLoaded,
Running, each True/False/Unknown with a reason; `last_transition` moves only when the status does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mkd.domain.desired.plan import DesiredState, Have, Want
from mkd.domain.states import InstanceState

TYPES = ("ResourcesApplied", "KernelLoaded", "Running")
# Reasons a waiter treats as final (DESIGN: `wait` answers 409 on them).
TERMINAL_REASONS = frozenset({"CrashLoop", "Unsupported"})


@dataclass(frozen=True)
class Problem:
    """Why the last pass stopped: the condition it concerns, a reason word and a message."""

    type: str
    reason: str
    message: str


def observe(have: Have | None, want: Want, problem: Problem | None) -> dict[str, tuple[str, str, str]]:
    """type -> (status, reason, message) for the instance as it is now."""
    out: dict[str, tuple[str, str, str]] = {}
    if have is None:
        out["ResourcesApplied"] = ("False", "NotCreated", "the instance does not exist")
    elif dict(have.resources) == dict(want.resources):
        out["ResourcesApplied"] = ("True", "Applied", "the spec's resources are applied")
    else:
        out["ResourcesApplied"] = ("False", "Pending", "the spec's resources are not applied yet")
    if want.state is DesiredState.READY:
        out["KernelLoaded"] = ("False", "NotRequested", "the spec's state is Ready")
    elif have is not None and have.boot is not None and have.boot == want.boot:
        out["KernelLoaded"] = ("True", "Loaded", "the spec's kernel is loaded")
    else:
        out["KernelLoaded"] = ("False", "Pending", "the spec's kernel is not loaded yet")
    if want.state is not DesiredState.ACTIVE:
        wanted = want.state.value if want.state else "deleted"
        out["Running"] = ("False", "NotRequested", f"the spec's state is {wanted}")
    elif have is not None and have.state is InstanceState.ACTIVE:
        out["Running"] = ("True", "Running", "the instance is ACTIVE")
    else:
        out["Running"] = ("False", "Pending", "the instance is not ACTIVE yet")
    if problem is not None:
        out[problem.type] = ("False", problem.reason, problem.message)
    return out


def merge(previous: list[dict[str, Any]], now: dict[str, tuple[str, str, str]], at: str) -> list[dict[str, Any]]:
    """The new condition list; a condition whose status did not change keeps its last_transition."""
    before = {c["type"]: c for c in previous}
    out = []
    for kind in TYPES:
        status, reason, message = now[kind]
        old = before.get(kind)
        since = old["last_transition"] if old is not None and old["status"] == status else at
        out.append({"type": kind, "status": status, "reason": reason, "message": message, "last_transition": since})
    return out


def terminal(conditions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A False condition with a reason nothing will change without a new generation."""
    for condition in conditions:
        if condition["status"] == "False" and condition["reason"] in TERMINAL_REASONS:
            return condition
    return None


# A fleet node without its lease force-stopped this OnNodeLoss instance (DESIGN "Fleet", fencing):
# only the node agent lifts it, once the node holds a lease and the placement again.
FENCED = "Fenced"
# What a new generation or an imperative start clears (the reconciler looks again); Fenced is
# cleared only by the fleet's unfence (or a delete).
HELD_REASONS = TERMINAL_REASONS | {"Stopped", "StartOutcomeUnknown", FENCED}


def release(previous: list[dict[str, Any]], at: str) -> list[dict[str, Any]]:
    """Conditions once what held the instance is cleared: those reasons become Unknown/Pending."""
    return [
        {**c, "status": "Unknown", "reason": "Pending", "message": "the reconciler looks again",
         "last_transition": at} if c["status"] == "False" and c["reason"] in HELD_REASONS else c
        for c in previous
    ]
