"""A restarted daemon finds its records, images and the simulated kernel as it left them."""

from __future__ import annotations

from pathlib import Path

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.helpers import POOL, MiB


def test_restart_keeps_instances_images_states_and_allocations(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with DaemonProcess(state) as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        kernel = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        for name, cpus in (("web", [2, 3]), ("db", [4])):
            body = {"name": name, "resources": {"cpus": cpus, "memory_bytes": 256 * MiB}}
            reply = http.post("/v1/instances", json=body)
            assert reply.status_code == 201, reply.text
        loaded = http.post("/v1/instances/web/load", json={"kernel": kernel, "cmdline": "quiet"})
        assert loaded.status_code == 200, loaded.text
        assert http.post("/v1/instances/web/start").status_code == 200
        before = {i["name"]: i for i in http.get("/v1/instances").json()["items"]}
        pool_before = http.get("/v1/pool").json()
        images_before = http.get("/v1/images").json()
    with DaemonProcess(state) as daemon, daemon.client() as http:
        after = {i["name"]: i for i in http.get("/v1/instances").json()["items"]}
        assert after == before
        assert after["web"]["state"] == "ACTIVE"
        assert after["web"]["kimage"]["segments"] == loaded.json()["kimage"]["segments"]
        assert http.get("/v1/pool").json() == pool_before
        assert http.get("/v1/images").json() == images_before
        # The kernel still holds the kimage: a second load is the kernel's EBUSY.
        again = http.post("/v1/instances/web/load", json={"kernel": kernel})
        assert again.status_code == 409 and again.json()["errno"] == "EBUSY"


def test_sigkill_then_restart_reconciles(tmp_path: Path) -> None:
    state = tmp_path / "state"
    daemon = DaemonProcess(state).start()
    with daemon.client() as http:
        http.put("/v1/pool", json=POOL)
        http.post("/v1/instances", json={"name": "web", "resources": {"cpus": [2], "memory_bytes": 64 * MiB}})
    daemon.kill()
    with DaemonProcess(state) as again, again.client() as http:
        assert http.get("/readyz").json() == {"status": "ready"}
        assert http.get("/v1/instances/web").json()["state"] == "READY"
