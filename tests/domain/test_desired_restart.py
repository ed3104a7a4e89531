"""Restart policy, exponential backoff and CrashLoop (DESIGN "Desired state")."""

from __future__ import annotations

import pytest

from mkd.domain.desired.restart import (
    RESTART_WINDOW_S,
    Backoff,
    CrashLoop,
    Restart,
    RestartPolicy,
    StaysDown,
    StopCause,
    decide,
    policy_restarts,
)

P, C = RestartPolicy, StopCause


@pytest.mark.parametrize(
    ("policy", "cause", "restarts"),
    [
        (P.NEVER, C.FAILED, False), (P.NEVER, C.PANIC, False), (P.NEVER, C.STOPPED, False),
        (P.ON_FAILURE, C.FAILED, True), (P.ON_FAILURE, C.PANIC, True), (P.ON_FAILURE, C.STOPPED, False),
        (P.ALWAYS, C.FAILED, True), (P.ALWAYS, C.PANIC, True), (P.ALWAYS, C.STOPPED, True),
    ],
)
def test_which_policy_restarts_what(policy: RestartPolicy, cause: StopCause, restarts: bool) -> None:
    assert policy_restarts(policy, cause) is restarts
    decision = decide(policy=policy, cause=cause, restart_times=(), now=100.0, max_restarts=5, backoff=Backoff())
    assert isinstance(decision, Restart if restarts else StaysDown)


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial_s=1, max_s=20)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 20, 20]


def test_attempts_count_recent_restarts_and_crash_loop_past_the_maximum() -> None:
    times: tuple[float, ...] = ()
    now = 1000.0
    delays = []
    for _ in range(3):
        decision = decide(policy=P.ON_FAILURE, cause=C.PANIC, restart_times=times, now=now, max_restarts=3,
                          backoff=Backoff(2, 300))
        assert isinstance(decision, Restart)
        delays.append(decision.at - now)
        times += (decision.at,)
        now = decision.at + 1
    assert delays == [2, 4, 8]
    looped = decide(policy=P.ON_FAILURE, cause=C.PANIC, restart_times=times, now=now, max_restarts=3,
                    backoff=Backoff(2, 300))
    assert isinstance(looped, CrashLoop) and looped.restarts == 3 and "3 restarts" in looped.reason


def test_restarts_older_than_the_window_no_longer_count() -> None:
    old = (0.0, 1.0, 2.0)
    decision = decide(policy=P.ALWAYS, cause=C.STOPPED, restart_times=old, now=RESTART_WINDOW_S + 3, max_restarts=3,
                      backoff=Backoff(1, 300))
    assert isinstance(decision, Restart) and decision.attempt == 1
