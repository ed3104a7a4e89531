"""The one transition table (DESIGN "States"), checked pair by pair, and refusals over HTTP."""

from __future__ import annotations

import copy
import errno
from typing import Any

import pytest

from mkd.domain.states import (
    KERNEL_STATE_MAP,
    TRANSITIONS,
    Action,
    Allowed,
    InstanceState,
    Refused,
    daemon_state_for,
    transition,
)
from mkd.errors import KernelError
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MiB, assert_problem, create, upload

S = InstanceState
A = Action
DELETED = "deleted"

# The contract written out independently of the code: target state (DELETED when the record goes)
# or the errno of the refusal. A change to either side makes the exhaustive test below fail.
EXPECTED: dict[tuple[InstanceState, Action], InstanceState | str | int] = {
    (S.EMPTY, A.LOAD): errno.EINVAL,
    (S.EMPTY, A.UNLOAD): errno.ENOENT,
    (S.EMPTY, A.UNLOAD_FORCE): errno.ENOENT,
    (S.EMPTY, A.START): errno.EINVAL,
    (S.EMPTY, A.STOP): errno.EINVAL,
    (S.EMPTY, A.STOP_FORCE): errno.EINVAL,
    (S.EMPTY, A.DELETE): DELETED,
    (S.EMPTY, A.UPDATE): S.EMPTY,
    (S.READY, A.LOAD): S.LOADED,
    (S.READY, A.UNLOAD): errno.ENOENT,
    (S.READY, A.UNLOAD_FORCE): errno.ENOENT,
    (S.READY, A.START): errno.EINVAL,
    (S.READY, A.STOP): errno.EINVAL,
    (S.READY, A.STOP_FORCE): errno.EINVAL,
    (S.READY, A.DELETE): DELETED,
    (S.READY, A.UPDATE): S.READY,
    **{(S.LOADING, action): errno.EBUSY for action in Action},
    (S.LOADED, A.LOAD): errno.EBUSY,
    (S.LOADED, A.UNLOAD): S.READY,
    (S.LOADED, A.UNLOAD_FORCE): S.READY,
    (S.LOADED, A.START): S.ACTIVE,
    (S.LOADED, A.STOP): errno.EINVAL,
    (S.LOADED, A.STOP_FORCE): S.LOADED,
    (S.LOADED, A.DELETE): errno.EBUSY,
    (S.LOADED, A.UPDATE): S.LOADED,
    (S.ACTIVE, A.LOAD): errno.EBUSY,
    (S.ACTIVE, A.UNLOAD): errno.EBUSY,
    (S.ACTIVE, A.UNLOAD_FORCE): S.READY,
    (S.ACTIVE, A.START): errno.EBUSY,
    (S.ACTIVE, A.STOP): S.LOADED,
    (S.ACTIVE, A.STOP_FORCE): S.LOADED,
    (S.ACTIVE, A.DELETE): errno.EBUSY,
    (S.ACTIVE, A.UPDATE): S.ACTIVE,
    (S.FAILED, A.LOAD): S.LOADED,
    (S.FAILED, A.UNLOAD): S.READY,
    (S.FAILED, A.UNLOAD_FORCE): S.READY,
    (S.FAILED, A.START): S.ACTIVE,
    (S.FAILED, A.STOP): errno.EINVAL,
    (S.FAILED, A.STOP_FORCE): S.LOADED,
    (S.FAILED, A.DELETE): DELETED,
    (S.FAILED, A.UPDATE): errno.EBUSY,
}

ALL_PAIRS = [(state, action) for state in InstanceState for action in Action]


def test_every_state_action_pair_has_exactly_one_rule() -> None:
    assert set(TRANSITIONS) == set(ALL_PAIRS)
    assert set(EXPECTED) == set(ALL_PAIRS)
    assert len(ALL_PAIRS) == len(InstanceState) * len(Action) == 48


@pytest.mark.parametrize(("state", "action"), ALL_PAIRS, ids=[f"{s.value}-{a.value}" for s, a in ALL_PAIRS])
def test_transition_gives_the_documented_target_or_errno(state: InstanceState, action: Action) -> None:
    expected = EXPECTED[(state, action)]
    table_before = copy.deepcopy(TRANSITIONS)
    if isinstance(expected, int):
        rule = TRANSITIONS[(state, action)]
        assert isinstance(rule, Refused) and rule.errno_code == expected and rule.reason
        with pytest.raises(KernelError) as refused:
            transition(state, action)
        assert refused.value.errno_code == expected
        assert state.value in refused.value.detail and action.value in refused.value.detail
    else:
        allowed = transition(state, action)
        assert isinstance(allowed, Allowed)
        assert allowed.target == (None if expected == DELETED else expected)
    assert TRANSITIONS == table_before  # a rule lookup, allowed or refused, changes nothing


def test_only_a_load_passes_through_loading() -> None:
    via = {pair: rule.via for pair, rule in TRANSITIONS.items() if isinstance(rule, Allowed) and rule.via}
    assert via == {(S.READY, A.LOAD): S.LOADING, (S.FAILED, A.LOAD): S.LOADING}


@pytest.mark.parametrize("state", [S.EMPTY, S.READY, S.FAILED])
def test_delete_is_allowed_from_empty_ready_and_failed(state: InstanceState) -> None:
    assert transition(state, A.DELETE).target is None


@pytest.mark.parametrize("state", [S.LOADING, S.LOADED, S.ACTIVE])
def test_delete_with_a_kimage_or_in_flight_is_ebusy(state: InstanceState) -> None:
    with pytest.raises(KernelError) as refused:
        transition(state, A.DELETE)
    assert refused.value.errno == "EBUSY" and refused.value.status == 409


