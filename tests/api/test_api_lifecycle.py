"""Load, unload, start, stop over HTTP, against the simulated kernel."""

from __future__ import annotations

from fastapi.testclient import TestClient

from mkd.testing import imagegen
from tests.conftest import RFC_V2, MakeClient
from tests.helpers import MiB, assert_problem, create, upload


def test_load_places_every_segment_inside_the_instance_pool(v2_client: TestClient) -> None:
    client = v2_client  # about rfc-v2 (the default is tree)
    web = create(client, "web", cpus=[2, 3], memory_bytes=256 * MiB)
    kernel = upload(client, imagegen.vmlinux())
    initrd = upload(client, imagegen.initrd("gzip", size=1 * MiB))
    reply = client.post("/v1/instances/web/load", json={"kernel": kernel, "initrd": initrd, "cmdline": "console=ttyS0"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["state"] == "LOADED" and body["kernel_state"] == "loading"  # rfc-v2 reports loading
    segments = body["kimage"]["segments"]
    # rfc-v2 keeps mainline's IMA buffer segment and takes control and swap pages from the pool.
    assert [s["kind"] for s in segments] == ["ima", "boot_params", "kernel", "initrd", "control", "swap"]
    chunks = [(c["base"], c["base"] + c["bytes"]) for c in web["memory"]]
    for seg in segments:
        assert any(lo <= seg["mem"] and seg["mem"] + seg["memsz"] <= hi for lo, hi in chunks), seg
        assert len(seg["sha256"]) == 64
    kern = segments[2]
    assert kern["memsz"] == 0x1A00000 and kern["mem"] % 0x200000 == 0
    assert body["kimage"]["cmdline"] == "console=ttyS0"


def test_second_load_is_ebusy_and_unload_frees(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    kernel = upload(client, imagegen.vmlinux())
    assert client.post("/v1/instances/web/load", json={"kernel": kernel}).status_code == 200
    assert_problem(client.post("/v1/instances/web/load", json={"kernel": kernel}), 409, "EBUSY")
    assert_problem(client.delete("/v1/instances/web"), 409, "EBUSY")
    assert_problem(client.delete(f"/v1/images/{kernel}"), 409, "EBUSY")
    reply = client.post("/v1/instances/web/unload")
    assert reply.status_code == 200 and reply.json()["state"] == "READY" and reply.json()["kimage"] is None
    assert_problem(client.post("/v1/instances/web/unload"), 404, "ENOENT")
    assert client.delete(f"/v1/images/{kernel}").status_code == 204


def test_unrecognised_image_is_enoexec_and_leaves_ready(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    junk = upload(client, b"\x00" * 1023)
    assert_problem(client.post("/v1/instances/web/load", json={"kernel": junk}), 422, "ENOEXEC")
    web = client.get("/v1/instances/web").json()
    assert web["state"] == "READY" and web["kimage"] is None


def test_bzimage_command_line_limit_is_einval(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    kernel = upload(client, imagegen.bzimage())
    # spec 2.7.6 L10: cmdline_len (with its NUL) + 30 must fit in cmdline_size 2047.
    assert_problem(client.post("/v1/instances/web/load", json={"kernel": kernel, "cmdline": "x" * 2017}), 422, "EINVAL")
    assert client.post("/v1/instances/web/load", json={"kernel": kernel, "cmdline": "x" * 2016}).status_code == 200


def test_unknown_or_pathlike_image_refs_are_422(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    assert_problem(client.post("/v1/instances/web/load", json={"kernel": "0" * 64}), 422, "ENOENT")
    assert_problem(client.post("/v1/instances/web/load", json={"kernel": "../../etc/passwd"}), 422)
    assert_problem(client.post("/v1/instances/nosuch/load", json={"kernel": "0" * 64}), 404, "ENOENT")
    assert_problem(client.post("/v1/instances/0/load", json={"kernel": "0" * 64}), 422, "EINVAL")


def test_strict_isolation_refuses_a_segment_outside_the_pool(client: TestClient) -> None:
    create(client, "tiny", cpus=[2], memory_bytes=4 * MiB)
    kernel = upload(client, imagegen.vmlinux())
    body = assert_problem(client.post("/v1/instances/tiny/load", json={"kernel": kernel}), 409, "ENOMEM")
    assert body["type"].endswith("/strict-isolation") and "kernel" in body["detail"]
    assert client.get("/v1/instances/tiny").json()["state"] == "READY"


def test_without_strict_isolation_rfc_v2_falls_back_to_system_ram(make_client: MakeClient) -> None:
    client = make_client(simulator=RFC_V2, daemon={"strict_isolation": False})
    create(client, "tiny", cpus=[2], memory_bytes=4 * MiB)
    kernel = upload(client, imagegen.vmlinux())
    reply = client.post("/v1/instances/tiny/load", json={"kernel": kernel})
    assert reply.status_code == 200, reply.text
    placed = {s["kind"]: s for s in reply.json()["kimage"]["segments"]}
    assert placed["kernel"]["in_pool"] is False and placed["kernel"]["mem"] == 0x200000
    assert all(s["in_pool"] for kind, s in placed.items() if kind != "kernel")


def test_start_and_stop_rfc_v2(v2_client: TestClient) -> None:
    client = v2_client  # about rfc-v2 (the default is tree)
    create(client, "web", cpus=[2])
    assert_problem(client.post("/v1/instances/web/start"), 422, "EINVAL")
    kernel = upload(client, imagegen.vmlinux())
    client.post("/v1/instances/web/load", json={"kernel": kernel})
    reply = client.post("/v1/instances/web/start")
    assert reply.status_code == 200 and reply.json()["state"] == "ACTIVE", reply.text
    assert_problem(client.post("/v1/instances/web/start"), 409, "EBUSY")
    body = assert_problem(client.post("/v1/instances/web/stop"), 422, "EINVAL")
    assert "rfc-v2 has no halt" in body["detail"]
    assert_problem(client.post("/v1/instances/web/unload"), 409, "EBUSY")
    assert client.post("/v1/instances/web/unload", json={"force": True}).json()["state"] == "READY"


def test_tree_profile_start_stop_cycle(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree"})
    create(client, "web", cpus=[2, 3])
    kernel = upload(client, imagegen.vmlinux())
    loaded = client.post("/v1/instances/web/load", json={"kernel": kernel}).json()
    assert loaded["state"] == "LOADED" and loaded["kernel_state"] == "loaded"
    assert client.post("/v1/instances/web/start").json()["kernel_state"] == "active"
    assert client.post("/v1/instances/web/stop").json()["state"] == "LOADED"
    assert_problem(client.post("/v1/instances/web/stop"), 422, "EINVAL")
    assert client.post("/v1/instances/web/stop", json={"force": True}).json()["state"] == "LOADED"


def test_tree_bzimage_loads_but_cannot_start(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree"})
    create(client, "web", cpus=[2])
    kernel = upload(client, imagegen.bzimage())
    assert client.post("/v1/instances/web/load", json={"kernel": kernel}).status_code == 200
    assert_problem(client.post("/v1/instances/web/start"), 422, "EINVAL")
    assert client.get("/v1/instances/web").json()["state"] == "LOADED"


def test_if_match_mismatch_is_412_and_changes_nothing(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    etag = client.get("/v1/instances/web").headers["ETag"]
    kernel = upload(client, imagegen.vmlinux())
    assert_problem(client.post("/v1/instances/web/load", json={"kernel": kernel}, headers={"If-Match": '"nope"'}), 412)
    ok = client.post("/v1/instances/web/load", json={"kernel": kernel}, headers={"If-Match": etag})
    assert ok.status_code == 200 and ok.headers["ETag"] != etag


def test_command_line_cap_is_64_kib_of_bytes(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    kernel = upload(client, imagegen.vmlinux())  # the vmlinux loader has no limit of its own
    body = assert_problem(client.post("/v1/instances/web/load", json={"kernel": kernel, "cmdline": "é" * 40000}),
                          422, "EINVAL")
    assert "65536" in body["detail"]
    assert client.get("/v1/instances/web").json()["state"] == "READY"
    ok = client.post("/v1/instances/web/load", json={"kernel": kernel, "cmdline": "x" * 65535})
    assert ok.status_code == 200, ok.text


def test_action_bodies_take_only_real_booleans(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    for force in ("yes", 1, "true", None):
        body = assert_problem(client.post("/v1/instances/web/unload", json={"force": force}), 422)
        assert "force" in body["detail"], body
