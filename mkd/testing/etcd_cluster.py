"""A private etcd cluster (Debian's etcd-server, 3.4) on free loopback ports, for tests and benches.

Tuned for a test machine, not for durability: short heartbeats and elections so a cluster
forms (and a new leader is elected) in well under a second, and no fsync.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from mkd.testing.daemon_process import free_port

ETCD = "/usr/bin/etcd"


class EtcdMember:
    def __init__(self, name: str, data_dir: Path) -> None:
        self.name = name
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.client_url = f"http://127.0.0.1:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{name}.log"

    def start(self, initial_cluster: str, token: str) -> None:
        cmd = [
            ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-token", token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "20", "--election-timeout", "200",
            "--unsafe-no-fsync", "--snapshot-count", "100000", "--log-level", "error",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class EtcdCluster:
    """`size` members on loopback in `root`; `endpoints` are their client URLs."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        self.members = [EtcdMember(f"m{i}", root / f"m{i}.etcd") for i in range(size)]

    @property
    def endpoints(self) -> list[str]:
        return [member.client_url for member in self.members]

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        if not Path(ETCD).exists():
            raise RuntimeError(f"{ETCD} is missing: install Debian's etcd-server (make system-deps)")
        self.root.mkdir(parents=True, exist_ok=True)
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            member.start(initial, self._token)
        deadline = time.monotonic() + timeout
        for member in self.members:
            while True:
                if member.proc is not None and member.proc.poll() is not None:
                    raise RuntimeError(f"etcd {member.name} exited: {member.log.read_text()[-2000:]}")
                try:
                    answer = httpx.get(member.client_url + "/health", timeout=1.0)
                    if answer.status_code == 200 and answer.json().get("health") == "true":
                        break
                except (httpx.TransportError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd {member.name} not healthy: {member.log.read_text()[-2000:]}")
                time.sleep(0.05)
        return self

    def wipe(self) -> None:
        """Delete every key (tests share one cluster and start from an empty keyspace)."""
        httpx.post(self.endpoints[0] + "/v3/kv/deleterange", json={"key": "AA==", "range_end": "AA=="},
                   timeout=10.0).raise_for_status()

    def stop(self) -> None:
        for member in self.members:
            member.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def stop_member(self, index: int) -> None:
        """Stop one member (SIGTERM), keeping its data, as a host or process going away."""
        self.members[index].stop()

    def start_member(self, index: int, timeout: float = 30.0) -> None:
        """Start a stopped member again on its data; it rejoins the cluster."""
        member = self.members[index]
        member.start(",".join(f"{m.name}={m.peer_url}" for m in self.members), self._token)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(member.client_url + "/health", timeout=1.0).json().get("health") == "true":
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"etcd {member.name} not healthy after a restart: {member.log.read_text()[-2000:]}")

    @property
    def _token(self) -> str:
        return f"mkd-test-{self.members[0].client_port}"

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
