"""The client commands through typer's CliRunner, against a real daemon process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from mkd.cli.main import app
from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess, free_port
from tests.cli.conftest import RunCli
from tests.helpers import POOL, MiB


def output(result: Result) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def refused(result: Result, code: int, *fragments: str) -> str:
    """The command failed with `code`, a one-line reason on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    assert result.stderr.startswith("mkd: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


@pytest.fixture
def kernel_file(tmp_path: Path) -> Path:
    path = tmp_path / "vmlinux"
    path.write_bytes(imagegen.vmlinux())
    return path


@pytest.fixture(autouse=True)
def no_instances_left(daemon: DaemonProcess) -> Any:
    yield
    with daemon.client() as http:
        for item in http.get("/v1/instances").json()["items"]:
            if item["kimage"] is not None:
                http.post(f"/v1/instances/{item['id']}/unload", json={"force": True})
            assert http.delete(f"/v1/instances/{item['id']}").status_code == 204


def test_pool_get_and_put(cli: RunCli) -> None:
    pool = output(cli("pool", "get", "-o", "json"))
    assert pool["cpus"] == POOL["cpus"] and pool["memory_bytes"] == POOL["memory_bytes"]
    assert pool["free"]["memory_bytes"] == POOL["memory_bytes"]
    cpus = ",".join(str(c) for c in POOL["cpus"])
    same = output(cli("pool", "put", "--cpus", cpus, "--memory-base", hex(POOL["memory_base"]),
                      "--memory-bytes", str(POOL["memory_bytes"]), "-o", "json"))
    assert same["changed"] is False
    dry = output(cli("pool", "put", "--cpus", cpus, "--memory-base", hex(POOL["memory_base"]),
                     "--memory-bytes", str(2 * POOL["memory_bytes"] // 4), "--dry-run", "-o", "json"))
    assert dry["changed"] is True
    assert output(cli("pool", "get", "-o", "json"))["memory_bytes"] == POOL["memory_bytes"]  # a dry run stores nothing


def test_instance_lifecycle_with_a_kernel_file_uploaded_first(cli: RunCli, kernel_file: Path) -> None:
    created = output(cli("instances", "create", "web", "--cpus", "2,3", "--memory-bytes", str(256 * MiB), "-o", "json"))
    assert created["state"] == "READY" and created["resources"]["cpus"] == [2, 3]
    listed = output(cli("instances", "list", "-o", "json"))
    assert [i["name"] for i in listed] == ["web"]
    assert output(cli("instances", "list", "--state", "loaded", "-o", "json")) == []
    assert output(cli("instances", "get", str(created["id"]), "-o", "json"))["name"] == "web"

    loaded = output(cli("instances", "load", "web", "--kernel", str(kernel_file), "--cmdline", "quiet", "-o", "json"))
    assert loaded["state"] == "LOADED" and loaded["kimage"]["cmdline"] == "quiet"
    stored = output(cli("images", "list", "-o", "json"))
    assert [i["sha256"] for i in stored] == [loaded["kimage"]["kernel"]]  # the file went to the store first
    # A hash loads as well as a file.
    assert output(cli("instances", "list", "--state", "LOADED", "-o", "json"))[0]["name"] == "web"

    assert output(cli("instances", "start", "web", "-o", "json"))["state"] == "ACTIVE"
    refused(cli("instances", "unload", "web"), 4, "EBUSY")  # ACTIVE needs --force
    assert output(cli("instances", "unload", "web", "--force", "-o", "json"))["state"] == "READY"
    deleted = cli("instances", "delete", "web")
    assert deleted.exit_code == 0 and deleted.stdout == ""
    refused(cli("instances", "get", "web"), 3, "ENOENT")


def test_load_by_hash_and_initrd(cli: RunCli, kernel_file: Path, tmp_path: Path) -> None:
    initrd = tmp_path / "initrd.gz"
    initrd.write_bytes(imagegen.initrd("gzip", size=256 * 1024))
    kernel_sha = output(cli("images", "upload", str(kernel_file), "-o", "json"))["sha256"]
    output(cli("instances", "create", "db", "--cpu-count", "1", "--memory-bytes", str(256 * MiB), "-o", "json"))
    loaded = output(cli("instances", "load", "db", "--kernel", kernel_sha, "--initrd", str(initrd), "-o", "json"))
    assert loaded["kimage"]["kernel"] == kernel_sha
    assert "initrd" in [s["kind"] for s in loaded["kimage"]["segments"]]
    assert output(cli("instances", "unload", "db", "-o", "json"))["kimage"] is None


def test_images_upload_list_delete(cli: RunCli, tmp_path: Path, kernel_file: Path) -> None:
    uploaded = output(cli("images", "upload", str(kernel_file), "-o", "json"))
    assert uploaded["format"] == "elf" and uploaded["size"] == kernel_file.stat().st_size
    assert uploaded["sha256"] in [i["sha256"] for i in output(cli("images", "list", "-o", "json"))]
    # In use by a kimage: a conflict.
    output(cli("instances", "create", "web", "--cpus", "4", "--memory-bytes", str(256 * MiB), "-o", "json"))
    output(cli("instances", "load", "web", "--kernel", uploaded["sha256"], "-o", "json"))
    refused(cli("images", "delete", uploaded["sha256"]), 4, "EBUSY")
    output(cli("instances", "unload", "web", "-o", "json"))
    assert cli("images", "delete", uploaded["sha256"]).exit_code == 0
    assert uploaded["sha256"] not in [i["sha256"] for i in output(cli("images", "list", "-o", "json"))]
    refused(cli("images", "delete", uploaded["sha256"]), 3)


def test_host_shows_backend_profile_and_capabilities(cli: RunCli) -> None:
    host = output(cli("host", "-o", "json"))
    assert host["backend"] == "simulated" and host["kernel_profile"] == "rfc-v2"
    assert host["capabilities"]["halt"] is False
    assert len(host["topology"]["cpus"]) == 16


def test_events_replay_prints_json_lines(cli: RunCli, daemon: DaemonProcess) -> None:
    # Four events of its own at least (the shared daemon may have served no other test yet): a replay
    # of four from the start never waits for live ones.
    for name in ("ev", "ev2"):
        output(cli("instances", "create", name, "--cpus", "5", "--memory-bytes", str(64 * MiB), "-o", "json"))
        with daemon.client() as http:
            assert http.delete(f"/v1/instances/{name}").status_code == 204
    result = cli("events", "--last-event-id", "0", "--count", "4", "-o", "json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4
    ids = [line["id"] for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == 4 and ids[0] >= 1
    assert all(line["event"] in ("created", "deleted", "state", "refused", "reconciled") for line in lines)
    assert all(isinstance(line["data"], dict) for line in lines)


def test_exit_3_for_an_unknown_instance(cli: RunCli) -> None:
    refused(cli("instances", "get", "nosuch"), 3, "404", "ENOENT")
    refused(cli("instances", "get", "2047"), 3, "ENOENT")
    refused(cli("instances", "delete", "nosuch"), 3)
    refused(cli("instances", "start", "nosuch"), 3)


def test_exit_4_for_a_second_load_and_for_an_if_match_mismatch(cli: RunCli, kernel_file: Path) -> None:
    output(cli("instances", "create", "web", "--cpus", "6", "--memory-bytes", str(256 * MiB), "-o", "json"))
    output(cli("instances", "load", "web", "--kernel", str(kernel_file), "-o", "json"))
    refused(cli("instances", "load", "web", "--kernel", str(kernel_file)), 4, "409", "EBUSY")
    refused(cli("instances", "create", "web", "--cpus", "7", "--memory-bytes", str(MiB)), 4, "EEXIST")
    output(cli("instances", "unload", "web", "-o", "json"))
    refused(cli("instances", "delete", "web", "--if-match", '"not-the-etag"'), 4, "412")
    # The refused delete changed nothing.
    assert output(cli("instances", "get", "web", "-o", "json"))["state"] == "READY"
    etag = cli("instances", "get", "web", "--etag").stdout.strip()
    assert etag.startswith('"') and etag.endswith('"')
    assert cli("instances", "delete", "web", "--if-match", etag).exit_code == 0


@pytest.mark.parametrize("args", [
    ("instances", "create", "bad name!", "--memory-bytes", "1"),   # 422 from the daemon: body schema
    ("instances", "get", "0"),                                     # 422 EINVAL: id outside 1..2047
    ("instances", "get", "2049"),
    ("instances", "list", "--state", "sleeping"),
    ("instances", "load", "web", "--kernel", "no/such/vmlinux"),    # neither a file nor a hash
    ("instances", "create", "web", "--cpus", "two,three", "--memory-bytes", "1"),  # refused before any call
    ("pool", "put", "--cpus", "2", "--memory-base", "zero", "--memory-bytes", "1"),
    ("instances", "create"),                                       # neither NAME nor --from
    ("instances", "create", "web", "--cpus", "2"),                 # no --memory-bytes: memory is required
])
def test_exit_5_for_invalid_input(cli: RunCli, args: tuple[str, ...]) -> None:
    refused(cli(*args), 5)


def test_exit_5_for_a_file_that_cannot_be_read(cli: RunCli, tmp_path: Path) -> None:
    refused(cli("images", "upload", str(tmp_path / "absent")), 5, "absent")
    refused(cli("instances", "create", "--from", str(tmp_path / "absent.dts")), 5, "absent.dts")


def test_exit_7_when_the_daemon_is_unreachable() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    runner = CliRunner()
    for args in (("host",), ("instances", "list"), ("pool", "get"), ("events", "--count", "1")):
        refused(runner.invoke(app, ["--url", closed, *args]), 7, "cannot reach mkd", closed)


def test_images_prune_keeps_what_kimages_use(cli: RunCli, tmp_path: Path, kernel_file: Path) -> None:
    used = output(cli("images", "upload", str(kernel_file), "-o", "json"))["sha256"]
    spare_file = tmp_path / "spare.img"
    spare_file.write_bytes(imagegen.initrd("gzip", size=8192))
    spare = output(cli("images", "upload", str(spare_file), "-o", "json"))["sha256"]
    output(cli("instances", "create", "web", "--cpus", "4", "--memory", "256M", "-o", "json"))
    output(cli("instances", "load", "web", "--kernel", used, "-o", "json"))
    removed = output(cli("images", "prune", "-o", "json"))["removed"]  # the daemon is shared: others go too
    assert spare in removed and used not in removed
    table = cli("images", "prune")
    assert table.exit_code == 0 and "REMOVED" in table.output and spare[:12] not in table.output
    assert [i["sha256"] for i in output(cli("images", "list", "-o", "json"))] == [used]
