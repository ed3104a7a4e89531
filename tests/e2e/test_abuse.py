"""Issue 11's abuses against a real `mkd serve` process, started with a soft open-files limit of
1024 (systemd's default). Each test sends the abuse and checks that the daemon stays bounded
(RSS and open fds from /proc, the state directory's size) and responsive: `/healthz` over
loopback and over the unix socket answers meanwhile, within a generous bound. The real latency
figures are the bench's (tests/bench/bench_limits.py)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mkd.testing.daemon_process import DaemonProcess
from tests.helpers import POOL

PROBE_BOUND_S = 5.0  # generous: a probe that waits behind the abuse would take the abuse's time
RSS_BOUND = 60 << 20  # growth allowed while an abuse runs (the abuses would cost GBs unbounded)
HEADER_TIMEOUT_S = 2
BODY_STALL_S = 1
MAX_CONNECTIONS = 100
MAX_EVENT_STREAMS = 3

DTS = ('/dts-v1/;\n/ { compatible = "multikernel-v1"; instances { web { id = <1>; '
       'resources { cpus = <2 3>; memory-bytes = <0x10000000>; }; }; }; };\n')


class Watched:
    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        assert daemon.proc is not None
        self.pid = daemon.proc.pid

    def rss(self) -> int:
        found = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{self.pid}/status").read_text(), re.M)
        assert found is not None
        return int(found.group(1)) * 1024

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def state_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.daemon.state_dir.rglob("*") if p.is_file())

    def probe(self) -> None:
        """/healthz over loopback (a new connection) and over the unix socket, each within the bound."""
        with httpx.Client(base_url=self.daemon.url, timeout=PROBE_BOUND_S) as tcp:
            assert tcp.get("/healthz").status_code == 200
        with self.daemon.unix_client(timeout=PROBE_BOUND_S) as unix:
            assert unix.get("/healthz").status_code == 200

    def refusals(self, limit: str) -> float:
        with self.daemon.unix_client() as unix:
            text = unix.get("/metrics").text
        found = re.search(rf'^mkd_limit_refusals_total\{{limit="{limit}"\}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    root = tmp_path_factory.mktemp("abuse")
    slow_dtc = root / "slow-dtc"
    # A dtc that takes a second per tree stands in for a hostile DTS, without burning CPU here.
    slow_dtc.write_text('#!/bin/sh\nsleep 1\nexec dtc "$@"\n')
    slow_dtc.chmod(0o755)
    config = root / "mkd.toml"
    config.write_text(f"""
