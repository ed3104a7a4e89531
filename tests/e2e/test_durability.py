"""DESIGN "Durability": a 2xx means the change is on disk.

A SIGKILL right after each kind of 2xx must not take the change back; since a SIGKILL leaves the
page cache alone (it would pass without any fsync), a second test reads the system calls under
strace: the database's and the image directory's fsyncs must complete before the response is
written to the socket. A third races DELETE against a re-upload of the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.helpers import POOL, MiB

Check = Callable[[httpx.Client], None]


def _tree_config(tmp_path: Path) -> Path:
    config = tmp_path / "mkd.toml"
    config.write_text('[simulator]\nkernel_profile = "tree"\n')
    return config


def test_every_kind_of_2xx_survives_a_sigkill(tmp_path: Path) -> None:
    config = _tree_config(tmp_path)
    state = tmp_path / "state"
    kernel = imagegen.vmlinux()
    spare = imagegen.vmlinux(ipi_abi_version=1, note_desc_size=8)
    ctx: dict[str, Any] = {}

    def upload(http: httpx.Client) -> httpx.Response:
        reply = http.post("/v1/images", content=kernel)
        ctx["kernel"] = reply.json().get("sha256")
        http.post("/v1/images", content=spare)  # for the image delete below
        return reply

    # (what, the request that must get a 2xx, what the restarted daemon must show)
    steps: list[tuple[str, Callable[[httpx.Client], httpx.Response] | None, Check | None]] = [
        ("PUT pool", lambda h: h.put("/v1/pool", json=POOL),
         lambda h: _expect(h.get("/v1/pool").json()["cpus"] == POOL["cpus"])),
        ("upload", upload,
         lambda h: _expect(h.get(f"/v1/images/{ctx['kernel']}").status_code == 200
                           and _stored(state, ctx["kernel"]) == kernel)),
        ("create", lambda h: h.post("/v1/instances", json={"name": "web", "resources": {
            "cpus": [2, 3], "memory_bytes": 256 * MiB}}),
         lambda h: _expect(h.get("/v1/instances/web").json()["state"] == "READY")),
        ("create a second", lambda h: h.post("/v1/instances", json={"name": "spare", "resources": {
            "cpus": [6], "memory_bytes": 128 * MiB}}),
         lambda h: _expect(h.get("/v1/instances/spare").status_code == 200)),
        ("PATCH", lambda h: h.patch("/v1/instances/spare", json={"resources": {"cpus": [6, 7]}}),
         lambda h: _expect(h.get("/v1/instances/spare").json()["resources"]["cpus"] == [6, 7])),
        ("load", lambda h: h.post("/v1/instances/web/load", json={"kernel": ctx["kernel"]}),
         lambda h: _expect(h.get("/v1/instances/web").json()["state"] == "LOADED")),
        ("start", lambda h: h.post("/v1/instances/web/start"),
         lambda h: _expect(h.get("/v1/instances/web").json()["state"] == "ACTIVE")),
        ("delete an instance", lambda h: h.delete("/v1/instances/spare"),
         lambda h: _expect(h.get("/v1/instances/spare").status_code == 404)),
        ("delete an image", lambda h: h.delete(f"/v1/images/{_sha(h, spare)}"),
         lambda h: _expect(h.get(f"/v1/images/{ctx['spare']}").status_code == 404)),
    ]
    # Each daemon checks what the killed one acknowledged, then makes the next change and is killed
    # right after its 2xx (no shutdown code runs).
    previous: Check | None = None
    for what, request, check in [*steps, ("", None, None)]:
        with DaemonProcess(state, config=config) as daemon, daemon.client() as http:
            if previous is not None:
                previous(http)
            if request is None:
                break
            reply = request(http)
            assert reply.status_code < 300, (what, reply.text)
            if what == "delete an image":
                ctx["spare"] = reply.request.url.path.rsplit("/", 1)[1]
            daemon.kill()
        previous = check


def _expect(condition: bool) -> None:
    assert condition


def _stored(state: Path, sha: str) -> bytes | None:
    """The bytes the store holds under `sha` (the file behind the row), or None."""
    path = state / "images" / sha[:2] / sha
    return path.read_bytes() if path.exists() else None


def _sha(http: httpx.Client, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    assert http.get(f"/v1/images/{sha}").status_code == 200
    return sha


# strace -y prints the path behind each fd: fsync(7</state/mkd.sqlite3-wal>) = 0.
TRACED = "fsync,fdatasync,rename,renameat,renameat2,sendto,write,writev"
_SYNC = re.compile(r"^\d+\s+(?:<\.\.\. )?f(?:data)?sync(?:\(| resumed>)")


def _finished_syncs(lines: list[str]) -> list[tuple[int, str]]:
    """(line, path) of every fsync/fdatasync that returned 0, at the line where it returned."""
    started: dict[str, str] = {}  # pid -> path of its unfinished sync
    done: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        pid = line.split(maxsplit=1)[0]
        call = re.search(r"f(?:data)?sync\((\d+)<([^>]*)>", line)
        if call and line.rstrip().endswith("<unfinished ...>"):
            started[pid] = call.group(2)
        elif call and re.search(r"\)\s+= 0$", line):
            done.append((number, call.group(2)))
        elif re.search(r"<\.\.\. f(?:data)?sync resumed>.*= 0$", line) and pid in started:
            done.append((number, started.pop(pid)))
    return done


def _response_line(lines: list[str], status_line: str, after: int = 0) -> int:
    for number in range(after, len(lines)):
        if re.search(r"(?:write|sendto|writev)\(.*" + re.escape(status_line), lines[number]):
            return number
    raise AssertionError(f"no {status_line!r} written to a socket in the trace")


def test_fsyncs_come_before_the_response_is_written(tmp_path: Path) -> None:
    trace = tmp_path / "strace.txt"
    wrapper = ["strace", "-f", "-y", "-s", "64", "-e", f"trace={TRACED}", "-o", str(trace)]
    daemon = DaemonProcess(tmp_path / "state", wrapper=wrapper).start(timeout=120)
    try:
        with daemon.client() as http:
            assert http.put("/v1/pool", json=POOL).status_code == 201
            mark = http.get("/v1/host")  # a response to find in the trace: what follows is ours
            assert mark.status_code == 200
            created = http.post("/v1/instances", json={"name": "web", "resources": {"memory_bytes": 128 * MiB}})
            assert created.status_code == 201, created.text
            second_mark = http.get("/v1/host")
            assert second_mark.status_code == 200
            uploaded = http.post("/v1/images", content=imagegen.vmlinux())
            assert uploaded.status_code == 201, uploaded.text
    finally:
        _stop_traced(daemon)
    lines = trace.read_text().splitlines()
    syncs = _finished_syncs(lines)
    images = str(tmp_path / "state" / "images")

    host_reply = _response_line(lines, "HTTP/1.1 200 OK")
    # /v1/host is answered after the pool's 201; find the 201s that follow each mark.
    host_replies = [n for n, line in enumerate(lines) if "HTTP/1.1 200 OK" in line
                    and re.search(r"(?:write|sendto|writev)\(", line)]
    assert len(host_replies) >= 2 and host_reply == host_replies[0]
    created_at = _response_line(lines, "HTTP/1.1 201", after=host_replies[-2])
    uploaded_at = _response_line(lines, "HTTP/1.1 201", after=host_replies[-1])
    assert created_at < host_replies[-1] < uploaded_at

    def synced(between: tuple[int, int], path_test: Callable[[str], bool]) -> bool:
        return any(between[0] < n < between[1] and path_test(path) for n, path in syncs)

    is_wal = re.compile(r"mkd\.sqlite3-wal$").search
    # The create's commit: the WAL synced after the request came in and before its 201.
    assert synced((host_replies[-2], created_at), lambda p: bool(is_wal(p))), "create: no WAL fsync before 201"
    window = (host_replies[-1], uploaded_at)
    assert synced(window, lambda p: p.startswith(images + "/") and "/tmp/" in p), "upload: file not fsynced"
    assert synced(window, lambda p: re.fullmatch(re.escape(images) + r"/[0-9a-f]{2}", p) is not None), \
        "upload: the image directory is not fsynced before 201"
    assert synced(window, lambda p: bool(is_wal(p))), "upload: the row's commit is not fsynced before 201"
    # The rename into images/xx/ (its call line; strace may split it when another thread interrupts).
    renamed = [n for n, line in enumerate(lines) if window[0] < n < window[1]
               and re.search(r"rename(?:at2?)?\(", line) and images in line]
    dir_syncs = [n for n, path in syncs if re.fullmatch(re.escape(images) + r"/[0-9a-f]{2}", path)]
    assert renamed and any(renamed[0] < n < uploaded_at for n in dir_syncs), "the directory fsync follows the rename"


def _stop_traced(daemon: DaemonProcess) -> None:
    """SIGTERM the daemon (strace's child), then wait for strace to write its last lines."""
    proc = daemon.proc
    assert proc is not None
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    for pid in children.read_text().split() if children.exists() else []:
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(30)
    except Exception:
        proc.kill()
        proc.wait(10)


ROUNDS = 40  # the issue saw 34 of 150 rounds lose the file; bounded time (DESIGN "Testing notes")


def _race_once(daemon: DaemonProcess, sha: str, data: bytes) -> tuple[int, int]:
    """DELETE /v1/images/{sha} and POST of the same bytes at the same moment: their statuses."""
    barrier = threading.Barrier(2)
    replies: dict[str, int] = {}

    def run(what: str, send: Callable[[httpx.Client], httpx.Response]) -> None:
        with daemon.client() as own:
            own.get("/healthz")  # connected before the barrier, so the requests really overlap
            barrier.wait(10)
            replies[what] = send(own).status_code

    racers = [threading.Thread(target=run, args=("delete", lambda c: c.delete(f"/v1/images/{sha}"))),
              threading.Thread(target=run, args=("upload", lambda c: c.post("/v1/images", content=data)))]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    return replies["delete"], replies["upload"]


def test_delete_racing_a_reupload_ends_with_both_or_neither(tmp_path: Path) -> None:
    data = imagegen.vmlinux()
    with DaemonProcess(tmp_path / "state") as daemon, daemon.client() as http:
        sha = http.post("/v1/images", content=data).json()["sha256"]
        outcomes: set[tuple[int, int]] = set()
        for _ in range(ROUNDS):
            if http.get(f"/v1/images/{sha}").status_code == 404:
                assert http.post("/v1/images", content=data).status_code == 201
            outcomes.add(_race_once(daemon, sha, data))
            listed = http.get(f"/v1/images/{sha}").status_code
            assert listed in (200, 404)
            assert (listed == 200) == (_stored(daemon.state_dir, sha) == data), "a row without its file or back"
        assert outcomes <= {(204, 200), (204, 201)}, outcomes


def test_a_missing_image_file_is_a_502_without_a_server_path(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with DaemonProcess(state) as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        sha = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        assert http.post("/v1/instances", json={"name": "web", "resources": {"memory_bytes": 128 * MiB}}
                         ).status_code == 201
        (state / "images" / sha[:2] / sha).unlink()  # what the race used to leave: a row without its file
        reply = http.post("/v1/instances/web/load", json={"kernel": sha})
        assert reply.status_code == 502 and reply.headers["content-type"].startswith("application/problem+json")
        assert str(tmp_path) not in reply.text and "/images/" not in reply.text, reply.text
