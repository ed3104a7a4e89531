"""Both transition tables, cell by cell (spec 1.1, 1.2)."""

from __future__ import annotations

import errno

import pytest

from mkd.backends.simulated.states import (
    TRANSITIONS,
    KEvent,
    KState,
    Outcome,
    Refusal,
    check,
    parse_status,
    status_string,
    transition,
)
from mkd.errors import KernelError

E, R, L, A, F = KState.EMPTY, KState.READY, KState.LOADED, KState.ACTIVE, KState.FAILED
SAME, GONE, ACK = Outcome.UNCHANGED, Outcome.DESTROYED, Outcome.VIA_ACK
EBUSY, EINVAL, EOPNOTSUPP = errno.EBUSY, errno.EINVAL, errno.EOPNOTSUPP

# expected[profile][event] = results for (EMPTY, READY, LOADED, ACTIVE, FAILED); ints are errnos
EXPECTED: dict[str, dict[KEvent, tuple[object, ...]]] = {
    "rfc-v2": {
        KEvent.LOAD_ASSOCIATE: (L, L, L, L, L),
        KEvent.LOAD_SUCCESS: (SAME,) * 5,
        KEvent.LOAD_FAILURE: (R,) * 5,
        KEvent.KIMAGE_FREE: (R,) * 5,
        KEvent.START: (SAME,) * 5,
        KEvent.HALT: (EINVAL,) * 5,
        KEvent.HALT_FORCE: (EINVAL,) * 5,
        KEvent.SPAWN_HALTED: (SAME,) * 5,
        KEvent.DESTROY: (GONE, GONE, EBUSY, EBUSY, GONE),
        KEvent.UPDATE: (EOPNOTSUPP,) * 5,
        KEvent.FAULT_FAIL: (F,) * 5,
    },
    "tree": {
        KEvent.LOAD_ASSOCIATE: (SAME,) * 5,
        KEvent.LOAD_SUCCESS: (L,) * 5,
        KEvent.LOAD_FAILURE: (SAME,) * 5,
        KEvent.KIMAGE_FREE: (R,) * 5,
        KEvent.START: (EBUSY, EBUSY, A, EBUSY, EBUSY),
        KEvent.HALT: (EINVAL, EINVAL, EINVAL, L, EINVAL),
        KEvent.HALT_FORCE: (EINVAL, EINVAL, L, L, EINVAL),
        KEvent.SPAWN_HALTED: (SAME, SAME, SAME, L, SAME),
        KEvent.DESTROY: (GONE, GONE, EBUSY, EBUSY, GONE),
        KEvent.UPDATE: (SAME, SAME, SAME, ACK, EBUSY),
        KEvent.FAULT_FAIL: (F,) * 5,
    },
}

CELLS = [
    (profile, event, state, expected[state])
    for profile, table in EXPECTED.items()
    for event, expected in table.items()
    for state in KState
]


def test_every_event_of_every_profile_is_specified() -> None:
    for profile in ("rfc-v2", "tree"):
        assert set(TRANSITIONS[profile]) == set(KEvent) == set(EXPECTED[profile])


@pytest.mark.parametrize(("profile", "event", "state", "expected"), CELLS)
def test_cell(profile: str, event: KEvent, state: KState, expected: object) -> None:
    cell = TRANSITIONS[profile][event][state]  # type: ignore[index]
    if isinstance(expected, int) and not isinstance(expected, KState):
        assert isinstance(cell, Refusal) and cell.errno_code == expected
        with pytest.raises(KernelError) as exc:
            check(profile, state, event, instance_id=7)  # type: ignore[arg-type]
        assert exc.value.errno_code == expected and exc.value.instance_id == 7
    else:
        assert cell == expected
        assert check(profile, state, event) == expected  # type: ignore[arg-type]
        if isinstance(expected, KState):
            assert transition(profile, state, event) == expected  # type: ignore[arg-type]
        elif expected is SAME:
            assert transition(profile, state, event) == state  # type: ignore[arg-type]


def test_status_strings_per_profile() -> None:
    assert [status_string("rfc-v2", s) for s in KState] == ["empty", "ready", "loading", "active", "failed"]
    assert [status_string("tree", s) for s in KState] == ["empty", "ready", "loaded", "active", "failed"]
    assert status_string("tree", 9) == "unknown"
    assert parse_status("tree", "loaded\n") == KState.LOADED
    assert parse_status("rfc-v2", "loaded") == KState.FAILED  # unknown word under v2
