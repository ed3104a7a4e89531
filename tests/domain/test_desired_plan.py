"""The reconciler's planner: every observed state to every desired state, under both profiles
(issue 13 item 2): it converges, or says Unsupported where the profile cannot, and a second pass
does nothing."""

from __future__ import annotations

import pytest

from mkd.domain.desired.plan import (
    START_OUTCOME_UNKNOWN,
    Blocked,
    Blocker,
    Boot,
    Capabilities,
    DesiredState,
    Have,
    Planned,
    Step,
    Want,
    apply_step,
    next_step,
    plan,
)
from mkd.domain.states import InstanceState as S

TREE = Capabilities(halt=True, hot_update=True, per_instance_unload=True)
RFC_V2 = Capabilities(halt=False, hot_update=False, per_instance_unload=True)
RFC_V2_HOST = Capabilities(halt=False, hot_update=False, per_instance_unload=False)
PROFILES = {"tree": TREE, "rfc-v2": RFC_V2}

RES = {"cpus": [2, 3], "memory_bytes": 256 << 20}
BOOT = Boot("a" * 64, None, "console=mktty0")
OBSERVED = [None, S.EMPTY, S.READY, S.LOADED, S.ACTIVE, S.FAILED]
DESIRED = [DesiredState.READY, DesiredState.LOADED, DesiredState.ACTIVE, None]


def have(state: S | None, *, boot: Boot | None = BOOT, resources: dict[str, object] = RES) -> Have | None:
    if state is None:
        return None
    holds = state in (S.LOADED, S.ACTIVE, S.FAILED)
    failure = "the kernel says failed" if state is S.FAILED else None
    return Have(state, boot if holds else None, resources, id=7, failure=failure)


def want(state: DesiredState | None, **changes: object) -> Want:
    fields: dict[str, object] = {"state": state, "boot": BOOT, "resources": RES}
    fields.update(changes)
    return Want(**fields)  # type: ignore[arg-type]


def final_state(start: Have | None, steps: list[Planned], w: Want) -> Have | None:
    h = start
    for planned in steps:
        h = apply_step(h, w, planned.step)
    return h


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("observed", OBSERVED, ids=lambda s: s.value if s else "absent")
@pytest.mark.parametrize("desired", DESIRED, ids=lambda d: d.value if d else "deleted")
def test_every_observed_state_to_every_desired_state(
    profile: str, observed: S | None, desired: DesiredState | None
) -> None:
    caps = PROFILES[profile]
    w = want(desired)
    start = have(observed)
    steps, blocked = plan(start, w, caps)
    end = final_state(start, steps, w)
    if blocked is not None:
        # Only the profile's missing halt can stop the way: rfc-v2 cannot leave ACTIVE.
        assert (profile, observed, blocked.blocker) == ("rfc-v2", S.ACTIVE, Blocker.UNSUPPORTED), blocked
        assert desired is not DesiredState.ACTIVE
        assert "no halt" in blocked.message
        assert steps == []
        return
    if desired is None:
        assert end is None
    else:
        assert end is not None and end.state is desired.instance_state
        assert end.resources == RES
        assert end.boot == (BOOT if desired is not DesiredState.READY else None)
    # a second pass does nothing
    assert next_step(end, w, caps) is None


def test_a_kernel_change_on_a_running_instance_is_the_rolling_sequence() -> None:
    new = Boot("b" * 64, None, "console=mktty0")
    steps, blocked = plan(have(S.ACTIVE), want(DesiredState.ACTIVE, boot=new), TREE)
    assert blocked is None
    assert [p.step for p in steps] == [Step.STOP, Step.UNLOAD, Step.LOAD, Step.START]
    assert "kernel, initrd or command line changed" in steps[0].reason


def test_rfc_v2_cannot_roll_a_running_instance() -> None:
    steps, blocked = plan(have(S.ACTIVE), want(DesiredState.ACTIVE, boot=Boot("b" * 64)), RFC_V2)
    assert steps == [] and blocked is not None and blocked.blocker is Blocker.UNSUPPORTED


def test_a_loaded_instance_with_another_cmdline_is_reloaded() -> None:
    steps, _ = plan(have(S.LOADED), want(DesiredState.LOADED, boot=Boot(BOOT.kernel, None, "quiet")), TREE)
    assert [p.step for p in steps] == [Step.UNLOAD, Step.LOAD]


def test_resources_change_hot_updates_where_the_profile_can() -> None:
    bigger = {"cpus": [2, 3, 4], "memory_bytes": 256 << 20}
    for state in (S.READY, S.LOADED, S.ACTIVE):
        steps, blocked = plan(have(state), want(DesiredState(state.value.capitalize()), resources=bigger), TREE)
        assert blocked is None and [p.step for p in steps] == [Step.UPDATE], state


def test_resources_change_without_hot_update_needs_recreate() -> None:
    bigger = {"cpus": [2, 3, 4], "memory_bytes": 256 << 20}
    steps, blocked = plan(have(S.LOADED), want(DesiredState.LOADED, resources=bigger), RFC_V2)
    assert steps == [] and blocked is not None
    assert blocked.blocker is Blocker.UNSUPPORTED and "updateStrategy" in blocked.message
    steps, blocked = plan(have(S.LOADED), want(DesiredState.LOADED, resources=bigger, recreate=True), RFC_V2)
    assert blocked is None
    assert [p.step for p in steps] == [Step.UNLOAD, Step.DELETE, Step.CREATE, Step.LOAD]


def test_recreate_under_rfc_v2_stops_at_a_running_instance() -> None:
    bigger = {"cpus": [2, 3, 4], "memory_bytes": 256 << 20}
    steps, blocked = plan(have(S.ACTIVE), want(DesiredState.ACTIVE, resources=bigger, recreate=True), RFC_V2)
    assert steps == [] and blocked is not None and blocked.blocker is Blocker.UNSUPPORTED


def test_a_changed_id_is_a_recreate() -> None:
    steps, blocked = plan(have(S.ACTIVE), want(DesiredState.ACTIVE, id=9, recreate=True), TREE)
    assert blocked is None
    assert [p.step for p in steps] == [Step.STOP, Step.UNLOAD, Step.DELETE, Step.CREATE, Step.LOAD, Step.START]


def test_start_outcome_unknown_is_left_to_the_operator() -> None:
    lost = Have(S.FAILED, BOOT, RES, id=7, failure=START_OUTCOME_UNKNOWN)
    nxt = next_step(lost, want(DesiredState.ACTIVE), TREE)
    assert isinstance(nxt, Blocked) and nxt.blocker is Blocker.START_OUTCOME_UNKNOWN
    # ... but deleting it is still what the operator can ask for
    assert next_step(lost, want(None), TREE) == Planned(Step.DELETE, "the instance is to be deleted")


def test_failed_without_per_instance_unload_is_recreated() -> None:
    steps, blocked = plan(have(S.FAILED), want(DesiredState.ACTIVE), RFC_V2_HOST)
    assert blocked is None
    assert [p.step for p in steps] == [Step.DELETE, Step.CREATE, Step.LOAD, Step.START]


def test_a_load_in_flight_is_waited_for() -> None:
    loading = Have(S.LOADING, None, RES, id=7)
    for w in (want(DesiredState.ACTIVE), want(None)):
        nxt = next_step(loading, w, TREE)
        assert isinstance(nxt, Blocked) and nxt.blocker is Blocker.IN_FLIGHT