[simulator]
kernel_profile = "rfc-v2"
[limits]
header_timeout_s = {HEADER_TIMEOUT_S}
keepalive_timeout_s = 1
body_stall_timeout_s = {BODY_STALL_S}
max_connections = {MAX_CONNECTIONS}
max_event_streams = {MAX_EVENT_STREAMS}
dtc_concurrency = 1
dtc_queue = 1
dtc_path = "{slow_dtc}"
""")
    with DaemonProcess(root / "state", config=config, open_files=1024) as daemon:
        with daemon.client() as client:
            assert client.put("/v1/pool", json=POOL).status_code == 201
        yield Watched(daemon)


def _stream_body(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    block = b" " * chunk
    for _ in range(total // chunk):
        yield block


def test_the_daemon_raised_its_open_files_limit(watched: Watched) -> None:
    limits = Path(f"/proc/{watched.pid}/limits").read_text()
    soft = int(re.search(r"^Max open files\s+(\d+)", limits, re.M).group(1))  # type: ignore[union-attr]
    assert soft > 1024


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/session"), ("PUT", "/v1/pool")])
def test_a_huge_json_body_is_413_while_reading(watched: Watched, method: str, path: str) -> None:
    rss = watched.rss()
    outcome: list[httpx.Response | Exception] = []

    def abuse() -> None:
        try:
            with httpx.Client(base_url=watched.daemon.url, timeout=30) as client:
                outcome.append(client.request(method, path, content=_stream_body(600 << 20),
                                              headers={"content-type": "application/json"}))
        except httpx.TransportError as exc:  # the daemon may close before the client stops sending
            outcome.append(exc)

    thread = threading.Thread(target=abuse)
    thread.start()
    watched.probe()
    thread.join(60)
    assert outcome
    if isinstance(outcome[0], httpx.Response):
        assert outcome[0].status_code == 413
    assert watched.rss() - rss < RSS_BOUND
    # a declared length over the limit is refused before any of it is read
    with socket.create_connection(("127.0.0.1", watched.daemon.port)) as raw:
        raw.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {600 << 20}\r\n\r\n".encode())
        assert raw.recv(4096).startswith(b"HTTP/1.1 413")
    watched.probe()


def test_half_open_connections_are_timed_out_and_every_listener_answers(watched: Watched) -> None:
    fds = watched.fds()
    before = watched.refusals("header_timeout_s")
    stalled: list[socket.socket] = []
    try:
        for _ in range(1000):
            conn = socket.create_connection(("127.0.0.1", watched.daemon.port))
            conn.sendall(b"POST /v1/instances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
            stalled.append(conn)
        watched.probe()  # meanwhile
        assert watched.fds() < fds + 1100  # one fd per connection, nothing more
        deadline = time.monotonic() + HEADER_TIMEOUT_S + 10
        while watched.refusals("header_timeout_s") < before + 1000 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert watched.refusals("header_timeout_s") >= before + 1000
        assert watched.fds() < fds + 20
        watched.probe()
    finally:
        for conn in stalled:
            conn.close()


def test_past_max_connections_probes_answer_and_the_rest_is_503(watched: Watched) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS + 5):  # busy: opened, never finishing their headers
            conn = socket.create_connection(("127.0.0.1", watched.daemon.port))
            conn.sendall(b"GET /v1/pool HTTP/1.1\r\n")
            held.append(conn)
        time.sleep(0.2)
        with httpx.Client(base_url=watched.daemon.url, timeout=PROBE_BOUND_S) as client:
            refused = client.get("/v1/pool")
            assert refused.status_code == 503
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["limit"] == "max_connections"
            assert client.get("/readyz").status_code == 200
        with watched.daemon.unix_client(timeout=PROBE_BOUND_S) as unix:  # local operators are not limited
            assert unix.get("/v1/pool").status_code == 200
        watched.probe()
    finally:
        for conn in held:
            conn.close()


def test_an_idle_kept_alive_connection_is_closed(watched: Watched) -> None:
    with socket.create_connection(("127.0.0.1", watched.daemon.port)) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        raw.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += raw.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        while raw.recv(4096):  # the rest of the body, then the close (keepalive_timeout_s = 1)
            pass
        assert time.monotonic() - started < 10


def test_a_stalled_upload_is_closed_and_leaves_nothing(watched: Watched) -> None:
    before = watched.refusals("body_stall_timeout_s")
    tmp = watched.daemon.state_dir / "images" / "tmp"
    with socket.create_connection(("127.0.0.1", watched.daemon.port)) as raw:
        raw.sendall(b"POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Length: 67108864\r\n\r\n" + b"\0" * (4 << 20))
        raw.settimeout(BODY_STALL_S + 10)
        assert raw.recv(4096) == b""  # closed by the daemon, no answer
    deadline = time.monotonic() + 5
    while list(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list(tmp.iterdir())
    assert watched.refusals("body_stall_timeout_s") >= before + 1
    watched.probe()


def test_a_header_flood_is_431(watched: Watched) -> None:
    with socket.create_connection(("127.0.0.1", watched.daemon.port)) as raw:
        raw.settimeout(10)
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            for _ in range(64):
                raw.sendall(b"X-Pad: " + b"a" * 16384 + b"\r\n")
        except OSError:
            pass  # closed by the daemon while sending
        assert raw.recv(4096).startswith(b"HTTP/1.1 431")
    watched.probe()


def test_validation_error_floods_with_keys_store_nothing(watched: Watched) -> None:
    size = watched.state_bytes()
    body = "{" + ",".join(f'"bad{i:05d}": {i}' for i in range(40_000)) + "}"
    with httpx.Client(base_url=watched.daemon.url, timeout=30) as client:
        for n in range(5):
            reply = client.post("/v1/instances", content=body, headers={
                "content-type": "application/json", "Idempotency-Key": f"flood-{n}"})
            assert reply.status_code == 422
            assert len(reply.content) < 10_000
    watched.probe()
    assert watched.state_bytes() - size < 4 << 20


def test_past_max_event_streams_is_429(watched: Watched) -> None:
    with contextlib.ExitStack() as streams:
        for _ in range(MAX_EVENT_STREAMS):
            client = streams.enter_context(httpx.Client(base_url=watched.daemon.url, timeout=30))
            assert streams.enter_context(client.stream("GET", "/v1/events")).status_code == 200
        with httpx.Client(base_url=watched.daemon.url, timeout=PROBE_BOUND_S) as client:
            refused = client.get("/v1/events")
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert refused.json()["limit"] == "max_event_streams"
        watched.probe()


def test_device_trees_compile_off_the_event_loop_and_past_the_queue_are_503(watched: Watched) -> None:
    replies: list[int] = []

    def create() -> None:
        with httpx.Client(base_url=watched.daemon.url, timeout=30) as client:
            replies.append(client.post("/v1/instances?dry_run=true", content=DTS,
                                       headers={"content-type": "text/x-dts"}).status_code)

    threads = [threading.Thread(target=create) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    watched.probe()  # while dtc runs (one at a time, a second each)
    for thread in threads:
        thread.join(30)
    assert sorted(replies) == [200, 200, 503]