def test_spot_checks_of_the_design_rules() -> None:
    assert transition(S.READY, A.LOAD) == Allowed(S.LOADED, via=S.LOADING)
    assert transition(S.LOADED, A.START).target is S.ACTIVE
    with pytest.raises(KernelError, match="already ACTIVE") as second_start:
        transition(S.ACTIVE, A.START)
    assert second_start.value.errno == "EBUSY"
    with pytest.raises(KernelError, match="force") as unload_active:
        transition(S.ACTIVE, A.UNLOAD)
    assert unload_active.value.errno == "EBUSY"
    assert transition(S.ACTIVE, A.UNLOAD_FORCE).target is S.READY
    assert transition(S.FAILED, A.UNLOAD).target is S.READY
    with pytest.raises(KernelError) as second_load:
        transition(S.LOADED, A.LOAD)
    assert second_load.value.errno == "EBUSY"
    with pytest.raises(KernelError) as no_kimage:
        transition(S.READY, A.UNLOAD)
    assert no_kimage.value.errno == "ENOENT" and no_kimage.value.status == 404


# --- daemon_state_for: the kernel's word -> the daemon's state, per profile -------------------------

@pytest.mark.parametrize(("kernel_state", "expected"), [
    ("empty", S.EMPTY), ("ready", S.READY), ("loading", S.LOADED), ("loaded", S.LOADED),
    ("active", S.ACTIVE), ("failed", S.FAILED),
])
@pytest.mark.parametrize("active_reported", [False, True], ids=["rfc-v2", "tree"])
def test_kernel_states_map_to_daemon_states(kernel_state: str, expected: InstanceState, active_reported: bool) -> None:
    assert KERNEL_STATE_MAP[kernel_state] is expected
    assert daemon_state_for(kernel_state, recorded=S.READY, active_reported=active_reported) is expected


def test_rfc_v2_reports_loading_for_an_attached_kimage() -> None:
    assert daemon_state_for("loading", recorded=S.LOADING, active_reported=False) is S.LOADED


def test_rfc_v2_loading_without_a_kimage_is_the_dangling_kimage_and_failed() -> None:
    """spec 2.3 note, DESIGN "States": the seed's failed load leaves `loading` and no kimage."""
    for recorded in (S.LOADING, S.LOADED, S.ACTIVE, S.FAILED):
        assert daemon_state_for("loading", recorded=recorded, active_reported=False, kimage_present=False) is S.FAILED
    assert daemon_state_for("loading", recorded=S.LOADING, active_reported=False, kimage_present=True) is S.LOADED
    # other states do not depend on the kimage
    assert daemon_state_for("ready", recorded=S.LOADING, active_reported=False, kimage_present=False) is S.READY


def test_rfc_v2_keeps_the_daemons_active_while_the_kimage_stays() -> None:
    assert daemon_state_for("loading", recorded=S.ACTIVE, active_reported=False) is S.ACTIVE
    # ...but not once the kimage is gone, nor when the kernel is one that reports active itself.
    assert daemon_state_for("ready", recorded=S.ACTIVE, active_reported=False) is S.READY
    assert daemon_state_for("loaded", recorded=S.ACTIVE, active_reported=True) is S.LOADED


def test_an_unknown_kernel_state_is_failed() -> None:
    assert daemon_state_for("halting?", recorded=S.READY, active_reported=True) is S.FAILED


# --- a refusal changes nothing, end to end --------------------------------------------------------

REFUSALS_BY_STATE: dict[str, list[tuple[str, str, dict[str, Any] | None, int, str]]] = {
    "READY": [
        ("POST", "unload", None, 404, "ENOENT"),
        ("POST", "unload", {"force": True}, 404, "ENOENT"),
        ("POST", "start", None, 422, "EINVAL"),
        ("POST", "stop", None, 422, "EINVAL"),
        ("POST", "stop", {"force": True}, 422, "EINVAL"),
    ],
    "LOADED": [
        ("POST", "load", {}, 409, "EBUSY"),
        ("POST", "stop", None, 422, "EINVAL"),
        ("DELETE", "", None, 409, "EBUSY"),
    ],
    "ACTIVE": [
        ("POST", "load", {}, 409, "EBUSY"),
        ("POST", "unload", None, 409, "EBUSY"),
        ("POST", "start", None, 409, "EBUSY"),
        ("DELETE", "", None, 409, "EBUSY"),
    ],
}


@pytest.mark.parametrize("state", list(REFUSALS_BY_STATE))
def test_a_refused_action_leaves_instance_and_pool_unchanged(make_client: MakeClient, state: str) -> None:
    client = make_client(simulator={"kernel_profile": "tree"})
    create(client, "web", cpus=[2], memory_bytes=256 * MiB)
    kernel = upload(client, imagegen.vmlinux())
    if state in ("LOADED", "ACTIVE"):
        assert client.post("/v1/instances/web/load", json={"kernel": kernel}).status_code == 200
    if state == "ACTIVE":
        assert client.post("/v1/instances/web/start").status_code == 200
    before = client.get("/v1/instances/web")
    assert before.json()["state"] == state
    pool_before = client.get("/v1/pool").json()
    for method, action, body, status, errno_name in REFUSALS_BY_STATE[state]:
        if action == "load":
            body = {"kernel": kernel}
        path = f"/v1/instances/web/{action}" if action else "/v1/instances/web"
        assert_problem(client.request(method, path, json=body), status, errno_name)
        after = client.get("/v1/instances/web")
        assert after.json() == before.json(), (method, action)
        assert after.headers["etag"] == before.headers["etag"], (method, action)
    assert client.get("/v1/pool").json() == pool_before
