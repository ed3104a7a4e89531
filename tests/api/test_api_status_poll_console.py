"""Issue 10 items 3 and 5 through HTTP: the status poller records what the kernel does on its own
(cause `kernel`) and the console readers keep what each boot printed under the state directory."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from mkd.app import create_app
from mkd.db import repository
from mkd.db.session import transaction
from mkd.services.context import Daemon
from mkd.testing import imagegen
from tests.conftest import MakeClient, MakeSettings
from tests.helpers import POOL, MiB, create, upload

POLL = {"status_poll_interval_s": 0.05}


def _tree(make_client: MakeClient, *, limits: dict[str, Any] | None = None, **faults: Any) -> TestClient:
    return make_client(simulator={"kernel_profile": "tree", "faults": faults}, daemon=POLL, limits=limits or {})


def _daemon(client: TestClient) -> Daemon:
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    return daemon


def _load_and_start(client: TestClient, name: str, cmdline: str = "console=mktty0") -> dict[str, Any]:
    create(client, name, cpus=[2], memory_bytes=128 * MiB)
    loaded = client.post(f"/v1/instances/{name}/load", json={"kernel": upload(client, imagegen.vmlinux()),
                                                             "cmdline": cmdline})
    assert loaded.status_code == 200, loaded.text
    started = client.post(f"/v1/instances/{name}/start")
    assert started.status_code == 200, started.text
    body: dict[str, Any] = started.json()
    return body


def _wait_for_state(client: TestClient, name: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20  # a generous bound: the poller runs every 50 ms
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/instances/{name}").json()
        if body["state"] == state:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{name} never became {state}: {body}")


def _state_events(daemon: Daemon, instance_id: int) -> list[dict[str, Any]]:
    with transaction(daemon.engine) as session:
        return [dict(e.data) for e in repository.events_after(session=session, after_id=0)
                if e.type == "state" and e.instance_id == instance_id]


def test_a_panic_is_seen_by_polling_as_a_kernel_state_event_with_the_console(make_client: MakeClient) -> None:
    client = _tree(make_client, instances={"web": {"after_start": "panic", "delay_s": 0.2}})
    web = _load_and_start(client, "web")
    assert web["state"] == "ACTIVE"
    loaded = _wait_for_state(client, "web", "LOADED")
    assert loaded["kernel_state"] == "loaded" and loaded["kimage"] is not None
    crash = _state_events(_daemon(client), web["id"])[-1]
    assert (crash["from"], crash["to"], crash["cause"]) == ("ACTIVE", "LOADED", "kernel")
    assert "Kernel panic - not syncing" in crash["console"]
    # The boot's file holds the boot log and the panic trace, in that order.
    daemon = _daemon(client)
    assert daemon.console is not None
    [boot] = daemon.console.boot_paths(web["id"])
    assert boot.parent == daemon.settings.daemon.state_dir / "console" / web["uid"]
    text = boot.read_text()
    assert text.index("multikernel: instance 1 (web) booting on mktty0") < text.index("Kernel panic")
    assert "Kernel command line: console=mktty0" in text
    assert daemon.console.tail(web["id"], 4096).endswith(text[-4096:])


def test_a_poweroff_is_loaded_by_the_kernel_and_a_start_begins_the_next_boot(make_client: MakeClient) -> None:
    client = _tree(make_client, instances={"web": {"after_start": "poweroff", "delay_s": 0.1}})
    web = _load_and_start(client, "web")
    _wait_for_state(client, "web", "LOADED")
    daemon = _daemon(client)
    assert daemon.console is not None
    assert "reboot: Power down" in daemon.console.tail(web["id"], 1 << 20)
    # A second and a third start: only the current and the previous boot are kept.
    for _ in range(2):
        assert client.post("/v1/instances/web/start").status_code == 200
        _wait_for_state(client, "web", "LOADED")
    boots = daemon.console.boot_paths(web["id"])
    # Named <boot>-<global offset of its first byte>: the second boot starts where the first ended.
    assert [p.name.split("-")[0] for p in boots] == ["2", "3"]
    second, third = boots
    assert int(third.stem.split("-")[1]) == int(second.stem.split("-")[1]) + second.stat().st_size
    assert all("booting on mktty0" in p.read_text() for p in boots)
    events = _state_events(daemon, web["id"])
    assert [e["cause"] for e in events if e["to"] == "LOADED" and e["from"] == "ACTIVE"] == ["kernel"] * 3


def test_a_requested_stop_is_not_a_kernel_event(make_client: MakeClient) -> None:
    client = _tree(make_client)
    web = _load_and_start(client, "web")
    assert client.post("/v1/instances/web/stop", json={"force": True}).json()["state"] == "LOADED"
    time.sleep(0.3)  # several polls: none may report the daemon's own stop
    causes = [(e["from"], e["to"], e["cause"]) for e in _state_events(_daemon(client), web["id"])]
    assert ("ACTIVE", "LOADED", "api") in causes and all(c != "kernel" for *_, c in causes)


def test_console_history_is_capped_the_oldest_bytes_go(make_client: MakeClient) -> None:
    client = _tree(make_client, limits={"console_history_bytes": 1024})
    web = _load_and_start(client, "web")
    daemon = _daemon(client)
    kernel = daemon.backend.io.kernel  # type: ignore[attr-defined]
    for line in range(100):
        kernel.spawn_print(web["id"], f"line {line:04d}\n".encode())
        if line % 10 == 9:
            assert daemon.console is not None
            daemon.console.drain()
    assert daemon.console is not None
    [boot] = daemon.console.boot_paths(web["id"])
    assert len(boot.read_bytes()) <= 1024 + 1024 // 4  # trimmed once past the cap and a slack
    history = client.get("/v1/instances/web/console", params={"follow": "false"})
    assert history.status_code == 200 and history.headers["content-type"].startswith("text/plain")
    assert len(history.content) == 1024 and history.text.endswith("line 0099\n")
    assert "booting on mktty0" not in history.text  # the banner was the oldest


def test_deleting_an_instance_drops_its_console_history(make_client: MakeClient) -> None:
    client = _tree(make_client)
    web = _load_and_start(client, "web")
    daemon = _daemon(client)
    assert daemon.console is not None and daemon.console.attached() == [web["id"]]
    client.post("/v1/instances/web/stop", json={"force": True})
    client.post("/v1/instances/web/unload")
    assert client.delete("/v1/instances/web").status_code == 204
    assert daemon.console.attached() == [] and daemon.console.tail(web["id"], 100) == ""
    assert not (daemon.settings.daemon.state_dir / "console" / web["uid"]).exists()


def test_a_restarted_daemon_reattaches_to_running_instances(make_settings: MakeSettings) -> None:
    settings = make_settings(simulator={"kernel_profile": "tree"}, daemon=POLL)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.put("/v1/pool", json=POOL).status_code == 201
        web = _load_and_start(client, "web")
    with TestClient(create_app(settings), raise_server_exceptions=False) as again:
        daemon = _daemon(again)
        assert daemon.console is not None and daemon.console.attached() == [web["id"]]
        kernel = daemon.backend.io.kernel  # type: ignore[attr-defined]
        kernel.spawn_print(web["id"], b"after the restart\n")
        text = daemon.console.tail(web["id"], 1 << 20)
        assert "booting on mktty0" in text and text.endswith("after the restart\n")  # the same boot's file


def test_rfc_v2_has_no_console(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "rfc-v2"})
    capabilities = client.get("/v1/host").json()["capabilities"]
    assert capabilities["console"] is False and capabilities["hotplug_active"] is False
    assert _daemon(client).console is None
