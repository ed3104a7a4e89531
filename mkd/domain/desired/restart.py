"""Restart policy, backoff and crash loops (DESIGN "Desired state"): what to do after the kernel
took a declared instance out of ACTIVE without a request. Pure: times are passed in."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RestartPolicy(StrEnum):
    NEVER = "Never"
    ON_FAILURE = "OnFailure"
    ALWAYS = "Always"


class StopCause(StrEnum):
    """Why an instance left ACTIVE on its own, as far as the daemon can tell."""

    FAILED = "failed"  # the kernel says failed
    PANIC = "panic"  # back to loaded and the console shows a panic
    STOPPED = "stopped"  # back to loaded without a panic: the spawn's own poweroff, reboot or halt


# DESIGN: maxRestarts counts restarts within 10 minutes.
RESTART_WINDOW_S = 600.0


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 1.0
    max_s: float = 300.0

    def delay(self, attempt: int) -> float:
        """Exponential: initial, 2×initial, 4×initial … capped at max (attempt counts from 1)."""
        return float(min(self.initial_s * (2 ** max(attempt - 1, 0)), self.max_s))


@dataclass(frozen=True)
class Restart:
    attempt: int
    at: float  # when to start again
    reason: str


@dataclass(frozen=True)
class CrashLoop:
    restarts: int
    reason: str


@dataclass(frozen=True)
class StaysDown:
    """The policy does not restart: Running False, reason Stopped."""

    reason: str


Decision = Restart | CrashLoop | StaysDown


def policy_restarts(policy: RestartPolicy, cause: StopCause) -> bool:
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.ON_FAILURE:
        return cause in (StopCause.FAILED, StopCause.PANIC)
    return False


def recent(restart_times: tuple[float, ...], now: float) -> tuple[float, ...]:
    """The restarts that still count against maxRestarts."""
    return tuple(t for t in restart_times if now - t < RESTART_WINDOW_S)


def decide(
    *,
    policy: RestartPolicy,
    cause: StopCause,
    restart_times: tuple[float, ...],
    now: float,
    max_restarts: int,
    backoff: Backoff,
) -> Decision:
    """After an unrequested stop: restart later, give up (CrashLoop), or stay down."""
    what = {StopCause.FAILED: "the kernel says failed", StopCause.PANIC: "the instance panicked",
            StopCause.STOPPED: "the instance stopped by itself"}[cause]
    if not policy_restarts(policy, cause):
        return StaysDown(f"{what}; restartPolicy {policy.value} does not restart it")
    counted = recent(restart_times, now)
    if len(counted) >= max_restarts:
        return CrashLoop(len(counted), f"{what}; {len(counted)} restarts within {int(RESTART_WINDOW_S)} s")
    attempt = len(counted) + 1
    return Restart(attempt, now + backoff.delay(attempt), what)
