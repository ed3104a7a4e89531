"""`mkd fleet ...` against a daemon without `[fleet]` (DESIGN "Fleet", CLI): every command exits 3
with the problem's detail; documents the fleet cannot take are refused before any call; `apply`
uploads local kernels to the node it talks to before it PUTs (the with-fleet run is
tests/fleet/test_fleet_cli.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mkd.cli.main import app
from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess, free_port
from tests.cli.conftest import RunCli

FLEET_DOC = ("apiVersion: mkd.dev/v1\nkind: Instance\nmetadata: {{name: fweb}}\n"
             "spec:\n  kernel: {kernel}\n  reschedule: OnNodeLoss\n"
             "  resources: {{cpu_count: 1, memory_bytes: 134217728}}\n")


@pytest.mark.parametrize("args", [("nodes",), ("get",), ("get", "fweb"), ("delete", "fweb"), ("drain", "node-a"),
                                  ("uncordon", "node-a"), ("get", "-o", "json")])
def test_without_fleet_every_command_exits_3_with_the_detail(cli: RunCli, args: tuple[str, ...]) -> None:
    done = cli("fleet", *args)
    assert done.exit_code == 3, done.output
    assert "404 Fleet not configured" in done.output and "[fleet]" in done.output


def test_apply_uploads_the_local_kernel_to_the_node_first(cli: RunCli, daemon: DaemonProcess, tmp_path: Path) -> None:
    kernel = imagegen.vmlinux(mk_entry=0x1000040)
    (tmp_path / "vmlinux").write_bytes(kernel)
    (tmp_path / "fweb.yaml").write_text(FLEET_DOC.format(kernel="vmlinux"))
    done = cli("fleet", "apply", "-f", str(tmp_path), "--no-progress")
    assert done.exit_code == 3 and "Fleet not configured" in done.output, done.output
    sha = hashlib.sha256(kernel).hexdigest()
    stored = httpx.get(f"{daemon.url}/v1/images/{sha}/content")  # uploaded before the PUT was refused
    assert stored.status_code == 200 and stored.content == kernel
    assert httpx.delete(f"{daemon.url}/v1/images/{sha}").status_code == 204


@pytest.mark.parametrize(("text", "says"), [
    ("apiVersion: mkd.dev/v1\nkind: Pool\nspec: {cpus: [2], memory_bytes: 1}\n", "a Pool belongs to one node"),
    (FLEET_DOC.format(kernel="no-such-file"), "neither a sha256 nor a file"),
    ("kind: [unclosed\n", "not a readable document"),
    ("apiVersion: v1\nkind: ConfigMap\n", "kind Instance or Pool"),
])
def test_documents_the_fleet_cannot_take_exit_5_before_any_call(cli: RunCli, tmp_path: Path, text: str,
                                                                says: str) -> None:
    (tmp_path / "doc.yaml").write_text(text)
    done = cli("fleet", "apply", "-f", str(tmp_path / "doc.yaml"), "--no-progress")
    assert done.exit_code == 5, done.output
    assert says in done.output


def test_an_unreachable_daemon_exits_7() -> None:
    done = CliRunner().invoke(app, ["--url", f"http://127.0.0.1:{free_port()}", "fleet", "nodes"])
    assert done.exit_code == 7 and "cannot reach mkd" in done.output
