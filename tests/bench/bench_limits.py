"""Benchmark: what DESIGN "Limits" cost on the normal path, and /healthz latency under each abuse.

1. Upload (256 MiB, ratio to `openssl dgst -sha256` of the same file) and GET throughput
   (GET /v1/pool on one kept-alive connection) with the limits at their defaults and with every
   limit raised out of the way, in the same run; each figure the median of three. Goal: the
   defaults reach at least 0.95x of the raised run.
2. /healthz latency over loopback (a new connection per probe) and over the unix socket, idle and
   while each abuse of tests/e2e/test_abuse.py runs (the tests only check a generous bound).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from mkd.testing.daemon_process import DaemonProcess
from mkd.testing.imagegen import initrd, write_sized
from tests.bench.bench_upload import file_chunks, make_unique, openssl_seconds
from tests.bench.daemons import SMALL_POOL, check
from tests.bench.measure import BenchResult, MiB, median, ms, scratch_dir, skipped, space_problem, verdict

GOAL_RATIO = 0.95
UPLOAD_SIZE = 256 * MiB
RUNS = 3
GETS = 400
PROBES = 10

RAISED = """
[limits]
max_json_bytes = 17179869184
max_dt_bytes = 17179869184
max_image_bytes = 4398046511104
max_validation_errors = 100000
max_connections = 1000000
header_timeout_s = 3600
keepalive_timeout_s = 3600
body_stall_timeout_s = 3600
max_event_streams = 1000000
idempotency_keys_per_token = 100000000
idempotency_bytes_per_token = 1099511627776
dtc_concurrency = 256
dtc_queue = 10000
"""


@contextmanager
def daemon_with(workdir: Path, name: str, extra: str) -> Iterator[DaemonProcess]:
    config = workdir / f"{name}.toml"
    config.write_text('[simulator]\nkernel_profile = "rfc-v2"\n' + extra)
    daemon = DaemonProcess(workdir / name, config=config, open_files=1024)
    daemon.start()
    try:
        with daemon.client() as client:
            check(client.put("/v1/pool", json=SMALL_POOL), 200, 201)
        yield daemon
    finally:
        daemon.stop()


def upload_seconds(daemon: DaemonProcess, image: Path, round_no: int) -> float:
    make_unique(image, round_no)
    headers = {"content-type": "application/octet-stream", "content-length": str(image.stat().st_size)}
    with httpx.Client(base_url=daemon.url, timeout=600) as client:
        started = time.perf_counter()
        reply = client.post("/v1/images", content=file_chunks(image), headers=headers)
        elapsed = time.perf_counter() - started
        check(reply, 201)
        check(client.delete(f"/v1/images/{reply.json()['sha256']}"), 204)
    return elapsed


def gets_per_second(daemon: DaemonProcess) -> float:
    with daemon.client() as client:
        check(client.get("/v1/pool"), 200)
        started = time.perf_counter()
        for _ in range(GETS):
            client.get("/v1/pool")
        return GETS / (time.perf_counter() - started)


def normal_path(workdir: Path, image: Path) -> dict[str, dict[str, Any]]:
    """Both daemons run at once and take turns, round by round, so a busy machine slows both alike."""
    uploads: dict[str, list[float]] = {"defaults": [], "raised": []}
    gets: dict[str, list[float]] = {"defaults": [], "raised": []}
    openssl: list[float] = []
    with daemon_with(workdir, "defaults", "") as defaults, daemon_with(workdir, "raised", RAISED) as raised:
        daemons = {"defaults": defaults, "raised": raised}
        for name, daemon in daemons.items():
            upload_seconds(daemon, image, 100 + len(name))  # warm-up: page cache, first-touch memory
        for round_no in range(RUNS):
            openssl.append(openssl_seconds(image))
            # Alternate who goes first: the second upload of a round finds the first one's pages freed.
            order = list(daemons.items()) if round_no % 2 == 0 else list(daemons.items())[::-1]
            for name, daemon in order:
                uploads[name].append(upload_seconds(daemon, image, round_no))
                gets[name].append(gets_per_second(daemon))
    figures: dict[str, dict[str, Any]] = {}
    for name in daemons:
        figures[name] = {"upload_ratio": median(openssl) / median(uploads[name]), "upload_s": median(uploads[name]),
                         "openssl_s": median(openssl), "gets_per_s": median(gets[name]),
                         "rounds_upload_s": uploads[name], "rounds_gets_per_s": gets[name], "rounds_openssl_s": openssl}
    return figures


# -- /healthz under abuse -----------------------------------------------------------------------

def probe_latencies(daemon: DaemonProcess) -> tuple[list[float], list[float]]:
    tcp: list[float] = []
    unix: list[float] = []
    for _ in range(PROBES):
        for target, client_of in ((tcp, lambda: httpx.Client(base_url=daemon.url, timeout=30)),
                                  (unix, lambda: daemon.unix_client(timeout=30))):
            with client_of() as client:
                started = time.perf_counter()
                check(client.get("/healthz"), 200)
                target.append(time.perf_counter() - started)
        time.sleep(0.02)
    return tcp, unix


def half_open(daemon: DaemonProcess) -> Callable[[], None]:
    conns = []
    for _ in range(1000):
        conn = socket.create_connection(("127.0.0.1", daemon.port))
        conn.sendall(b"POST /v1/instances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        conns.append(conn)
    return lambda: [c.close() for c in conns] and None


def in_background(action: Callable[[], object], copies: int = 1) -> Callable[[], None]:
    threads = [threading.Thread(target=action, daemon=True) for _ in range(copies)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    return lambda: [t.join(120) for t in threads] and None


def huge_json(daemon: DaemonProcess) -> Callable[[], None]:
    def send() -> None:
        try:
            with httpx.Client(base_url=daemon.url, timeout=60) as client:
                client.post("/v1/session", content=(b" " * MiB for _ in range(600)),
                            headers={"content-type": "application/json"})
        except httpx.TransportError:
            pass
    return in_background(send, copies=4)


def validation_flood(daemon: DaemonProcess) -> Callable[[], None]:
    body = "{" + ",".join(f'"bad{i:05d}": {i}' for i in range(40_000)) + "}"

    def send() -> None:
        with httpx.Client(base_url=daemon.url, timeout=60) as client:
            for n in range(5):
                client.put("/v1/pool", content=body, headers={"content-type": "application/json",
                                                              "Idempotency-Key": f"f{n}"})
    return in_background(send, copies=2)


def hostile_dts(daemon: DaemonProcess) -> Callable[[], None]:
    # Deep nesting makes dtc's parser work; its CPU limit and the queue bound what it costs.
    depth = 9000
    dts = "/dts-v1/;\n/ { " + "n { " * depth + "}; " * depth + "};\n"

    def send() -> None:
        with httpx.Client(base_url=daemon.url, timeout=60) as client:
            client.post("/v1/instances", content=dts, headers={"content-type": "text/x-dts"})
    return in_background(send, copies=3)


def event_streams(daemon: DaemonProcess) -> Callable[[], None]:
    stop = threading.Event()

    def hold() -> None:
        with httpx.Client(base_url=daemon.url, timeout=None) as client, client.stream("GET", "/v1/events"):
            stop.wait(60)
    threads = [threading.Thread(target=hold, daemon=True) for _ in range(100)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    return lambda: (stop.set(), [t.join(10) for t in threads]) and None


ABUSES: dict[str, Callable[[DaemonProcess], Callable[[], None]]] = {
    "1000 half-open connections": half_open,
    "4 x 600 MiB JSON bodies": huge_json,
    "2 x 5 bodies of 40,000 bad keys": validation_flood,
    "3 hostile DTS (9,000 nested nodes)": hostile_dts,
    "100 event streams": event_streams,
}


def under_abuse(workdir: Path) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    with daemon_with(workdir, "abuse", "") as daemon:
        tcp, unix = probe_latencies(daemon)
        figures["idle"] = {"tcp_p50_s": median(tcp), "tcp_max_s": max(tcp), "unix_p50_s": median(unix),
                           "unix_max_s": max(unix)}
        for name, start in ABUSES.items():
            finish = start(daemon)
            try:
                tcp, unix = probe_latencies(daemon)
            finally:
                finish()
            figures[name] = {"tcp_p50_s": median(tcp), "tcp_max_s": max(tcp), "unix_p50_s": median(unix),
                             "unix_max_s": max(unix)}
    return figures


def run() -> list[BenchResult]:
    name = "limits: defaults vs raised"
    goal = f">= {GOAL_RATIO}x raised"
    with scratch_dir("limits") as workdir:
        problem = space_problem(workdir, 3 * UPLOAD_SIZE)
        if problem:
            return [skipped(name, goal, problem)]
        image = write_sized(workdir / "image.bin", initrd("cpio", 4096), UPLOAD_SIZE)
        normal = normal_path(workdir, image)
        abuse = under_abuse(workdir)
    default, raised = normal["defaults"], normal["raised"]
    upload_ratio = raised["upload_s"] / default["upload_s"]  # speed with defaults / speed raised
    get_ratio = default["gets_per_s"] / raised["gets_per_s"]
    print(f"  upload vs openssl: defaults {default['upload_ratio']:.2f}x, raised {raised['upload_ratio']:.2f}x "
          f"-> {upload_ratio:.2f}x; GET /v1/pool: defaults {default['gets_per_s']:.0f}/s, raised "
          f"{raised['gets_per_s']:.0f}/s -> {get_ratio:.2f}x (goal >= {GOAL_RATIO}x, median of {RUNS})")
    for abuse_name, figure in abuse.items():
        print(f"  /healthz {abuse_name}: loopback p50 {ms(figure['tcp_p50_s'])} max {ms(figure['tcp_max_s'])}; "
              f"unix p50 {ms(figure['unix_p50_s'])} max {ms(figure['unix_max_s'])}")
    worst = max(f["tcp_max_s"] for f in abuse.values())
    return [
        BenchResult(name="limits: upload, defaults vs raised", figure=f"{default['upload_ratio']:.2f}x openssl",
                    baseline=f"raised {raised['upload_ratio']:.2f}x openssl", ratio=upload_ratio, goal=goal,
                    verdict=verdict(upload_ratio >= GOAL_RATIO), details=normal),
        BenchResult(name="limits: GET, defaults vs raised", figure=f"{default['gets_per_s']:.0f}/s",
                    baseline=f"raised {raised['gets_per_s']:.0f}/s", ratio=get_ratio, goal=goal,
                    verdict=verdict(get_ratio >= GOAL_RATIO), details=normal),
        BenchResult(name="limits: /healthz under abuse", figure=f"worst max {ms(worst)}",
                    baseline=f"idle p50 {ms(abuse['idle']['tcp_p50_s'])}", ratio=None, goal="answers",
                    verdict="INFO", details=abuse),
    ]
