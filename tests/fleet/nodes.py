"""What the fleet tests that run real `mkd serve` nodes share: a node's configuration on the test
etcd cluster, starting nodes with the pool (and the test kernel) in place, an Instance document,
and waiting for what the fleet does on its own time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from mkd.testing.etcd_cluster import EtcdCluster
from tests.helpers import POOL, MiB

_CONFIG = """
[simulator]
kernel_profile = "tree"
halt_ack_timeout_s = 0.5
[reconciler]
poll_interval_s = 0.1
[fleet]
endpoints = {endpoints}
node = "{node}"
advertise_url = "{url}"
prefix = "{prefix}"
lease_ttl_s = 2
"""


def node_config(cluster: EtcdCluster, *, node: str, url: str, prefix: str, labels: dict[str, str] | None = None,
                peer_token: Path | None = None) -> str:
    endpoints = "[" + ", ".join(f'"{e}"' for e in cluster.endpoints) + "]"
    text = _CONFIG.format(endpoints=endpoints, node=node, url=url, prefix=prefix)
    if labels:
        text += "labels = { " + ", ".join(f'{k} = "{v}"' for k, v in labels.items()) + " }\n"
    if peer_token is not None:
        text += f'peer_token_file = "{peer_token}"\n'
    return text


@contextmanager
def running_nodes(cluster: EtcdCluster, prefix: str, root: Path, labels: dict[str, dict[str, str]], *,
                  upload_kernel: bool = True, peer_token: Path | None = None) -> Iterator[list[DaemonProcess]]:
    """One daemon per node name (with its labels), each with the test pool and, unless told
    otherwise, the test kernel; all stopped on the way out."""
    daemons: list[DaemonProcess] = []
    try:
        for node, node_labels in labels.items():
            config = root / f"{node}.toml"
            daemon = DaemonProcess(root / node, config=config)
            config.write_text(node_config(cluster, node=node, url=daemon.url, prefix=prefix, labels=node_labels,
                                          peer_token=peer_token))
            daemons.append(daemon.start())
        kernel = imagegen.vmlinux()
        for daemon in daemons:
            with daemon.client() as http:
                assert http.put("/v1/pool", json=POOL).status_code == 201
                if upload_kernel:
                    assert http.post("/v1/images", content=kernel).status_code in (200, 201)
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


def instance_document(name: str, kernel: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": name},
            "spec": {"resources": {"cpu_count": 2, "memory_bytes": 128 * MiB}, "kernel": kernel, **spec}}


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
