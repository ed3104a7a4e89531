"""A reconciler pass records what it found about the spec it read: a spec stored during the pass
(a PUT between the pass's read and its outcome) is not marked observed by it, so neither a
waiter nor the tick takes the old spec's convergence for the new one's, and the next pass does
not take its own stop for a crash (tests/e2e/test_desired_crash.py's rolling replacement was
left LOADED, held "Stopped", when its PUT landed during the restarted daemon's first pass)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mkd.db.models import DeclaredRecord, InstanceRecord
from mkd.services import reconciler
from mkd.services.context import Daemon
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MiB, upload

STOP_TIMEOUT_S = 40.0


def document(kernel: str) -> dict[str, Any]:
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": "web"},
            "spec": {"resources": {"cpus": [2, 3], "memory_bytes": 128 * MiB}, "kernel": kernel}}


def _daemon(client: TestClient) -> Daemon:
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    return daemon


def test_a_spec_stored_during_a_pass_is_not_marked_observed_by_it(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(simulator={"kernel_profile": "tree", "halt_ack_timeout_s": 0.2})
    old = upload(client, imagegen.vmlinux())
    new = upload(client, imagegen.vmlinux(mk_entry=0x1000080))
    assert client.put("/v1/instances/web", json=document(old)).status_code == 201
    ready = client.get("/v1/instances/web/wait", params={"generation": 1, "timeout_s": 20})
    assert ready.status_code == 200, ready.text

    # From here the daemon's own workers idle (once the pass its own events asked for is over):
    # this test runs the passes, in its own order.
    real_pass = reconciler.reconcile_one
    monkeypatch.setattr(reconciler, "reconcile_one",
                        lambda *args: reconciler.PassResult(0, converged=False))
    daemon = _daemon(client)
    assert isinstance(daemon.reconciler, reconciler.Reconciler)
    deadline = time.monotonic() + 20
    while daemon.reconciler.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not daemon.reconciler.busy
    real_load = reconciler._load
    put_during_the_pass: list[int] = []
    test_thread = threading.current_thread()

    def load_then_put(daemon: Daemon, name: str) -> tuple[InstanceRecord | None, DeclaredRecord | None]:
        found = real_load(daemon, name)
        if threading.current_thread() is test_thread and not put_during_the_pass:
            # the pass holds generation 1; a new spec arrives meanwhile
            put_during_the_pass.append(client.put("/v1/instances/web", json=document(new)).status_code)
        return found

    monkeypatch.setattr(reconciler, "_load", load_then_put)
    assert real_pass(daemon, "web", STOP_TIMEOUT_S).converged  # converged: to generation 1
    assert put_during_the_pass == [200]
    web = client.get("/v1/instances/web").json()
    assert (web["generation"], web["observed_generation"]) == (2, 1)
    assert web["kimage"]["kernel"] == old
    assert "web" in reconciler.due_names(daemon)  # the tick still sees generation 2 to do
    waited = client.get("/v1/instances/web/wait", params={"generation": 2, "timeout_s": 0.2})
    assert waited.status_code == 409 and waited.json()["errno"] == "ETIMEDOUT"

    # The next pass (the one the PUT's wake asks for) applies generation 2 and records it: its
    # stop of the old kernel is its own, not a stop the restart policy decides about.
    monkeypatch.setattr(reconciler, "_load", real_load)
    assert real_pass(daemon, "web", STOP_TIMEOUT_S).converged
    web = client.get("/v1/instances/web").json()
    assert (web["generation"], web["observed_generation"], web["state"]) == (2, 2, "ACTIVE")
    assert web["kimage"]["kernel"] == new
    status = client.get("/v1/instances/web", params={"format": "document"}).json()["status"]
    assert status["last_failure"] is None
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Running"] == "Running"
