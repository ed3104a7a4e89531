"""The status poll reads the kernel without the kernel lock, so the daemon may act on an instance
between that read and the change being recorded (the reconciler's stop, unload, load and start
of a rolling replacement). What is recorded is what the kernel says once the lock is held: a read
the daemon's own actions have overtaken is not a crash."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mkd.kernel_types import KernelEvent
from mkd.services.context import Daemon
from mkd.services.kernel_poller import poll_kernel
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MiB, create, upload


def _daemon(client: TestClient) -> Daemon:
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    return daemon


def _kernel_caused(client: TestClient) -> list[str]:
    found = []
    with client.stream("GET", "/v1/events", headers={"Last-Event-ID": "0"}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and '"cause": "kernel"' in line:
                found.append(line)
            if line.startswith("data:") and '"name": "marker"' in line:
                break
    return found


@pytest.fixture
def tree_client(make_client: MakeClient) -> TestClient:
    # The poller task never runs here (an hour's interval): each poll is this test's call.
    return make_client(simulator={"kernel_profile": "tree"}, daemon={"status_poll_interval_s": 3600})


def _started(client: TestClient) -> int:
    kernel = upload(client, imagegen.vmlinux())
    web = create(client, "web", cpus=[2, 3], memory_bytes=128 * MiB)
    assert client.post("/v1/instances/web/load", json={"kernel": kernel}).status_code == 200
    assert client.post("/v1/instances/web/start").json()["state"] == "ACTIVE"
    return int(web["id"])


def test_a_stop_the_poll_read_before_the_daemon_started_it_again_is_not_recorded(
    tree_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = tree_client
    web = _started(client)
    # The poll read `loaded` just after a stop; the daemon started the instance again meanwhile.
    assert client.post("/v1/instances/web/stop").json()["state"] == "LOADED"
    assert client.post("/v1/instances/web/start").json()["state"] == "ACTIVE"
    daemon = _daemon(client)
    stale = KernelEvent(web, "web", "active", "loaded", reason="kernel status changed")
    monkeypatch.setattr(daemon.backend, "poll_changes", lambda running=None: [stale])
    assert poll_kernel(daemon) == [stale]
    shown = client.get("/v1/instances/web").json()
    assert (shown["state"], shown["kernel_state"]) == ("ACTIVE", "active")
    create(client, "marker", cpus=[8], memory_bytes=64 * MiB)
    assert _kernel_caused(client) == []


def test_a_stop_the_kernel_made_is_recorded(tree_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    client = tree_client
    web = _started(client)
    daemon = _daemon(client)
    # The spawn powers off by itself (no request): the poll's read and the kernel agree.
    real_poll = daemon.backend.poll_changes
    daemon.backend.io.kernel.spawn_exit(web, "poweroff")  # type: ignore[attr-defined]
    changes = real_poll([web])
    assert [(c.from_state, c.to_state) for c in changes] == [("active", "loaded")]
    monkeypatch.setattr(daemon.backend, "poll_changes", lambda running=None: changes)
    poll_kernel(daemon)
    assert client.get("/v1/instances/web").json()["state"] == "LOADED"
    create(client, "marker", cpus=[8], memory_bytes=64 * MiB)
    assert len(_kernel_caused(client)) == 1
