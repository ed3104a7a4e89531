"""Kernel refusals the simulator models, seen through the API: the rfc-v2 bug-compatible dangling
kimage is FAILED (DESIGN "States"), and EPERM (no CAP_SYS_BOOT, lockdown) is 403 (DESIGN "Errors")."""

from __future__ import annotations

import errno

import pytest
from fastapi.testclient import TestClient

from mkd.app import create_app
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.errors import KernelError
from mkd.kexec.flags import load_flags
from mkd.testing import imagegen
from tests.conftest import MakeClient, MakeSettings
from tests.helpers import POOL, assert_problem, create, upload


def test_the_bug_compatible_dangling_kimage_is_failed(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "rfc-v2", "bug_compat": True})
    create(client, "web", cpus=[2])
    garbage = upload(client, b"\x01" * 1023)
    assert_problem(client.post("/v1/instances/web/load", json={"kernel": garbage}), 422, "ENOEXEC")
    shown = client.get("/v1/instances/web").json()
    assert (shown["state"], shown["kernel_state"]) == ("FAILED", "loading"), shown
    assert "dangling" in shown["failure"], shown
    assert shown["kimage"] is None
    # The kernel's rules from FAILED: a load is EBUSY (the dangling pointer). An unload would only
    # free the single `kexec_image` slot (spec 2.5): this kernel does not list per-instance unload,
    # so the daemon does not offer it (409 EOPNOTSUPP), and the instance stays FAILED.
    vmlinux = upload(client, imagegen.vmlinux())
    assert_problem(client.post("/v1/instances/web/load", json={"kernel": vmlinux}), 409, "EBUSY")
    assert_problem(client.post("/v1/instances/web/unload"), 409, "EOPNOTSUPP")
    assert client.get("/v1/instances/web").json()["state"] == "FAILED"
    assert_problem(client.delete("/v1/instances/web"), 409, "EBUSY")


def test_without_bug_compat_a_failed_load_is_ready_again(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "rfc-v2"})
    create(client, "web", cpus=[2])
    garbage = upload(client, b"\x01" * 1023)
    assert_problem(client.post("/v1/instances/web/load", json={"kernel": garbage}), 422, "ENOEXEC")
    shown = client.get("/v1/instances/web").json()
    assert (shown["state"], shown["kernel_state"], shown["failure"]) == ("READY", "ready", None), shown


def test_no_cap_sys_boot_is_403(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree", "cap_sys_boot": False})
    create(client, "web", cpus=[2])
    vmlinux = upload(client, imagegen.vmlinux())
    body = assert_problem(client.post("/v1/instances/web/load", json={"kernel": vmlinux}), 403, "EPERM")
    assert "CAP_SYS_BOOT" in body["detail"]
    assert client.get("/v1/instances/web").json()["state"] == "READY"


def test_lockdown_refuses_an_unsigned_kernel_with_403(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree", "lockdown": "integrity"})
    create(client, "web", cpus=[2])
    vmlinux = upload(client, imagegen.vmlinux())
    body = assert_problem(client.post("/v1/instances/web/load", json={"kernel": vmlinux}), 403, "EPERM")
    assert "locked down" in body["detail"]
    assert client.get("/v1/instances/web").json()["state"] == "READY"


def test_reconcile_finds_a_dangling_kimage_failed(make_settings: MakeSettings) -> None:
    """Another loader (kerf) failed a load behind the daemon's back: at start-up the instance the
    daemon recorded READY is FAILED, with the kernel's reason (spec 2.3 note, DESIGN "States")."""
    settings = make_settings(simulator={"kernel_profile": "rfc-v2", "bug_compat": True})
    with TestClient(create_app(settings)) as client:
        assert client.put("/v1/pool", json=POOL).status_code == 201
        web = create(client, "web", cpus=[2])
    kernel = SimulatedKernel(settings.simulator, settings.simulator_state_path)
    try:
        with pytest.raises(KernelError) as refused:
            kernel.kexec_file_load(None, None, None, load_flags(web["id"], has_initrd=False))
        assert refused.value.errno_code == errno.EBADF
    finally:
        kernel.close()
    with TestClient(create_app(settings)) as client:
        shown = client.get("/v1/instances/web").json()
        assert (shown["state"], shown["kernel_state"]) == ("FAILED", "loading"), shown
        assert "dangling" in shown["failure"], shown
