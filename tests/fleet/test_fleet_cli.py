"""`mkd fleet ...` against a daemon in a fleet (a private 3-member etcd): apply with a local kernel,
get, nodes, drain refused for what cannot move (exit 4), uncordon, delete."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from mkd.cli.main import app
from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from mkd.testing.etcd_cluster import EtcdCluster
from tests.fleet.nodes import node_config, wait_until
from tests.helpers import POOL

DOC = ("apiVersion: mkd.dev/v1\nkind: Instance\nmetadata: {name: cweb, labels: {app: cli}}\n"
       "spec:\n  kernel: vmlinux\n  nodeSelector: {zone: z1}\n"
       "  resources: {cpu_count: 1, memory_bytes: 134217728}\n")

RunCli = Callable[..., Result]


@pytest.fixture
def mkd(etcd_cluster: EtcdCluster, fleet_prefix: str, tmp_path: Path) -> Iterator[RunCli]:
    config = tmp_path / "node.toml"
    daemon = DaemonProcess(tmp_path / "node", config=config)
    config.write_text(node_config(etcd_cluster, node="cli-node", url=daemon.url, prefix=fleet_prefix,
                                  labels={"zone": "z1"}))
    with daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        runner = CliRunner(env={k: None for k in os.environ if k.startswith("MKD_")})
        yield lambda *args: runner.invoke(app, ["--url", daemon.url, *args])


def test_fleet_commands_through_a_fleet_node(mkd: RunCli, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "vmlinux").write_bytes(imagegen.vmlinux())
    (tmp_path / "docs" / "cweb.yaml").write_text(DOC)
    applied = mkd("fleet", "apply", "-f", str(tmp_path / "docs"), "--no-progress")
    assert applied.exit_code == 0 and applied.output == "+ created cweb\n", applied.output
    again = mkd("fleet", "apply", "-f", str(tmp_path / "docs" / "cweb.yaml"), "--no-progress")
    assert again.exit_code == 0 and again.output == "~ applied cweb\n", again.output

    def running() -> dict[str, Any] | None:
        document: dict[str, Any] = yaml.safe_load(mkd("fleet", "get", "cweb", "-o", "yaml").output)
        return document if document["status"]["phase"] == "Running" else None

    document = wait_until("cweb Running", running)
    assert document["status"]["node"] == "cli-node" and len(document["spec"]["kernel"]) == 64
    listed = json.loads(mkd("fleet", "get", "-o", "json").output)
    assert [d["metadata"]["name"] for d in listed["items"]] == ["cweb"]
    table = mkd("fleet", "get").output.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "NODE", "KERNEL", "REASON"]
    assert table[-1].split()[:3] == ["cweb", "Running", "cli-node"]
    nodes = mkd("fleet", "nodes").output.splitlines()
    assert nodes[-1].split()[:3] == ["cli-node", "Ready", "tree"] and "zone=z1" in nodes[-1]

    refused = mkd("fleet", "drain", "cli-node")
    assert refused.exit_code == 4 and "cweb" in refused.output, refused.output
    assert "Ready,Cordoned" in mkd("fleet", "nodes").output
    uncordoned = mkd("fleet", "uncordon", "cli-node", "-o", "json")
    assert uncordoned.exit_code == 0 and json.loads(uncordoned.output)["cordoned"] is False

    deleted = mkd("fleet", "delete", "cweb", "-o", "json")
    assert deleted.exit_code == 0 and json.loads(deleted.output)["metadata"]["name"] == "cweb"
    gone = wait_until("cweb gone", lambda: (r := mkd("fleet", "get", "cweb")).exit_code == 3 and r)
    assert "no fleet instance" in gone.output
